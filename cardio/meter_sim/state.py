"""The simulated meter's state (saved as JSON, shared with its DL/T 645 side) and what an insert or a consumption returns."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from dataclasses import fields
from pathlib import Path
from typing import Any
from typing import Final

from app.domain import ids
from app.domain.card import CardKind
from app.domain.card import CorruptCardFile
from app.domain.card import ForeignCard
from app.domain.card import JobKind
from app.domain.card import TariffRecord
from app.domain.card import UnissuedCard
from app.domain.card import UnsupportedProfile
from app.domain.card import UpdateFlags
from app.domain.card import WriteBack
from app.domain.card import WriteBackStatus
from app.domain.card import WrongCardKind
from app.domain.pricing import RATE_SCALE
from app.domain.pricing import TariffSpec
from app.domain.pricing import TariffSpecError
from app.fileio import write_atomically
from cardio.profile import BEIJING

RELAY_CLOSED: Final = "closed"


RELAY_TRIPPED: Final = "tripped"


STATE_FORMAT: Final = 2  # 2: pending_purchase; a format-1 state reads as nothing pending


_PENDING_KEYS: Final = frozenset({"count", "amount", "tag"})


MINUTE: Final = dt.timedelta(minutes=1)


WH_DIVISOR: Final = 60  # energy per minute is load * ct * pt / 60 Wh


PERSISTENT_FLAGS: Final = (
    WriteBackStatus.ALARM1 | WriteBackStatus.ALARM2 | WriteBackStatus.OVERDRAFT
)


# Reasons an insert was refused or only partly applied (InsertResult.reason).
REASON_METER_NO: Final = "meter_no"  # the card is for another meter


REASON_SERIAL: Final = "serial"  # not the card this meter is bound to (and not a replacement)


REASON_NOT_OPENED: Final = "not_opened"  # a purchase card before any open-account card


REASON_NO_PARAMETERS: Final = "no_parameters"  # the card's parameter file was never written


REASON_NO_METER_NO: Final = "no_meter_no"  # a management card on a meter without a number


REASON_NO_JOB: Final = "no_job"  # a management card without a (matching) job file


REASON_PURCHASE_COUNT: Final = "purchase_count"  # purchase refused: count is not meter's + 1


REASON_CREDIT_CEILING: Final = "credit_ceiling"  # purchase refused: would exceed the ceiling


REASON_PURCHASE_MAC: Final = "purchase_mac"  # the purchase record's MAC is wrong: card refused


# Card errors that make an insert illegal (counted): blank, foreign, corrupt cards.
ILLEGAL_CARD_ERRORS: Final = (
    UnissuedCard,
    ForeignCard,
    CorruptCardFile,
    UnsupportedProfile,
    WrongCardKind,
)


_JOB_OF_CARD: Final = {
    CardKind.TARIFF: JobKind.TARIFF,
    CardKind.PARAMETERS: JobKind.PARAMETERS,
    CardKind.READING_DAY: JobKind.READING_DAY,
    CardKind.CHECK: JobKind.CHECK,
}


_TAG = re.compile(r"[0-9a-f]{16}")  # a purchase tag, matched whole (fullmatch)


class MeterStateError(ValueError):
    """A meter state file that cannot be used (not JSON, a field missing or out of range)."""


@dataclass
class MeterState:
    """Everything a meter keeps. Money in fen, energy in Wh, times aware (Beijing time)."""

    clock: dt.datetime  # the meter clock, whole minutes
    meter_no: str | None = None  # 12 digits; None until set or bound by an open-account card
    card_serial: str | None = None  # hex of the bound user card
    purchase_count: int = 0
    remaining: int = 0  # fen; negative while the overdraft is used
    overdraft_used: int = 0  # fen of overdraft in use (max(0, -remaining))
    total_energy_wh: int = 0
    tier_year_used_wh: int = 0  # energy since the last tier-year reset
    tier_year_start: dt.datetime | None = None  # the instant of the last tier-year reset
    # {"version_no": int, "effective_from": ISO time or None, "spec": TariffSpec.to_dict()}
    current_tariff: dict[str, Any] | None = None
    backup_tariff: dict[str, Any] | None = None
    alarm1: int = 0
    alarm2: int = 0
    overdraft_limit: int = 0  # 0: no overdraft
    credit_ceiling: int = 0  # 0: no ceiling
    ct_ratio: int = 1
    pt_ratio: int = 1
    param_version: int = 0  # the param_version last applied
    relay: str = RELAY_TRIPPED  # a new meter has no credit
    alarm_flags: int = 0  # WriteBackStatus bits ALARM1 | ALARM2 | OVERDRAFT
    illegal_insert_count: int = 0
    reading_day: int = 1
    reading_hour: int = 0
    last_job_id: str | None = None  # hex of the last management job applied
    cost_carry: int = 0  # fen x RATE_SCALE consumed but not yet deducted, 0..RATE_SCALE-1
    energy_carry: int = 0  # Wh x 60 used but not yet counted, 0..59
    # a purchase taken from a card whose announcing write-back was not confirmed yet (not
    # credited): {"count": purchase_count + 1, "amount": fen, "tag": sale tag hex}
    pending_purchase: dict[str, Any] | None = None

    @property
    def trip_point(self) -> int:
        """``remaining`` at or below which the relay trips."""
        return -self.overdraft_limit

    @property
    def tripped(self) -> bool:
        return self.relay == RELAY_TRIPPED

    @property
    def status(self) -> WriteBackStatus:
        """The lasting status bits (alarms, overdraft, relay) as the write-back reports them."""
        status = WriteBackStatus(self.alarm_flags) & PERSISTENT_FLAGS
        if self.tripped:
            status |= WriteBackStatus.TRIPPED
        return status

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": STATE_FORMAT}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, dt.datetime) else value
        return out

    @classmethod
    def from_dict(cls, data: object) -> MeterState:
        """Rebuild a state from :meth:`to_dict`; raises :class:`MeterStateError`."""
        if not isinstance(data, dict):
            raise MeterStateError("meter state: must be a JSON object")
        if data.get("format") not in (1, STATE_FORMAT):
            raise MeterStateError(f"meter state: unknown format {data.get('format')!r}")
        if data["format"] == 1:
            data = {**data, "pending_purchase": None}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names - {"format"})
        if unknown:
            raise MeterStateError(f"meter state: unknown field(s) {', '.join(unknown)}")
        missing = sorted(names - set(data))
        if missing:
            raise MeterStateError(f"meter state: missing field(s) {', '.join(missing)}")
        d = data
        meter_no = _opt_str(d, "meter_no", ids.METER_NO)
        serial = _opt_str(d, "card_serial", ids.CARD_SERIAL)
        relay = d["relay"]
        if relay not in (RELAY_CLOSED, RELAY_TRIPPED):
            raise MeterStateError(f"meter state: relay must be closed or tripped, got {relay!r}")
        state = cls(
            clock=_time(d, "clock"),
            meter_no=meter_no,
            card_serial=serial,
            purchase_count=_int(d, "purchase_count", 0),
            remaining=_int(d, "remaining"),
            overdraft_used=_int(d, "overdraft_used", 0),
            total_energy_wh=_int(d, "total_energy_wh", 0),
            tier_year_used_wh=_int(d, "tier_year_used_wh", 0),
            tier_year_start=None if d["tier_year_start"] is None else _time(d, "tier_year_start"),
            current_tariff=_tariff(d, "current_tariff"),
            backup_tariff=_tariff(d, "backup_tariff"),
            alarm1=_int(d, "alarm1", 0),
            alarm2=_int(d, "alarm2", 0),
            overdraft_limit=_int(d, "overdraft_limit", 0),
            credit_ceiling=_int(d, "credit_ceiling", 0),
            ct_ratio=_int(d, "ct_ratio", 0),
            pt_ratio=_int(d, "pt_ratio", 0),
            param_version=_int(d, "param_version", 0),
            relay=relay,
            alarm_flags=_int(d, "alarm_flags", 0, int(PERSISTENT_FLAGS)),
            illegal_insert_count=_int(d, "illegal_insert_count", 0),
            reading_day=_int(d, "reading_day", 1, 28),
            reading_hour=_int(d, "reading_hour", 0, 23),
            last_job_id=_opt_str(d, "last_job_id", ids.CARD_JOB_ID),
            cost_carry=_int(d, "cost_carry", 0, RATE_SCALE - 1),
            energy_carry=_int(d, "energy_carry", 0, WH_DIVISOR - 1),
            pending_purchase=_pending(d, "pending_purchase"),
        )
        if state.pending_purchase is not None:
            if state.pending_purchase["count"] != state.purchase_count + 1:
                raise MeterStateError("meter state: pending_purchase is not the next purchase")
        return state


def _int(d: dict[str, Any], key: str, lo: int | None = None, hi: int | None = None) -> int:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise MeterStateError(f"meter state: {key} must be an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise MeterStateError(f"meter state: {key} out of range: {value}")
    return value


def _opt_str(d: dict[str, Any], key: str, fmt: ids.IdFormat) -> str | None:
    value = d[key]
    if value is None:
        return None
    if not isinstance(value, str) or not fmt.matches(value):
        raise MeterStateError(f"meter state: {key} is not valid: {value!r}")
    return value


def _parse_time(value: object, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise MeterStateError(f"meter state: {where} must be an ISO time, got {value!r}")
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise MeterStateError(f"meter state: {where} is not an ISO time: {value!r}") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise MeterStateError(f"meter state: {where} has no time zone: {value!r}")
    return when.astimezone(BEIJING)


def _time(d: dict[str, Any], key: str) -> dt.datetime:
    return _parse_time(d[key], key)


def _pending(d: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = d[key]
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != _PENDING_KEYS:
        raise MeterStateError(f"meter state: {key} must have count, amount and tag")
    _int(value, "count", 1)
    _int(value, "amount", 0)
    if not isinstance(value["tag"], str) or not _TAG.fullmatch(value["tag"]):
        raise MeterStateError(f"meter state: {key}.tag is not valid: {value['tag']!r}")
    return dict(value)


def _tariff(d: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = d[key]
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"version_no", "effective_from", "spec"}:
        raise MeterStateError(f"meter state: {key} must have version_no, effective_from and spec")
    _int(value, "version_no", 0)
    if value["effective_from"] is not None:
        _parse_time(value["effective_from"], f"{key}.effective_from")
    try:
        TariffSpec.from_dict(value["spec"])
    except TariffSpecError as exc:
        raise MeterStateError(f"meter state: {key}.spec: {exc}") from None
    return value


def load_state(path: str | os.PathLike[str]) -> MeterState:
    """Read a state file; raises :class:`MeterStateError` when it cannot be used."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MeterStateError(f"meter state {path}: not JSON ({exc})") from None
    return MeterState.from_dict(data)


