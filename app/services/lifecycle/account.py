"""Close, pause and resume a customer's account at the counter.

A close settles the account first: the credit the customer still has is the credit sold onto
the card that the meter has not loaded (the completed card purchases after the meter's last
reported purchase count) plus the meter's remaining balance (its last write-back, from the card
just read or noted earlier, or a technician's meter read).  The arrears and fees the sales
would collect are paid out of it; the rest is refunded in cash on the open shift or kept as a
credit note (setting ``close_refund_mode``).  A customer who owes more than that (an overdraft,
arrears) pays it first, as a purchase.  The card is erased, or kept and blacklisted; a card that
cannot be read is blacklisted.  Each step is one :func:`~app.services.lifecycle.record_event`.

Decisions:

* ``terminal`` None closes without the card (lost or unreadable): the figures come from the
  meter's last write-back the counter noted, or from ``meter_read``.  A card that is presented
  must be read; a read failure stops the close (the teller may then close without the card).
* A kept card that still holds a purchase the meter has not loaded is refused: the meter
  would load credit that was just refunded.
* The card is erased before the close is committed (so no refunded credit stays on it).  If the
  commit then fails, the card is blank and the close is made again without the card.
* The arrears and fees settled by a close are removed from the ledger (they are paid; no sale
  settled them); their central references travel in the event's detail (``settled_refs*``)
  and the central system settles them there.
* A paused account may be closed; only a paused account may be resumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain import settlement as st
from app.domain.card import CardContents
from app.domain.customers import CustomerStatus
from app.domain.customers import MeterKind
from app.domain.customers import check_text
from app.domain.ledger import SaleKind
from app.domain.ledger import SaleState
from app.domain.permissions import Action
from app.errors import CardVendError
from app.errors import Conflict
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import Msg
from app.money import format_yuan
from app.persistence.db import Database
from app.persistence.models import ArrearsItem
from app.persistence.models import Customer
from app.persistence.models import Sale
from app.ports import CardTerminal
from app.services import approvals
from app.services import ledger
from app.services import lifecycle
from app.services import shifts
from app.services.auth import Principal
from app.services.customers import CustomerView
from app.services.customers import customer_view
from app.services.customers import get_customer
from app.services.selling.assessment import assess
from app.services.selling.cardops import blacklist_card
from app.services.selling.errors import CardRefused
from app.services.selling.sale import is_training
from app.settings import CLOSE_REFUND_MODE
from app.settings import Settings

REF_KEY = "settled_refs"
REF_TEXT = 200  # the contract's longest detail text


@dataclasses.dataclass(frozen=True)
class MeterRead:
    """The meter's state as a technician read it (DL/T 645): remaining fen, purchase count."""

    remaining: int
    purchase_count: int


@dataclasses.dataclass(frozen=True)
class CloseRequest:
    """What a close (and its preview) is asked for: whose account, what becomes of the card
    (:data:`~app.domain.settlement.ERASE` or ``KEEP``) and a technician's meter read, if any.
    The preview and the close take the same request, so what the teller saw is what is closed."""

    customer_no: str
    card_outcome: str = st.ERASE
    meter_read: MeterRead | None = None

    def __post_init__(self) -> None:
        check_outcome(self.card_outcome)


def preview_close(
    db: Database,
    terminal: CardTerminal | None,
    request: CloseRequest,
    *,
    actor: Principal,
    clock: Clock,
    settings: Settings,
) -> st.Settlement:
    """The settlement a close would make now (the card is read; nothing is closed)."""
    actor.authorize(Action.CLOSE_ACCOUNT, clock)
    return _plan(db, terminal, request, actor, clock, settings)[1]


