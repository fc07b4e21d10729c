"""Byte layouts of the CardVend card profile, version 2 (the reference is ``cardio/PROFILE.md``).

Encoders turn the records of :mod:`app.domain.card` into the exact bytes of a card file (a record
frame zero-padded to the file size); decoders turn file contents back into records.

* Every decoder returns ``None`` for an empty (all-zero) file and raises only
  :class:`~app.domain.card.CorruptCardFile` (anything that does not parse, with the file's name)
  or :class:`~app.domain.card.UnsupportedProfile` (a parameter file or FCI of another profile
  version).  A decoded record encodes back to exactly the bytes it came from.
* Every encoder validates its record and raises :class:`NotCardable` (a ``ValueError`` that a
  person can read) for a value the card cannot carry; nothing half-checked is ever encoded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, NoReturn

from app.domain.card import (
    PROFILE_VERSION,
    CardKind,
    CorruptCardFile,
    JobKind,
    JobRecord,
    ParameterRecord,
    PurchaseRecord,
    TariffRecord,
    UnsupportedProfile,
    UpdateFlags,
    UserCardType,
    WriteBack,
    WriteBackStatus,
)
from app.domain.pricing import TariffSpec, TariffSpecError
from app.errors import ValidationError
from app.i18n import N_
from cardio.crypto import crc16_x25

__all__ = [
    "APP_AID",
    "APP_FID",
    "BEIJING",
    "BODY_SIZES",
    "FILE_NAMES",
    "FILE_SIZES",
    "MF_FID",
    "PERIOD_CODES",
    "PROFILE_VERSION",
    "PSAM_AID",
    "SFI_BACKUP_TARIFF",
    "SFI_CURRENT_TARIFF",
    "SFI_JOB",
    "SFI_PARAMETERS",
    "SFI_PURCHASE",
    "SFI_WRITE_BACK",
    "STATE_BLANK",
    "STATE_ISSUED",
    "TARIFF_KIND_CODES",
    "Fci",
    "NotCardable",
    "bcd_decode",
    "bcd_encode",
    "build_card_atr",
    "build_fci",
    "build_psam_atr",
    "build_psam_fci",
    "decode_job",
    "decode_parameters",
    "decode_purchase",
    "decode_tariff",
    "decode_write_back",
    "encode_job",
    "encode_parameters",
    "encode_purchase",
    "encode_purchase_body",
    "encode_tariff",
    "encode_write_back",
    "encode_write_back_body",
    "frame",
    "is_psam_atr",
    "parse_card_atr",
    "parse_fci",
    "parse_psam_fci",
    "time6_decode",
    "time6_encode",
    "unframe",
]

# ----------------------------------------------------------------------------- identifiers

MF_FID: Final = 0x3F00
APP_FID: Final = 0x1001
APP_AID: Final = bytes.fromhex("D15600004356454C4543")  # D1 56 00 00 "CVELEC"
PSAM_AID: Final = bytes.fromhex("D156000043565053414D")  # D1 56 00 00 "CVPSAM"

SFI_PARAMETERS: Final = 1
SFI_PURCHASE: Final = 2
SFI_CURRENT_TARIFF: Final = 3
SFI_BACKUP_TARIFF: Final = 4
SFI_WRITE_BACK: Final = 5
SFI_JOB: Final = 6

FILE_SIZES: Final[Mapping[int, int]] = {
    SFI_PARAMETERS: 64,
    SFI_PURCHASE: 32,
    SFI_CURRENT_TARIFF: 160,
    SFI_BACKUP_TARIFF: 160,
    SFI_WRITE_BACK: 64,
    SFI_JOB: 48,
}
"""Size in bytes of each EF, by SFI (the EF's FID is ``00 <SFI>``)."""

FILE_NAMES: Final[Mapping[int, str]] = {
    SFI_PARAMETERS: N_("parameter file"),
    SFI_PURCHASE: N_("purchase file"),
    SFI_CURRENT_TARIFF: N_("current tariff file"),
    SFI_BACKUP_TARIFF: N_("backup tariff file"),
    SFI_WRITE_BACK: N_("write-back file"),
    SFI_JOB: N_("job file"),
}
"""The name of each file as a person reads it (a message id), by SFI."""

FCI_NAME: Final = N_("card information")

PARAMETERS_BODY: Final = 45
PURCHASE_BODY: Final = 26
PURCHASE_MAC_OFFSET: Final = 22
WRITE_BACK_BODY: Final = 41
WRITE_BACK_MAC_OFFSET: Final = 37
JOB_BODY: Final = 20
TARIFF_BODY_MAX: Final = 154
BODY_SIZES: Final[Mapping[int, int]] = {
    SFI_PARAMETERS: PARAMETERS_BODY,
    SFI_PURCHASE: PURCHASE_BODY,
    SFI_CURRENT_TARIFF: TARIFF_BODY_MAX,  # the largest; a tariff body is variable
    SFI_BACKUP_TARIFF: TARIFF_BODY_MAX,
    SFI_WRITE_BACK: WRITE_BACK_BODY,
    SFI_JOB: JOB_BODY,
}

STATE_BLANK: Final = 0x00
STATE_ISSUED: Final = 0x01

MAX_PERIODS: Final = 4
MAX_SEGMENTS: Final = 12
MAX_TIERS: Final = 6
OPEN_TIER: Final = 0xFFFFFFFF

TARIFF_KIND_CODES: Final[Mapping[str, int]] = {"flat": 1, "tou": 2, "tiered": 3, "tou_tiered": 4}
PERIOD_CODES: Final[Mapping[str, int]] = {"sharp": 1, "peak": 2, "flat": 3, "valley": 4}
_KIND_NAMES: Final = {code: name for name, code in TARIFF_KIND_CODES.items()}
_PERIOD_NAMES: Final = {code: name for name, code in PERIOD_CODES.items()}

BEIJING: Final = dt.timezone(dt.timedelta(hours=8))
"""The meters' clock: Beijing time, UTC+8 (no daylight saving)."""

_START: Final = 0x68
_END: Final = 0x16
_OVERHEAD: Final = 6  # 68, LEN u16, CRC u16, 16
_DIGITS: Final = frozenset("0123456789")
_U8: Final = 0xFF
_U16: Final = 0xFFFF
_U32: Final = 0xFFFFFFFF
_U64: Final = 0xFFFFFFFFFFFFFFFF
_S32_MIN: Final = -(2**31)
_S32_MAX: Final = 2**31 - 1
_USER_CARD_TYPES: Final = frozenset(
    {UserCardType.OPEN, UserCardType.PURCHASE, UserCardType.REPLACEMENT}
)


class NotCardable(ValidationError):
    """A record (or tariff) that a card of this profile cannot carry."""

    code = "not_cardable"
    template = N_("This cannot be written on a card: {reason}")


# ----------------------------------------------------------------------------- encode helpers


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


# ----------------------------------------------------------------------------- BCD and time6


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


# ----------------------------------------------------------------------------- record frame


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


# ----------------------------------------------------------------------------- parameter file


def encode_parameters(rec: ParameterRecord) -> bytes:
    """The 64-byte parameter file (SFI 01) of ``rec``."""
    kind = _int(rec.card_kind, 0, _U8, "card_kind")
    if kind not in CardKind._value2member_map_ or kind == CardKind.BLANK:
        _not_cardable(N_("{field} must be a card kind, not {value}"), field="card_kind", value=kind)
    if rec.profile_version != PROFILE_VERSION:
        _not_cardable(
            N_("{field} must be {expected}, not {value}"),
            field="profile_version",
            expected=PROFILE_VERSION,
            value=rec.profile_version,
        )
    user_type = _int(rec.user_card_type, 0, 3, "user_card_type")
    _check_kind_consistency(CardKind(kind), UserCardType(user_type), rec.customer_no, _not_cardable)
    body = b"".join(
        [
            bytes([kind, PROFILE_VERSION]),
            _digits(rec.utility_code, 3, "utility_code"),
            bytes([user_type]),
            _digits(rec.customer_no, 6, "customer_no"),
            _digits(rec.meter_no, 6, "meter_no"),
            _put(rec.alarm1, 4, "alarm1"),
            _put(rec.alarm2, 4, "alarm2"),
            _put(rec.overdraft_limit, 4, "overdraft_limit"),
            _put(rec.credit_ceiling, 4, "credit_ceiling"),
            _put(rec.ct_ratio, 4, "ct_ratio"),
            _put(rec.pt_ratio, 4, "pt_ratio"),
            _put(_int(rec.update_flags, 0, 7, "update_flags"), 1, "update_flags"),
            _put(rec.param_version, 2, "param_version"),
        ]
    )
    return frame(body, FILE_SIZES[SFI_PARAMETERS])


def _check_kind_consistency(
    kind: CardKind, user_type: UserCardType, customer_no: object, fail: Callable[..., NoReturn]
) -> None:
    """A user card has a user card type; a management card has none and no customer."""
    if kind == CardKind.USER and user_type not in _USER_CARD_TYPES:
        fail(
            N_("{field} must be 1, 2 or 3 on a user card, not {value}"),
            field="user_card_type",
            value=int(user_type),
        )
    if kind.is_management:
        if user_type != UserCardType.NONE:
            fail(
                N_("{field} must be 0 on a management card, not {value}"),
                field="user_card_type",
                value=int(user_type),
            )
        if customer_no != "0" * 12:
            fail(
                N_("{field} must be all zeros on a management card, not {value}"),
                field="customer_no",
                value=customer_no,
            )


def decode_parameters(data: bytes) -> ParameterRecord | None:
    """The parameter file (SFI 01); ``None`` if it was never written."""
    name = FILE_NAMES[SFI_PARAMETERS]
    with _decoding(name):
        body = _file_body(data, SFI_PARAMETERS, name)
        if body is None:
            return None
        if len(body) >= 2 and body[1] != PROFILE_VERSION:
            raise UnsupportedProfile(version=body[1])
        r = _Reader(body, name, PARAMETERS_BODY)
        kind_code = r.uint(1, "card_kind")
        if kind_code not in CardKind._value2member_map_ or kind_code == CardKind.BLANK:
            r.out_of_range("card_kind", kind_code)
        kind = CardKind(kind_code)
        r.take(1, "profile_version")
        utility_code = r.digits(3, "utility_code")
        user_type = UserCardType(r.uint(1, "user_card_type", 0, 3))
        customer_no = r.digits(6, "customer_no")

        def fail(detail: str, **params: object) -> NoReturn:
            _corrupt(name, detail, **params)

        _check_kind_consistency(kind, user_type, customer_no, fail)
        rec = ParameterRecord(
            card_kind=kind,
            utility_code=utility_code,
            user_card_type=user_type,
            customer_no=customer_no,
            meter_no=r.digits(6, "meter_no"),
            alarm1=r.uint(4, "alarm1"),
            alarm2=r.uint(4, "alarm2"),
            overdraft_limit=r.uint(4, "overdraft_limit"),
            credit_ceiling=r.uint(4, "credit_ceiling"),
            ct_ratio=r.uint(4, "ct_ratio"),
            pt_ratio=r.uint(4, "pt_ratio"),
            update_flags=UpdateFlags(r.uint(1, "update_flags", 0, 7)),
            param_version=r.uint(2, "param_version"),
            profile_version=PROFILE_VERSION,
        )
        r.done()
        return rec


# ----------------------------------------------------------------------------- purchase file


def encode_purchase_body(rec: PurchaseRecord) -> bytes:
    """The 22 bytes of a purchase record that its MAC covers (``rec.mac`` is not used)."""
    return b"".join(
        [
            _put(rec.amount, 4, "amount"),
            _put(rec.purchase_count, 4, "purchase_count"),
            _raw(rec.sale_tag, 8, "sale_tag"),
            _time(rec.time, "time"),
        ]
    )


def encode_purchase(rec: PurchaseRecord) -> bytes:
    """The 32-byte purchase file (SFI 02) of ``rec``: the body and ``rec.mac`` (4 bytes)."""
    body = encode_purchase_body(rec) + _raw(rec.mac, 4, "mac")
    return frame(body, FILE_SIZES[SFI_PURCHASE])


def decode_purchase(data: bytes) -> PurchaseRecord | None:
    """The purchase file (SFI 02), MAC included but not checked; ``None`` if never written."""
    name = FILE_NAMES[SFI_PURCHASE]
    with _decoding(name):
        body = _file_body(data, SFI_PURCHASE, name)
        if body is None:
            return None
        r = _Reader(body, name, PURCHASE_BODY)
        rec = PurchaseRecord(
            amount=r.uint(4, "amount"),
            purchase_count=r.uint(4, "purchase_count"),
            sale_tag=r.take(8, "sale_tag"),
            time=r.time("time"),
            mac=r.take(4, "mac"),
        )
        r.done()
        return rec


# ----------------------------------------------------------------------------- tariff files


def encode_tariff(rec: TariffRecord) -> bytes:
    """The 160-byte tariff file (SFI 03 or 04) of ``rec``.

    ``rec.spec`` must be a valid :class:`~app.domain.pricing.TariffSpec` dict (its
    ``TariffSpecError`` is raised otherwise) that a card can carry: TOU periods named sharp,
    peak, flat or valley, at most 12 schedule segments and at most 6 tiers (NotCardable).
    """
    spec = TariffSpec.from_dict(rec.spec)
    if len(spec.periods) > MAX_PERIODS:
        _not_cardable(
            N_("a card carries at most {limit} TOU periods, this tariff has {count}"),
            limit=MAX_PERIODS,
            count=len(spec.periods),
        )
    if len(spec.schedule) > MAX_SEGMENTS:
        _not_cardable(
            N_("a card carries at most {limit} schedule segments, this tariff has {count}"),
            limit=MAX_SEGMENTS,
            count=len(spec.schedule),
        )
    if len(spec.tiers) > MAX_TIERS:
        _not_cardable(
            N_("a card carries at most {limit} tiers, this tariff has {count}"),
            limit=MAX_TIERS,
            count=len(spec.tiers),
        )
    for period in spec.periods:
        if period.name not in PERIOD_CODES:
            _not_cardable(
                N_("a card knows only the TOU periods sharp, peak, flat and valley, not {name}"),
                name=period.name,
            )
    parts = [
        bytes([TARIFF_KIND_CODES[spec.kind]]),
        _put(rec.version_no, 2, "version_no"),
        _time(rec.effective_from, "effective_from"),
        _put(spec.flat_rate or 0, 4, "flat_rate"),
        bytes([len(spec.periods)]),
    ]
    parts += [bytes([PERIOD_CODES[p.name]]) + _put(p.rate, 4, "rate") for p in spec.periods]
    parts.append(bytes([len(spec.schedule)]))
    parts += [
        _put(s.start_minute, 2, "start_minute") + bytes([PERIOD_CODES[s.period]])
        for s in spec.schedule
    ]
    parts.append(bytes([len(spec.tiers)]))
    for tier in spec.tiers:
        upto = OPEN_TIER if tier.upto_kwh is None else _int(tier.upto_kwh, 1, _U32 - 1, "upto_kwh")
        parts.append(upto.to_bytes(4, "big") + _put(tier.surcharge, 4, "surcharge"))
    parts.append(bytes([spec.reset_month, spec.reset_day]))
    return frame(b"".join(parts), FILE_SIZES[SFI_CURRENT_TARIFF])


def decode_tariff(
    data: bytes, file_name: str = FILE_NAMES[SFI_CURRENT_TARIFF]
) -> TariffRecord | None:
    """A tariff file (SFI 03 or 04; pass the file's name for the error messages).

    ``None`` if it was never written.  The spec is the canonical ``TariffSpec.to_dict()`` form.
    """
    with _decoding(file_name):
        body = _file_body(data, SFI_CURRENT_TARIFF, file_name)
        if body is None:
            return None
        r = _Reader(body, file_name)
        if len(body) > TARIFF_BODY_MAX:
            r.wrong_length(TARIFF_BODY_MAX)
        kind = r.uint(1, "kind", 1, 4)
        version_no = r.uint(2, "version_no")
        effective_from = r.time("effective_from")
        flat_rate = r.uint(4, "flat_rate")
        periods: list[dict[str, object]] = []
        for _ in range(r.uint(1, "periods", 0, MAX_PERIODS)):
            code = r.uint(1, "period", 1, 4)
            periods.append({"name": _PERIOD_NAMES[code], "rate": r.uint(4, "rate")})
        schedule: list[dict[str, object]] = []
        for _ in range(r.uint(1, "schedule", 0, MAX_SEGMENTS)):
            start = r.uint(2, "start_minute")
            schedule.append(
                {"start_minute": start, "period": _PERIOD_NAMES[r.uint(1, "period", 1, 4)]}
            )
        tiers: list[dict[str, object]] = []
        for _ in range(r.uint(1, "tiers", 0, MAX_TIERS)):
            upto = r.uint(4, "upto_kwh")
            tiers.append(
                {
                    "upto_kwh": None if upto == OPEN_TIER else upto,
                    "surcharge": r.uint(4, "surcharge"),
                }
            )
        reset_month = r.uint(1, "reset_month")
        reset_day = r.uint(1, "reset_day")
        r.done()
        try:
            spec = TariffSpec.from_dict(
                {
                    "kind": _KIND_NAMES[kind],
                    "flat_rate": flat_rate or None,
                    "periods": periods,
                    "schedule": schedule,
                    "tiers": tiers,
                    "reset_month": reset_month,
                    "reset_day": reset_day,
                }
            )
        except TariffSpecError as exc:
            _corrupt(
                file_name, N_("the tariff on it is not consistent ({reason})"), reason=str(exc)
            )
        return TariffRecord(
            version_no=version_no, effective_from=effective_from, spec=spec.to_dict()
        )


# ----------------------------------------------------------------------------- write-back file


def encode_write_back_body(wb: WriteBack) -> bytes:
    """The 37 bytes of a write-back that its MAC covers (``wb.mac`` is not used)."""
    return b"".join(
        [
            _digits(wb.meter_no, 6, "meter_no"),
            _put(wb.remaining, 4, "remaining", signed=True),
            _put(wb.overdraft_used, 4, "overdraft_used"),
            _put(wb.purchase_count, 4, "purchase_count"),
            _put(wb.total_energy_wh, 8, "total_energy_wh"),
            _put(_int(wb.status, 0, 0x7F, "status"), 1, "status"),
            _put(wb.illegal_insert_count, 2, "illegal_insert_count"),
            _time(wb.time, "time"),
            _put(wb.param_version, 2, "param_version"),
        ]
    )


def encode_write_back(wb: WriteBack) -> bytes:
    """The 64-byte write-back file (SFI 05): the body and ``wb.mac`` (4 bytes)."""
    body = encode_write_back_body(wb) + _raw(wb.mac, 4, "mac")
    return frame(body, FILE_SIZES[SFI_WRITE_BACK])


def decode_write_back(data: bytes) -> WriteBack | None:
    """The write-back file (SFI 05), MAC included but not checked; ``None`` if never written."""
    name = FILE_NAMES[SFI_WRITE_BACK]
    with _decoding(name):
        body = _file_body(data, SFI_WRITE_BACK, name)
        if body is None:
            return None
        r = _Reader(body, name, WRITE_BACK_BODY)
        wb = WriteBack(
            meter_no=r.digits(6, "meter_no"),
            remaining=r.s32("remaining"),
            overdraft_used=r.uint(4, "overdraft_used"),
            purchase_count=r.uint(4, "purchase_count"),
            total_energy_wh=r.uint(8, "total_energy_wh"),
            status=WriteBackStatus(r.uint(1, "status", 0, 0x7F)),
            illegal_insert_count=r.uint(2, "illegal_insert_count"),
            time=r.time("time"),
            param_version=r.uint(2, "param_version"),
            mac=r.take(4, "mac"),
        )
        r.done()
        return wb


# ----------------------------------------------------------------------------- job file


def _check_job(kind: JobKind, reading_day: int, fail: Callable[..., NoReturn]) -> None:
    if kind == JobKind.READING_DAY and not 1 <= reading_day <= 28:
        fail(N_("{field} must be 1 to 28, not {value}"), field="reading_day", value=reading_day)
    if kind != JobKind.READING_DAY and reading_day != 0:
        fail(
            N_("{field} must be 0 when the job does not set the reading day, not {value}"),
            field="reading_day",
            value=reading_day,
        )


def encode_job(rec: JobRecord) -> bytes:
    """The 48-byte job file (SFI 06) of a management card."""
    kind = _int(rec.kind, 1, 4, "kind")
    day = _int(rec.reading_day, 0, 28, "reading_day")
    _check_job(JobKind(kind), day, _not_cardable)
    body = b"".join(
        [
            _raw(rec.job_id, 16, "job_id"),
            bytes([kind, day, _int(rec.reading_hour, 0, 23, "reading_hour"), 0]),
        ]
    )
    return frame(body, FILE_SIZES[SFI_JOB])


def decode_job(data: bytes) -> JobRecord | None:
    """The job file (SFI 06); ``None`` if it was never written."""
    name = FILE_NAMES[SFI_JOB]
    with _decoding(name):
        body = _file_body(data, SFI_JOB, name)
        if body is None:
            return None
        r = _Reader(body, name, JOB_BODY)
        job_id = r.take(16, "job_id")
        kind = JobKind(r.uint(1, "kind", 1, 4))
        day = r.uint(1, "reading_day", 0, 28)

        def fail(detail: str, **params: object) -> NoReturn:
            _corrupt(name, detail, **params)

        _check_job(kind, day, fail)
        hour = r.uint(1, "reading_hour", 0, 23)
        r.uint(1, "reserved", 0, 0)
        r.done()
        return JobRecord(job_id=job_id, kind=kind, reading_day=day, reading_hour=hour)


# ----------------------------------------------------------------------------- FCI


@dataclass(frozen=True)
class Fci:
    """What a card answers to SELECT.

    ``kind`` is a :class:`CardKind` when the code is known, else the raw code (a foreign or newer
    card); ``name`` is the AID or FID that was selected.
    """

    serial: bytes
    issued: bool
    kind: int
    profile_version: int
    name: bytes = b""

    @property
    def serial_hex(self) -> str:
        return self.serial.hex().upper()


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) > 0x7F:
        raise ValueError("FCI values are shorter than 128 bytes")
    tag_bytes = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    return tag_bytes + bytes([len(value)]) + value


