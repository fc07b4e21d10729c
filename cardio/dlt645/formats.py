"""Value formats of DL/T 645-2007 data: bytes (offset already removed) <-> typed values.

Every multi-byte value is sent least significant byte first.  Our units (never floats):

* money ``XXXXXX.XX`` yuan -> integer **fen** (the BCD number itself);
* energy ``XXXXXX.XX`` kWh -> integer **Wh** = BCD number x 10 (the register resolution is
  0.01 kWh = 10 Wh; sending Wh drops what is below 10 Wh, toward zero, as the meter's own
  register does);
* price ``XXXX.XXXX`` yuan/kWh -> the rate unit of :mod:`app.domain.pricing` (0.0001 yuan/kWh),
  again the BCD number itself;
* counts ``NNNN`` -> int; status words -> int (a bit string, not BCD);
* dates and times -> :mod:`datetime` values; meter clocks are Beijing time (UTC+8), so date-times
  come out timezone-aware in UTC+8 and any aware date-time is converted to UTC+8 before sending.
  Years are 2000..2099 (``YY``).  Weeks (``WW``) are 0 = Sunday .. 6 = Saturday.

A signed format keeps the sign in bit 7 of the most significant byte (sign and magnitude).

A format raises :class:`Unfit` (a reason and its parameters); the data identifier that uses it
turns that into :class:`~cardio.dlt645.errors.ValueFormatError` when sending (the reason is a
message id, translated for the person) and :class:`~cardio.dlt645.errors.MalformedFrame` when
receiving (the reason is English, for the log only).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final
from typing import Generic
from typing import TypeVar

from app.i18n import N_
from cardio.profile import BEIJING

T = TypeVar("T")

SIGN_BIT: Final = 0x80


class Unfit(Exception):
    """A value (or received bytes) that a format cannot carry. ``reason`` is a message id."""

    def __init__(self, reason: str, **params: object) -> None:
        self.reason = reason
        self.params = params
        super().__init__(reason.format(**params) if params else reason)


def bcd_encode(number: int, size: int) -> bytes:
    """``number`` (0 <= number < 100**size) as ``size`` BCD bytes, least significant first."""
    return bytes.fromhex(f"{number:0{2 * size}d}")[::-1]


def bcd_decode(data: bytes) -> int:
    """The number in BCD ``data`` (least significant byte first); :class:`Unfit` if a nibble
    is not a decimal digit."""
    text = data[::-1].hex()
    if not text.isdigit():
        raise Unfit("the meter sent {data}, which is not a decimal number", data=data.hex(" "))
    return int(text)


@dataclass(frozen=True)
class Format(Generic[T]):
    """Base: ``size`` bytes on the line (0: any size), ``pattern`` as the standard writes it."""

    size: int
    pattern: str

    def encode(self, value: T) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> T:
        raise NotImplementedError

    def _check_size(self, data: bytes) -> None:
        if len(data) != self.size:
            raise Unfit(
                "the meter sent {got} bytes where {want} belong", got=len(data), want=self.size
            )


@dataclass(frozen=True)
class Bcd(Format[int]):
    """A BCD number; our value is the BCD number times ``unit`` (10 for kWh -> Wh)."""

    unit: int = 1
    signed: bool = False

    @property
    def limit(self) -> int:
        """The largest magnitude the register holds, in our unit."""
        digits: int = 10 ** (2 * self.size)
        top = digits // 10 * 8 if self.signed else digits  # signed: first digit 0..7
        return (top - 1) * self.unit

    def encode(self, value: int) -> bytes:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Unfit(N_("it must be a whole number"))
        if value < 0 and not self.signed:
            raise Unfit(N_("it cannot be negative"))
        magnitude = abs(value) // self.unit
        if magnitude * self.unit > self.limit:
            if self.signed:
                raise Unfit(N_("it must be from -{limit} to {limit}"), limit=self.limit)
            raise Unfit(N_("it must be at most {limit}"), limit=self.limit)
        raw = bytearray(bcd_encode(magnitude, self.size))
        if value < 0 and magnitude:
            raw[-1] |= SIGN_BIT
        return bytes(raw)

    def decode(self, data: bytes) -> int:
        self._check_size(data)
        negative = self.signed and bool(data[-1] & SIGN_BIT)
        if negative:
            data = data[:-1] + bytes([data[-1] & ~SIGN_BIT & 0xFF])
        value = bcd_decode(data) * self.unit
        return -value if negative else value


@dataclass(frozen=True)
class Bits(Format[int]):
    """An unsigned bit string (status words), least significant byte first."""

    def encode(self, value: int) -> bytes:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not (0 <= value < 1 << (8 * self.size))
        ):
            raise Unfit(N_("it must be a bit string of {bits} bits"), bits=8 * self.size)
        return value.to_bytes(self.size, "little")

    def decode(self, data: bytes) -> int:
        self._check_size(data)
        return int.from_bytes(data, "little")


@dataclass(frozen=True)
class Digits(Format[str]):
    """A string of ``2 * size`` decimal digits as printed (an address, a meter number)."""

    def encode(self, value: str) -> bytes:
        if (
            not (isinstance(value, str) and value.isascii() and value.isdigit())
            or len(value) != 2 * self.size
        ):
            raise Unfit(N_("it must be exactly {count} digits 0-9"), count=2 * self.size)
        return bytes.fromhex(value)[::-1]

    def decode(self, data: bytes) -> str:
        self._check_size(data)
        return f"{bcd_decode(data):0{2 * self.size}d}"


def _two_digit(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def _fields(data: bytes) -> list[int]:
    """Each byte of ``data`` as a two-digit number (data least significant first)."""
    out = []
    for byte in data:
        if byte >> 4 > 9 or byte & 0x0F > 9:
            raise Unfit("the meter sent {data}, which is not a decimal number", data=data.hex(" "))
        out.append((byte >> 4) * 10 + (byte & 0x0F))
    return out


def _beijing(value: dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise Unfit(N_("it must be a date and time with its time zone"))
    local = value.astimezone(BEIJING)
    if not 2000 <= local.year <= 2099:
        raise Unfit(N_("the year must be from 2000 to 2099"))
    return local


def _date(yy: int, mm: int, dd: int) -> dt.date:
    try:
        return dt.date(2000 + yy, mm, dd)
    except ValueError as exc:
        raise Unfit("the meter sent an impossible date") from exc


def _time(hh: int, mi: int, ss: int) -> dt.time:
    try:
        return dt.time(hh, mi, ss)
    except ValueError as exc:
        raise Unfit("the meter sent an impossible time of day") from exc


def week_day(day: dt.date) -> int:
    """The standard's week: 0 = Sunday .. 6 = Saturday."""
    return day.isoweekday() % 7


