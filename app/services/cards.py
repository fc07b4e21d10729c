"""Card administration: making blank cards, issuing a blank card into a kind and erasing a card
back to blank (``cardvend card blank|issue|erase``), done by a technician or an administrator
(:attr:`Action.ADMINISTER_CARDS`) and audited (``card_blank``, ``card_issue``, ``card_erase``;
a refused attempt with ``result="denied"``).

Erasing a user card that is bound to a customer and still holds a purchase the meter has not
loaded (or whose sale is still unresolved: the card decides it) destroys credit the customer
paid for.  It needs an ``erase_card`` approval for that card's serial (by default a supervisor
other than the person erasing; migration 0006 seeds the rule).  The approval is used in
the transaction that records the erase, after the card was erased: a failed erase leaves it
usable.  The binding stays: the customer's card is gone, so the next card is a replacement
(issuing the same card again gives it back without blacklisting it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.clock import Clock
from app.context import AppContext
from app.domain.card import CardContents
from app.domain.card import CardKind
from app.domain.permissions import Action
from app.errors import CardVendError
from app.errors import DatabaseError
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import Customer
from app.services import approvals
from app.services import audit
from app.services import ledger
from app.services.auth import Principal


class EraseNeedsApproval(CardVendError):
    code = "erase_needs_approval"
    template = N_(
        "Card {serial} belongs to customer {customer_no} and holds {what}. Erasing it would "
        "destroy credit the customer paid for: have the customer insert it into the meter "
        "first, or ask a supervisor to approve the erase (--approver ID)."
    )


@dataclass(frozen=True)
class EraseRisk:
    """What erasing a presented card would destroy."""

    serial: str
    customer_no: str | None = None  # the customer the card is bound to, if any
    unloaded_count: int | None = None  # the purchase on the card the meter has not loaded
    unresolved_sale: str | None = None  # the customer's sale this card still has to decide

    @property
    def needs_approval(self) -> bool:
        return self.unloaded_count is not None or self.unresolved_sale is not None

    def error(self) -> EraseNeedsApproval:
        if self.unloaded_count is not None:
            what = N_("purchase {count} that the meter has not loaded")
        else:
            what = N_("the outcome of unfinished sale {sale_id}")
        return EraseNeedsApproval(
            serial=self.serial,
            customer_no=self.customer_no,
            what=what,
            count=self.unloaded_count,
            sale_id=self.unresolved_sale,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_no": self.customer_no,
            "unloaded_count": self.unloaded_count,
            "unresolved_sale": self.unresolved_sale,
        }


def erase_risk(db: Database, contents: CardContents) -> EraseRisk:
    """Whether ``contents`` is a customer's card with credit the meter has not loaded."""
    serial = contents.serial_hex
    if contents.kind != CardKind.USER:
        return EraseRisk(serial)
    with db.read() as session:
        customer = session.scalar(select(Customer).where(Customer.card_serial == serial))
        if customer is None:
            return EraseRisk(serial)
        sale = ledger.unresolved_sale(session, customer.id)
        card_count = contents.purchase.purchase_count if contents.purchase else 0
        wb = contents.write_back
        meter_count = wb.purchase_count if wb is not None else customer.meter_purchase_count
        unloaded = card_count > 0 and (meter_count is None or meter_count < card_count)
        return EraseRisk(
            serial,
            customer.customer_no,
            card_count if unloaded else None,
            sale.id if sale is not None else None,
        )


def erase_risk_unreadable(db: Database, serial: str) -> EraseRisk:
    """A card whose files cannot be read: if it is a customer's card, it may hold anything that
    customer's card may hold (an unfinished sale, a purchase the meter has not loaded)."""
    with db.read() as session:
        customer = session.scalar(select(Customer).where(Customer.card_serial == serial))
        if customer is None:
            return EraseRisk(serial)
        sale = ledger.unresolved_sale(session, customer.id)
        meter = customer.meter_purchase_count
        unloaded = meter is None or meter < customer.purchase_count
        return EraseRisk(
            serial,
            customer.customer_no,
            customer.purchase_count if unloaded and customer.purchase_count else None,
            sale.id if sale is not None else None,
        )


def database_in_use(ctx: AppContext) -> bool:
    """Whether this installation has a database set up (a configured URL, or the default SQLite
    file, holding CardVend's tables).  Nothing is created to find out."""
    if ctx.db_url == str(ctx.paths.default_db_file) and not ctx.paths.default_db_file.exists():
        return False
    try:
        return ctx.db.is_initialized()
    except SQLAlchemyError as exc:
        raise DatabaseError(detail=str(getattr(exc, "orig", None) or exc)) from exc


def authorize(
    db: Database,
    actor: Principal,
    clock: Clock,
    *,
    action: str,
    target: str,
    permission: Action = Action.ADMINISTER_CARDS,
) -> None:
    """The technician's or administrator's ``permission``; a refusal is audited before it is
    raised."""
    audit.authorize_or_record(db, actor, clock, permission, action, target)


def record(
    db: Database,
    actor: Principal,
    clock: Clock,
    *,
    action: str,
    serial: str,
    detail: Mapping[str, Any],
    approval_request: str | None = None,
) -> None:
    """Audit a card operation that was done; an erase approval is used up in the same
    transaction."""
    with db.write() as session:
        if approval_request is not None:
            approvals.consume_by(
                session,
                actor,
                approval_request,
                action=Action.ERASE_CARD,
                target=serial,
                clock=clock,
            )
        audit.Actor.of(actor, clock).record(
            session, action, serial, detail={**detail, "approval": approval_request}
        )


def erase_needs_rule(db: Database) -> bool:
    """Whether the approval rules ask for an approval to erase a card holding credit."""
    with db.read() as session:
        return approvals.needs_approval(session, Action.ERASE_CARD)