def save_state(path: str | os.PathLike[str], state: MeterState) -> None:
    """Write the state atomically (app.fileio): a crash leaves the old or the new state."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(state.to_dict(), indent=2, ensure_ascii=False) + "\n"
    write_atomically(target, text.encode("utf-8"))


def _tariff_dict(record: TariffRecord, file: str) -> dict[str, Any]:
    try:
        spec = TariffSpec.from_dict(record.spec)
    except TariffSpecError as exc:
        raise CorruptCardFile(file=file, detail=str(exc)) from None
    when = record.effective_from
    return {
        "version_no": record.version_no,
        "effective_from": None if when is None else when.astimezone(BEIJING).isoformat(),
        "spec": spec.to_dict(),
    }


@dataclass(frozen=True)
class InsertResult:
    """What one insert of a card did.

    ``accepted``: the meter took the card (and wrote back); ``False`` for a card of another
    meter or not bound to this one (counted as an illegal insert, nothing applied, nothing
    written).  ``status`` is the status the meter reported (or, refused, would have).
    """

    card_kind: CardKind
    serial: str  # hex
    accepted: bool
    status: WriteBackStatus
    reason: str | None = None  # one of the REASON_* codes, None when all went through
    credited: int = 0  # fen added to remaining by this insert
    applied: UpdateFlags = UpdateFlags.NONE  # parameter/tariff files applied
    job: JobKind | None = None  # the management job applied (or already applied before)
    write_back: WriteBack | None = None  # as read back from the card, MAC included


@dataclass(frozen=True)
class ConsumeResult:
    minutes: int
    energy_wh: int  # energy counted during the call
    charged: int  # whole fen deducted from remaining during the call
    tripped_at: dt.datetime | None  # meter time the relay tripped during the call
    remaining: int
