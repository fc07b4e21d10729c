"""The customer's lifecycle at the counter: meter change, close, pause and resume.

Every step is one :class:`~app.persistence.models.AccountEvent` row written by
:func:`record_event` inside the unit of work that makes the change: the row, its audit entry and
its outbox record (kind ``account_event``, sent as ``account-events``) commit together, so the
central system hears of each step exactly once, and the other counters see the customer's new
meter number or status in their next pull.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.audit import AuditAction
from app.persistence.models import AccountEvent
from app.persistence.models import Customer
from app.services import audit
from app.services import ledger
from app.services.auth import Principal

OUTBOX_KIND = "account_event"
KINDS = ("meter_change", "close", "pause", "resume")
AUDIT_OF = {
    "meter_change": AuditAction.METER_CHANGE,
    "close": AuditAction.ACCOUNT_CLOSE,
    "pause": AuditAction.ACCOUNT_PAUSE,
    "resume": AuditAction.ACCOUNT_RESUME,
}


def record_event(
    session: Session,
    customer: Customer,
    kind: str,
    actor: Principal,
    clock: Clock,
    *,
    detail: Mapping[str, Any],
    reason: str = "",
    refund: int = 0,
    approver_id: str | None = None,
    shift_id: str | None = None,
    new_meter_no: str | None = None,
    training: bool = False,
) -> AccountEvent:
    """Write the lifecycle step ``kind`` of ``customer`` (after the caller changed the
    customer), audit it and queue it for the central system, in the caller's unit of work.
    ``detail`` holds the kind's facts (plain JSON: ints, short strings, booleans, None)."""
    if kind not in KINDS:
        raise ValueError(f"unknown account event {kind!r}")
    now = clock.now()
    event = AccountEvent(
        id=str(uuid.uuid4()),
        customer_id=customer.id,
        kind=kind,
        reason=reason[:200],
        refund=refund,
        detail=dict(detail),
        operator_id=actor.operator_id,
        approver_id=approver_id,
        counter_id=actor.counter_id,
        shift_id=shift_id,
        created_at=now,
    )
    session.add(event)
    session.flush()
    audit.Actor.of(actor, clock).record(
        session,
        AUDIT_OF[kind],
        customer.customer_no,
        detail={"event": event.id, "reason": reason, "refund": refund, **detail},
    )
    payload = {"customer_no": customer.customer_no, "new_meter_no": new_meter_no}
    ledger.enqueue(
        session,
        OUTBOX_KIND,
        event.id,
        payload,
        refund,
        clock,
        training=training,
        counter_id=actor.counter_id,
    )
    return event
