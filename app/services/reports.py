"""Reports: the shift Z-report, the office's daily report and the charge-control statistics.

Read-only; each report is one read unit of work (one snapshot: PostgreSQL runs it REPEATABLE
READ, SQLite's WAL read transaction is one already), aggregated in SQL, and comes back as frozen
dataclasses with ``to_json()``.  Rendering (PDF, CSV) is ``printing/reports.py``.  Reading any of
them needs :attr:`Action.VIEW_REPORTS`.

What the figures mean (money in fen, never a float):

* A sale *took money* when it is ``completed`` or ``reversed`` (the cash was taken then; a
  reversal hands it back later, as its own line).  ``failed`` sales never took money; ``pending``
  and ``in_doubt`` ones are shown but count for nothing until resolved.
* ``sales_count`` / ``sales_fen``: the sales that took money (gross of reversals).
* ``credit_fen`` / ``arrears_fen`` / ``fees_fen``: of the sales that stand (``completed``): credit
  loaded, arrears and fees collected.  A reversed sale's credit was taken back from the card.
* ``reversals``: completed reversals, i.e. cash handed back (a shift: those made in the shift; a
  day: those completed that day).  ``fee_payments``: fees paid outside a sale (replacement cards).
* ``net_cash_fen`` = sales_fen + fee_payments_fen - reversals_fen: what the drawer gained.  For a
  shift, expected cash = float + net cash (as app/services/shifts.py counts it at the close).
* The business day is local midnight to local midnight in the office's time zone (setting
  ``time_zone``), so 23 or 25 hours on a daylight-saving change.  A sale belongs to the day of
  its ``created_at``, a reversal to the day it completed, a fee payment to the day it was paid.
* The daily report covers every counter writing to this database: the database is the office's
  (one SQLite per counter, or one PostgreSQL per office), and a counter's cash belongs to its
  office whoever the customer is.  The statistics are about the office's customers
  (``Customer.office_code``) and the sales to them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, case, func, literal_column, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.clock import Clock
from app.domain.customers import CustomerStatus, MeterKind
from app.domain.ledger import SaleState
from app.domain.permissions import Action
from app.errors import NotFound, ValidationError
from app.i18n import N_
from app.localtime import local, zone
from app.persistence.db import Database
from app.persistence.models import (
    Customer,
    FeePayment,
    Office,
    Operator,
    Reversal,
    Sale,
    Shift,
    TariffPlan,
    TariffVersion,
)
from app.services.auth import Principal
from app.services.shifts import expected_cash
from app.settings import TIME_ZONE

DEFAULT_TZ: str = TIME_ZONE.default
STATS_DAYS = 30
TAKEN = (SaleState.COMPLETED.value, SaleState.REVERSED.value)
STATE_ORDER = tuple(s.value for s in SaleState)  # pending, completed, failed, in_doubt, reversed
KIND_ORDER = tuple(k.value for k in MeterKind)
STATUS_ORDER = tuple(s.value for s in CustomerStatus)
# balance buckets from the card write-back, worst last but one; each customer is in exactly one
BUCKETS = ("normal", "alarm1", "alarm2", "tripped", "no_write_back")
BUCKET_LABELS = {
    "normal": N_("Normal"),
    "alarm1": N_("At or below alarm 1"),
    "alarm2": N_("At or below alarm 2"),
    "tripped": N_("Tripped"),
    "no_write_back": N_("No write-back yet"),
}
# the labels of sale and reversal states (the domain's; a reversal's states are sale states' too)
STATE_LABELS = {s.value: s.label for s in SaleState}
KIND_LABELS = {"card": N_("card"), "remote": N_("remote")}
STATUS_LABELS = {"active": N_("active"), "paused": N_("paused"), "closed": N_("closed")}


# --------------------------------------------------------------------------- JSON


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dt.date):  # datetime too
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


class _Json:
    def to_json(self) -> dict[str, Any]:
        data = _plain(self)
        assert isinstance(data, dict)
        return data


# --------------------------------------------------------------------------- shift report


@dataclasses.dataclass(frozen=True)
class ShiftSaleLine(_Json):
    at: dt.datetime  # local time
    sale_id: str
    short_id: str  # the first 8 characters, as on the receipt
    customer_no: str
    kind: str  # card | remote
    state: str
    purchase_count: int | None
    amount_fen: int  # paid by the customer
    arrears_fen: int
    fees_fen: int
    credit_fen: int
    cash_fen: int  # what it put in the drawer: the amount when it took money, else 0
    tendered_fen: int | None  # cash the customer handed over, when recorded


@dataclasses.dataclass(frozen=True)
class StateTotal(_Json):
    state: str
    count: int
    amount_fen: int


@dataclasses.dataclass(frozen=True)
class ReversalLine(_Json):
    at: dt.datetime  # local time it was made
    reversal_id: str
    sale_id: str
    short_id: str  # of the sale
    customer_no: str
    state: str  # pending | completed | failed
    amount_fen: int
    operator_id: str
    approver_id: str


@dataclasses.dataclass(frozen=True)
class FeePaymentLine(_Json):
    at: dt.datetime
    payment_id: str
    customer_no: str
    kind: str  # replacement
    amount_fen: int
    operator_id: str


@dataclasses.dataclass(frozen=True)
class ShiftReport(_Json):
    shift_id: str
    counter_id: str
    operator_id: str
    operator_name: str
    office_code: str | None
    office_name: str | None
    time_zone: str
    opened_at: dt.datetime  # local
    closed_at: dt.datetime | None
    closed_by: str | None
    generated_at: dt.datetime
    float_fen: int
    sales: tuple[ShiftSaleLine, ...]
    by_state: tuple[StateTotal, ...]  # every state, in STATE_ORDER, zeros included
    sales_count: int  # sales that took money (completed or reversed)
    sales_fen: int
    credit_fen: int  # completed sales
    arrears_fen: int
    fees_fen: int
    reversals: tuple[ReversalLine, ...]  # every reversal made in the shift
    reversals_count: int  # completed ones: cash handed back
    reversals_fen: int
    fee_payments: tuple[FeePaymentLine, ...]
    fee_payments_count: int
    fee_payments_fen: int
    net_cash_fen: int  # sales_fen + fee_payments_fen - reversals_fen
    expected_cash_fen: int  # float + net cash; as stored at the close, provisional while open
    counted_cash_fen: int | None  # None while open
    variance_fen: int | None  # counted - expected; None while open

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "is_open": self.is_open}


# --------------------------------------------------------------------------- daily report


@dataclasses.dataclass(frozen=True)
class DailyRow(_Json):
    key: str  # operator id, counter id; "" for the totals
    name: str  # operator's name; "" for a counter
    sales_count: int
    sales_fen: int
    credit_fen: int
    arrears_fen: int
    fees_fen: int
    reversals_count: int
    reversals_fen: int
    fee_payments_count: int
    fee_payments_fen: int
    net_cash_fen: int


@dataclasses.dataclass(frozen=True)
class DailyShift(_Json):
    shift_id: str
    counter_id: str
    operator_id: str
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    float_fen: int
    expected_cash_fen: int | None  # None while open
    counted_cash_fen: int | None
    variance_fen: int | None


@dataclasses.dataclass(frozen=True)
class DailyReport(_Json):
    office_code: str
    office_name: str
    day: dt.date
    time_zone: str
    start: dt.datetime  # local midnight
    end: dt.datetime  # the next local midnight (exclusive)
    generated_at: dt.datetime
    by_operator: tuple[DailyRow, ...]
    by_counter: tuple[DailyRow, ...]
    totals: DailyRow
    shifts: tuple[DailyShift, ...]  # shifts open at any moment of the day
    unresolved_count: int  # pending / in-doubt sales of the day (not counted above)
    failed_count: int  # failed sales of the day (took no money)


# --------------------------------------------------------------------------- statistics


@dataclasses.dataclass(frozen=True)
class CustomerCount(_Json):
    meter_kind: str
    status: str
    count: int


@dataclasses.dataclass(frozen=True)
class DayAmount(_Json):
    day: dt.date
    sales_count: int
    amount_fen: int
    credit_fen: int


@dataclasses.dataclass(frozen=True)
class PlanAmount(_Json):
    plan_code: str
    plan_name: str
    customers: int  # the office's customers on the plan
    sales_count: int  # completed sales in the period
    amount_fen: int
    credit_fen: int
    energy_wh: int


@dataclasses.dataclass(frozen=True)
class BalanceBucket(_Json):
    bucket: str  # one of BUCKETS
    count: int
    remaining_fen: int  # sum of the meters' remaining credit (0 for no_write_back)


@dataclasses.dataclass(frozen=True)
class StatsReport(_Json):
    office_code: str
    office_name: str
    time_zone: str
    generated_at: dt.datetime
    first_day: dt.date
    last_day: dt.date  # today (local)
    customers: tuple[CustomerCount, ...]  # card/remote x active/paused/closed, zeros included
    customers_total: int
    daily: tuple[DayAmount, ...]  # one per day, first_day..last_day
    plans: tuple[PlanAmount, ...]
    sold_count: int  # completed sales to the office's customers in the period
    sold_fen: int
    balances: tuple[BalanceBucket, ...]  # in BUCKETS order; card meters not closed
    balance_customers: int
    remaining_fen: int  # sum of remaining over those with a write-back


# --------------------------------------------------------------------------- helpers


def day_bounds(day: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """Local midnight of ``day`` and of the next day in ``tz`` (aware)."""
    z = zone(tz)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=z)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=z)
    return start, end


@contextlib.contextmanager
def _snapshot(db: Database) -> Iterator[Session]:
    with db.read() as session:
        if db.dialect == "postgresql":  # every query of the report sees the same state
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


def _int(value: Any) -> int:
    return int(value or 0)  # PostgreSQL sums BIGINT into NUMERIC


def _office_name(session: Session, office_code: str | None) -> str | None:
    if office_code is None:
        return None
    office = session.get(Office, office_code)
    return office.name if office is not None else office_code


def current_shift_id(db: Database, counter_id: str) -> str | None:
    """The open shift of ``counter_id``, else its last closed one, else None."""
    with db.read() as session:
        open_id = session.scalar(
            select(Shift.id).where(Shift.counter_id == counter_id, Shift.closed_at.is_(None))
        )
        if open_id is not None:
            return open_id
        return session.scalar(
            select(Shift.id)
            .where(Shift.counter_id == counter_id)
            .order_by(Shift.closed_at.desc(), Shift.opened_at.desc())
            .limit(1)
        )


# --------------------------------------------------------------------------- shift report


def _shift_sales(session: Session, shift_id: str, z: ZoneInfo) -> tuple[ShiftSaleLine, ...]:
    """The shift's sales, in order."""
    rows = session.execute(
        select(
            Sale.created_at,
            Sale.id,
            Customer.customer_no,
            Sale.kind,
            Sale.state,
            Sale.purchase_count,
            Sale.amount,
            Sale.arrears,
            Sale.fees,
            Sale.credit,
            Sale.cash_received,
        )
        .join(Customer, Customer.id == Sale.customer_id)
        .where(Sale.shift_id == shift_id)
        .order_by(Sale.created_at, Sale.id)
    ).all()
    return tuple(
        ShiftSaleLine(
            at=local(at, z),
            sale_id=sid,
            short_id=sid[:8].upper(),
            customer_no=cno,
            kind=kind,
            state=state,
            purchase_count=count,
            amount_fen=amount,
            arrears_fen=arrears,
            fees_fen=fees,
            credit_fen=credit,
            cash_fen=amount if state in TAKEN else 0,
            tendered_fen=tendered,
        )
        for at, sid, cno, kind, state, count, amount, arrears, fees, credit, tendered in rows
    )


