"""What a presented card decides: an unresolved sale completed or failed, a pending reversal
finished or cancelled."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.card import CardContents
from app.domain.ledger import UNRESOLVED
from app.domain.ledger import ReversalState
from app.domain.ledger import SaleState
from app.persistence.models import ArrearsItem
from app.persistence.models import Customer
from app.persistence.models import Reversal
from app.persistence.models import Sale
from app.services import audit
from app.services import ledger
from app.services.auth import Principal
from app.services.selling.records import EMPTY_PURCHASE


def resolve_with_card(
    session: Session,
    customer: Customer,
    contents: CardContents,
    clock: Clock,
    actor: Principal | None,
) -> list[str]:
    """Complete or fail this customer's unresolved sale, and finish or cancel a pending
    reversal, by what the card holds. Returns the sale ids resolved."""
    resolved: list[str] = []
    card = contents.purchase or EMPTY_PURCHASE
    for sale in session.scalars(
        select(Sale).where(
            Sale.customer_id == customer.id, Sale.state.in_([s.value for s in UNRESOLVED])
        )
    ).all():
        if (
            card.purchase_count == sale.purchase_count
            and card.sale_tag == uuid.UUID(sale.id).bytes[:8]
        ):
            ledger.settle_in_session(session, sale, customer, clock, actor, note="card holds it")
            resolved.append(sale.id)
            continue
        never_got_it = card.purchase_count == (sale.purchase_count or 0) - 1
        if never_got_it:
            state, note = SaleState.FAILED, "the card never got it; return the cash"
        else:
            state, note = SaleState.IN_DOUBT, f"card shows purchase {card.purchase_count}"
        ledger.move_in_session(session, sale, customer, state, clock, actor, note=note)
        if never_got_it:
            resolved.append(sale.id)
    for rev in session.scalars(
        select(Reversal).where(
            Reversal.state == ReversalState.PENDING.value,
            Reversal.sale_id.in_(select(Sale.id).where(Sale.customer_id == customer.id)),
        )
    ).all():
        reversed_sale = session.get(Sale, rev.sale_id)
        assert reversed_sale is not None
        if card.purchase_count == (reversed_sale.purchase_count or 0) - 1:
            finish_reversal(session, rev, reversed_sale, customer, clock)
        elif card.purchase_count == reversed_sale.purchase_count:
            rev.state = ReversalState.FAILED.value
            audit.Actor.of(rev, clock).record(
                session,
                AuditAction.REVERSAL_FAILED,
                reversed_sale.id,
                result="failed",
                detail={"reversal": rev.id},
            )
    return resolved


def finish_reversal(
    session: Session, rev: Reversal, sale: Sale, customer: Customer, clock: Clock
) -> None:
    sale.state = SaleState.REVERSED.value
    sale.updated_at = clock.now()
    customer.purchase_count = (sale.purchase_count or 1) - 1
    # the whole amount goes back to the customer: what it paid off is owed again
    for item in session.scalars(
        select(ArrearsItem).where(ArrearsItem.settled_by_sale_id == sale.id)
    ):
        item.settled_by_sale_id = None
    rev.state = ReversalState.COMPLETED.value
    rev.completed_at = clock.now()
    audit.Actor.of(rev, clock).record_sale(
        session, sale, AuditAction.REVERSAL_COMPLETE, {"reversal": rev.id, "amount": rev.amount}
    )
    ledger.enqueue(
        session,
        "reversal",
        rev.id,
        {"sale_id": sale.id},
        -rev.amount,
        clock,
        training=sale.training,
    )
