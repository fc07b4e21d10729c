"""Taking a completed card sale back while its card is present."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app import faults
from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.card import CardWrite
from app.domain.ledger import ReversalState
from app.domain.ledger import SaleKind
from app.domain.ledger import SaleState
from app.domain.permissions import Action
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import Reversal
from app.persistence.models import Sale
from app.ports import CardTerminal
from app.services import approvals
from app.services import audit
from app.services import ledger
from app.services import shifts
from app.services.auth import Principal
from app.services.customers import get_customer
from app.services.selling.assessment import assess
from app.services.selling.errors import ReversalRefused
from app.services.selling.records import EMPTY_PURCHASE
from app.services.selling.records import purchase_record
from app.services.selling.resolution import finish_reversal
from app.settings import REVERSAL_WINDOW
from app.settings import Settings


def reverse_sale(
    db: Database,
    terminal: CardTerminal,
    *,
    actor: Principal,
    sale_id: str,
    clock: Clock,
    settings: Settings,
    approval_request: str,
) -> ledger.SaleView:
    """Take a completed sale back while its card is present and the meter has not loaded it,
    within the same shift (or day, setting). The card's purchase file is restored to the
    purchase before; the ledger gets a reversal linked to the sale."""
    actor.authorize(Action.REVERSE, clock)
    contents = terminal.read()
    a = assess(db, contents, clock, settings=settings, actor=actor)
    with db.write() as session:
        sale = ledger.load_sale(session, sale_id, for_update=True)
        if sale.state != SaleState.COMPLETED.value or sale.kind != SaleKind.CARD.value:
            raise ReversalRefused(reason=N_("only a completed card sale can be reversed"))
        customer = get_customer(session, a.customer.customer_no, for_update=True)
        if sale.customer_id != customer.id or sale.purchase_count != customer.purchase_count:
            raise ReversalRefused(reason=N_("it is not this card's latest purchase"))
        if a.card_count != sale.purchase_count or (
            contents.purchase and contents.purchase.sale_tag != uuid.UUID(sale.id).bytes[:8]
        ):
            raise ReversalRefused(reason=N_("the card does not hold this purchase"))
        if contents.write_back is None and sale.card_serial != contents.serial_hex:
            # a replacement card without a write-back of its own cannot say what the meter
            # loaded from the lost card
            raise ReversalRefused(reason=N_("the meter may have loaded it from the lost card"))
        if a.meter_count is not None and a.meter_count >= (sale.purchase_count or 0):
            raise ReversalRefused(reason=N_("the meter has already loaded it"))
        shift = shifts.open_shift_for(session, actor.counter_id)
        window = settings.value(REVERSAL_WINDOW)
        if window == "shift" and sale.shift_id != shift.id:
            raise ReversalRefused(reason=N_("it was sold in another shift"))
        if window == "day" and sale.created_at.date() != clock.now().date():
            raise ReversalRefused(reason=N_("it was sold on another day"))
        approvals.consume_by(
            session, actor, approval_request, action=Action.REVERSE, target=sale_id, clock=clock
        )
        approver = _approver_of(session, approval_request)
        previous = ledger.completed_card_sale(session, customer.id, (sale.purchase_count or 0) - 1)
        restore = purchase_record(previous) if previous is not None else EMPTY_PURCHASE
        rev = Reversal(
            id=str(uuid.uuid4()),
            sale_id=sale.id,
            operator_id=actor.operator_id,
            approver_id=approver,
            counter_id=actor.counter_id,
            shift_id=shift.id,
            amount=sale.amount,
            state=ReversalState.PENDING.value,
            created_at=clock.now(),
        )
        session.add(rev)
        audit.Actor.of(actor, clock).record(
            session,
            AuditAction.REVERSAL_BEGIN,
            sale.id,
            detail={"reversal": rev.id, "approver": approver},
        )
        rev_id = rev.id
    faults.checkpoint("reversal_pending")
    terminal.write(CardWrite(purchase=restore), expect_serial=contents.serial)
    faults.checkpoint("reversal_written")
    with db.write() as session:
        rev_row = session.get(Reversal, rev_id, with_for_update=True)
        sale_row = session.get(Sale, sale_id, with_for_update=True)
        assert rev_row is not None and sale_row is not None
        customer = get_customer(session, a.customer.customer_no, for_update=True)
        finish_reversal(session, rev_row, sale_row, customer, clock)
    return ledger.get_sale(db, sale_id)


def _approver_of(session: Session, request_id: str) -> str:
    from app.persistence.models import ApprovalRequest

    req = session.get(ApprovalRequest, request_id)
    if req is None or not req.approvals:
        raise approvals.ApprovalRequired(action=Action.REVERSE.label)
    return str(req.approvals[-1]["operator"])