def _name_bytes(aid_or_fid: bytes | int) -> bytes:
    if isinstance(aid_or_fid, int):
        return _int(aid_or_fid, 0, _U16, "fid").to_bytes(2, "big")
    if not 2 <= len(aid_or_fid) <= 16:
        raise ValueError(f"an AID is 5 to 16 bytes and a FID 2, got {len(aid_or_fid)}")
    return bytes(aid_or_fid)


def build_fci(aid_or_fid: bytes | int, serial: bytes, state: int, kind: int, version: int) -> bytes:
    """``6F L | 84 L name | A5 L | 9F0C 08 serial | C1 01 state | C2 01 kind | C3 01 version``."""
    proprietary = b"".join(
        [
            _tlv(0x9F0C, _raw(serial, 8, "serial")),
            _tlv(0xC1, bytes([_int(state, 0, 1, "state")])),
            _tlv(0xC2, bytes([_int(kind, 0, _U8, "kind")])),
            _tlv(0xC3, bytes([_int(version, 0, _U8, "version")])),
        ]
    )
    return _tlv(0x6F, _tlv(0x84, _name_bytes(aid_or_fid)) + _tlv(0xA5, proprietary))


def build_psam_fci(serial: bytes) -> bytes:
    """The security module's answer to SELECT: ``6F L | 84 L AID | A5 L | 9F0C 08 serial``."""
    return _tlv(0x6F, _tlv(0x84, PSAM_AID) + _tlv(0xA5, _tlv(0x9F0C, _raw(serial, 8, "serial"))))


