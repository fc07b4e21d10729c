"""A simulated prepaid card meter: its card slot and its energy use, with persisted state.

The meter follows ``cardio/PROFILE.md``: it reads a card inserted into its slot, binds itself
to the account's first card, applies new parameters and tariffs by the card's update flags,
applies the purchase rule and writes the write-back file (with the meter's write-back MAC).

A purchase is loaded only when its record carries the purchase MAC of the card (checked with the
meter's own security module); a card whose purchase record does not is refused as an illegal
card.  A purchase is credited only once the write-back announcing it is on the card: the meter
first records it as *pending* (not credited), writes the write-back that announces it, and then
credits it.  A card pulled in between leaves the purchase pending; at the next insert of the
account's card the meter credits it if the write-back reached the card (or the card already
holds a later purchase, which the counter sells only after seeing that write-back), and
otherwise forgets it and applies the purchase rule to what the card holds now.
Management cards (tariff adjustment, purchase parameters, reading day, check) are applied when
they name this meter or every meter (all 9s); a management card of another meter is refused
(an illegal insert) and, when it holds no write-back yet, gets this meter's write-back with the
mismatch bit, so the technician's counter sees the job card went to the wrong meter.

Consumption is simulated minute by minute on the meter's own clock (Beijing time, UTC+8):

* energy per minute is ``load_w * ct_ratio * pt_ratio / 60`` Wh; the remainder below one Wh is
  carried to the next minute (``energy_carry``, in Wh/60), so nothing is lost;
* every Wh is priced at the TOU period rate of its minute (or the flat rate) plus the surcharge
  of the tier that Wh falls in (the tier rule of ``app.domain.pricing``: the Wh that takes the
  tier-year consumption from ``w`` to ``w + 1`` belongs to the tier ``w`` is in), so a minute
  that crosses a tier bound is split exactly at the bound;
* the cost is exact (``E * r / 100000`` fen): whole fen are deducted from ``remaining`` and the
  rest is kept in ``cost_carry`` (fen x 100000), so no money is lost to rounding;
* the tier-year consumption is reset at 00:00 Beijing time on the current tariff's reset date;
* the backup tariff replaces the current one at the first minute at or after its switch-over
  time;
* ALARM1 / ALARM2 are set while ``remaining <= alarm1`` / ``<= alarm2``, OVERDRAFT while
  ``remaining < 0``; the relay trips when ``remaining`` reaches the trip point (0, or
  ``-overdraft_limit`` when an overdraft is allowed) and stays tripped -- no energy is used --
  until a purchase leaves ``remaining`` above the trip point again.

Minutes of equal rate are priced in one batch (the trip minute is found by bisection), so a
month of simulated use takes a few hundred steps.  No floating point is used anywhere.

The state is one JSON file, written atomically (temporary file, fsync, ``os.replace``).  The
injected clock only gives the meter clock its start on first use; from then on the meter clock
moves only with :meth:`MeterSimulator.consume` (use ``load_w=0`` to let time pass idly).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final

from app.clock import Clock
from app.domain import ids
from app.domain.card import (
    ANY_METER,
    CardContents,
    CardKind,
    CorruptCardFile,
    ForeignCard,
    JobKind,
    JobRecord,
    ParameterRecord,
    TariffRecord,
    UnissuedCard,
    UnsupportedProfile,
    UpdateFlags,
    UserCardType,
    WriteBack,
    WriteBackStatus,
    WrongCardKind,
)
from app.domain.pricing import (
    MINUTES_PER_DAY,
    RATE_SCALE,
    WH_PER_KWH,
    TariffSpec,
    TariffSpecError,
    period_at,
    tier_year_start,
)
from app.fileio import write_atomically
from app.ports import KeyProvider
from cardio.profile import BEIJING, FILE_NAMES, SFI_BACKUP_TARIFF, SFI_CURRENT_TARIFF
from cardio.terminal import ApduTerminal

__all__ = [
    "BEIJING",
    "RELAY_CLOSED",
    "RELAY_TRIPPED",
    "ConsumeResult",
    "InsertResult",
    "MeterSimulator",
    "MeterState",
    "MeterStateError",
    "load_state",
    "save_state",
]

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


# --------------------------------------------------------------------------- state


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


# --------------------------------------------------------------------------- results


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


# --------------------------------------------------------------------------- the meter


class MeterSimulator:
    """A prepaid card meter whose state lives in ``state_path`` (created on first use).

    ``keys`` stands for the meter's security module: it authenticates the meter to the card
    and computes the write-back MAC.  ``meter_no`` sets the meter number of a new meter (or of
    one still without a number); a different number than the stored one is a ``ValueError``.
    ``clock`` gives the meter clock its start when the state is created.
    """

    def __init__(
        self,
        state_path: str | os.PathLike[str],
        keys: KeyProvider,
        *,
        meter_no: str | None = None,
        clock: Clock,
    ) -> None:
        if meter_no is not None and not ids.METER_NO.matches(meter_no):
            raise ValueError(f"a meter number is 12 digits, got {meter_no!r}")
        self.path = Path(state_path)
        self.keys = keys
        self.clock = clock
        self._spec_cache: tuple[dict[str, Any], TariffSpec] | None = None
        if self.path.exists():
            self.state = load_state(self.path)
            if meter_no is not None and self.state.meter_no != meter_no:
                if self.state.meter_no is not None:
                    raise ValueError(
                        f"{self.path} is meter {self.state.meter_no}, not meter {meter_no}"
                    )
                self.state.meter_no = meter_no
                self.save()
        else:
            start = clock.now().astimezone(BEIJING).replace(second=0, microsecond=0)
            self.state = MeterState(clock=start, meter_no=meter_no)
            self._tick()
            self._evaluate()
            self.save()

    # ------------------------------------------------------------------ persistence

    def save(self) -> None:
        save_state(self.path, self.state)

    def reload(self) -> MeterState:
        self.state = load_state(self.path)
        self._spec_cache = None
        return self.state

    # ------------------------------------------------------------------ card slot

    def insert(self, terminal: ApduTerminal) -> InsertResult:
        """A card is put into the meter's slot (the terminal's channel)."""
        slot = self._slot(terminal)
        try:
            card = slot.read()  # MACs checked with the meter's own security module
            self._tick()
            if card.kind == CardKind.USER:
                return self._user_card(slot, card)
            if card.kind.is_management:
                return self._management_card(slot, card)
            raise WrongCardKind(found=card.kind.label, expected=CardKind.USER.label)
        except ILLEGAL_CARD_ERRORS:
            self.reload()  # drop anything half-applied before the card showed as unusable
            self.state.illegal_insert_count += 1
            self.save()
            raise
        except BaseException:
            self.reload()  # the card left mid-session: the state is what was saved
            raise

    def _slot(self, terminal: ApduTerminal) -> ApduTerminal:
        """The card in the meter's slot, with the meter's own security module."""
        if terminal.keys is self.keys:
            return terminal
        return ApduTerminal(terminal.channel, self.keys, utility_code=terminal.utility_code)

    def _refuse(self, card: CardContents, reason: str, *, illegal: bool = True) -> InsertResult:
        if illegal:
            self.state.illegal_insert_count += 1
        self.save()
        return InsertResult(
            card_kind=card.kind,
            serial=card.serial_hex,
            accepted=False,
            status=self.state.status | WriteBackStatus.MISMATCH,
            reason=reason,
        )

    def _user_card(self, terminal: ApduTerminal, card: CardContents) -> InsertResult:
        s = self.state
        params = card.parameters
        if params is None:
            return self._refuse(card, REASON_NO_PARAMETERS)
        kind = params.user_card_type
        meter_no = s.meter_no
        if kind == UserCardType.OPEN and meter_no is None:
            meter_no = params.meter_no
        if meter_no != params.meter_no:
            return self._refuse(card, REASON_METER_NO)
        serial = card.serial_hex
        rebind = kind == UserCardType.REPLACEMENT or (
            kind == UserCardType.OPEN and s.card_serial is None
        )
        if not rebind:
            if s.card_serial is None:
                return self._refuse(card, REASON_NOT_OPENED)
            if s.card_serial != serial:
                return self._refuse(card, REASON_SERIAL)
        if card.purchase is not None and card.purchase_genuine is not True:
            # edited, forged, or copied from another card: nothing of this card is used
            return self._refuse(card, REASON_PURCHASE_MAC)
        s.meter_no = meter_no
        s.card_serial = serial

        applied = UpdateFlags.NONE
        if params.param_version > s.param_version:
            applied = self._apply_update(card, params, params.update_flags)
            s.param_version = params.param_version
            self._tick()

        status = WriteBackStatus.NONE
        reason: str | None = None
        credited = self._settle_pending(card)
        purchase = card.purchase
        if purchase is not None and purchase.purchase_count != s.purchase_count:
            if purchase.purchase_count != s.purchase_count + 1:
                status |= WriteBackStatus.PURCHASE_REFUSED
                reason = REASON_PURCHASE_COUNT
            elif s.credit_ceiling and s.remaining + purchase.amount > s.credit_ceiling:
                status |= WriteBackStatus.PURCHASE_REFUSED
                reason = REASON_CREDIT_CEILING
            else:  # loaded, but credited only once the write-back announcing it is on the card
                s.pending_purchase = {
                    "count": purchase.purchase_count,
                    "amount": purchase.amount,
                    "tag": purchase.sale_tag.hex(),
                }
        self._evaluate()
        self.save()  # the meter's own state first: a pulled card loses nothing
        written = self._write_back(terminal, status, _announced(s))
        # the write-back announcing the purchase is on the card (written and read back)
        credited += _credit_pending(s)
        self.save()
        return InsertResult(
            card_kind=card.kind,
            serial=serial,
            accepted=True,
            status=written.status,
            reason=reason,
            credited=credited,
            applied=applied,
            write_back=written,
        )

    def _apply_update(
        self, card: CardContents, params: ParameterRecord, flags: UpdateFlags
    ) -> UpdateFlags:
        """Apply the parameter/tariff files ``flags`` names (tariff files only if present)."""
        s = self.state
        applied = UpdateFlags.NONE
        current = backup = None
        if flags & UpdateFlags.CURRENT_TARIFF and card.current_tariff is not None:
            current = _tariff_dict(card.current_tariff, FILE_NAMES[SFI_CURRENT_TARIFF])
        if flags & UpdateFlags.BACKUP_TARIFF and card.backup_tariff is not None:
            backup = _tariff_dict(card.backup_tariff, FILE_NAMES[SFI_BACKUP_TARIFF])
        if flags & UpdateFlags.PARAMETERS:
            s.alarm1 = params.alarm1
            s.alarm2 = params.alarm2
            s.overdraft_limit = params.overdraft_limit
            s.credit_ceiling = params.credit_ceiling
            s.ct_ratio = params.ct_ratio
            s.pt_ratio = params.pt_ratio
            applied |= UpdateFlags.PARAMETERS
        if current is not None:
            s.current_tariff = current
            applied |= UpdateFlags.CURRENT_TARIFF
        if backup is not None:
            s.backup_tariff = backup
            applied |= UpdateFlags.BACKUP_TARIFF
        return applied

    def _management_card(self, terminal: ApduTerminal, card: CardContents) -> InsertResult:
        s = self.state
        params = card.parameters
        if params is None:
            return self._refuse(card, REASON_NO_PARAMETERS)
        if params.meter_no != ANY_METER and params.meter_no != s.meter_no:
            refused = self._refuse(card, REASON_METER_NO)
            if s.meter_no is None or card.write_back is not None:
                return refused  # nothing to sign with; never overwrite another meter's result
            # a job card brought to the wrong meter brings back that meter's "mismatch", so
            # the counter records the job as done at the wrong meter
            return replace(refused, write_back=self._write_back(terminal, WriteBackStatus.MISMATCH))
        if s.meter_no is None:  # nothing to sign a write-back with
            return self._refuse(card, REASON_NO_METER_NO, illegal=False)
        expected = _JOB_OF_CARD[card.kind]
        job = card.job
        usable = job is not None and job.kind == expected and _job_ok(job)
        status = WriteBackStatus.NONE
        reason: str | None = None
        applied = UpdateFlags.NONE
        done: JobKind | None = None
        if usable or card.kind == CardKind.CHECK:
            job_id = job.job_id.hex() if job is not None else None
            if job_id is None or job_id != s.last_job_id:  # the same job twice applies once
                applied = self._apply_job(card, params, job)
                if job_id is not None:
                    s.last_job_id = job_id
                self._tick()
            status |= WriteBackStatus.JOB_APPLIED
            done = expected
        else:
            reason = REASON_NO_JOB
        self._evaluate()
        self.save()
        written = self._write_back(terminal, status)
        return InsertResult(
            card_kind=card.kind,
            serial=card.serial_hex,
            accepted=True,
            status=written.status,
            reason=reason,
            applied=applied,
            job=done,
            write_back=written,
        )

    def _apply_job(
        self, card: CardContents, params: ParameterRecord, job: JobRecord | None
    ) -> UpdateFlags:
        if card.kind == CardKind.TARIFF:
            tariff_flags = UpdateFlags.CURRENT_TARIFF | UpdateFlags.BACKUP_TARIFF
            flags = params.update_flags & tariff_flags
            if not flags:  # no flags on the card: the tariff files it carries
                flags = UpdateFlags.NONE
                if card.current_tariff is not None:
                    flags |= UpdateFlags.CURRENT_TARIFF
                if card.backup_tariff is not None:
                    flags |= UpdateFlags.BACKUP_TARIFF
            return self._apply_update(card, params, flags)
        if card.kind == CardKind.PARAMETERS:
            return self._apply_update(card, params, UpdateFlags.PARAMETERS)
        if card.kind == CardKind.READING_DAY and job is not None:
            self.state.reading_day = job.reading_day
            self.state.reading_hour = job.reading_hour
        return UpdateFlags.NONE  # CHECK only collects

    def _settle_pending(self, card: CardContents) -> int:
        """Decide a purchase left pending by a card pulled during its write-back: credited
        (returns its amount) when the write-back announcing it reached the card, or when the
        card already holds a later purchase (the counter sells the next one only once it has
        seen that write-back); otherwise forgotten: the purchase rule then loads it again if
        the card still holds it, or not at all if it was taken back (reversed)."""
        s = self.state
        pending = s.pending_purchase
        if pending is None:
            return 0
        wb = card.write_back
        announced = (
            card.write_back_genuine is True
            and wb is not None
            and wb.meter_no == s.meter_no
            and wb.purchase_count == pending["count"]
        )
        later = card.purchase is not None and card.purchase.purchase_count > pending["count"]
        if announced or later:
            return _credit_pending(s)
        s.pending_purchase = None
        return 0

    def _write_back(
        self, terminal: ApduTerminal, status: WriteBackStatus, s: MeterState | None = None
    ) -> WriteBack:
        """Write the write-back of state ``s`` (the meter's state unless given)."""
        s = self.state if s is None else s
        assert s.meter_no is not None
        wb = WriteBack(
            meter_no=s.meter_no,
            remaining=s.remaining,
            overdraft_used=s.overdraft_used,
            purchase_count=s.purchase_count,
            total_energy_wh=s.total_energy_wh,
            status=s.status | status,
            illegal_insert_count=min(s.illegal_insert_count, 0xFFFF),
            time=s.clock,
            param_version=s.param_version,
            mac=bytes(4),
        )
        after = self._slot(terminal).write_back(wb, meter_no=s.meter_no)
        return after.write_back if after.write_back is not None else wb

    # ------------------------------------------------------------------ energy use

    def consume(self, minutes: int, load_w: int) -> ConsumeResult:
        """Let ``minutes`` pass on the meter clock with a load of ``load_w`` watts."""
        for name, value in (("minutes", minutes), ("load_w", load_w)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        s = self.state
        per_minute = load_w * s.ct_ratio * s.pt_ratio  # Wh x 60
        energy_before = s.total_energy_wh
        remaining_before = s.remaining
        tripped_at: dt.datetime | None = None
        left = minutes
        if self._evaluate():
            tripped_at = s.clock
        while left > 0:
            self._tick()
            spec = self._current_spec()
            n = min(left, self._minutes_to_boundary(spec))
            if s.tripped or per_minute == 0:
                s.clock += n * MINUTE
                left -= n
                continue
            base = self._base_rate(spec)
            k = n
            if self._remaining_after(spec, base, per_minute, n) <= s.trip_point:
                lo, hi = 1, n  # the first minute at whose end the trip point is reached
                while lo < hi:
                    mid = (lo + hi) // 2
                    if self._remaining_after(spec, base, per_minute, mid) <= s.trip_point:
                        hi = mid
                    else:
                        lo = mid + 1
                k = lo
            self._use(spec, base, per_minute, k)
            left -= k
            if self._evaluate():
                tripped_at = s.clock
        self._tick()
        self.save()
        return ConsumeResult(
            minutes=minutes,
            energy_wh=s.total_energy_wh - energy_before,
            charged=remaining_before - s.remaining,
            tripped_at=tripped_at,
            remaining=s.remaining,
        )

    def _current_spec(self) -> TariffSpec | None:
        tariff = self.state.current_tariff
        if tariff is None:
            return None
        if self._spec_cache is None or self._spec_cache[0] is not tariff:
            self._spec_cache = (tariff, TariffSpec.from_dict(tariff["spec"]))
        return self._spec_cache[1]

    def _base_rate(self, spec: TariffSpec | None) -> int:
        """The TOU period rate (or flat rate) at the meter clock; 0 without a tariff."""
        if spec is None:
            return 0
        period = period_at(spec, self.state.clock.time())
        if period is not None:
            return period.rate
        assert spec.flat_rate is not None
        return spec.flat_rate

    @staticmethod
    def _cost(spec: TariffSpec | None, base: int, used_wh: int, energy_wh: int) -> int:
        """Cost numerator (fen x RATE_SCALE) of ``energy_wh`` after ``used_wh`` this tier year."""
        if spec is None:
            return 0
        if not spec.tiers:
            return energy_wh * base
        cost = 0
        position = used_wh
        left = energy_wh
        for tier in spec.tiers:
            if left == 0:
                break
            if tier.upto_kwh is None:
                take = left
            else:
                end = tier.upto_kwh * WH_PER_KWH
                if position >= end:
                    continue
                take = min(left, end - position)
            cost += take * (base + tier.surcharge)
            left -= take
            position += take
        return cost

    def _remaining_after(self, spec: TariffSpec | None, base: int, per_minute: int, k: int) -> int:
        s = self.state
        energy = (s.energy_carry + k * per_minute) // WH_DIVISOR
        cost = s.cost_carry + self._cost(spec, base, s.tier_year_used_wh, energy)
        return s.remaining - cost // RATE_SCALE

    def _use(self, spec: TariffSpec | None, base: int, per_minute: int, k: int) -> None:
        s = self.state
        energy, s.energy_carry = divmod(s.energy_carry + k * per_minute, WH_DIVISOR)
        cost = s.cost_carry + self._cost(spec, base, s.tier_year_used_wh, energy)
        fen, s.cost_carry = divmod(cost, RATE_SCALE)
        s.remaining -= fen
        s.total_energy_wh += energy
        s.tier_year_used_wh += energy
        s.clock += k * MINUTE

    def _reset_date(self) -> tuple[int, int]:
        spec = self._current_spec()
        return (spec.reset_month, spec.reset_day) if spec is not None else (1, 1)

    def _minutes_to_boundary(self, spec: TariffSpec | None) -> int:
        """Minutes from the meter clock to the next change of rate by time: a TOU segment
        start, midnight, the tier-year reset or the backup tariff's switch-over."""
        s = self.state
        now = s.clock
        minute = now.hour * 60 + now.minute
        upto = MINUTES_PER_DAY
        if spec is not None and spec.is_tou:
            upto = next((g.start_minute for g in spec.schedule if g.start_minute > minute), upto)
        n = upto - minute
        start = tier_year_start(now, *self._reset_date())
        n = min(n, _minutes_until(now, start.replace(year=start.year + 1)))
        switch = self._backup_switch()
        if switch is not None and switch > now:
            n = min(n, _minutes_until(now, switch))
        return max(n, 1)

    def _backup_switch(self) -> dt.datetime | None:
        backup = self.state.backup_tariff
        if backup is None or backup["effective_from"] is None:
            return None
        return _parse_time(backup["effective_from"], "backup_tariff.effective_from")

    def _tick(self) -> None:
        """What the meter clock brings by itself: the backup tariff and the tier-year reset."""
        s = self.state
        switch = self._backup_switch()
        if switch is not None and switch <= s.clock:
            s.current_tariff, s.backup_tariff = s.backup_tariff, None
        start = tier_year_start(s.clock, *self._reset_date())
        if s.tier_year_start is None:
            s.tier_year_start = start
        elif start > s.tier_year_start:
            s.tier_year_used_wh = 0
            s.tier_year_start = start

    def _evaluate(self) -> bool:
        """Update the alarm/overdraft flags from ``remaining``; trip the relay at the trip
        point.  Returns whether the relay tripped just now."""
        return _evaluate(self.state)

    def snapshot(self) -> MeterState:
        """A copy of the state (tariff dicts shared; do not change them)."""
        return replace(self.state)


def _evaluate(s: MeterState) -> bool:
    """Update the alarm/overdraft flags of ``s`` from ``remaining``; trip the relay at the trip
    point.  Returns whether the relay tripped just now."""
    flags = WriteBackStatus.NONE
    if s.remaining <= s.alarm1:
        flags |= WriteBackStatus.ALARM1
    if s.remaining <= s.alarm2:
        flags |= WriteBackStatus.ALARM2
    if s.remaining < 0:
        flags |= WriteBackStatus.OVERDRAFT
    s.alarm_flags = int(flags)
    s.overdraft_used = max(0, -s.remaining)
    if s.relay == RELAY_CLOSED and s.remaining <= s.trip_point:
        s.relay = RELAY_TRIPPED
        return True
    return False


def _credit_pending(s: MeterState) -> int:
    """Credit the pending purchase of ``s`` (if any); returns the fen credited."""
    pending = s.pending_purchase
    if pending is None:
        return 0
    amount = int(pending["amount"])
    s.remaining += amount
    s.purchase_count = int(pending["count"])
    s.pending_purchase = None
    if amount > 0 and s.remaining > s.trip_point:
        s.relay = RELAY_CLOSED
    _evaluate(s)
    return amount


def _announced(s: MeterState) -> MeterState:
    """``s`` as its write-back announces it: with the pending purchase credited."""
    if s.pending_purchase is None:
        return s
    after = replace(s)
    _credit_pending(after)
    return after


def _job_ok(job: JobRecord) -> bool:
    if job.kind == JobKind.READING_DAY:
        return 1 <= job.reading_day <= 28 and 0 <= job.reading_hour <= 23
    return True


def _minutes_until(now: dt.datetime, when: dt.datetime) -> int:
    """Whole minutes from ``now`` until the first minute start at or after ``when``."""
    return -((now - when) // MINUTE)