def _shift_reversals(session: Session, shift_id: str, z: ZoneInfo) -> tuple[ReversalLine, ...]:
    """The reversals taken on the shift, in order."""
    return tuple(
        ReversalLine(
            at=local(at, z),
            reversal_id=rid,
            sale_id=sale_id,
            short_id=sale_id[:8].upper(),
            customer_no=cno,
            state=state,
            amount_fen=amount,
            operator_id=op,
            approver_id=approver,
        )
        for at, rid, sale_id, cno, state, amount, op, approver in session.execute(
            select(
                Reversal.created_at,
                Reversal.id,
                Reversal.sale_id,
                Customer.customer_no,
                Reversal.state,
                Reversal.amount,
                Reversal.operator_id,
                Reversal.approver_id,
            )
            .join(Sale, Sale.id == Reversal.sale_id)
            .join(Customer, Customer.id == Sale.customer_id)
            .where(Reversal.shift_id == shift_id)
            .order_by(Reversal.created_at, Reversal.id)
        )
    )


def _shift_fee_payments(session: Session, shift_id: str, z: ZoneInfo) -> tuple[FeePaymentLine, ...]:
    """The fees paid on the shift, in order."""
    return tuple(
        FeePaymentLine(local(at, z), pid, cno, kind, amount, op)
        for at, pid, cno, kind, amount, op in session.execute(
            select(
                FeePayment.created_at,
                FeePayment.id,
                Customer.customer_no,
                FeePayment.kind,
                FeePayment.amount,
                FeePayment.operator_id,
            )
            .join(Customer, Customer.id == FeePayment.customer_id)
            .where(FeePayment.shift_id == shift_id)
            .order_by(FeePayment.created_at, FeePayment.id)
        )
    )


