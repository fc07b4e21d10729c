"""What a receipt says, in one language: the labels, the formatted values and the marks.

Every text printed on a receipt is an English message id marked with ``N_`` here and translated
with ``translate(msgid, language)`` (``language`` is ``"zh_CN"`` or ``"en"``), so the PDF
layouts (:mod:`printing.receipt`) and the thermal printer (:mod:`printing.escpos`) print the
same words.  One receipt is in one language; the customer's name and address are printed as
they are.

Values are formatted from integers only: money with :func:`app.money.format_yuan`, energy
from Wh to kWh with two decimals by integer arithmetic (:func:`kwh_text`), times in the
office's time zone (``ReceiptData.local_time``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.domain.ledger import SaleState
from app.domain.receipt import ReceiptData
from app.i18n import N_
from app.i18n import translate
from app.money import format_yuan

# --------------------------------------------------------------------------- titles and marks

TITLE = N_("Electricity purchase receipt")
# the A5/A4 layout; deliberately not called 发票 (a tax invoice comes from the tax system)
STATEMENT_TITLE = N_("Electricity purchase statement")
COPY_MARK = N_("COPY {n}")
TRAINING_MARK = N_("TRAINING — not a real sale")
REVERSED_MARK = N_("REVERSED — this sale was cancelled")
NOT_COMPLETED_MARK = N_("NOT COMPLETED ({state}) — not valid as a receipt")
REMOTE_NOTE = N_("Remote payment: no card is needed, the credit is queued for the meter")
SCAN_TO_VERIFY = N_("Scan to verify")

# --------------------------------------------------------------------------- field labels

OFFICE = N_("Office")
COUNTER = N_("Counter")
OPERATOR = N_("Operator")
DATE_TIME = N_("Date and time")
CUSTOMER_NO = N_("Customer no.")
NAME = N_("Customer name")
ADDRESS = N_("Supply address")
METER_NO = N_("Meter no.")
SALE_NO = N_("Sale no.")
PURCHASE_NO = N_("Purchase no.")
AMOUNT_PAID = N_("Amount paid")
ARREARS = N_("Arrears deducted")
FEES = N_("Fees deducted")
CREDIT = N_("Credit loaded")
TARIFF = N_("Tariff")
ENERGY = N_("Estimated energy")
METER_BALANCE = N_("Meter balance (from card)")
CASH_RECEIVED = N_("Cash received")
CHANGE = N_("Change")
VERIFICATION_CODE = N_("Verification code")

# section headings and table columns of the A5/A4 statement
SECTION_SALE = N_("Sale details")
SECTION_CUSTOMER = N_("Customer")
SECTION_PAYMENT = N_("Payment details")
COLUMN_ITEM = N_("Item")
COLUMN_AMOUNT = N_("Amount")

# --------------------------------------------------------------------------- value templates

YUAN = N_("{amount} yuan")
KWH = N_("{kwh} kWh")
TARIFF_VALUE = N_("{name} ({plan}), version {version}")
NAME_AND_CODE = N_("{name} ({code})")
NOT_AVAILABLE = "—"  # a value the sale does not have (no card read, no cash)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def text(msgid: str, language: str, /, **params: object) -> str:
    """``msgid`` translated into ``language`` with its placeholders filled."""
    translated = translate(msgid, language)
    return translated.format(**params) if params else translated


def money(fen: int | None, language: str) -> str:
    """``12345`` -> ``"123.45 元"`` / ``"123.45 yuan"``; ``None`` -> ``"—"``."""
    if fen is None:
        return NOT_AVAILABLE
    return text(YUAN, language, amount=format_yuan(fen))


def kwh_text(wh: int) -> str:
    """Wh as kWh with two decimals, rounded half away from zero: ``12345`` -> ``"12.35"``."""
    sign = "-" if wh < 0 else ""
    hundredths = (abs(wh) + 5) // 10
    whole, part = divmod(hundredths, 100)
    return f"{sign}{whole}.{part:02d}"


def energy(wh: int, language: str) -> str:
    return text(KWH, language, kwh=kwh_text(wh))


def local_time_text(receipt: ReceiptData) -> str:
    """The sale's time in the office's time zone."""
    return receipt.local_time.strftime(TIME_FORMAT)


def tariff_text(receipt: ReceiptData, language: str) -> str:
    return text(
        TARIFF_VALUE,
        language,
        name=receipt.tariff_name,
        plan=receipt.tariff_plan,
        version=receipt.tariff_version_no,
    )


def name_and_code(name: str, code: str, language: str) -> str:
    if not name or name == code:
        return code
    return text(NAME_AND_CODE, language, name=name, code=code)


# --------------------------------------------------------------------------- a receipt's content


@dataclass(frozen=True)
class Field:
    label: str
    value: str
    key: str  # stable name for layouts that place fields individually


@dataclass(frozen=True)
class ReceiptText:
    """Everything a receipt prints, translated and formatted, in printing order."""

    title: str
    statement_title: str
    marks: tuple[str, ...]  # copy, training, reversed / not completed: printed prominently
    note: str | None  # remote payment wording
    sale: tuple[Field, ...]  # office, counter, operator, date/time, sale no, purchase no
    customer: tuple[Field, ...]  # customer no, name, address, meter no
    payment: tuple[Field, ...]  # amounts, tariff, energy, balance, cash, change
    short_id: str
    verification_label: str
    verification_code: str
    scan_to_verify: str
    qr_payload: str
    copy_mark: str | None
    training_mark: str | None
    headings: dict[str, str]  # sale, customer, payment, item, amount (the statement's tables)

    def fields(self) -> tuple[Field, ...]:
        return self.sale + self.customer + self.payment


def printable(value: str) -> str:
    """``value`` on one line without control characters: data typed or imported elsewhere (a
    name, an address) must not break a line or carry a printer command (ESC, GS, ...)."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def marks(receipt: ReceiptData, language: str) -> tuple[str, ...]:
    found: list[str] = []
    if receipt.copy_no > 0:
        found.append(text(COPY_MARK, language, n=receipt.copy_no))
    if receipt.training:
        found.append(text(TRAINING_MARK, language))
    if receipt.state == SaleState.REVERSED:
        found.append(text(REVERSED_MARK, language))
    elif receipt.state != SaleState.COMPLETED:
        state = SaleState.text_of(receipt.state, language)
        found.append(text(NOT_COMPLETED_MARK, language, state=state))
    return tuple(found)