def close_account(
    db: Database,
    terminal: CardTerminal | None,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    settings: Settings,
    approval_request: str,
    card_outcome: str = st.ERASE,
    reason: str = "",
    meter_read: MeterRead | None = None,
) -> st.Settlement:
    """Settle and close the account of ``customer_no`` (an approved ``close_account`` request):
    arrears and fees paid from the credit left, the rest refunded or kept as a credit note, the
    card erased or blacklisted, the account closed; one ``close`` account event."""
    actor.authorize(Action.CLOSE_ACCOUNT, clock)
    request = CloseRequest(customer_no, card_outcome, meter_read)
    reason = check_text(reason, N_("Reason"), max_len=200, required=False)
    contents, planned = _plan(db, terminal, request, actor, clock, settings)
    if planned.refund and shifts.current_shift(db, actor.counter_id) is None:
        raise shifts.no_shift(actor.counter_id)  # before the card is erased for nothing
    if contents is not None and planned.card == st.CARD_ERASED:
        assert terminal is not None
        erased = terminal.erase()
        if erased.serial != contents.serial:
            raise CardRefused(reason=N_("another card was put in while the account was closed"))
    try:
        with db.write() as session:
            customer = get_customer(session, customer_no, for_update=True)
            done = _settle(session, customer, contents, request, settings)
            if done.detail() != planned.detail():
                raise Conflict(
                    N_(
                        "The account of customer {customer_no} changed while it was being "
                        "closed; try again."
                    ),
                    customer_no=customer_no,
                )
            return _commit_close(
                session,
                customer,
                done,
                actor=actor,
                clock=clock,
                reason=reason,
                approval_request=approval_request,
                training=is_training(settings),
            )
    except CardVendError as exc:
        if contents is not None and planned.card == st.CARD_ERASED:
            raise Conflict(
                N_(
                    "The card was erased but the account of customer {customer_no} was not "
                    "closed: {detail} Close it again without the card."
                ),
                customer_no=customer_no,
                detail=exc,
            ) from exc
        raise


def _plan(
    db: Database,
    terminal: CardTerminal | None,
    request: CloseRequest,
    actor: Principal,
    clock: Clock,
    settings: Settings,
) -> tuple[CardContents | None, st.Settlement]:
    """The card as read and the settlement as the ledger stands (nothing changed)."""
    contents = _read_card(db, terminal, actor, request.customer_no, clock, settings)
    with db.read() as session:
        customer = get_customer(session, request.customer_no)
        return contents, _settle(session, customer, contents, request, settings)


def _read_card(
    db: Database,
    terminal: CardTerminal | None,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    settings: Settings,
) -> CardContents | None:
    """The customer's card as read (its unfinished sales decided, its write-back noted), or
    None: no card (remote meter, or closed without it)."""
    with db.read() as session:
        customer = get_customer(session, customer_no)
        _closable(session, customer)
        if customer.meter_kind != MeterKind.CARD or terminal is None:
            return None
    contents = terminal.read()
    found = assess(db, contents, clock, settings=settings, actor=actor)
    if found.customer.customer_no != customer_no:
        raise CardRefused(reason=N_("it belongs to another customer"))
    return contents


def _closable(session: Session, customer: Customer) -> None:
    if customer.status not in (CustomerStatus.ACTIVE, CustomerStatus.PAUSED):
        raise Conflict(
            N_(
                "Customer {customer_no} is {status}; only an active or paused account can be closed."
            ),
            customer_no=customer.customer_no,
            status=Msg(customer.status),  # a customer status is the msgid of its name
        )
    if ledger.unresolved_sale(session, customer.id) is not None:
        raise Conflict(
            N_("Customer {customer_no} has an unfinished sale; recover it first."),
            customer_no=customer.customer_no,
        )
    queued = session.scalar(
        select(func.count())
        .select_from(Sale)
        .where(
            Sale.customer_id == customer.id,
            Sale.kind == SaleKind.REMOTE.value,
            Sale.state == SaleState.COMPLETED.value,
            Sale.remote_status == "queued",
        )
    )
    if queued:
        raise Conflict(
            N_(
                "A remote payment of customer {customer_no} has not reached the meter yet; "
                "close the account once it has."
            ),
            customer_no=customer.customer_no,
        )


def _meter_state(
    session: Session, customer: Customer, meter_read: MeterRead | None
) -> tuple[int, int | None, str]:
    """The meter's remaining balance, its purchase count and where they came from."""
    if meter_read is not None:
        return meter_read.remaining, meter_read.purchase_count, st.FROM_METER_READ
    card = customer.meter_kind == MeterKind.CARD
    if customer.meter_remaining is not None and (
        not card or customer.meter_purchase_count is not None
    ):
        return customer.meter_remaining, customer.meter_purchase_count, st.FROM_WRITE_BACK
    sold = session.scalar(
        select(func.count())
        .select_from(Sale)
        .where(Sale.customer_id == customer.id, Sale.state == SaleState.COMPLETED.value)
    )
    if not sold:
        return 0, 0 if card else None, st.NOTHING_SOLD
    raise Conflict(
        N_(
            "The meter's remaining balance of customer {customer_no} is not known: insert the "
            "card into the meter and present it again, or read the meter."
        ),
        customer_no=customer.customer_no,
    )