def shift_report(
    db: Database,
    shift_id: str,
    *,
    actor: Principal,
    clock: Clock,
    tz: str = DEFAULT_TZ,
    office_code: str | None = None,
) -> ShiftReport:
    """The Z-report of one shift (open or closed)."""
    actor.authorize(Action.VIEW_REPORTS, clock)
    z = zone(tz)
    with _snapshot(db) as session:
        shift = session.get(Shift, shift_id)
        if shift is None:
            raise NotFound(what=N_("Shift"), key=shift_id)
        operator = session.get(Operator, shift.operator_id)
        sales = _shift_sales(session, shift.id, z)
        reversals = _shift_reversals(session, shift.id, z)
        payments = _shift_fee_payments(session, shift.id, z)
        expected = (
            shift.expected_cash
            if shift.closed_at is not None and shift.expected_cash is not None
            else expected_cash(session, shift)
        )
        office_name = _office_name(session, office_code)
    by_state = {s: [0, 0] for s in STATE_ORDER}
    for line in sales:
        by_state[line.state][0] += 1
        by_state[line.state][1] += line.amount_fen
    standing = [s for s in sales if s.state == SaleState.COMPLETED.value]
    taken = [s for s in sales if s.state in TAKEN]
    done_reversals = [r for r in reversals if r.state == "completed"]
    sales_fen = sum(s.amount_fen for s in taken)
    reversals_fen = sum(r.amount_fen for r in done_reversals)
    payments_fen = sum(p.amount_fen for p in payments)
    closed = shift.closed_at is not None
    return ShiftReport(
        shift_id=shift.id,
        counter_id=shift.counter_id,
        operator_id=shift.operator_id,
        operator_name=operator.name if operator is not None else shift.operator_id,
        office_code=office_code,
        office_name=office_name,
        time_zone=tz,
        opened_at=local(shift.opened_at, z),
        closed_at=local(shift.closed_at, z) if shift.closed_at is not None else None,
        closed_by=shift.closed_by,
        generated_at=local(clock.now(), z),
        float_fen=shift.float_amount,
        sales=sales,
        by_state=tuple(StateTotal(s, c, a) for s, (c, a) in by_state.items()),
        sales_count=len(taken),
        sales_fen=sales_fen,
        credit_fen=sum(s.credit_fen for s in standing),
        arrears_fen=sum(s.arrears_fen for s in standing),
        fees_fen=sum(s.fees_fen for s in standing),
        reversals=reversals,
        reversals_count=len(done_reversals),
        reversals_fen=reversals_fen,
        fee_payments=payments,
        fee_payments_count=len(payments),
        fee_payments_fen=payments_fen,
        net_cash_fen=sales_fen + payments_fen - reversals_fen,
        expected_cash_fen=expected,
        counted_cash_fen=shift.counted_cash if closed else None,
        variance_fen=shift.variance if closed else None,
    )


