"""Encoding and decoding of the card's records: parameters, purchase, tariffs, write-back, job."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn
from typing import TypeVar

from app.domain.card import PROFILE_VERSION
from app.domain.card import CardKind
from app.domain.card import JobKind
from app.domain.card import JobRecord
from app.domain.card import ParameterRecord
from app.domain.card import PurchaseRecord
from app.domain.card import TariffRecord
from app.domain.card import UnsupportedProfile
from app.domain.card import UpdateFlags
from app.domain.card import UserCardType
from app.domain.card import WriteBack
from app.domain.card import WriteBackStatus
from app.domain.pricing import TariffSpec
from app.domain.pricing import TariffSpecError
from app.i18n import N_
from cardio.profile.codec import _corrupt
from cardio.profile.codec import _decoding
from cardio.profile.codec import _digits
from cardio.profile.codec import _file_body
from cardio.profile.codec import _int
from cardio.profile.codec import _not_cardable
from cardio.profile.codec import _put
from cardio.profile.codec import _raw
from cardio.profile.codec import _Reader
from cardio.profile.codec import _time
from cardio.profile.codec import frame
from cardio.profile.layout import _KIND_NAMES
from cardio.profile.layout import _PERIOD_NAMES
from cardio.profile.layout import _U8
from cardio.profile.layout import _U32
from cardio.profile.layout import _USER_CARD_TYPES
from cardio.profile.layout import FILE_NAMES
from cardio.profile.layout import FILE_SIZES
from cardio.profile.layout import JOB_BODY
from cardio.profile.layout import MAX_PERIODS
from cardio.profile.layout import MAX_SEGMENTS
from cardio.profile.layout import MAX_TIERS
from cardio.profile.layout import OPEN_TIER
from cardio.profile.layout import PARAMETERS_BODY
from cardio.profile.layout import PERIOD_CODES
from cardio.profile.layout import PURCHASE_BODY
from cardio.profile.layout import SFI_CURRENT_TARIFF
from cardio.profile.layout import SFI_JOB
from cardio.profile.layout import SFI_PARAMETERS
from cardio.profile.layout import SFI_PURCHASE
from cardio.profile.layout import SFI_WRITE_BACK
from cardio.profile.layout import TARIFF_BODY_MAX
from cardio.profile.layout import TARIFF_KIND_CODES
from cardio.profile.layout import WRITE_BACK_BODY

R = TypeVar("R")


def _decode_record(
    data: bytes,
    sfi: int,
    body_size: int,
    read: Callable[[_Reader], R],
    check: Callable[[bytes], None] | None = None,
) -> R | None:
    """The record that ``read`` takes from file ``sfi``; ``None`` if it was never written.

    ``check`` looks at the body before its length is; every byte of the body must be read.
    """
    name = FILE_NAMES[sfi]
    with _decoding(name):
        body = _file_body(data, sfi, name)
        if body is None:
            return None
        if check is not None:
            check(body)
        r = _Reader(body, name, body_size)
        rec = read(r)
        r.done()
        return rec


def _fail_in(file_name: str) -> Callable[..., NoReturn]:
    """A ``fail`` for the record checks that says the file ``file_name`` is corrupt."""

    def fail(detail: str, **params: object) -> NoReturn:
        _corrupt(file_name, detail, **params)

    return fail


def _with_mac(body: bytes, mac: bytes, sfi: int) -> bytes:
    """File ``sfi`` holding ``body`` followed by its 4-byte ``mac``."""
    return frame(body + _raw(mac, 4, "mac"), FILE_SIZES[sfi])


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


def _check_profile_version(body: bytes) -> None:
    if len(body) >= 2 and body[1] != PROFILE_VERSION:
        raise UnsupportedProfile(version=body[1])


def decode_parameters(data: bytes) -> ParameterRecord | None:
    """The parameter file (SFI 01); ``None`` if it was never written."""
    return _decode_record(
        data, SFI_PARAMETERS, PARAMETERS_BODY, _read_parameters, _check_profile_version
    )


def _read_parameters(r: _Reader) -> ParameterRecord:
    kind_code = r.uint(1, "card_kind")
    if kind_code not in CardKind._value2member_map_ or kind_code == CardKind.BLANK:
        r.out_of_range("card_kind", kind_code)
    kind = CardKind(kind_code)
    r.take(1, "profile_version")
    utility_code = r.digits(3, "utility_code")
    user_type = UserCardType(r.uint(1, "user_card_type", 0, 3))
    customer_no = r.digits(6, "customer_no")
    _check_kind_consistency(kind, user_type, customer_no, _fail_in(r.file))
    return ParameterRecord(
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
    return _with_mac(encode_purchase_body(rec), rec.mac, SFI_PURCHASE)


def decode_purchase(data: bytes) -> PurchaseRecord | None:
    """The purchase file (SFI 02), MAC included but not checked; ``None`` if never written."""
    return _decode_record(data, SFI_PURCHASE, PURCHASE_BODY, _read_purchase)


def _read_purchase(r: _Reader) -> PurchaseRecord:
    return PurchaseRecord(
        amount=r.uint(4, "amount"),
        purchase_count=r.uint(4, "purchase_count"),
        sale_tag=r.take(8, "sale_tag"),
        time=r.time("time"),
        mac=r.take(4, "mac"),
    )


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
    return _with_mac(encode_write_back_body(wb), wb.mac, SFI_WRITE_BACK)


def decode_write_back(data: bytes) -> WriteBack | None:
    """The write-back file (SFI 05), MAC included but not checked; ``None`` if never written."""
    return _decode_record(data, SFI_WRITE_BACK, WRITE_BACK_BODY, _read_write_back)


def _read_write_back(r: _Reader) -> WriteBack:
    return WriteBack(
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
    return _decode_record(data, SFI_JOB, JOB_BODY, _read_job)


def _read_job(r: _Reader) -> JobRecord:
    job_id = r.take(16, "job_id")
    kind = JobKind(r.uint(1, "kind", 1, 4))
    day = r.uint(1, "reading_day", 0, 28)
    _check_job(kind, day, _fail_in(r.file))
    hour = r.uint(1, "reading_hour", 0, 23)
    r.uint(1, "reserved", 0, 0)
    return JobRecord(job_id=job_id, kind=kind, reading_day=day, reading_hour=hour)