def _unloaded(session: Session, customer: Customer, meter_count: int | None) -> tuple[int, int]:
    """The credit (and the number) of the completed card purchases the meter has not loaded."""
    if customer.meter_kind != MeterKind.CARD:
        return 0, 0
    credit, count = session.execute(
        select(func.coalesce(func.sum(Sale.credit), 0), func.count()).where(
            Sale.customer_id == customer.id,
            Sale.kind == SaleKind.CARD.value,
            Sale.state == SaleState.COMPLETED.value,
            Sale.purchase_count > (meter_count or 0),
        )
    ).one()
    return int(credit), int(count)


def _card_fate(customer: Customer, contents: CardContents | None, card_outcome: str) -> str:
    if customer.meter_kind != MeterKind.CARD or not customer.card_serial:
        return st.NO_CARD
    if contents is None:
        return st.CARD_UNREADABLE
    return st.CARD_ERASED if card_outcome == st.ERASE else st.CARD_KEPT


def _settle(
    session: Session,
    customer: Customer,
    contents: CardContents | None,
    request: CloseRequest,
    settings: Settings,
) -> st.Settlement:
    """The settlement of ``customer`` as the ledger stands; refuses what cannot be closed."""
    _closable(session, customer)
    remaining, meter_count, source = _meter_state(session, customer, request.meter_read)
    unloaded, purchases = _unloaded(session, customer, meter_count)
    card = _card_fate(customer, contents, request.card_outcome)
    if card == st.CARD_KEPT and purchases:
        raise Conflict(
            N_(
                "The card of customer {customer_no} still holds credit the meter has not "
                "loaded; erase the card, or insert it into the meter first."
            ),
            customer_no=customer.customer_no,
        )
    arrears, fees = ledger.dues(session, customer)
    balance = unloaded + remaining - arrears - fees
    if balance < 0:
        raise Conflict(
            N_(
                "Customer {customer_no} owes {owed} yuan more than the credit left (meter "
                "balance {remaining} yuan, arrears {arrears} yuan, fees {fees} yuan); it must "
                "be paid first, as a purchase of at least {owed} yuan, before the account can "
                "be closed."
            ),
            customer_no=customer.customer_no,
            owed=format_yuan(-balance),
            remaining=format_yuan(remaining),
            arrears=format_yuan(arrears),
            fees=format_yuan(fees),
        )
    mode = settings.value(CLOSE_REFUND_MODE)
    refund = balance if mode == st.REFUND else 0
    return st.Settlement(
        customer_no=customer.customer_no,
        name=customer.name,
        address=customer.address,
        meter_no=customer.meter_no,
        meter_kind=customer.meter_kind,
        card_serial=customer.card_serial,
        card=card,
        unloaded=unloaded,
        unloaded_purchases=purchases,
        meter_remaining=remaining,
        meter_count=meter_count,
        meter_source=source,
        arrears=arrears,
        fees=fees,
        balance=balance,
        mode=mode,
        refund=refund,
        credit_note=balance - refund,
    )


def _settle_dues(session: Session, customer: Customer) -> list[str]:
    """Remove the arrears and fees a close paid (those a sale would collect); their central
    references."""
    refs: list[str] = []
    for item in session.scalars(
        select(ArrearsItem)
        .where(ArrearsItem.customer_id == customer.id, ArrearsItem.settled_by_sale_id.is_(None))
        .order_by(ArrearsItem.id)
    ):
        if item.kind == "fee" or item.must_collect:
            if item.ref:
                refs.append(item.ref)
            session.delete(item)
    session.flush()
    return refs


def pack_refs(refs: Iterable[str]) -> dict[str, str]:
    """``refs`` comma-joined into detail texts of at most 200 characters:
    ``settled_refs``, ``settled_refs_2``, ..."""
    parts: list[str] = []
    for ref in refs:
        if parts and len(parts[-1]) + 1 + len(ref) <= REF_TEXT:
            parts[-1] += "," + ref
        else:
            parts.append(ref)
    return {REF_KEY if i == 0 else f"{REF_KEY}_{i + 1}": part for i, part in enumerate(parts)}