# --------------------------------------------------------------------------- daily report


def _daily_rows(
    session: Session, key: str, start: dt.datetime, end: dt.datetime
) -> dict[str, list[int]]:
    """Per ``key`` (``operator_id`` or ``counter_id``): the DailyRow figures in field order."""
    completed = Sale.state == SaleState.COMPLETED.value

    def standing(column: InstrumentedAttribute[int]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((completed, column), else_=0)), 0)

    sale_key = getattr(Sale, key)
    rows: dict[str, list[int]] = {}
    for k, n, amount, credit, arrears, fees in session.execute(
        select(
            sale_key,
            func.count(),
            func.coalesce(func.sum(Sale.amount), 0),
            standing(Sale.credit),
            standing(Sale.arrears),
            standing(Sale.fees),
        )
        .where(Sale.created_at >= start, Sale.created_at < end, Sale.state.in_(TAKEN))
        .group_by(sale_key)
    ):
        rows.setdefault(k, [0] * 10)[0:5] = [
            _int(n),
            _int(amount),
            _int(credit),
            _int(arrears),
            _int(fees),
        ]
    rev_key = getattr(Reversal, key)
    for k, n, amount in session.execute(
        select(rev_key, func.count(), func.coalesce(func.sum(Reversal.amount), 0))
        .where(
            Reversal.state == "completed",
            Reversal.completed_at >= start,
            Reversal.completed_at < end,
        )
        .group_by(rev_key)
    ):
        rows.setdefault(k, [0] * 10)[5:7] = [_int(n), _int(amount)]
    fee_key = getattr(FeePayment, key)
    for k, n, amount in session.execute(
        select(fee_key, func.count(), func.coalesce(func.sum(FeePayment.amount), 0))
        .where(FeePayment.created_at >= start, FeePayment.created_at < end)
        .group_by(fee_key)
    ):
        rows.setdefault(k, [0] * 10)[7:9] = [_int(n), _int(amount)]
    for figures in rows.values():
        figures[9] = figures[1] + figures[8] - figures[6]
    return rows