def receipt_text(receipt: ReceiptData, language: str, *, full_sale_id: bool = False) -> ReceiptText:
    """The translated content of ``receipt``; ``full_sale_id`` prints the whole sale UUID as the
    sale number (the A5/A4 statement) instead of its short form (the rolls)."""
    lang = language

    def f(key: str, label: str, value: str) -> Field:
        return Field(text(label, lang), printable(value), key)

    purchase = NOT_AVAILABLE if receipt.purchase_count is None else str(receipt.purchase_count)
    sale = (
        f("office", OFFICE, name_and_code(receipt.office_name, receipt.office_code, lang)),
        f("counter", COUNTER, receipt.counter_id),
        f("operator", OPERATOR, name_and_code(receipt.operator_name, receipt.operator_id, lang)),
        f("date_time", DATE_TIME, local_time_text(receipt)),
        f("sale_no", SALE_NO, receipt.sale_id if full_sale_id else receipt.short_id),
        f("purchase_no", PURCHASE_NO, purchase),
    )
    customer = (
        f("customer_no", CUSTOMER_NO, receipt.customer_no),
        f("name", NAME, receipt.customer_name),
        f("address", ADDRESS, receipt.address),
        f("meter_no", METER_NO, receipt.meter_no),
    )
    amounts_before = (
        f("amount", AMOUNT_PAID, money(receipt.amount, lang)),
        f("arrears", ARREARS, money(receipt.arrears, lang)),
        f("fees", FEES, money(receipt.fees, lang)),
        f("credit", CREDIT, money(receipt.credit, lang)),
    )
    other = (
        f("tariff", TARIFF, tariff_text(receipt, lang)),
        f("energy", ENERGY, energy(receipt.energy_wh, lang)),
    )
    amounts_after = (
        f("meter_balance", METER_BALANCE, money(receipt.meter_balance, lang)),
        f("cash_received", CASH_RECEIVED, money(receipt.cash_received, lang)),
        f("change", CHANGE, money(receipt.change, lang)),
    )
    copy_mark = text(COPY_MARK, lang, n=receipt.copy_no) if receipt.copy_no > 0 else None
    return ReceiptText(
        title=text(TITLE, lang),
        statement_title=text(STATEMENT_TITLE, lang),
        marks=marks(receipt, lang),
        note=text(REMOTE_NOTE, lang) if receipt.kind == "remote" else None,
        sale=sale,
        customer=customer,
        payment=amounts_before + other + amounts_after,
        short_id=printable(receipt.short_id),
        verification_label=text(VERIFICATION_CODE, lang),
        verification_code=printable(receipt.verification_code),
        scan_to_verify=text(SCAN_TO_VERIFY, lang),
        qr_payload=receipt.qr_payload,
        copy_mark=copy_mark,
        training_mark=text(TRAINING_MARK, lang) if receipt.training else None,
        headings={
            "sale": text(SECTION_SALE, lang),
            "customer": text(SECTION_CUSTOMER, lang),
            "payment": text(SECTION_PAYMENT, lang),
            "item": text(COLUMN_ITEM, lang),
            "amount": text(COLUMN_AMOUNT, lang),
        },
    )


