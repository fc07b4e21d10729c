"""The Z-report of one shift."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.ledger import SaleState
from app.domain.permissions import Action
from app.errors import NotFound
from app.i18n import N_
from app.localtime import local
from app.localtime import zone
from app.persistence.db import Database
from app.persistence.models import AccountEvent
from app.persistence.models import Customer
from app.persistence.models import FeePayment
from app.persistence.models import Operator
from app.persistence.models import Reversal
from app.persistence.models import Sale
from app.persistence.models import Shift
from app.services.auth import Principal
from app.services.reports.common import _office_name
from app.services.reports.figures import DEFAULT_TZ
from app.services.reports.figures import STATE_ORDER
from app.services.reports.figures import TAKEN
from app.services.reports.figures import FeePaymentLine
from app.services.reports.figures import RefundLine
from app.services.reports.figures import ReversalLine
from app.services.reports.figures import ShiftReport
from app.services.reports.figures import ShiftSaleLine
from app.services.reports.figures import StateTotal
from app.services.shifts import expected_cash


def _on_shift(
    session: Session,
    fact: type[Sale] | type[FeePayment] | type[AccountEvent],
    shift_id: str,
    *columns: Any,
    where: tuple[ColumnElement[bool], ...] = (),
) -> Sequence[Sequence[Any]]:
    """The rows of ``fact`` taken on the shift, in order: when, id, the customer's number, then
    ``columns``."""
    return session.execute(
        select(fact.created_at, fact.id, Customer.customer_no, *columns)
        .join(Customer, Customer.id == fact.customer_id)
        .where(fact.shift_id == shift_id, *where)
        .order_by(fact.created_at, fact.id)
    ).all()


def _shift_sales(session: Session, shift_id: str, z: ZoneInfo) -> tuple[ShiftSaleLine, ...]:
    """The shift's sales, in order."""
    rows = _on_shift(
        session,
        Sale,
        shift_id,
        Sale.kind,
        Sale.state,
        Sale.purchase_count,
        Sale.amount,
        Sale.arrears,
        Sale.fees,
        Sale.credit,
        Sale.cash_received,
    )
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
        for at, pid, cno, kind, amount, op in _on_shift(
            session,
            FeePayment,
            shift_id,
            FeePayment.kind,
            FeePayment.amount,
            FeePayment.operator_id,
        )
    )


def _shift_refunds(session: Session, shift_id: str, z: ZoneInfo) -> tuple[RefundLine, ...]:
    """The cash handed back by account closes on the shift, in order."""
    return tuple(
        RefundLine(local(at, z), eid, cno, amount, op, approver or "")
        for at, eid, cno, amount, op, approver in _on_shift(
            session,
            AccountEvent,
            shift_id,
            AccountEvent.refund,
            AccountEvent.operator_id,
            AccountEvent.approver_id,
            where=(AccountEvent.refund > 0,),
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
    with db.snapshot() as session:
        shift = session.get(Shift, shift_id)
        if shift is None:
            raise NotFound(what=N_("Shift"), key=shift_id)
        operator = session.get(Operator, shift.operator_id)
        sales = _shift_sales(session, shift.id, z)
        reversals = _shift_reversals(session, shift.id, z)
        payments = _shift_fee_payments(session, shift.id, z)
        refunds = _shift_refunds(session, shift.id, z)
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
    refunds_fen = sum(r.amount_fen for r in refunds)
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
        net_cash_fen=sales_fen + payments_fen - reversals_fen - refunds_fen,
        expected_cash_fen=expected,
        counted_cash_fen=shift.counted_cash if closed else None,
        variance_fen=shift.variance if closed else None,
        refunds=refunds,
        refunds_count=len(refunds),
        refunds_fen=refunds_fen,
    )