def _parse_tlvs(data: bytes, file_name: str) -> dict[int, bytes]:
    """One level of BER-TLV objects (tags of up to 3 bytes, lengths up to 82 xx xx)."""
    found: dict[int, bytes] = {}
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            _corrupt(file_name, N_("the answer is cut short"))
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    while pos < len(data):
        first = take(1)[0]
        tag = first
        if first & 0x1F == 0x1F:
            for _ in range(2):
                byte = take(1)[0]
                tag = tag << 8 | byte
                if not byte & 0x80:
                    break
            else:
                _corrupt(file_name, N_("the answer is not a valid FCI"))
        length = take(1)[0]
        if length == 0x81:
            length = take(1)[0]
        elif length == 0x82:
            length = int.from_bytes(take(2), "big")
        elif length > 0x7F:
            _corrupt(file_name, N_("the answer is not a valid FCI"))
        value = take(length)
        if tag in found:
            _corrupt(file_name, N_("the answer is not a valid FCI"))
        found[tag] = value
    return found


def _fci_parts(data: object, file_name: str) -> tuple[bytes, dict[int, bytes]]:
    raw = _as_bytes(data)
    outer = _parse_tlvs(raw, file_name)
    if set(outer) != {0x6F}:
        _corrupt(file_name, N_("the answer is not a valid FCI"))
    inner = _parse_tlvs(outer[0x6F], file_name)
    if 0x84 not in inner or 0xA5 not in inner:
        _corrupt(file_name, N_("the answer is not a valid FCI"))
    return inner[0x84], _parse_tlvs(inner[0xA5], file_name)


