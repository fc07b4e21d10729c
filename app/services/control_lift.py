"""Lifting a remote customer's fee control at the counter, and putting it back.

A lift needs the approval the ``lift_control`` rule asks for (by default one supervisor other
than the operator, migration 0012); a resume needs none.  The request reaches the charge-control
station through ``send`` (the composition root gives the central client's call; app/ speaks no
HTTP), *inside* the unit of work that uses the approval up: when the station refuses or cannot
be reached, the transaction rolls back and the approval can be used again for a retry.  The
station keeps who asked and who approved; the counter's audit log keeps it too
(``control.lift`` / ``control.resume``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from app.clock import Clock
from app.domain import ids
from app.domain.customers import check_text
from app.domain.permissions import Action
from app.i18n import N_
from app.persistence.db import Database
from app.services import approvals
from app.services.audit import Actor
from app.services.auth import Principal

T = TypeVar("T")

# send(approver_id or None, approval request id or None) -> the station's answer
Send = Callable[[str | None, str | None], T]


def lift(
    db: Database,
    actor: Principal,
    clock: Clock,
    customer_no: str,
    reason: str,
    approval_request: str | None,
    send: Send[T],
) -> T:
    """Ask the station to lift ``customer_no``'s fee control, with the approval given
    (:class:`app.services.approvals.ApprovalRequired` without one)."""
    actor.authorize(Action.LIFT_CONTROL, clock)
    ids.CUSTOMER_NO.check(customer_no)
    reason = check_text(reason, N_("Reason"), max_len=200)
    with db.write() as session:
        approval = approvals.require_by(
            session, actor, approval_request, action=Action.LIFT_CONTROL, target=customer_no,
            clock=clock,
        )  # fmt: skip
        approver = approval.approver if approval else None
        answer = send(approver, approval.id if approval else None)
        Actor.of(actor, clock).record(
            session, "control.lift", customer_no, detail={"approver": approver, "reason": reason}
        )
    return answer


def resume(db: Database, actor: Principal, clock: Clock, customer_no: str, send: Send[T]) -> T:
    """Ask the station to put ``customer_no`` under fee control again."""
    actor.authorize(Action.LIFT_CONTROL, clock)
    ids.CUSTOMER_NO.check(customer_no)
    with db.write() as session:
        answer = send(None, None)
        Actor.of(actor, clock).record(session, "control.resume", customer_no)
    return answer


__all__ = ["lift", "resume"]
