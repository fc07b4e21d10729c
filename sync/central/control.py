"""The charge-control loop of the station: remote meters read, balances kept, alarm / trip /
close permit sent.

One run (:meth:`ControlLoop.run`), under a lease so that one worker of one host runs it at a time
(``central_leases``: a row whose holder and end the run takes with one conditional UPDATE, so it
holds across processes and hosts on one database and survives a crashed holder by expiring):

1. **Enrol.** Every active customer with a remote fee-control meter that is not under control yet
   comes under it with the opening balance given (``central_control``); payments received from
   then on count.
2. **Acquire.** Each controlled meter is read through the terminals (:class:`app.ports.RemoteMeters`).
   The energy since the last reading is priced by rate under the customer's tariff version in force
   at the reading (:func:`app.domain.pricing.consumption_cost`) and added to the customer's cost.
   A meter that does not answer, a reading that goes backwards (in total or in a rate), or one
   that grows more than :data:`MAX_KW` (times CT x PT) could draw in the meter's own time since
   the last reading, is an exception (``central_exceptions``, one open per customer and kind),
   never a bill: the reading is kept with status ``exception`` and the cost does not move.
3. **Balance.** One UPDATE over all controlled customers: paid = the credit of their completed,
   not reversed remote purchases since enrolment; remaining = opening + paid - ceil(cost).
4. **Decide.** One SELECT finds the customers whose state (by remaining against their alarm1,
   alarm2 and the trip threshold, -overdraft_limit) differs from the one recorded; each gets its
   commands: an alarm at alarm1 and at alarm2, a trip at the threshold, a close permit (and the
   alarm again when still low) when a payment lifts a tripped customer, an alarm release when
   the balance is back to normal.  Pending commands a new decision supersedes are dropped.
5. **Send.** Due commands go to the meters; a failure is retried with backoff
   (:data:`BACKOFF_S`), and after :data:`MAX_ATTEMPTS` it fails and opens an exception
   (``command_failed``) and an on-site job (:mod:`sync.central.control_jobs`) for a technician.

Control parameters and commissioning with the first purchase: :mod:`sync.central.commissioning`;
lifting control: :mod:`sync.central.control_lift` (a lifted customer gets no decisions).

Commands, readings and exceptions are rows: a restart loses nothing and resends what was due.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Final
from typing import Protocol

from sqlalchemy import Update
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from app.domain.pricing import RATE_SCALE
from app.domain.pricing import TariffSpec
from app.domain.pricing import consumption_cost
from app.domain.pricing import tier_year_start
from app.errors import CardVendError
from app.ports import RemoteMeters
from app.services.meter_reading import MeterReading
from app.services.tariffs import SPEC_DEFAULTS
from sync.central import commissioning
from sync.central import control_jobs
from sync.central import models as m
from sync.central import tasks
from sync.central.base import StoreBase
from sync.central.base import chunks
from sync.central.base import failed_attempt
from sync.central.exceptions import open_exception

log = logging.getLogger(__name__)

LEASE: Final = "control"
LEASE_S: Final = 300  # a holder that died frees the loop after this long
OPERATOR: Final = "station"
MAX_ATTEMPTS: Final = 5
BACKOFF_S: Final = (5, 15, 45, 120, 300)
MAX_KW: Final = 100  # more than this per CT x PT in the meter's own time is not a real draw
BATCH: Final = 500

NORMAL, ALARM1, ALARM2, TRIPPED = "normal", "alarm1", "alarm2", "tripped"
STATES: Final = (NORMAL, ALARM1, ALARM2, TRIPPED)
PENDING, DONE, FAILED, DROPPED = "pending", "done", "failed", "dropped"

# what to send when a customer moves from one state to another
_LOW = (ALARM1, ALARM2)


def commands_for(old: str, new: str) -> list[str]:
    """The meter commands, in order, that take a meter from control state ``old`` to ``new``."""
    if new == TRIPPED:
        return ["trip"]
    if old == TRIPPED:
        return ["close", "alarm"] if new in _LOW else ["close", "release"]
    if new in _LOW:
        return ["alarm"]
    return ["release"] if old in _LOW else []


def tier_year_used(
    used_wh: int,
    since: dt.datetime | None,
    spec: TariffSpec,
    meter_time: dt.datetime | None,
    now: dt.datetime,
) -> tuple[int, dt.datetime]:
    """(Wh used so far in the tier year of a reading, that tier year's start): what was kept
    when the kept year is the reading's, else 0 (a new tier year began).  The year follows the
    meter's own clock, as the card meter's does (the station's time when the meter gave none);
    it starts at 00:00 on the tariff's reset date."""
    at = meter_time if meter_time is not None and meter_time.tzinfo is not None else now
    start = tier_year_start(at, spec.reset_month, spec.reset_day)
    if since is not None and since == start:
        return used_wh, start
    return 0, start


@dataclass
class RunReport:
    """What one run did (``central control run --json``)."""

    ran: bool = True  # False: another worker holds the loop
    enrolled: int = 0
    read: int = 0
    exceptions: int = 0
    changed: int = 0
    commands_sent: int = 0
    commands_failed: int = 0
    commands_waiting: int = 0
    params_issued: int = 0  # meters that took their control parameters
    commissioned: int = 0  # control function tested with the first purchase: passed
    commission_failed: int = 0  # ... failed: an on-site job
    states: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Meter:
    customer_no: str
    meter_no: str
    plan: str
    ratio: int
    energy_wh: int | None
    rates_wh: tuple[int, ...] | None
    meter_time: dt.datetime | None
    cost_num: int
    tier_used_wh: int = 0  # consumption in the tier year that starts at tier_start
    tier_start: dt.datetime | None = None
    registers: tuple[str, ...] | None = None  # what its measurement task reads (None: all)


@dataclass(frozen=True)
class _Priced:
    """What :meth:`ControlLoop._price` made of a reading."""

    status: str  # billed | first | exception
    cost_num: int = 0
    problem: tuple[str, str] = ("", "")  # exception kind, detail
    tier_used_wh: int = 0  # the tier year's consumption after this reading
    tier_start: dt.datetime | None = None


class LoopStep(Protocol):
    """A step added to the run (arrears control, SMS notices): called after the decisions,
    before and after the commands are sent (whether or not meters are reachable)."""

    def before_send(self) -> None: ...

    def after_send(self) -> None: ...


class ControlLoop:
    """Runs the charge-control loop on ``store``'s database; ``meters`` reaches the remote
    meters (None: balances and decisions only, nothing read or sent); ``steps`` run after the
    decisions (:class:`LoopStep`)."""

    def __init__(
        self,
        store: StoreBase,
        meters: RemoteMeters | None,
        *,
        opening_fen: int = 0,
        holder: str | None = None,
        steps: Sequence[LoopStep] = (),
    ) -> None:
        if opening_fen < 0:
            raise ValueError("the opening balance cannot be negative")
        self.store = store
        self.meters = meters
        self.opening_fen = opening_fen
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.steps = tuple(steps)

    # ------------------------------------------------------------------ the run

    def run(self) -> RunReport:
        if not self._take_lease():
            return RunReport(ran=False)
        report = RunReport()
        try:
            report.enrolled = self._enrol()
            if self.meters is not None:
                commissioning.issue_parameters(self.store, self.meters, report)
                self._acquire(report)
            self._balance()
            if self.meters is not None:
                commissioning.commission(self.store, self.meters, report)
            report.changed = self._decide()
            for step in self.steps:
                step.before_send()
            if self.meters is not None:
                self._send(report)
            for step in self.steps:
                step.after_send()
            report.states, report.commands_waiting = self._tally()
        finally:
            self._release_lease()
        log.info("control run: %s", report.to_json())
        return report

    # ------------------------------------------------------------------ the lease

    def _take_lease(self) -> bool:
        le = m.leases.c
        now = self.store.now()
        with self.store.begin() as conn:
            taken = conn.execute(
                update(m.leases)
                .where(le.name == LEASE, (le.until < now) | (le.holder == self.holder))
                .values(holder=self.holder, until=now + dt.timedelta(seconds=LEASE_S))
            ).rowcount
            if taken:
                return True
            if conn.execute(select(le.name).where(le.name == LEASE)).first() is not None:
                return False
        try:
            with self.store.begin() as conn:
                conn.execute(
                    insert(m.leases).values(
                        name=LEASE, holder=self.holder, until=now + dt.timedelta(seconds=LEASE_S)
                    )
                )
            return True
        except IntegrityError:  # another worker inserted it at the same moment: it holds the loop
            return False

    def _release_lease(self) -> None:
        le = m.leases.c
        with self.store.begin() as conn:
            conn.execute(
                update(m.leases)
                .where(le.name == LEASE, le.holder == self.holder)
                .values(until=self.store.now() - dt.timedelta(seconds=1))
            )

    # ------------------------------------------------------------------ 1. enrol

    def _enrol(self) -> int:
        cu, co = m.customers.c, m.control.c
        now = self.store.now()
        new = select(cu.customer_no, cu.meter_no).where(
            cu.meter_kind == "remote",
            cu.status == "active",
            ~select(co.customer_no).where(co.customer_no == cu.customer_no).exists(),
        )
        with self.store.begin() as conn:
            rows = conn.execute(new).all()
            for part in chunks(rows, BATCH):
                conn.execute(
                    insert(m.control),
                    [
                        {
                            "customer_no": r[0],
                            "meter_no": r[1],
                            "state": NORMAL,
                            "opening_fen": self.opening_fen,
                            "paid_fen": 0,
                            "cost_num": 0,
                            "remaining_fen": self.opening_fen,
                            "commission": commissioning.PENDING,  # at the first purchase
                            "enrolled_at": now,
                            "state_since": now,
                            "updated_at": now,
                        }
                        for r in part
                    ],
                )
        return len(rows)

    # ------------------------------------------------------------------ 2. acquire

    def _controlled(self, conn: Connection) -> list[_Meter]:
        """The controlled customers due to be read under their measurement task
        (:mod:`sync.central.tasks`; no task: all) with their last billed reading, all from
        central_control (the last reading's rates and meter time are kept there when billed)."""
        co, cu = m.control.c, m.customers.c
        rows = conn.execute(
            select(
                co.customer_no, co.meter_no, cu.tariff_plan, cu.ct_ratio, cu.pt_ratio,
                co.energy_wh, co.rates_wh, co.meter_time, co.cost_num,
                co.tier_year_used_wh, co.tier_year_start, tasks.registers_of(cu).label("regs"),
            )
            .join(m.customers, cu.customer_no == co.customer_no)
            .where(cu.status == "active", tasks.due_clause(conn, self.store.now()))
            .order_by(co.customer_no)
        ).all()  # fmt: skip
        return [
            _Meter(
                r.customer_no,
                r.meter_no,
                r.tariff_plan,
                max(1, int(r.ct_ratio) * int(r.pt_ratio)),
                r.energy_wh,
                tuple(int(x) for x in r.rates_wh) if r.rates_wh is not None else None,
                r.meter_time,
                int(r.cost_num),
                int(r.tier_year_used_wh or 0),
                r.tier_year_start,
                tuple(r.regs) if r.regs is not None else None,
            )
            for r in rows
        ]

    def _tariffs(self, conn: Connection) -> dict[str, list[tuple[dt.datetime, TariffSpec]]]:
        t = m.tariff_versions.c
        found: dict[str, list[tuple[dt.datetime, TariffSpec]]] = {}
        for plan, since, spec in conn.execute(
            select(t.plan_code, t.effective_from, t.spec).order_by(t.effective_from, t.version_no)
        ):
            try:
                found.setdefault(plan, []).append(
                    (since, TariffSpec.from_dict({**SPEC_DEFAULTS, **spec}))
                )
            except ValueError as exc:
                log.warning("tariff %s from %s cannot price readings: %s", plan, since, exc)
        return found

    @staticmethod
    def _in_force(
        versions: list[tuple[dt.datetime, TariffSpec]], at: dt.datetime
    ) -> TariffSpec | None:
        spec = None
        for since, candidate in versions:
            if since <= at:
                spec = candidate
        return spec

    def _acquire(self, report: RunReport) -> None:
        assert self.meters is not None
        with self.store.engine.connect() as conn:
            meters = self._controlled(conn)
            tariffs = self._tariffs(conn)
        for part in chunks(meters, BATCH):
            taken: list[tuple[_Meter, MeterReading | None, str]] = []
            for meter in part:
                try:
                    if meter.registers is None:
                        reading = self.meters.read(meter.meter_no)
                    else:
                        reading = self.meters.read(meter.meter_no, registers=meter.registers)
                    taken.append((meter, reading, ""))
                except (CardVendError, OSError) as exc:
                    taken.append((meter, None, str(exc)[:250]))
            report.read += sum(1 for _, r, _ in taken if r is not None)
            report.exceptions += self._store_readings(taken, tariffs)

    def _store_readings(
        self,
        taken: Iterable[tuple[_Meter, MeterReading | None, str]],
        tariffs: Mapping[str, list[tuple[dt.datetime, TariffSpec]]],
    ) -> int:
        now = self.store.now()
        opened = 0
        rows: list[dict[str, Any]] = []
        billed: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        problems: list[tuple[str, str, str]] = []
        for meter, reading, error in taken:
            if reading is None:
                problems.append((meter.customer_no, "reading_missing", error))
                continue
            priced = self._price(meter, reading, tariffs, now)
            status, cost, problem = priced.status, priced.cost_num, priced.problem
            rows.append(
                {
                    "customer_no": meter.customer_no,
                    "meter_no": meter.meter_no,
                    "read_at": now,
                    "meter_time": reading.meter_time,
                    "energy_wh": reading.energy_wh or 0,
                    "rates_wh": [int(x or 0) for x in reading.energy_rates_wh],
                    "relay": reading.relay,
                    "cost_num": cost,
                    "status": status,
                }
            )
            same = {"b_customer": meter.customer_no, "b_relay": reading.relay}
            if status != "exception":
                billed.append(
                    {**same, "b_energy": reading.energy_wh, "b_cost": meter.cost_num + cost,
                     "b_rates": rows[-1]["rates_wh"], "b_meter_time": reading.meter_time,
                     "b_tier_used": priced.tier_used_wh, "b_tier_start": priced.tier_start}
                )  # fmt: skip
            else:
                kept.append(same)
                problems.append((meter.customer_no, problem[0], problem[1]))
        co = m.control.c
        with self.store.begin() as conn:
            if rows:
                conn.execute(insert(m.readings), rows)
            # the relay as read; the one last read when the reading left the status out
            relay = func.coalesce(bindparam("b_relay", type_=co.relay.type), co.relay)
            if billed:
                conn.execute(
                    _each_control(
                        relay=relay,
                        energy_wh=bindparam("b_energy"),
                        cost_num=bindparam("b_cost"),
                        rates_wh=bindparam("b_rates"),
                        meter_time=bindparam("b_meter_time"),
                        tier_year_used_wh=bindparam("b_tier_used"),
                        tier_year_start=bindparam("b_tier_start"),
                        read_at=now,
                        updated_at=now,
                    ),
                    billed,
                )
            if kept:
                conn.execute(_each_control(relay=relay, read_at=now, updated_at=now), kept)
            for customer_no, kind, detail in problems:
                opened += self._exception(conn, customer_no, kind, detail)
        return opened

    def _price(
        self,
        meter: _Meter,
        reading: MeterReading,
        tariffs: Mapping[str, list[tuple[dt.datetime, TariffSpec]]],
        now: dt.datetime,
    ) -> _Priced:
        """What a reading is: billed (its cost and the tier year's consumption after it),
        the first, or an exception (kind and detail)."""
        rates = tuple(reading.energy_rates_wh)
        if reading.energy_wh is None or any(x is None for x in rates) or len(rates) != 4:
            return _Priced(
                "exception", problem=("reading_incomplete", "the meter gave no energy by rate")
            )
        now_rates = tuple(int(x) for x in rates)  # type: ignore[arg-type]
        if meter.energy_wh is None or meter.rates_wh is None:
            return _Priced("first", tier_used_wh=meter.tier_used_wh, tier_start=meter.tier_start)
        delta = [a - b for a, b in zip(now_rates, meter.rates_wh, strict=True)]
        total = int(reading.energy_wh) - meter.energy_wh
        if total < 0 or any(d < 0 for d in delta):
            detail = f"energy went from {meter.energy_wh} Wh to {reading.energy_wh} Wh"
            return _Priced("exception", problem=("reading_backwards", detail))
        then = meter.meter_time
        if then is not None and reading.meter_time is not None:
            hours = max((reading.meter_time - then).total_seconds(), 0.0) / 3600
            most = MAX_KW * 1000 * meter.ratio * hours + 1000  # a kWh of slack for rounding
            if total > most:
                detail = f"{total} Wh in {hours:.2f} h of the meter's time"
                return _Priced("exception", problem=("reading_jump", detail))
        spec = self._in_force(tariffs.get(meter.plan, []), now)
        if spec is None:
            return _Priced(
                "exception", problem=("no_tariff", f"no version of tariff {meter.plan} in force")
            )
        used, start = tier_year_used(
            meter.tier_used_wh, meter.tier_start, spec, reading.meter_time, now
        )
        return _Priced(
            "billed", consumption_cost(spec, delta, used), ("", ""), used + sum(delta), start
        )

    def _exception(self, conn: Connection, customer_no: str, kind: str, detail: str) -> int:
        """Open an exception unless one of this kind is open for the customer; 1 if opened."""
        return open_exception(conn, self.store.now(), customer_no, kind, detail)

    # ------------------------------------------------------------------ 3. balance

    def _balance(self) -> None:
        co, sa = m.control.c, m.sales.c
        paid = (
            select(func.coalesce(func.sum(sa.credit), 0))
            .where(
                sa.customer_no == co.customer_no,
                sa.kind == "remote",
                sa.state == "completed",
                sa.reversed.is_(False),
                sa.received_at >= co.enrolled_at,
            )
            .scalar_subquery()
        )
        # and what payment channels (a bank, an app, an agent) took for them since (channels.py)
        cp = m.channel_payments.c
        by_channel = (
            select(func.coalesce(func.sum(cp.amount_fen), 0))
            .where(cp.customer_no == co.customer_no, cp.received_at >= co.enrolled_at)
            .scalar_subquery()
        )
        with self.store.begin() as conn:
            conn.execute(
                update(m.control).values(
                    paid_fen=paid + by_channel,
                    remaining_fen=co.opening_fen
                    + paid
                    + by_channel
                    - (co.cost_num + (RATE_SCALE - 1)) // RATE_SCALE,
                )
            )

    # ------------------------------------------------------------------ 4. decide

    def _decide(self) -> int:
        co, cu, cm = m.control.c, m.customers.c, m.commands.c

        def target_of(cust: Any) -> Any:
            return case(
                (co.remaining_fen <= -cust.overdraft_limit, TRIPPED),
                (co.remaining_fen <= cust.alarm2, ALARM2),
                (co.remaining_fen <= cust.alarm1, ALARM1),
                else_=NORMAL,
            )

        target = target_of(cu)
        # the same, as a value of each control row (for the one UPDATE below)
        own = m.customers.alias("own")
        new_state = (
            select(target_of(own.c)).where(own.c.customer_no == co.customer_no).scalar_subquery()
        )
        changed = (
            select(co.customer_no)
            .join(m.customers, cu.customer_no == co.customer_no)
            .where(co.state != target, cu.status == "active", co.lifted_at.is_(None))
        )
        now = self.store.now()
        with self.store.begin() as conn:
            changes = conn.execute(
                select(co.customer_no, co.meter_no, co.state, target)
                .join(m.customers, cu.customer_no == co.customer_no)
                .where(co.state != target, cu.status == "active", co.lifted_at.is_(None))
            ).all()
            if not changes:
                return 0
            # superseded: what was still waiting for these customers
            conn.execute(
                update(m.commands)
                .where(cm.status == PENDING, cm.customer_no.in_(changed.scalar_subquery()))
                .values(status=DROPPED, done_at=now)
            )
            rows = [
                {
                    "id": str(uuid.uuid4()),
                    "customer_no": number,
                    "meter_no": meter_no,
                    "command": command,
                    "reason": f"{old}->{new}",
                    "status": PENDING,
                    "attempts": 0,
                    "next_at": now,
                    "last_error": "",
                    "created_at": now + dt.timedelta(microseconds=i),  # in order
                }
                for number, meter_no, old, new in changes
                for i, command in enumerate(commands_for(old, new))
            ]
            for part in chunks(rows, 5000):
                conn.execute(insert(m.commands), list(part))
            conn.execute(
                update(m.control)
                .where(co.customer_no.in_(changed.scalar_subquery()))
                .values(state=new_state, state_since=now, updated_at=now)
            )
        return len(changes)

    # ------------------------------------------------------------------ 5. send

    def _send(self, report: RunReport) -> None:
        assert self.meters is not None
        cm = m.commands.c
        now = self.store.now()
        with self.store.engine.connect() as conn:
            due = conn.execute(
                select(cm.id, cm.customer_no, cm.meter_no, cm.command, cm.attempts)
                .where(cm.status == PENDING, cm.next_at <= now)
                .order_by(cm.created_at)
            ).all()
        done: list[dict[str, Any]] = []
        for command_id, customer_no, meter_no, command, attempts in due:
            try:
                self.meters.command(meter_no, command, OPERATOR)
            except (CardVendError, OSError) as exc:
                self._failed(command_id, customer_no, command, attempts + 1, str(exc)[:200])
                report.commands_failed += 1
                continue
            done.append(
                {"b_id": command_id, "b_customer": customer_no, "b_command": command,
                 "b_attempts": attempts + 1, "b_at": self.store.now()}
            )  # fmt: skip
            report.commands_sent += 1
            if len(done) >= BATCH:
                self._done(done)
                done = []
        self._done(done)

    def _done(self, done: list[dict[str, Any]]) -> None:
        """Record commands the meters took (one transaction for a batch of them)."""
        if not done:
            return
        cm = m.commands.c
        closes = [d for d in done if d["b_command"] == "close"]
        trips = [d for d in done if d["b_command"] == "trip"]
        with self.store.begin() as conn:
            conn.execute(
                update(m.commands)
                .where(cm.id == bindparam("b_id"))
                .values(
                    status=DONE,
                    attempts=bindparam("b_attempts"),
                    done_at=bindparam("b_at"),
                    last_error="",
                ),
                done,
            )
            if closes:
                conn.execute(
                    _each_control(
                        close_permit_at=bindparam("b_at"),
                        relay="closed",
                        updated_at=bindparam("b_at"),
                    ),
                    closes,
                )
            if trips:
                conn.execute(_each_control(relay="open", updated_at=bindparam("b_at")), trips)

    def _failed(
        self, command_id: str, customer_no: str, command: str, attempts: int, error: str
    ) -> None:
        cm = m.commands.c
        now = self.store.now()
        gave_up = attempts >= MAX_ATTEMPTS
        with self.store.begin() as conn:
            conn.execute(
                update(m.commands)
                .where(cm.id == command_id)
                .values(
                    **failed_attempt(attempts, error, now, MAX_ATTEMPTS, BACKOFF_S),
                    done_at=now if gave_up else None,
                )
            )
            if gave_up:
                detail = f"{command} failed {attempts} times: {error}"
                self._exception(conn, customer_no, "command_failed", detail)
        if gave_up:  # a technician goes on site: a job for the customer's office
            params = {"command": command, "attempts": attempts, "last_error": error[:120]}
            control_jobs.open_job(self.store, customer_no, control_jobs.COMMAND_FAILED, params)

    # ------------------------------------------------------------------ tally

    def _tally(self) -> tuple[dict[str, int], int]:
        co, cm = m.control.c, m.commands.c
        with self.store.engine.connect() as conn:
            states: dict[str, int] = {
                str(state): int(n)
                for state, n in conn.execute(select(co.state, func.count()).group_by(co.state))
            }
            waiting = conn.execute(
                select(func.count()).select_from(m.commands).where(cm.status == PENDING)
            ).scalar_one()
        return {s: int(states.get(s, 0)) for s in STATES}, int(waiting)


def _each_control(**values: Any) -> Update:
    """An UPDATE of ``central_control`` to execute with a list of parameter sets, each naming
    its customer in ``b_customer``."""
    return (
        update(m.control).where(m.control.c.customer_no == bindparam("b_customer")).values(**values)
    )


def control_status(store: StoreBase, customer_no: str) -> dict[str, Any] | None:
    """A controlled customer's state, balance, relay and times (None: not under control)."""
    with store.engine.connect() as conn:
        return control_of(conn, customer_no)


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def control_of(conn: Connection, customer_no: str) -> dict[str, Any] | None:
    """The one reader of a customer's ``central_control`` row (the station's CLI and the
    contract's control status both use it): None when the customer is not under control."""
    co, cm = m.control.c, m.commands.c
    row = conn.execute(select(m.control).where(co.customer_no == customer_no)).mappings().first()
    if row is None:
        return None
    pending = (
        conn.execute(
            select(cm.command)
            .where(cm.customer_no == customer_no, cm.status == PENDING)
            .order_by(cm.created_at)
        )
        .scalars()
        .all()
    )
    return {
        "customer_no": row["customer_no"],
        "meter_no": row["meter_no"],
        "state": row["state"],
        "remaining_fen": int(row["remaining_fen"]),
        "paid_fen": int(row["paid_fen"]),
        "relay": row["relay"],
        "last_reading_at": _iso(row["read_at"]),
        "close_permit_sent_at": _iso(row["close_permit_at"]),
        "state_since": row["state_since"].isoformat(),
        "commands_pending": list(pending),
        "tier_year_used_wh": int(row["tier_year_used_wh"] or 0),
        "commission": row["commission"],
        "commission_at": _iso(row["commission_at"]),
        "lifted_at": _iso(row["lifted_at"]),
    }


__all__ = [
    "ControlLoop",
    "RunReport",
    "commands_for",
    "control_of",
    "control_status",
    "tier_year_used",
]