def _one(fields: dict[int, bytes], tag: int, size: int, file_name: str) -> bytes:
    value = fields.get(tag)
    if value is None or len(value) != size:
        _corrupt(file_name, N_("the answer is not a valid FCI"))
    return value


def parse_fci(data: bytes) -> Fci:
    """The FCI of a card (application DF or MF).

    Raises CorruptCardFile for a malformed answer and UnsupportedProfile for an issued card of
    another profile version.  A kind code this profile does not know is returned as a plain int.
    """
    name = FCI_NAME
    with _decoding(name):
        selected, fields = _fci_parts(data, name)
        serial = _one(fields, 0x9F0C, 8, name)
        state = _one(fields, 0xC1, 1, name)[0]
        kind = _one(fields, 0xC2, 1, name)[0]
        version = _one(fields, 0xC3, 1, name)[0]
        if state == STATE_BLANK:
            if kind != CardKind.BLANK or version != 0:
                _corrupt(name, N_("a blank card must not have a kind or profile version"))
        elif state == STATE_ISSUED:
            if version != PROFILE_VERSION:
                raise UnsupportedProfile(version=version)
            if kind == CardKind.BLANK:
                _corrupt(name, N_("an issued card must have a kind"))
        else:
            _corrupt(name, N_("{field} is out of range ({value})"), field="state", value=state)
        known = CardKind(kind) if kind in CardKind._value2member_map_ else kind
        return Fci(serial, state == STATE_ISSUED, known, version, selected)


