"""The daily report of an office: per counter and shift."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import ColumnElement
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.ledger import SaleState
from app.domain.permissions import Action
from app.localtime import local
from app.localtime import zone
from app.persistence.db import Database
from app.persistence.models import AccountEvent
from app.persistence.models import FeePayment
from app.persistence.models import Operator
from app.persistence.models import Reversal
from app.persistence.models import Sale
from app.persistence.models import Shift
from app.services.auth import Principal
from app.services.reports.common import _int
from app.services.reports.common import _office_name
from app.services.reports.common import day_bounds
from app.services.reports.figures import DEFAULT_TZ
from app.services.reports.figures import TAKEN
from app.services.reports.figures import DailyReport
from app.services.reports.figures import DailyRow
from app.services.reports.figures import DailyShift

_FIGURES = 12  # the DailyRow figures after key and name


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
        rows.setdefault(k, [0] * _FIGURES)[0:5] = [
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
        rows.setdefault(k, [0] * _FIGURES)[5:7] = [_int(n), _int(amount)]
    fee_key = getattr(FeePayment, key)
    for k, n, amount in session.execute(
        select(fee_key, func.count(), func.coalesce(func.sum(FeePayment.amount), 0))
        .where(FeePayment.created_at >= start, FeePayment.created_at < end)
        .group_by(fee_key)
    ):
        rows.setdefault(k, [0] * _FIGURES)[7:9] = [_int(n), _int(amount)]
    event_key = getattr(AccountEvent, key)
    for k, n, amount in session.execute(
        select(event_key, func.count(), func.coalesce(func.sum(AccountEvent.refund), 0))
        .where(
            AccountEvent.created_at >= start,
            AccountEvent.created_at < end,
            AccountEvent.refund > 0,
        )
        .group_by(event_key)
    ):
        rows.setdefault(k, [0] * _FIGURES)[10:12] = [_int(n), _int(amount)]
    for figures in rows.values():
        figures[9] = figures[1] + figures[8] - figures[6] - figures[11]
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
    with db.snapshot() as session:
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
    totals = [sum(f[i] for f in by_counter.values()) for i in range(_FIGURES)]
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
