"""Money is an integer number of fen (1 yuan = 100 fen). Never a float.

Amounts enter as text (``"12.34"`` yuan from a person or a CSV) and leave as text for display;
everything in between is ``int``.  An amount must fit a signed 32-bit field on the card and in
the central contract, so the largest accepted amount is ``MAX_FEN`` (21,474,836.47 yuan).
"""

from __future__ import annotations

import re
import unicodedata

from app.errors import AmountError
from app.i18n import N_

MAX_FEN = 2**31 - 1
_YUAN = re.compile(r"^\s*([+-]?)(\d{1,12})(?:\.(\d{0,2}))?\s*$", re.ASCII)


def parse_yuan(text: str, *, allow_zero: bool = False, allow_negative: bool = False) -> int:
    """Parse a yuan amount with at most two decimals into fen.

    Refuses floats' artefacts by construction: the text is split on the decimal point, never
    converted through ``float``.
    """
    if not isinstance(text, str):
        raise AmountError(value=repr(text), reason=N_("it must be written as text, like 12.50"))
    # full-width digits and point from a Chinese input method count as ordinary ones
    m = _YUAN.match(unicodedata.normalize("NFKC", text).replace("。", "."))
    if not m:
        raise AmountError(value=text, reason=N_("write yuan with at most two decimals, like 12.50"))
    sign, whole, frac = m.groups()
    fen = int(whole) * 100 + int((frac or "").ljust(2, "0"))
    if sign == "-":
        fen = -fen
    return check_fen(fen, allow_zero=allow_zero, allow_negative=allow_negative, shown=text.strip())


def check_fen(
    fen: int, *, allow_zero: bool = False, allow_negative: bool = False, shown: str | None = None
) -> int:
    """Validate an amount in fen; returns it unchanged."""
    shown = shown if shown is not None else str(fen)
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise AmountError(value=shown, reason=N_("it must be a whole number of fen"))
    if fen < 0 and not allow_negative:
        raise AmountError(value=shown, reason=N_("it must not be negative"))
    if fen == 0 and not allow_zero:
        raise AmountError(value=shown, reason=N_("it must be more than zero"))
    if abs(fen) > MAX_FEN:
        raise AmountError(value=shown, reason=N_("it is larger than 21,474,836.47 yuan"))
    return fen


def format_yuan(fen: int, *, symbol: bool = False) -> str:
    """``123456`` -> ``"1234.56"`` (or ``"¥1234.56"``)."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    text = f"{sign}{whole}.{part:02d}"
    return f"¥{text}" if symbol else text


def check_cash_received(amount: int | None, cash: int | None) -> None:
    """Cash handed over must cover the amount (checked before any card is touched)."""
    from app.errors import ValidationError

    if cash is None:
        return
    if amount is None:
        raise ValidationError(N_("Type the amount before the cash received."))
    if cash < amount:
        raise ValidationError(
            N_("The cash received, {cash} yuan, is less than the amount of {amount} yuan."),
            cash=format_yuan(cash),
            amount=format_yuan(amount),
        )