def parse_psam_fci(data: bytes) -> bytes:
    """The serial in a security module's answer to SELECT (CorruptCardFile if malformed)."""
    name = N_("security module information")
    with _decoding(name):
        _selected, fields = _fci_parts(data, name)
        return _one(fields, 0x9F0C, 8, name)


# ----------------------------------------------------------------------------- ATR

_ATR_PREFIX: Final = bytes([0x3B, 0x8A, 0x80, 0x01])
_CARD_HISTORY: Final = b"CVELEC"
_PSAM_HISTORY: Final = b"CVPSAM"


def _atr(history: bytes) -> bytes:
    body = _ATR_PREFIX + history
    tck = 0
    for byte in body[1:]:
        tck ^= byte
    return body + bytes([tck])


def build_card_atr(kind: int, state: int) -> bytes:
    """``3B 8A 80 01 "CVELEC" kind state 00 00 TCK`` (T=1)."""
    return _atr(
        _CARD_HISTORY + bytes([_int(kind, 0, _U8, "kind"), _int(state, 0, 1, "state"), 0, 0])
    )


def build_psam_atr() -> bytes:
    """``3B 8A 80 01 "CVPSAM" 00 01 00 00 TCK``."""
    return _atr(_PSAM_HISTORY + bytes([0, 1, 0, 0]))


def _valid_atr(atr: bytes, history: bytes) -> bool:
    return (
        len(atr) == 15
        and atr[:4] == _ATR_PREFIX
        and atr[4:10] == history
        and _atr(atr[4:14]) == atr
    )


def parse_card_atr(atr: bytes) -> tuple[int, int] | None:
    """``(kind, state)`` of a CardVend card's ATR; ``None`` for any other ATR."""
    atr = bytes(atr)
    if not _valid_atr(atr, _CARD_HISTORY):
        return None
    return atr[10], atr[11]


def is_psam_atr(atr: bytes) -> bool:
    """Whether ``atr`` is the ATR of a CardVend security module."""
    return _valid_atr(bytes(atr), _PSAM_HISTORY)