def _row(key: str, name: str, figures: Sequence[int]) -> DailyRow:
    return DailyRow(key, name, *figures)


def daily_report(
    db: Database,
    office_code: str,
    day: dt.date,
    tz: str = DEFAULT_TZ,
    *,
    actor: Principal,
    clock: Clock,
) -> DailyReport:
    """The office's day: by operator, by counter, totals, and the day's shifts."""
    actor.authorize(Action.VIEW_REPORTS, clock)
    z = zone(tz)
    start, end = day_bounds(day, tz)
    with _snapshot(db) as session:
        by_op = _daily_rows(session, "operator_id", start, end)
        by_counter = _daily_rows(session, "counter_id", start, end)
        names = dict(
            session.execute(select(Operator.id, Operator.name).where(Operator.id.in_(by_op))).all()
        )
        states = dict(
            session.execute(
                select(Sale.state, func.count())
                .where(
                    Sale.created_at >= start,
                    Sale.created_at < end,
                    Sale.state.notin_(TAKEN),
                )
                .group_by(Sale.state)
            ).all()
        )
        shifts = tuple(
            DailyShift(
                s.id,
                s.counter_id,
                s.operator_id,
                local(s.opened_at, z),
                local(s.closed_at, z) if s.closed_at is not None else None,
                s.float_amount,
                s.expected_cash if s.closed_at is not None else None,
                s.counted_cash if s.closed_at is not None else None,
                s.variance if s.closed_at is not None else None,
            )
            for s in session.scalars(
                select(Shift)
                .where(
                    Shift.opened_at < end,
                    or_(Shift.closed_at.is_(None), Shift.closed_at >= start),
                )
                .order_by(Shift.opened_at, Shift.id)
            )
        )
        office_name = _office_name(session, office_code) or office_code
    totals = [sum(f[i] for f in by_counter.values()) for i in range(10)]
    return DailyReport(
        office_code=office_code,
        office_name=office_name,
        day=day,
        time_zone=tz,
        start=start,
        end=end,
        generated_at=local(clock.now(), z),
        by_operator=tuple(_row(k, names.get(k, k), f) for k, f in sorted(by_op.items())),
        by_counter=tuple(_row(k, "", f) for k, f in sorted(by_counter.items())),
        totals=_row("", "", totals),
        shifts=shifts,
        unresolved_count=_int(states.get(SaleState.PENDING.value))
        + _int(states.get(SaleState.IN_DOUBT.value)),
        failed_count=_int(states.get(SaleState.FAILED.value)),
    )


