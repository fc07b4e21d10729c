"""ESC/POS bytes for a thermal receipt printer: the receipt as text lines plus its QR code.

Pure functions: nothing here opens a port (``printing/backends.py`` sends the bytes).

    receipt_escpos(receipt, language="zh_CN", width=48) -> bytes

``width`` is the number of columns of the printer's font A: 48 on 80 mm paper, 32 on 58 mm.
Chinese text is sent in the printer's Chinese (Kanji) mode, ``FS &``, encoded GB18030: an ASCII
character takes one column, any other character two (GBK's double-byte characters are printed
double width; the few characters GB18030 encodes in four bytes also count as one double-width
glyph, on a printer whose font has them).  An English receipt whose text is all ASCII is sent
with Chinese mode cancelled (``FS .``); the customer's name and address usually are Chinese,
and then it is sent in Chinese mode too.

Commands used (Epson ESC/POS, also understood by the common Chinese 58/80 mm printers):

====================  ===============================================================
``ESC @``             initialise the printer
``FS &`` / ``FS .``   Chinese (Kanji) character mode on / off
``ESC a n``           justification: 0 left, 1 centre
``ESC E n``           emphasised (bold) on/off
``GS ! n``            character size (0x11 double width and height, 0x01 double height);
                      ``FS ! n`` the same for Chinese characters (0x0C / 0x08)
``GS ( k``            QR code: fn 65 model 2, fn 67 module size, fn 69 error level M
                      (49), fn 80 store the data, fn 81 print it
``ESC d n``           print and feed n lines
``GS V 66 0``         feed to the cutter and cut partially
``DLE EOT n``         real-time status (see :func:`parse_printer_status`, ...)
====================  ===============================================================
"""

from __future__ import annotations

from app.domain.receipt import ReceiptData
from app.i18n import normalize_language
from printing.labels import Field
from printing.labels import ReceiptText
from printing.labels import receipt_text
from printing.labels import wrap

ESC = b"\x1b"
GS = b"\x1d"
FS = b"\x1c"
DLE = b"\x10"
EOT = b"\x04"
LF = b"\n"

INIT = ESC + b"@"
CHINESE_ON = FS + b"&"
CHINESE_OFF = FS + b"."
ALIGN_LEFT = ESC + b"a\x00"
ALIGN_CENTRE = ESC + b"a\x01"
BOLD_ON = ESC + b"E\x01"
BOLD_OFF = ESC + b"E\x00"
SIZE_NORMAL = GS + b"!\x00" + FS + b"!\x00"
SIZE_DOUBLE = GS + b"!\x11" + FS + b"!\x0c"  # double width and height
SIZE_TALL = GS + b"!\x01" + FS + b"!\x08"  # double height only
CUT = GS + b"VB\x00"  # function B: feed to the cutting position, partial cut
ENCODING = "gb18030"

# real-time status requests (DLE EOT n); the printer answers one byte at once
STATUS_PRINTER = DLE + EOT + b"\x01"  # n=1 printer status
STATUS_OFFLINE = DLE + EOT + b"\x02"  # n=2 offline cause
STATUS_QUERY = DLE + EOT + b"\x04"  # n=4 paper roll sensor

QR_MODEL_2 = 50  # fn 65 argument: 49 model 1, 50 model 2
QR_LEVEL_M = 49  # fn 69 argument: 48 L, 49 M, 50 Q, 51 H
QR_MAX_DATA = 7089  # bytes fn 80 may store


# --------------------------------------------------------------------------- status bytes


def parse_printer_status(byte: int) -> str | None:
    """The answer to DLE EOT 1 (printer status): bit 3 set = the printer is offline ->
    ``"offline"`` (bit 1 and bit 4 are fixed 1, bits 0 and 7 fixed 0, bit 2 is the cash drawer
    connector, bits 5-6 are not a problem; fixed bits are not checked, clones differ)."""
    return "offline" if byte & 0x08 else None


def parse_offline_status(byte: int) -> str | None:
    """The answer to DLE EOT 2 (offline cause): bit 2 cover open -> ``"cover_open"``, bit 5
    printing stopped at the paper end -> ``"paper_out"``, bit 6 an error occurred ->
    ``"offline"`` (bit 3, paper fed by the feed button, is not a problem)."""
    if byte & 0x04:
        return "cover_open"
    if byte & 0x20:
        return "paper_out"
    if byte & 0x40:
        return "offline"
    return None


def parse_paper_status(byte: int) -> str | None:
    """The answer to DLE EOT 4 (paper roll sensor): bits 5-6 set = paper end ->
    ``"paper_out"``; bits 2-3 set = paper near its end -> ``"paper_near_end"`` (it still
    prints); bits 1 and 4 fixed (0 and 1) are not checked."""
    if byte & 0x60:
        return "paper_out"
    if byte & 0x0C:
        return "paper_near_end"
    return None


