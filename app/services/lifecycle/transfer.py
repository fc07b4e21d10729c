"""The transfer record of a meter change (换表): the credit carried from the old meter to the new
one, written on the customer's card as a purchase-like record with the account's last purchase
count, tagged with the ``meter_change`` event.

Until the next sale it is the account's last purchase on the card, in place of the last sale's
record: a card replaced (补卡) or exchanged (换卡) meanwhile must carry it, or the carried credit
never reaches the new meter (the replacement and exchange use :func:`due_transfer`).
"""

from __future__ import annotations

import uuid
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.card import PurchaseRecord
from app.domain.ledger import SaleState
from app.persistence.models import AccountEvent
from app.persistence.models import Customer
from app.persistence.models import Sale

KIND: Final = "meter_change"


def last_change(session: Session, customer: Customer) -> AccountEvent | None:
    """The customer's latest meter change, if any."""
    return session.scalar(
        select(AccountEvent)
        .where(AccountEvent.customer_id == customer.id, AccountEvent.kind == KIND)
        .order_by(AccountEvent.created_at.desc(), AccountEvent.id.desc())
        .limit(1)
    )


def transfer_record(event: AccountEvent) -> PurchaseRecord:
    """The transfer record of a meter change event."""
    return PurchaseRecord(
        int(event.detail["carried_fen"]),
        int(event.detail["purchase_count"]),
        uuid.UUID(event.id).bytes[:8],
        event.created_at,
    )


def sold_since(session: Session, customer: Customer, event: AccountEvent) -> bool:
    """Whether any sale (whatever became of it) followed the change."""
    return customer.purchase_count != int(event.detail["purchase_count"]) or (
        session.scalar(
            select(Sale.id).where(
                Sale.customer_id == customer.id, Sale.created_at > event.created_at
            )
        )
        is not None
    )


def due_transfer(session: Session, customer: Customer) -> PurchaseRecord | None:
    """The transfer record of the customer's last meter change while it is still the account's
    last purchase (no sale completed since); None otherwise."""
    event = last_change(session, customer)
    if event is None or customer.purchase_count != int(event.detail["purchase_count"]):
        return None
    later = session.scalar(
        select(Sale.id).where(
            Sale.customer_id == customer.id,
            Sale.created_at > event.created_at,
            Sale.state == SaleState.COMPLETED.value,
        )
    )
    return transfer_record(event) if later is None else None
