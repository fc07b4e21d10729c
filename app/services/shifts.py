"""Shifts: a counter's cash session. Sales belong to the open shift of their counter.

Closing counts the cash: expected = float + cash kept from completed sales of the shift (a
reversed sale's money was handed back, a failed sale's never kept); variance = counted - expected.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import and_
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.ledger import UNRESOLVED
from app.domain.ledger import SaleState
from app.domain.permissions import Action
from app.errors import ShiftError
from app.errors import ValidationError
from app.i18n import N_
from app.money import check_fen
from app.money import format_yuan
from app.persistence.db import Database
from app.persistence.models import AccountEvent
from app.persistence.models import FeePayment
from app.persistence.models import Reversal
from app.persistence.models import Sale
from app.persistence.models import Shift
from app.services import audit
from app.services.auth import Principal
from app.services.operators import require_operator


@dataclass(frozen=True)
class ShiftView:
    shift_id: str
    operator_id: str
    counter_id: str
    opened_at: str
    float_fen: int
    closed_at: str | None
    expected_fen: int | None
    counted_fen: int | None
    variance_fen: int | None
    variance_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _view(s: Shift) -> ShiftView:
    return ShiftView(
        s.id,
        s.operator_id,
        s.counter_id,
        s.opened_at.isoformat(),
        s.float_amount,
        s.closed_at.isoformat() if s.closed_at else None,
        s.expected_cash,
        s.counted_cash,
        s.variance,
        s.variance_reason or "",
    )


def no_shift(counter_id: str) -> ShiftError:
    """The error of work that needs an open shift on a counter that has none."""
    return ShiftError(
        N_("No shift is open on counter {counter}. Open a shift first."), counter=counter_id
    )


def _open_on(counter_id: str) -> ColumnElement[bool]:
    """The condition of the counter's open shift (a counter has one at the most)."""
    return and_(Shift.counter_id == counter_id, Shift.closed_at.is_(None))


def open_shift_id(session: Session, counter_id: str) -> str | None:
    """The id of the counter's open shift, or None when no shift is open."""
    return session.scalar(select(Shift.id).where(_open_on(counter_id)))


def open_shift_for(session: Session, counter_id: str, *, lock: bool = False) -> Shift:
    """The counter's open shift (``lock``: locked for this unit of work), or :func:`no_shift`."""
    query = select(Shift).where(_open_on(counter_id))
    shift = session.scalar(query.with_for_update() if lock else query)
    if shift is None:
        raise no_shift(counter_id)
    return shift


def open_shift(db: Database, *, actor: Principal, float_fen: int, clock: Clock) -> ShiftView:
    check_fen(float_fen, allow_zero=True)
    actor.authorize(Action.SHIFT, clock)
    operator_id, counter_id = actor.operator_id, actor.counter_id
    try:
        with db.write() as session:
            require_operator(session, operator_id)
            existing = session.scalar(select(Shift).where(_open_on(counter_id)))
            if existing is not None:
                raise ShiftError(
                    N_(
                        "Counter {counter} already has an open shift of {operator}; close it first."
                    ),
                    counter=counter_id,
                    operator=existing.operator_id,
                )
            shift = Shift(
                id=str(uuid.uuid4()),
                operator_id=operator_id,
                counter_id=counter_id,
                opened_at=clock.now(),
                float_amount=float_fen,
            )
            session.add(shift)
            session.flush()
            audit.Actor(operator_id, counter_id, clock).record(
                session, AuditAction.SHIFT_OPEN, shift.id, detail={"float": float_fen}
            )
            return _view(shift)
    except IntegrityError as exc:
        raise ShiftError(
            N_("Counter {counter} already has an open shift; close it first."), counter=counter_id
        ) from exc


def expected_cash(session: Session, shift: Shift) -> int:
    """Float + money taken by sales of this shift (completed, or reversed later: the cash was
    taken then) + fees taken − cash handed back by reversals made in this shift − cash refunded
    to customers whose accounts were closed in this shift."""
    taken = session.scalar(
        select(func.coalesce(func.sum(Sale.amount), 0)).where(
            Sale.shift_id == shift.id,
            Sale.state.in_([SaleState.COMPLETED.value, SaleState.REVERSED.value]),
        )
    )
    fees = session.scalar(
        select(func.coalesce(func.sum(FeePayment.amount), 0)).where(FeePayment.shift_id == shift.id)
    )
    handed_back = session.scalar(
        select(func.coalesce(func.sum(Reversal.amount), 0)).where(
            Reversal.shift_id == shift.id, Reversal.state == "completed"
        )
    )
    refunded = session.scalar(
        select(func.coalesce(func.sum(AccountEvent.refund), 0)).where(
            AccountEvent.shift_id == shift.id
        )
    )
    return (
        shift.float_amount
        + int(taken or 0)
        + int(fees or 0)
        - int(handed_back or 0)
        - int(refunded or 0)
    )


MAX_VARIANCE_REASON = 500


def close_shift(
    db: Database, *, actor: Principal, counted_fen: int, clock: Clock, reason: str = ""
) -> ShiftView:
    """Close the counter's open shift with the cash counted; a variance (counted other than
    expected) needs a ``reason``, kept with the shift and in the audit log."""
    check_fen(counted_fen, allow_zero=True)
    reason = reason.strip()[:MAX_VARIANCE_REASON] if isinstance(reason, str) else ""
    actor.authorize(Action.SHIFT, clock)
    operator_id, counter_id = actor.operator_id, actor.counter_id
    with db.write() as session:
        require_operator(session, operator_id)
        shift = open_shift_for(session, counter_id)
        unresolved = session.scalar(
            select(func.count())
            .select_from(Sale)
            .where(Sale.shift_id == shift.id, Sale.state.in_([s.value for s in UNRESOLVED]))
        )
        if unresolved:
            raise ShiftError(
                N_("{count} sales of this shift are unfinished; recover them before closing."),
                count=unresolved,
            )
        pending_reversals = session.scalar(
            select(func.count())
            .select_from(Reversal)
            .where(Reversal.shift_id == shift.id, Reversal.state == "pending")
        )
        if pending_reversals:
            raise ShiftError(
                N_(
                    "{count} reversals of this shift are unfinished; present their cards "
                    "before closing."
                ),
                count=pending_reversals,
            )
        expected = expected_cash(session, shift)
        if counted_fen != expected and not reason:
            raise ValidationError(
                N_(
                    "The counted cash differs from the expected cash by {variance} yuan: "
                    "say why before closing the shift."
                ),
                variance=format_yuan(counted_fen - expected),
            )
        shift.expected_cash = expected
        shift.counted_cash = counted_fen
        shift.variance = counted_fen - expected
        shift.variance_reason = reason if shift.variance else ""
        shift.closed_at = clock.now()
        shift.closed_by = operator_id
        audit.Actor(operator_id, counter_id, clock).record(
            session,
            AuditAction.SHIFT_CLOSE,
            shift.id,
            detail={
                "expected": shift.expected_cash,
                "counted": counted_fen,
                "variance": shift.variance,
                "reason": shift.variance_reason,
            },
        )
        return _view(shift)


def current_shift(db: Database, counter_id: str) -> ShiftView | None:
    with db.read() as session:
        shift = session.scalar(select(Shift).where(_open_on(counter_id)))
        return _view(shift) if shift else None
