"""Payments for remote fee-control meters: recorded here, issued to the meter by the central
system."""

from __future__ import annotations

import uuid

from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.customers import MeterKind
from app.domain.ledger import SaleKind
from app.domain.ledger import SaleState
from app.domain.ledger import split_payment
from app.domain.permissions import Action
from app.errors import Conflict
from app.i18n import N_
from app.money import check_fen
from app.persistence.db import Database
from app.services import audit
from app.services import ledger
from app.services import shifts
from app.services.auth import Principal
from app.services.customers import get_customer
from app.services.selling.offline import check_offline_limits
from app.services.selling.sale import is_training
from app.settings import Settings


def remote_payment(
    db: Database,
    *,
    actor: Principal,
    customer_no: str,
    amount: int,
    clock: Clock,
    settings: Settings,
    cash_received: int | None = None,
    override_request: str | None = None,
) -> ledger.SaleView:
    """A payment for a remote fee-control meter: recorded, queued for the central system,
    which issues it to the meter; ``remote_status`` follows (queued, issued, failed)."""
    check_fen(amount)
    actor.authorize(Action.SELL, clock)
    check_offline_limits(db, actor, amount, clock, settings, override_request)
    sale_id = str(uuid.uuid4())
    training = is_training(settings)
    now = clock.now()
    with db.write() as session:
        shift = shifts.open_shift_for(session, actor.counter_id)
        customer = get_customer(session, customer_no, for_update=True)
        if customer.meter_kind != MeterKind.REMOTE:
            raise Conflict(
                N_("Customer {customer_no} has a card meter; sell onto the card."),
                customer_no=customer_no,
            )
        ledger.require_active(customer)
        ledger.check_cash(cash_received, amount)
        split = split_payment(
            amount, ledger.limits_for(session, customer, customer.meter_remaining or 0)
        )
        sale = ledger.new_sale(
            session,
            sale_id=sale_id,
            kind=SaleKind.REMOTE,
            customer=customer,
            split=split,
            actor=actor,
            shift_id=shift.id,
            state=SaleState.COMPLETED,
            now=now,
            cash_received=cash_received,
            training=training,
            purchase_count=None,
            remote_status="queued",
        )
        ledger.settle_dues(session, sale, customer)
        ledger.enqueue(
            session,
            "remote",
            sale_id,
            {"customer_no": customer_no},
            split.amount,
            clock,
            training=training,
        )
        audit.Actor.of(actor, clock).record_sale(
            session,
            sale,
            AuditAction.REMOTE_PAYMENT,
            {"customer_no": customer_no, "amount": split.amount},
        )
    return ledger.get_sale(db, sale_id)