def _commit_close(
    session: Session,
    customer: Customer,
    done: st.Settlement,
    *,
    actor: Principal,
    clock: Clock,
    reason: str,
    approval_request: str,
    training: bool,
) -> st.Settlement:
    """One transaction: the approval used, the dues settled, the card blacklisted when it was
    not erased, the account closed, the event (with the refund on the open shift) recorded."""
    if done.refund:
        shift_id: str | None = shifts.open_shift_for(session, actor.counter_id, lock=True).id
    else:
        shift_id = shifts.open_shift_id(session, actor.counter_id)
    approver = approvals.consume_by(
        session,
        actor,
        approval_request,
        action=Action.CLOSE_ACCOUNT,
        target=customer.customer_no,
        clock=clock,
    ).approver
    refs = _settle_dues(session, customer)
    serial = customer.card_serial
    if serial and done.card in (st.CARD_KEPT, st.CARD_UNREADABLE):
        blacklist_card(session, serial, customer, "closed", clock)
    customer.status = CustomerStatus.CLOSED.value
    customer.status_reason = reason
    customer.card_serial = None
    customer.updated_at = clock.now()
    session.flush()
    event = lifecycle.record_event(
        session,
        customer,
        "close",
        actor,
        clock,
        detail={**done.detail(), **pack_refs(refs)},
        reason=reason,
        refund=done.refund,
        approver_id=approver,
        shift_id=shift_id,
        training=training,
    )
    return dataclasses.replace(
        done,
        reason=reason,
        event_id=event.id,
        closed_at=event.created_at,
        operator_id=actor.operator_id,
        approver_id=approver,
        counter_id=actor.counter_id,
        training=training,
    )


# --------------------------------------------------------------------------- pause and resume


@dataclasses.dataclass(frozen=True)
class _Transition:
    """A pause or a resume: the account event, the status it starts from and leads to, and the
    refusal when the account is in another status."""

    kind: str
    start: CustomerStatus
    to: CustomerStatus
    refusal: str


_PAUSE = _Transition(
    "pause",
    CustomerStatus.ACTIVE,
    CustomerStatus.PAUSED,
    N_("Customer {customer_no} is {status}; only an active account can be paused."),
)
_RESUME = _Transition(
    "resume",
    CustomerStatus.PAUSED,
    CustomerStatus.ACTIVE,
    N_("Customer {customer_no} is {status}; only a paused account can be resumed."),
)


def pause_account(
    db: Database,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    settings: Settings,
    reason: str,
    approval_request: str | None = None,
) -> CustomerView:
    """Pause an active account (a vacant house, a dispute): no sales until it is resumed; the
    sale refusal says ``reason``."""
    reason = check_text(reason, N_("Reason"), max_len=200)
    return _change_status(db, actor, customer_no, clock, settings, reason, _PAUSE, approval_request)


def resume_account(
    db: Database,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    settings: Settings,
    reason: str = "",
    approval_request: str | None = None,
) -> CustomerView:
    """Resume a paused account: sales are possible again (why it was resumed goes with the
    event; the customer's reason is cleared)."""
    reason = check_text(reason, N_("Reason"), max_len=200, required=False)
    return _change_status(
        db, actor, customer_no, clock, settings, reason, _RESUME, approval_request
    )


def _change_status(
    db: Database,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    settings: Settings,
    reason: str,
    step: _Transition,
    approval_request: str | None,
) -> CustomerView:
    """Pause (from active) or resume (from paused) the account, in one unit of work; approved
    first when the ``pause_account`` rule asks for it (by default it does not)."""
    actor.authorize(Action.PAUSE_ACCOUNT, clock)
    with db.write() as session:
        customer = get_customer(session, customer_no, for_update=True)
        if customer.status != step.start:
            status = Msg(customer.status)  # a customer status is the msgid of its name
            raise Conflict(step.refusal, customer_no=customer_no, status=status)
        approval = approvals.require_by(
            session,
            actor,
            approval_request,
            action=Action.PAUSE_ACCOUNT,
            target=customer_no,
            clock=clock,
        )
        approver = approval.approver if approval else None
        _set_status(session, customer, step.to, reason, step.kind, actor, clock, settings, approver)
    return customer_view(db, customer_no)


def _set_status(
    session: Session,
    customer: Customer,
    status: CustomerStatus,
    reason: str,
    kind: str,
    actor: Principal,
    clock: Clock,
    settings: Settings,
    approver_id: str | None = None,
) -> None:
    before = customer.status
    customer.status = status.value
    customer.status_reason = reason if status == CustomerStatus.PAUSED else ""
    customer.updated_at = clock.now()
    session.flush()
    lifecycle.record_event(
        session,
        customer,
        kind,
        actor,
        clock,
        detail={"before": before},
        reason=reason,
        approver_id=approver_id,
        training=is_training(settings),
    )


def check_outcome(card_outcome: str) -> str:
    if card_outcome not in st.CARD_OUTCOMES:
        raise ValidationError(
            N_("the card outcome {value} is not one of {choices}"),
            value=card_outcome,
            choices=", ".join(st.CARD_OUTCOMES),
        )
    return card_outcome