# --------------------------------------------------------------------------- statistics


def _bucket_expr() -> ColumnElement[int]:
    """The balance bucket (an index into BUCKETS) of a customer's last write-back.  Literal
    numbers, not bound parameters, so the same expression can be grouped by on PostgreSQL."""
    remaining = Customer.meter_remaining
    return case(
        (remaining.is_(None), literal_column(str(BUCKETS.index("no_write_back")))),
        (remaining <= -Customer.overdraft_limit, literal_column(str(BUCKETS.index("tripped")))),
        (remaining <= Customer.alarm2, literal_column(str(BUCKETS.index("alarm2")))),
        (remaining <= Customer.alarm1, literal_column(str(BUCKETS.index("alarm1")))),
        else_=literal_column(str(BUCKETS.index("normal"))),
    )


def _customer_counts(
    session: Session, office_code: str
) -> tuple[dict[tuple[str, str], int], dict[int, int], dict[str, list[int]]]:
    """The office's customers by (meter kind, status), by tariff plan, and the card customers
    by balance bucket (count, remaining)."""
    kinds = {(k, s): 0 for k in KIND_ORDER for s in STATUS_ORDER}
    per_plan_customers: dict[int, int] = {}
    buckets = {b: [0, 0] for b in BUCKETS}
    bucket = _bucket_expr()
    for kind, status, plan_id, b, n, remaining in session.execute(
        select(
            Customer.meter_kind,
            Customer.status,
            Customer.tariff_plan_id,
            bucket,
            func.count(),
            func.coalesce(func.sum(Customer.meter_remaining), 0),
        )
        .where(Customer.office_code == office_code)
        .group_by(Customer.meter_kind, Customer.status, Customer.tariff_plan_id, bucket)
    ):
        n = _int(n)
        kinds[(kind, status)] = kinds.get((kind, status), 0) + n
        per_plan_customers[plan_id] = per_plan_customers.get(plan_id, 0) + n
        if kind == MeterKind.CARD.value and status != CustomerStatus.CLOSED.value:
            buckets[BUCKETS[int(b)]][0] += n
            buckets[BUCKETS[int(b)]][1] += _int(remaining)
    return kinds, per_plan_customers, buckets


def _sales_per_day(
    session: Session, office_code: str, bounds: list[dt.datetime]
) -> dict[int, tuple[int, int, int]]:
    """Completed sales of the office per day (count, amount, credit); ``bounds``: the local
    midnights, the end of the last day included."""
    days = len(bounds) - 1
    start, end = bounds[0], bounds[-1]
    # the day of each sale: a CASE over the local midnights (right on DST changes too),
    # grouped in an outer query so the bound midnights are not repeated in GROUP BY
    day_index = case(
        *[(Sale.created_at < bounds[i + 1], i) for i in range(days - 1)], else_=days - 1
    )
    sold = (
        select(
            day_index.label("d"),
            Sale.amount.label("amount"),
            Sale.credit.label("credit"),
        )
        .join(Customer, Customer.id == Sale.customer_id)
        .where(
            Customer.office_code == office_code,
            Sale.state == SaleState.COMPLETED.value,
            Sale.created_at >= start,
            Sale.created_at < end,
        )
        .subquery()
    )
    return {
        int(d): (_int(n), _int(a), _int(c))
        for d, n, a, c in session.execute(
            select(
                sold.c.d,
                func.count(),
                func.coalesce(func.sum(sold.c.amount), 0),
                func.coalesce(func.sum(sold.c.credit), 0),
            ).group_by(sold.c.d)
        )
    }


