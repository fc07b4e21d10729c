"""Charge-control statistics of an office's customers."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import literal_column
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.customers import CustomerStatus
from app.domain.customers import MeterKind
from app.domain.ledger import SaleState
from app.domain.permissions import Action
from app.errors import ValidationError
from app.i18n import N_
from app.localtime import local
from app.localtime import zone
from app.persistence.db import Database
from app.persistence.models import Customer
from app.persistence.models import Sale
from app.persistence.models import TariffPlan
from app.persistence.models import TariffVersion
from app.services.auth import Principal
from app.services.reports.common import _int
from app.services.reports.common import _office_name
from app.services.reports.common import day_bounds
from app.services.reports.figures import BUCKETS
from app.services.reports.figures import DEFAULT_TZ
from app.services.reports.figures import KIND_ORDER
from app.services.reports.figures import STATS_DAYS
from app.services.reports.figures import STATUS_ORDER
from app.services.reports.figures import BalanceBucket
from app.services.reports.figures import CustomerCount
from app.services.reports.figures import DayAmount
from app.services.reports.figures import PlanAmount
from app.services.reports.figures import StatsReport


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


def _completed_sales(
    office_code: str, start: dt.datetime, end: dt.datetime
) -> tuple[ColumnElement[bool], ...]:
    """The office's completed sales made in [start, end) (to join Sale with Customer)."""
    return (
        Customer.office_code == office_code,
        Sale.state == SaleState.COMPLETED.value,
        Sale.created_at >= start,
        Sale.created_at < end,
    )


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
        .where(*_completed_sales(office_code, start, end))
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
            .where(*_completed_sales(office_code, start, end))
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
    with db.snapshot() as session:
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