@dataclass(frozen=True)
class DateWeek(Format[dt.date]):
    """``YYMMDDWW`` (sent ``WW DD MM YY``); the week is computed when sending, checked 0..6
    and otherwise ignored when receiving."""

    def encode(self, value: dt.date) -> bytes:
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            raise Unfit(N_("it must be a date"))
        if not 2000 <= value.year <= 2099:
            raise Unfit(N_("the year must be from 2000 to 2099"))
        parts = (week_day(value), value.day, value.month, value.year - 2000)
        return bytes(_two_digit(p) for p in parts)

    def decode(self, data: bytes) -> dt.date:
        self._check_size(data)
        ww, dd, mm, yy = _fields(data)
        if ww > 6:
            raise Unfit("the meter sent an impossible date")
        return _date(yy, mm, dd)


@dataclass(frozen=True)
class TimeOfDay(Format[dt.time]):
    """``hhmmss`` (sent ``ss mm hh``)."""

    def encode(self, value: dt.time) -> bytes:
        if not isinstance(value, dt.time):
            raise Unfit(N_("it must be a time of day"))
        return bytes(_two_digit(p) for p in (value.second, value.minute, value.hour))

    def decode(self, data: bytes) -> dt.time:
        self._check_size(data)
        ss, mi, hh = _fields(data)
        return _time(hh, mi, ss)


@dataclass(frozen=True)
class DateTime(Format[dt.datetime]):
    """``YYMMDDhhmmss`` (6 bytes, sent ``ss mm hh DD MM YY``) or, with ``week``,
    ``YYMMDDWWhhmmss`` (7 bytes, sent ``ss mm hh WW DD MM YY``). Whole seconds, UTC+8."""

    week: bool = False

    def encode(self, value: dt.datetime) -> bytes:
        local = _beijing(value)
        parts = [local.second, local.minute, local.hour]
        if self.week:
            parts.append(week_day(local.date()))
        parts += [local.day, local.month, local.year - 2000]
        return bytes(_two_digit(p) for p in parts)

    def decode(self, data: bytes) -> dt.datetime:
        self._check_size(data)
        fields = _fields(data)
        if self.week:
            if fields[3] > 6:
                raise Unfit("the meter sent an impossible date")
            del fields[3]
        ss, mi, hh, dd, mm, yy = fields
        return dt.datetime.combine(_date(yy, mm, dd), _time(hh, mi, ss), BEIJING)


@dataclass(frozen=True)
class Repeated(Format[tuple[int, ...]]):
    """A data block: one to ``count`` items of ``item`` (a meter sends as many as it has)."""

    item: Format[int] = Bits(2, "XXXX")
    count: int = 1

    def encode(self, value: tuple[int, ...]) -> bytes:
        if not isinstance(value, tuple) or not 1 <= len(value) <= self.count:
            raise Unfit(N_("it must be 1 to {count} values"), count=self.count)
        return b"".join(self.item.encode(v) for v in value)

    def decode(self, data: bytes) -> tuple[int, ...]:
        step = self.item.size
        if not data or len(data) % step or len(data) > step * self.count:
            raise Unfit(
                "the meter sent {got} bytes where {want} belong",
                got=len(data),
                want=step * self.count,
            )
        return tuple(self.item.decode(data[k : k + step]) for k in range(0, len(data), step))


MONEY: Final = Bcd(4, "XXXXXX.XX")  # yuan with 2 decimals = fen
ENERGY: Final = Bcd(4, "XXXXXX.XX", unit=10)  # kWh with 2 decimals = 10 Wh
SIGNED_ENERGY: Final = Bcd(4, "XXXXXX.XX", unit=10, signed=True)
PRICE: Final = Bcd(4, "XXXX.XXXX")  # yuan/kWh with 4 decimals = app rate unit
COUNT: Final = Bcd(2, "NNNN")
WORD: Final = Bits(2, "XXXX")
ADDRESS: Final = Digits(6, "NNNNNNNNNNNN")
DATE_WEEK: Final = DateWeek(4, "YYMMDDWW")
TIME: Final = TimeOfDay(3, "hhmmss")
DATE_TIME: Final = DateTime(6, "YYMMDDhhmmss")
DATE_TIME_WEEK: Final = DateTime(7, "YYMMDDWWhhmmss", week=True)