def _sales_per_plan(
    session: Session, office_code: str, start: dt.datetime, end: dt.datetime
) -> dict[int, tuple[int, int, int, int]]:
    """Completed sales of the office per tariff plan (count, amount, credit, energy)."""
    return {
        plan_id: (_int(n), _int(a), _int(c), _int(e))
        for plan_id, n, a, c, e in session.execute(
            select(
                TariffVersion.plan_id,
                func.count(),
                func.coalesce(func.sum(Sale.amount), 0),
                func.coalesce(func.sum(Sale.credit), 0),
                func.coalesce(func.sum(Sale.energy_wh), 0),
            )
            .join(TariffVersion, TariffVersion.id == Sale.tariff_version_id)
            .join(Customer, Customer.id == Sale.customer_id)
            .where(
                Customer.office_code == office_code,
                Sale.state == SaleState.COMPLETED.value,
                Sale.created_at >= start,
                Sale.created_at < end,
            )
            .group_by(TariffVersion.plan_id)
        )
    }


def stats_report(
    db: Database,
    office_code: str,
    clock: Clock,
    tz: str = DEFAULT_TZ,
    *,
    actor: Principal,
    days: int = STATS_DAYS,
) -> StatsReport:
    """Charge-control statistics of the office's customers from what this database knows.

    One pass over the office's customers (GROUP BY meter kind, status, tariff plan and balance
    bucket), one over the period's sales (GROUP BY day, and by tariff plan)."""
    actor.authorize(Action.VIEW_REPORTS, clock)
    if days < 1:
        raise ValidationError(N_("A report needs at least one day."))
    z = zone(tz)
    now = local(clock.now(), z)
    last_day = now.date()
    first_day = last_day - dt.timedelta(days=days - 1)
    bounds = [day_bounds(first_day + dt.timedelta(days=i), tz)[0] for i in range(days)]
    bounds.append(day_bounds(last_day, tz)[1])
    start, end = bounds[0], bounds[-1]
    with _snapshot(db) as session:
        kinds, per_plan_customers, buckets = _customer_counts(session, office_code)
        per_day = _sales_per_day(session, office_code, bounds)
        per_plan_sales = _sales_per_plan(session, office_code, start, end)
        plans = session.execute(
            select(TariffPlan.id, TariffPlan.code, TariffPlan.name).order_by(TariffPlan.code)
        ).all()
        office_name = _office_name(session, office_code) or office_code
    daily = tuple(
        DayAmount(first_day + dt.timedelta(days=i), *per_day.get(i, (0, 0, 0))) for i in range(days)
    )
    plan_rows = tuple(
        PlanAmount(code, name, per_plan_customers.get(pid, 0), *per_plan_sales.get(pid, (0,) * 4))
        for pid, code, name in plans
        if pid in per_plan_customers or pid in per_plan_sales
    )
    balances = tuple(BalanceBucket(b, n, r) for b, (n, r) in buckets.items())
    return StatsReport(
        office_code=office_code,
        office_name=office_name,
        time_zone=tz,
        generated_at=now,
        first_day=first_day,
        last_day=last_day,
        customers=tuple(CustomerCount(k, s, n) for (k, s), n in kinds.items()),
        customers_total=sum(kinds.values()),
        daily=daily,
        plans=plan_rows,
        sold_count=sum(d.sales_count for d in daily),
        sold_fen=sum(d.amount_fen for d in daily),
        balances=balances,
        balance_customers=sum(b.count for b in balances),
        remaining_fen=sum(b.remaining_fen for b in balances),
    )
