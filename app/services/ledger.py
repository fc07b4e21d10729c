"""The sales ledger: create a sale, move it through its states, list sales.

``begin_card_sale`` commits a *pending* sale holding purchase ``N+1`` before any card is written;
``complete_sale`` raises the customer's purchase_count to ``N+1`` in the same transaction that
marks the sale completed.  The customer row is locked while a sale is created or completed
(``SELECT ... FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` serialises writers on SQLite), and a
partial UNIQUE index on (customer, purchase_count) over live sales makes a second sale of the
same purchase impossible even if a caller forgets the lock.  So purchase_count rises by exactly
one per completed card sale, also when two counters sell to one customer at the same moment.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain import pricing
from app.domain.audit import AuditAction
from app.domain.customers import CustomerStatus
from app.domain.customers import MeterKind
from app.domain.ledger import UNRESOLVED
from app.domain.ledger import PaymentSplit
from app.domain.ledger import PurchaseLimits
from app.domain.ledger import SaleKind
from app.domain.ledger import SaleState
from app.domain.ledger import check_transition
from app.domain.ledger import purchase_limits
from app.domain.ledger import split_payment
from app.domain.permissions import Action
from app.errors import Conflict
from app.errors import NotFound
from app.errors import SaleInProgress
from app.i18n import N_
from app.i18n import Msg
from app.money import check_fen
from app.persistence.db import Database
from app.persistence.models import ArrearsItem
from app.persistence.models import Customer
from app.persistence.models import FeePayment
from app.persistence.models import OutboxEntry
from app.persistence.models import Reversal
from app.persistence.models import Sale
from app.services import audit
from app.services import shifts
from app.services.auth import Principal
from app.services.customers import get_customer
from app.services.operators import require_operator
from app.services.tariffs import version_in_force


@dataclass(frozen=True)
class SaleView:
    sale_id: str
    kind: str
    customer_no: str
    purchase_count: int | None
    amount_fen: int
    arrears_fen: int
    fees_fen: int
    credit_fen: int
    energy_wh: int
    tariff_version_id: int
    operator_id: str
    counter_id: str
    shift_id: str
    state: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _view(s: Sale, customer_no: str) -> SaleView:
    return SaleView(
        s.id,
        s.kind,
        customer_no,
        s.purchase_count,
        s.amount,
        s.arrears,
        s.fees,
        s.credit,
        s.energy_wh,
        s.tariff_version_id,
        s.operator_id,
        s.counter_id,
        s.shift_id,
        s.state,
        s.created_at.astimezone(dt.UTC).isoformat(),
    )


def dues(session: Session, customer: Customer) -> tuple[int, int]:
    """Unsettled arrears that must be collected first, and fees, in fen."""
    arrears = fees = 0
    for item in session.scalars(
        select(ArrearsItem).where(
            ArrearsItem.customer_id == customer.id, ArrearsItem.settled_by_sale_id.is_(None)
        )
    ):
        if item.kind == "fee":
            fees += item.amount
        elif item.must_collect:
            arrears += item.amount
    return arrears, fees


def limits_for(session: Session, customer: Customer, meter_balance: int) -> PurchaseLimits:
    arrears, fees = dues(session, customer)
    return purchase_limits(
        arrears_due=arrears,
        fees_due=fees,
        credit_ceiling=customer.credit_ceiling,
        meter_balance=meter_balance,
    )


def unresolved_sale(session: Session, customer_id: int) -> Sale | None:
    return session.scalar(
        select(Sale).where(Sale.customer_id == customer_id, Sale.state.in_(list(UNRESOLVED)))
    )


def completed_card_sale(session: Session, customer_id: int, purchase_count: int) -> Sale | None:
    """The completed card sale that made purchase ``purchase_count`` of the customer, if any."""
    return session.scalar(
        select(Sale).where(
            Sale.customer_id == customer_id,
            Sale.purchase_count == purchase_count,
            Sale.state == SaleState.COMPLETED.value,
            Sale.kind == SaleKind.CARD.value,
        )
    )


def not_active(customer_no: str, status: str, reason: str = "") -> Conflict:
    """Why a customer who is not active cannot buy: a paused account says why it was paused
    (a vacant house, a dispute) and that it must be resumed first."""
    if status == CustomerStatus.PAUSED:
        if reason:
            return Conflict(
                N_(
                    "Customer {customer_no} is paused ({reason}); no sales until the account "
                    "is resumed."
                ),
                customer_no=customer_no,
                reason=reason,
            )
        return Conflict(
            N_("Customer {customer_no} is paused; no sales until the account is resumed."),
            customer_no=customer_no,
        )
    return Conflict(
        N_("Customer {customer_no} is {status}; only active customers can buy."),
        customer_no=customer_no,
        status=Msg(status),  # a customer status is the msgid of its name
    )


def require_active(customer: Customer) -> None:
    """Only an active customer can buy."""
    if customer.status != CustomerStatus.ACTIVE:
        raise not_active(customer.customer_no, customer.status, customer.status_reason or "")


def check_cash(cash_received: int | None, amount: int) -> None:
    """The cash handed over covers the amount (``None``: not counted)."""
    if cash_received is not None and cash_received < amount:
        raise Conflict(
            N_("Cash received {cash} is less than the amount {amount}."),
            cash=cash_received,
            amount=amount,
        )


def new_sale(
    session: Session,
    *,
    sale_id: str,
    kind: SaleKind,
    customer: Customer,
    split: PaymentSplit,
    actor: Principal,
    shift_id: str,
    state: SaleState,
    now: dt.datetime,
    cash_received: int | None,
    training: bool,
    **columns: Any,
) -> Sale:
    """A sale row for ``customer`` paid as ``split`` (arrears and fees first) at the tariff in
    force; added and flushed (its dues are the caller's)."""
    tariff = version_in_force(session, customer.tariff_plan_id, now)
    sale = Sale(
        id=sale_id,
        kind=kind.value,
        customer_id=customer.id,
        amount=split.amount,
        arrears=split.arrears,
        fees=split.fees,
        credit=split.credit,
        energy_wh=pricing.amount_to_energy(tariff.spec, split.credit),
        tariff_version_id=tariff.id,
        operator_id=actor.operator_id,
        counter_id=actor.counter_id,
        shift_id=shift_id,
        state=state.value,
        cash_received=cash_received,
        created_at=now,
        updated_at=now,
        training=training,
        **columns,
    )
    session.add(sale)
    session.flush()
    return sale


def begin_card_sale(
    db: Database,
    *,
    actor: Principal,
    customer_no: str,
    amount: int,
    clock: Clock,
    meter_balance: int = 0,
    cash_received: int | None = None,
    sale_id: str | None = None,
    card_serial: str | None = None,
    training: bool = False,
) -> SaleView:
    """Commit a pending card sale for purchase N+1 (the card is written afterwards). A
    training sale is marked so and never reaches the outbox."""
    check_fen(amount)
    actor.authorize(Action.SELL, clock)
    try:
        with db.write() as session:
            sale = _pending_card_sale(
                session,
                sale_id=sale_id or str(uuid.uuid4()),
                actor=actor,
                customer_no=customer_no,
                amount=amount,
                clock=clock,
                meter_balance=meter_balance,
                cash_received=cash_received,
                card_serial=card_serial,
                training=training,
            )
            return _view(sale, customer_no)
    except IntegrityError as exc:
        raise _lost_race(db, customer_no, exc) from exc


def _pending_card_sale(
    session: Session,
    *,
    sale_id: str,
    actor: Principal,
    customer_no: str,
    amount: int,
    clock: Clock,
    meter_balance: int,
    cash_received: int | None,
    card_serial: str | None,
    training: bool,
) -> Sale:
    """The pending sale of purchase N+1, its outbox row and its audit seal, in ``session``."""
    require_operator(session, actor.operator_id)
    shift = shifts.open_shift_for(session, actor.counter_id)
    customer = get_customer(session, customer_no, for_update=True)
    require_active(customer)
    if customer.meter_kind != MeterKind.CARD:
        raise Conflict(
            N_(
                "Customer {customer_no} has a remote fee-control meter; take a remote "
                "payment instead of a card sale."
            ),
            customer_no=customer_no,
        )
    open_sale = unresolved_sale(session, customer.id)
    if open_sale is not None:
        raise SaleInProgress(
            customer_no=customer_no,
            sale_id=open_sale.id,
            purchase_count=open_sale.purchase_count,
        )
    split = split_payment(amount, limits_for(session, customer, meter_balance))
    check_cash(cash_received, amount)
    sale = new_sale(
        session,
        sale_id=sale_id,
        kind=SaleKind.CARD,
        customer=customer,
        split=split,
        actor=actor,
        shift_id=shift.id,
        state=SaleState.PENDING,
        now=clock.now(),
        cash_received=cash_received,
        training=training,
        purchase_count=customer.purchase_count + 1,
        card_serial=card_serial,
        meter_balance=customer.meter_remaining,
    )
    if not training:
        enqueue(
            session,
            "sale",
            sale.id,
            {"customer_no": customer_no},
            sale.amount,
            clock,
            counter_id=actor.counter_id,
        )
    audit.Actor.of(actor, clock).record_sale(
        session,
        sale,
        AuditAction.SALE_BEGIN,
        {
            "customer_no": customer_no,
            "amount": sale.amount,
            "purchase_count": sale.purchase_count,
        },
    )
    return sale


def _lost_race(db: Database, customer_no: str, exc: IntegrityError) -> Conflict:
    """Another counter created a live sale of the same purchase between our read and write."""
    with db.read() as session:
        customer = get_customer(session, customer_no)
        other = unresolved_sale(session, customer.id)
    if other is None:
        return Conflict(N_("The sale could not be recorded: {detail}"), detail=str(exc.orig))
    return SaleInProgress(
        customer_no=customer_no, sale_id=other.id, purchase_count=other.purchase_count
    )


def load_sale(session: Session, sale_id: str, *, for_update: bool = False) -> Sale:
    """The sale ``sale_id`` (row-locked with ``for_update``)."""
    sale = session.get(Sale, sale_id, with_for_update=for_update)
    if sale is None:
        raise NotFound(what=N_("Sale"), key=sale_id)
    return sale


def _load(session: Session, sale_id: str) -> tuple[Sale, Customer]:
    sale = load_sale(session, sale_id, for_update=True)
    customer = session.scalar(
        select(Customer).where(Customer.id == sale.customer_id).with_for_update()
    )
    assert customer is not None
    return sale, customer


def _audit(
    session: Session, sale: Sale, action: str, actor: Principal | None, clock: Clock, note: str = ""
) -> None:
    audit.Actor(
        actor.operator_id if actor else None, actor.counter_id if actor else sale.counter_id, clock
    ).record_sale(session, sale, action, {"note": note} if note else None)


def enqueue(
    session: Session,
    kind: str,
    ref_id: str,
    payload: dict[str, Any],
    amount: int,
    clock: Clock,
    *,
    training: bool = False,
    counter_id: str | None = None,
) -> None:
    """The outbox row for the central system, in the caller's transaction (none for training:
    a training fact never leaves the counter). The row belongs to the counter of the fact it
    reports (``counter_id``, else the sale, reversal or fee payment, else the payload): only
    that counter sends it when counters share a database."""
    if training:
        return
    session.add(
        OutboxEntry(
            kind=kind,
            ref_id=ref_id,
            counter_id=counter_id or outbox_counter(session, kind, ref_id, payload),
            payload=payload,
            amount=amount,
            created_at=clock.now(),
            attempts=0,
            last_error="",
        )
    )
    session.flush()


def outbox_counter(session: Session, kind: str, ref_id: str, payload: dict[str, Any]) -> str:
    """The counter an outbox row belongs to: the one that made the fact it reports."""
    fact: Sale | Reversal | FeePayment | None = None
    if kind in ("sale", "remote"):
        fact = session.get(Sale, ref_id)
    elif kind == "reversal":
        fact = session.get(Reversal, ref_id)
    elif kind == "replacement":
        fact = session.get(FeePayment, ref_id)
    if fact is not None:
        return fact.counter_id
    if payload.get("counter_id"):
        return str(payload["counter_id"])
    rewritten = session.get(Sale, payload["sale_id"]) if payload.get("sale_id") else None
    return rewritten.counter_id if rewritten is not None else ""


def settle_dues(session: Session, sale: Sale, customer: Customer) -> None:
    """The arrears and fees a completed sale collected are settled by it."""
    if not (sale.arrears or sale.fees):
        return
    for item in session.scalars(
        select(ArrearsItem).where(
            ArrearsItem.customer_id == customer.id,
            ArrearsItem.settled_by_sale_id.is_(None),
        )
    ):
        if item.kind == "fee" or item.must_collect:
            item.settled_by_sale_id = sale.id


def note_card_versions(customer: Customer, versions: tuple[int, int | None]) -> None:
    """Remember the parameter version and current tariff the customer's card now carries (a
    parameter version raised for a new tariff becomes the customer's)."""
    customer.card_param_version, customer.card_tariff_version_id = versions
    customer.param_version = max(customer.param_version, versions[0])


def settle_in_session(
    session: Session,
    sale: Sale,
    customer: Customer,
    clock: Clock,
    actor: Principal | None,
    *,
    note: str = "",
    card_versions: tuple[int, int | None] | None = None,
) -> SaleView:
    """Complete ``sale`` (rows locked by the caller) inside the caller's unit of work."""
    check_transition(sale.id, SaleState(sale.state), SaleState.COMPLETED)
    if sale.kind == SaleKind.CARD:
        if sale.purchase_count != customer.purchase_count + 1:
            raise Conflict(
                N_(
                    "Sale {sale_id} is purchase {count} but customer {customer_no} has "
                    "completed {done}; it needs a supervisor's review."
                ),
                sale_id=sale.id,
                count=sale.purchase_count,
                customer_no=customer.customer_no,
                done=customer.purchase_count,
            )
        customer.purchase_count = sale.purchase_count
    if card_versions is not None:
        note_card_versions(customer, card_versions)
    settle_dues(session, sale, customer)
    sale.state = SaleState.COMPLETED.value
    sale.updated_at = clock.now()
    if note:
        sale.note = (sale.note + "\n" + note).strip()
    customer.updated_at = sale.updated_at
    _audit(session, sale, "sale_complete", actor, clock, note)
    return _view(sale, customer.customer_no)


def complete_sale(
    db: Database,
    sale_id: str,
    clock: Clock,
    actor: Principal | None = None,
    *,
    card_versions: tuple[int, int | None] | None = None,
) -> SaleView:
    """Mark a sale completed after its card write was verified; settles its arrears and fees.
    ``card_versions``: (param_version, tariff version id) now on the card, when written."""
    with db.write() as session:
        sale, customer = _load(session, sale_id)
        return settle_in_session(session, sale, customer, clock, actor, card_versions=card_versions)


def move_in_session(
    session: Session,
    sale: Sale,
    customer: Customer,
    target: SaleState,
    clock: Clock,
    actor: Principal | None,
    note: str = "",
) -> SaleView:
    if sale.state == target.value:
        return _view(sale, customer.customer_no)
    check_transition(sale.id, SaleState(sale.state), target)
    sale.state = target.value
    sale.updated_at = clock.now()
    if note:
        sale.note = (sale.note + "\n" + note).strip()
    _audit(session, sale, f"sale_{target.value}", actor, clock, note)
    return _view(sale, customer.customer_no)


def _move(
    db: Database,
    sale_id: str,
    target: SaleState,
    clock: Clock,
    note: str,
    actor: Principal | None,
) -> SaleView:
    with db.write() as session:
        sale, customer = _load(session, sale_id)
        return move_in_session(session, sale, customer, target, clock, actor, note)


def view_in_session(session: Session, sale_id: str) -> SaleView:
    row = session.execute(
        select(Sale, Customer.customer_no)
        .join(Customer, Customer.id == Sale.customer_id)
        .where(Sale.id == sale_id)
    ).first()
    if row is None:
        raise NotFound(what=N_("Sale"), key=sale_id)
    return _view(row[0], row[1])


def fail_sale(
    db: Database, sale_id: str, clock: Clock, note: str = "", actor: Principal | None = None
) -> SaleView:
    """The card proves it never got the purchase: no credit, no cash kept."""
    return _move(db, sale_id, SaleState.FAILED, clock, note, actor)


def mark_in_doubt(
    db: Database, sale_id: str, clock: Clock, note: str = "", actor: Principal | None = None
) -> SaleView:
    """Nobody knows whether the card got the purchase (crash, card pulled)."""
    return _move(db, sale_id, SaleState.IN_DOUBT, clock, note, actor)


def get_sale(db: Database, sale_id: str) -> SaleView:
    with db.read() as session:
        return view_in_session(session, sale_id)


def last_reversible(sales: Iterable[SaleView]) -> SaleView | None:
    """The only sale of ``sales`` (a customer's, newest first) a reversal may take back: the
    latest card sale that completed, unless the latest one was reversed already."""
    for sale in sales:
        if sale.kind == SaleKind.CARD.value and sale.state in (
            SaleState.COMPLETED.value,
            SaleState.REVERSED.value,
        ):
            return sale if sale.state == SaleState.COMPLETED.value else None
    return None


def list_sales(
    db: Database, *, customer_no: str | None = None, state: str | None = None, limit: int = 200
) -> list[SaleView]:
    with db.read() as session:
        q = select(Sale, Customer.customer_no).join(Customer, Customer.id == Sale.customer_id)
        if customer_no:
            q = q.where(Customer.id == get_customer(session, customer_no).id)
        if state:
            q = q.where(Sale.state == SaleState(state).value)
        q = q.order_by(Sale.created_at.desc(), Sale.id).limit(limit)
        return [_view(s, cno) for s, cno in session.execute(q)]