# --------------------------------------------------------------------------- columns


def columns(text: str) -> int:
    """Printed width in columns: 1 for an ASCII character, 2 for any other (Chinese mode)."""
    return sum(1 if ord(ch) < 0x80 else 2 for ch in text)


def fit(text: str, width: int) -> list[str]:
    """``text`` wrapped to lines of at most ``width`` columns."""
    return wrap(text, width, columns)


def field_lines(field: Field, width: int, indent: int = 2) -> list[str]:
    """``label   value`` on one line (value right-aligned), or the label and then the value
    wrapped under it, indented."""
    used = columns(field.label) + columns(field.value)
    if used + 1 <= width:
        return [field.label + " " * (width - used) + field.value]
    lines = fit(field.label, width)
    lines += [" " * indent + line for line in fit(field.value, width - indent)]
    return lines


# --------------------------------------------------------------------------- QR code


def qr_commands(payload: str, *, module: int = 6) -> bytes:
    """GS ( k: select model 2, module size ``module`` dots (1-16), error level M, store
    ``payload`` (ASCII) and print it."""
    data = payload.encode("ascii")
    if not 1 <= module <= 16:
        raise ValueError("the QR module size must be from 1 to 16 dots")
    if len(data) > QR_MAX_DATA:
        raise ValueError("the QR payload is too long")

    def fn(*params: int, body: bytes = b"") -> bytes:
        n = len(params) + len(body) + 1  # cn (49) + fn + parameters
        return GS + b"(k" + bytes([n & 0xFF, n >> 8, 49, *params]) + body

    return (
        fn(65, QR_MODEL_2, 0)
        + fn(67, module)
        + fn(69, QR_LEVEL_M)
        + fn(80, 48, body=data)
        + fn(81, 48)
    )


# --------------------------------------------------------------------------- the receipt


class _Out:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def raw(self, data: bytes) -> None:
        self.parts.append(data)

    def line(self, text: str = "") -> None:
        self.parts.append(text.encode(ENCODING, errors="replace") + LF)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


def _big(out: _Out, text: str, width: int) -> None:
    """Bold, double size when it fits on one line at double width, else double height."""
    out.raw(BOLD_ON)
    if columns(text) * 2 <= width:
        out.raw(SIZE_DOUBLE)
        out.line(text)
    else:
        out.raw(SIZE_TALL)
        for line in fit(text, width):
            out.line(line)
    out.raw(SIZE_NORMAL + BOLD_OFF)


def _marks(out: _Out, rt: ReceiptText, width: int) -> None:
    if not rt.marks:
        return
    out.raw(ALIGN_CENTRE)
    for mark in rt.marks:
        out.line("*" * width)
        _big(out, mark, width)
    out.line("*" * width)
    out.raw(ALIGN_LEFT)


def receipt_escpos(receipt: ReceiptData, *, language: str, width: int = 48) -> bytes:
    """The receipt for a thermal printer of ``width`` columns (48: 80 mm, 32: 58 mm), in
    ``language`` ("zh_CN" or "en"): initialise, title, marks (copy, training, reversed), the
    sale, customer and payment fields, the QR code with the short sale id and the verification
    code, the marks again, feed and partial cut."""
    if width < 24:
        raise ValueError("an ESC/POS receipt needs at least 24 columns")
    lang = normalize_language(language)
    rt = receipt_text(receipt, lang)
    out = _Out()
    out.raw(INIT)
    texts = [rt.title, *rt.marks, *(f.label + f.value for f in rt.fields()), rt.note or ""]
    chinese = lang == "zh_CN" or any(columns(t) != len(t) for t in texts)
    out.raw(CHINESE_ON if chinese else CHINESE_OFF)

    out.raw(ALIGN_CENTRE)
    _big(out, rt.title, width)
    out.raw(ALIGN_LEFT)
    _marks(out, rt, width)
    for group in (rt.sale, rt.customer, rt.payment):
        out.line("-" * width)
        for field in group:
            emphasised = field.key in ("amount", "credit")
            if emphasised:
                out.raw(BOLD_ON)
            for line in field_lines(field, width):
                out.line(line)
            if emphasised:
                out.raw(BOLD_OFF)
    if rt.note:
        out.raw(BOLD_ON)
        for line in fit(rt.note, width):
            out.line(line)
        out.raw(BOLD_OFF)
    out.line("-" * width)

    out.raw(ALIGN_CENTRE)
    out.raw(qr_commands(rt.qr_payload, module=6 if width >= 42 else 5))
    out.line()
    _big(out, rt.short_id, width)
    for text in (f"{rt.verification_label} {rt.verification_code}", rt.scan_to_verify):
        for line in fit(text, width):
            out.line(line)
    out.raw(ALIGN_LEFT)
    _marks(out, rt, width)
    out.raw(ESC + b"d\x03" + CUT)
    return out.getvalue()
