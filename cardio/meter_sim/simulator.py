"""MeterSimulator: the card slot (user and management cards, write-backs) and the consumption clock of a simulated meter."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.clock import Clock
from app.domain import ids
from app.domain.card import ANY_METER
from app.domain.card import CardContents
from app.domain.card import CardKind
from app.domain.card import JobKind
from app.domain.card import JobRecord
from app.domain.card import ParameterRecord
from app.domain.card import UpdateFlags
from app.domain.card import UserCardType
from app.domain.card import WriteBack
from app.domain.card import WriteBackStatus
from app.domain.card import WrongCardKind
from app.domain.pricing import MINUTES_PER_DAY
from app.domain.pricing import RATE_SCALE
from app.domain.pricing import WH_PER_KWH
from app.domain.pricing import TariffSpec
from app.domain.pricing import period_at
from app.domain.pricing import tier_year_start
from app.ports import KeyProvider
from cardio.meter_sim.state import _JOB_OF_CARD
from cardio.meter_sim.state import ILLEGAL_CARD_ERRORS
from cardio.meter_sim.state import MINUTE
from cardio.meter_sim.state import REASON_CREDIT_CEILING
from cardio.meter_sim.state import REASON_METER_NO
from cardio.meter_sim.state import REASON_NO_JOB
from cardio.meter_sim.state import REASON_NO_METER_NO
from cardio.meter_sim.state import REASON_NO_PARAMETERS
from cardio.meter_sim.state import REASON_NOT_OPENED
from cardio.meter_sim.state import REASON_PURCHASE_COUNT
from cardio.meter_sim.state import REASON_PURCHASE_MAC
from cardio.meter_sim.state import REASON_SERIAL
from cardio.meter_sim.state import RELAY_CLOSED
from cardio.meter_sim.state import RELAY_TRIPPED
from cardio.meter_sim.state import WH_DIVISOR
from cardio.meter_sim.state import ConsumeResult
from cardio.meter_sim.state import InsertResult
from cardio.meter_sim.state import MeterState
from cardio.meter_sim.state import _parse_time
from cardio.meter_sim.state import _tariff_dict
from cardio.meter_sim.state import load_state
from cardio.meter_sim.state import save_state
from cardio.profile import BEIJING
from cardio.profile import FILE_NAMES
from cardio.profile import SFI_BACKUP_TARIFF
from cardio.profile import SFI_CURRENT_TARIFF
from cardio.terminal import ApduTerminal

# the user cards a meter never bound to a card takes its first load from
FIRST_CARDS = (UserCardType.OPEN, UserCardType.REPLACEMENT)


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
        fresh = s.card_serial is None and s.purchase_count == 0 and s.pending_purchase is None
        s.meter_no = meter_no
        s.card_serial = serial
        if fresh and kind in FIRST_CARDS and card.purchase is not None:
            # a new meter fitted in place of another (a meter change) continues the account's
            # purchase count: the open card's purchase is its first load, whatever its number;
            # so does a replacement card (the card was replaced before the new meter saw it)
            s.purchase_count = max(card.purchase.purchase_count - 1, 0)

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
        return _accepted(card, written, reason, applied, credited=credited)

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
        return _accepted(card, written, reason, applied, job=done)

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


def _accepted(
    card: CardContents,
    written: WriteBack,
    reason: str | None,
    applied: UpdateFlags,
    *,
    credited: int = 0,
    job: JobKind | None = None,
) -> InsertResult:
    """The result of a card the meter took: the status it wrote back on the card and what the
    insert did."""
    return InsertResult(
        card_kind=card.kind,
        serial=card.serial_hex,
        accepted=True,
        status=written.status,
        reason=reason,
        credited=credited,
        applied=applied,
        job=job,
        write_back=written,
    )


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