# --------------------------------------------------------------------------- fitting text


def is_wide(ch: str) -> bool:
    """Whether ``ch`` is a CJK character or full-width form (a line may break around it)."""
    o = ord(ch)
    return (
        0x1100 <= o <= 0x115F
        or 0x2E80 <= o <= 0xA4CF
        or 0xAC00 <= o <= 0xD7A3
        or 0xF900 <= o <= 0xFAFF
        or 0xFE30 <= o <= 0xFE4F
        or 0xFF00 <= o <= 0xFF60
        or 0xFFE0 <= o <= 0xFFE6
        or 0x20000 <= o <= 0x3FFFD
    )


# CJK punctuation that must not start a line: it stays with the character before it
_NO_LINE_START = frozenset("，。、；：？！）》」』】〕…—·％,.;:?!)%")


def _tokens(value: str) -> list[str]:
    """Words, single CJK characters (with any closing punctuation) and single spaces."""
    tokens: list[str] = []
    word = ""
    for ch in value:
        if ch.isspace():
            if word:
                tokens.append(word)
                word = ""
            tokens.append(" ")
        elif is_wide(ch):
            if ch in _NO_LINE_START and word:
                word += ch
            elif ch in _NO_LINE_START and tokens and tokens[-1] != " ":
                tokens[-1] += ch
            else:
                if word:
                    tokens.append(word)
                    word = ""
                tokens.append(ch)
        else:
            word += ch
    if word:
        tokens.append(word)
    return tokens


def wrap(value: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """Break ``value`` into lines of at most ``width`` as ``measure`` counts it: at spaces and
    between CJK characters, inside a word only when the word alone is too wide.  Never returns
    an empty list (an empty value is one empty line)."""
    if measure(value) <= width:
        return [value]
    lines: list[str] = []
    line = ""
    for token in _tokens(value):
        if token == " ":
            if line and measure(line + " ") <= width:
                line += " "
            elif line:
                lines.append(line.rstrip())
                line = ""
            continue
        if measure(line + token) <= width:
            line += token
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = ""
        while measure(token) > width:  # a word wider than the line: cut it
            cut = 1
            while cut < len(token) and measure(token[: cut + 1]) <= width:
                cut += 1
            if cut > 1 and token[cut] in _NO_LINE_START:
                cut -= 1  # closing punctuation stays with the character before it
            lines.append(token[:cut])
            token = token[cut:]
        line = token
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines
