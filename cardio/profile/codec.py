"""The primitives of the card's records: checked integers, BCD, 6-byte times, framing with length and CRC, a bounds-checked reader."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from app.domain.card import CorruptCardFile
from app.errors import ValidationError
from app.i18n import N_
from cardio.crypto import crc16_x25
from cardio.profile.layout import _DIGITS
from cardio.profile.layout import _END
from cardio.profile.layout import _OVERHEAD
from cardio.profile.layout import _START
from cardio.profile.layout import _U16
from cardio.profile.layout import BEIJING
from cardio.profile.layout import FILE_SIZES


class NotCardable(ValidationError):
    """A record (or tariff) that a card of this profile cannot carry."""

    code = "not_cardable"
    template = N_("This cannot be written on a card: {reason}")


def _not_cardable(reason: str, **params: object) -> NoReturn:
    raise NotCardable(reason=reason, **params)


def _int(value: object, lo: int, hi: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _not_cardable(N_("{field} must be a whole number, not {value}"), field=field, value=value)
    if not lo <= value <= hi:
        _not_cardable(
            N_("{field} must be between {low} and {high}, not {value}"),
            field=field,
            low=lo,
            high=hi,
            value=value,
        )
    return value


def _put(value: object, nbytes: int, field: str, *, signed: bool = False) -> bytes:
    bits = 8 * nbytes
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return _int(value, lo, hi, field).to_bytes(nbytes, "big", signed=signed)


def _digits(value: object, nbytes: int, field: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * nbytes or not _DIGITS.issuperset(value):
        _not_cardable(
            N_("{field} must be exactly {count} digits, not {value}"),
            field=field,
            count=2 * nbytes,
            value=value,
        )
    return bcd_encode(value, nbytes)


def _raw(value: object, nbytes: int, field: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != nbytes:
        _not_cardable(
            N_("{field} must be {count} bytes, not {value}"), field=field, count=nbytes, value=value
        )
    return bytes(value)


def _time(value: dt.datetime | None, field: str) -> bytes:
    if value is not None:
        if not isinstance(value, dt.datetime):
            _not_cardable(
                N_("{field} must be a date and time, not {value}"), field=field, value=value
            )
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{field}: a card time must be timezone-aware, got {value.isoformat()}"
            )
        local = value.astimezone(BEIJING)
        if not 2000 <= local.year <= 2099:
            _not_cardable(
                N_("{field} must be in the years 2000 to 2099 (Beijing time), not {value}"),
                field=field,
                value=local.isoformat(),
            )
    return time6_encode(value)


def bcd_encode(digits: str, nbytes: int) -> bytes:
    """Pack exactly ``2 * nbytes`` decimal digits into BCD (ValueError otherwise)."""
    if not isinstance(digits, str) or len(digits) != 2 * nbytes or not _DIGITS.issuperset(digits):
        raise ValueError(f"BCD needs exactly {2 * nbytes} digits 0-9, got {digits!r}")
    return bytes(int(digits[i]) << 4 | int(digits[i + 1]) for i in range(0, len(digits), 2))


def bcd_decode(data: bytes) -> str:
    """The decimal digits of packed BCD; a nibble above 9 raises ValueError."""
    out = []
    for byte in data:
        high, low = byte >> 4, byte & 0x0F
        if high > 9 or low > 9:
            raise ValueError(f"byte {byte:02X} is not packed BCD")
        out.append(f"{high}{low}")
    return "".join(out)


def time6_encode(value: dt.datetime | None) -> bytes:
    """``YY MM DD hh mm ss`` in BCD, Beijing time; ``None`` is six zero bytes.

    ``value`` must be timezone-aware and fall in 2000..2099 Beijing time (ValueError otherwise);
    fractions of a second are dropped.
    """
    if value is None:
        return bytes(6)
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"a card time must be timezone-aware, got {value.isoformat()}")
    t = value.astimezone(BEIJING)
    if not 2000 <= t.year <= 2099:
        raise ValueError(f"a card time must be in 2000..2099 Beijing time, got {t.isoformat()}")
    text = f"{t.year - 2000:02d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}"
    return bcd_encode(text, 6)


def time6_decode(data: bytes) -> dt.datetime | None:
    """A time6 as an aware datetime in Beijing time (UTC+8); ``None`` for all zeros.

    Raises ValueError for anything that is not six bytes of a valid date and time.
    """
    if len(data) != 6:
        raise ValueError(f"a time6 is 6 bytes, got {len(data)}")
    if not any(data):
        return None
    digits = bcd_decode(data)
    year, month, day, hour, minute, second = (int(digits[i : i + 2]) for i in range(0, 12, 2))
    return dt.datetime(2000 + year, month, day, hour, minute, second, tzinfo=BEIJING)


def frame(body: bytes, file_size: int) -> bytes:
    """``68 | LEN | body | CRC | 16`` zero-padded to ``file_size`` (ValueError if it won't fit)."""
    if len(body) + _OVERHEAD > file_size or len(body) > _U16:
        raise ValueError(f"a {len(body)}-byte body does not fit a {file_size}-byte file")
    head = len(body).to_bytes(2, "big") + body
    framed = bytes([_START]) + head + crc16_x25(head).to_bytes(2, "big") + bytes([_END])
    return framed + bytes(file_size - len(framed))


def _corrupt(file_name: str, detail: str, **params: object) -> NoReturn:
    raise CorruptCardFile(file=file_name, detail=detail, **params)


def _as_bytes(data: object) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"card data must be bytes, got {type(data).__name__}")
    return bytes(data)


def unframe(data: bytes, file_name: str) -> bytes | None:
    """The body of the record frame in ``data``; ``None`` when ``data`` is all zero bytes.

    Raises CorruptCardFile (naming ``file_name``, a message id) for a bad start or end byte, a
    length beyond the data, a checksum mismatch or anything but zeros after the frame.
    """
    data = _as_bytes(data)
    if not any(data):
        return None
    if len(data) < _OVERHEAD:
        _corrupt(file_name, N_("the record is cut short"))
    if data[0] != _START:
        _corrupt(file_name, N_("the record does not start with 68"))
    length = int.from_bytes(data[1:3], "big")
    end = 3 + length + 3
    if end > len(data):
        _corrupt(
            file_name,
            N_("the record length {length} runs past the end of the file"),
            length=length,
        )
    if data[end - 1] != _END:
        _corrupt(file_name, N_("the record does not end with 16"))
    if int.from_bytes(data[3 + length : 5 + length], "big") != crc16_x25(data[1 : 3 + length]):
        _corrupt(file_name, N_("the checksum does not match"))
    if any(data[end:]):
        _corrupt(file_name, N_("there are stray bytes after the record"))
    return data[3 : 3 + length]


@contextmanager
def _decoding(file_name: str) -> Iterator[None]:
    """Whatever slips through the explicit checks still becomes CorruptCardFile."""
    try:
        yield
    except (ValueError, IndexError, KeyError, OverflowError) as exc:
        raise CorruptCardFile(
            file=file_name, detail=N_("it cannot be read ({reason})"), reason=str(exc)
        ) from exc


def _file_body(data: bytes, sfi: int, file_name: str) -> bytes | None:
    data = _as_bytes(data)
    size = FILE_SIZES[sfi]
    if len(data) != size:
        _corrupt(
            file_name,
            N_("it is {length} bytes long instead of {expected}"),
            length=len(data),
            expected=size,
        )
    return unframe(data, file_name)


class _Reader:
    """Reads the fields of a record body in order; every problem is CorruptCardFile."""

    def __init__(self, body: bytes, file_name: str, expected: int | None = None) -> None:
        self.body = body
        self.file = file_name
        self.pos = 0
        if expected is not None and len(body) != expected:
            self.wrong_length(expected)

    def wrong_length(self, expected: int) -> NoReturn:
        _corrupt(
            self.file,
            N_("the record is {length} bytes long instead of {expected}"),
            length=len(self.body),
            expected=expected,
        )

    def out_of_range(self, field: str, value: object) -> NoReturn:
        _corrupt(self.file, N_("{field} is out of range ({value})"), field=field, value=value)

    def take(self, n: int, field: str) -> bytes:
        if self.pos + n > len(self.body):
            _corrupt(self.file, N_("the record ends before {field}"), field=field)
        chunk = self.body[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int, field: str, lo: int = 0, hi: int | None = None) -> int:
        value = int.from_bytes(self.take(n, field), "big")
        if value < lo or (hi is not None and value > hi):
            self.out_of_range(field, value)
        return value

    def s32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "big", signed=True)

    def digits(self, n: int, field: str) -> str:
        try:
            return bcd_decode(self.take(n, field))
        except ValueError:
            _corrupt(self.file, N_("{field} is not a valid number"), field=field)

    def time(self, field: str) -> dt.datetime | None:
        try:
            return time6_decode(self.take(6, field))
        except ValueError:
            _corrupt(self.file, N_("{field} is not a valid date and time"), field=field)

    def done(self) -> None:
        if self.pos != len(self.body):
            self.wrong_length(self.pos)
