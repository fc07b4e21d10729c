"""Card work other than a sale: open an account, write the last purchase again, replace a card."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import faults
from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.card import (
    CardContents,
    CardKind,
    CardWrite,
    UnissuedCard,
    UserCardType,
)
from app.domain.customers import CustomerStatus, MeterKind
from app.domain.ledger import SaleKind, SaleState, Situation
from app.domain.permissions import Action
from app.errors import Conflict, NotFound
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import CardBlacklist, Customer, FeePayment, Sale
from app.ports import CardTerminal
from app.services import approvals, audit, ledger, shifts
from app.services.auth import Principal
from app.services.customers import CustomerView, customer_view, get_customer
from app.services.selling.assessment import assess
from app.services.selling.errors import CardRefused
from app.services.selling.records import card_change, card_type
from app.services.selling.sale import SaleOutcome, is_training, sell
from app.settings import REPLACEMENT_FEE, UTILITY_CODE, Settings


def card_to_bind(
    db: Database, terminal: CardTerminal, present: CardContents | None, customer_no: str
) -> CardContents:
    """The card a new binding goes onto: a blank card, issued here as a user card, or a user
    card that an earlier attempt for this customer issued (and perhaps wrote) but never bound --
    the card was pulled, or the process stopped, before the binding was committed.
    ``present``: the card as just read (None: it is blank)."""
    if present is None:
        card = terminal.issue(CardKind.USER)
        faults.checkpoint("card_issued")
    else:
        params = present.parameters
        if (
            present.kind != CardKind.USER
            or (params is not None and params.customer_no != customer_no)
            or (present.purchase is not None and present.purchase.purchase_count != 0)
            or present.write_back is not None
        ):
            raise CardRefused(reason=N_("it is not blank; a new card binding needs a blank card"))
        card = present
    with db.read() as session:  # before anything is written onto it
        check_bindable(session, card.serial_hex, customer_no)
    return card


def check_bindable(session: Session, serial: str, customer_no: str) -> None:
    """Refuses a blacklisted card and one that is already another customer's card."""
    if session.get(CardBlacklist, serial) is not None:
        raise CardRefused(reason=N_("it was reported lost or replaced and is blacklisted"))
    holder = session.scalar(select(Customer.customer_no).where(Customer.card_serial == serial))
    if holder is not None and holder != customer_no:
        raise CardRefused(reason=N_("it is the card of customer {holder}"), holder=holder)


def read_or_blank(terminal: CardTerminal) -> CardContents | None:
    try:
        return terminal.read()
    except UnissuedCard:
        return None


def open_account(
    db: Database,
    terminal: CardTerminal,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    settings: Settings,
    amount: int | None = None,
    cash_received: int | None = None,
    override_request: str | None = None,
) -> tuple[CustomerView, SaleOutcome | None]:
    """Issue a blank card as the customer's first card, write the parameters and tariff (an
    OPEN card), bind it, and optionally sell the first purchase onto it.

    The binding (and its outbox row) is committed only after the card write was read back: a
    card pulled or a process stopped before that leaves the customer without a card, so the
    account can be opened again, with a new blank card or with this one (:func:`card_to_bind`
    takes a card an earlier attempt for this customer issued or wrote)."""
    actor.authorize(Action.OPEN_ACCOUNT, clock)
    utility_code = settings.value(UTILITY_CODE)
    with db.read() as session:
        customer = get_customer(session, customer_no)
        if customer.meter_kind != MeterKind.CARD or customer.status != CustomerStatus.ACTIVE:
            raise Conflict(
                N_("Customer {customer_no} is not an active card-meter customer."),
                customer_no=customer_no,
            )
        if customer.card_serial:
            raise Conflict(
                N_("Customer {customer_no} already has a card; issue a replacement card instead."),
                customer_no=customer_no,
            )
    card = card_to_bind(db, terminal, read_or_blank(terminal), customer_no)
    serial = card.serial_hex
    with db.read() as session:
        customer = get_customer(session, customer_no)
        change, versions = card_change(
            session, customer, None, utility_code, UserCardType.OPEN, clock.now(), force_params=True
        )
    terminal.write(change, expect_serial=card.serial)
    faults.checkpoint("card_written")
    with db.write() as session:
        customer = get_customer(session, customer_no, for_update=True)
        if customer.card_serial:  # another counter opened the account meanwhile
            raise Conflict(
                N_("Customer {customer_no} already has a card; issue a replacement card instead."),
                customer_no=customer_no,
            )
        check_bindable(session, serial, customer_no)
        customer.card_serial = serial
        customer.card_param_version, customer.card_tariff_version_id = versions
        audit.record_by(
            session,
            actor,
            clock,
            AuditAction.OPEN_ACCOUNT,
            target=customer_no,
            detail={"serial": serial},
        )
        ledger.enqueue(
            session,
            "card_bound",
            f"{customer_no}:{serial}"[:36],
            {
                "customer_no": customer_no,
                "serial": serial,
                "operator_id": actor.operator_id,
                "counter_id": actor.counter_id,
            },
            0,
            clock,
            training=is_training(settings),
        )
    outcome = None
    if amount:
        outcome = sell(
            db,
            terminal,
            actor=actor,
            amount=amount,
            clock=clock,
            settings=settings,
            cash_received=cash_received,
            expect_customer=customer_no,
            override_request=override_request,
        )
    return customer_view(db, customer_no), outcome


def rewrite(
    db: Database,
    terminal: CardTerminal,
    *,
    actor: Principal,
    clock: Clock,
    settings: Settings,
    expect_customer: str | None = None,
) -> SaleOutcome:
    """Write the last completed purchase again onto a card that is behind the ledger (its
    write failed or was lost): the same sale UUID, no new money."""
    actor.authorize(Action.REWRITE, clock)
    contents = terminal.read()
    a = assess(db, contents, clock, settings=settings, actor=actor)
    if expect_customer and a.customer.customer_no != expect_customer:
        raise CardRefused(reason=N_("it belongs to another customer"))
    if a.situation != Situation.BEHIND or a.card_count != a.ledger_count - 1:
        raise Conflict(
            N_("This card does not need a rewrite (card {card}, ledger {ledger})."),
            card=a.card_count,
            ledger=a.ledger_count,
        )
    utility_code = settings.value(UTILITY_CODE)
    with db.read() as session:
        customer = get_customer(session, a.customer.customer_no)
        sale = session.scalar(
            select(Sale).where(
                Sale.customer_id == customer.id,
                Sale.purchase_count == a.ledger_count,
                Sale.state == SaleState.COMPLETED.value,
                Sale.kind == SaleKind.CARD.value,
            )
        )
        if sale is None:
            raise NotFound(what=N_("Sale"), key=f"{a.customer.customer_no}/{a.ledger_count}")
        change, versions = card_change(
            session,
            customer,
            sale,
            utility_code,
            card_type(contents, UserCardType.PURCHASE),
            clock.now(),
        )
        sale_id = sale.id
    result = terminal.write(change, expect_serial=contents.serial)
    with db.write() as session:
        row = session.get(Sale, sale_id, with_for_update=True)
        customer = get_customer(session, a.customer.customer_no, for_update=True)
        assert row is not None
        row.rewrites += 1
        row.card_serial = contents.serial_hex
        customer.card_param_version, customer.card_tariff_version_id = versions
        audit.record_by(
            session,
            actor,
            clock,
            AuditAction.REWRITE,
            target=sale_id,
            detail={"purchase_count": row.purchase_count, "rewrites": row.rewrites},
        )
        ledger.enqueue(
            session,
            "rewrite",
            f"{sale_id[:30]}-r{row.rewrites}",
            {
                "sale_id": sale_id,
                "rewrite_no": row.rewrites,
                "operator_id": actor.operator_id,
                "counter_id": actor.counter_id,
            },
            0,
            clock,
            training=row.training,
        )
    return SaleOutcome(ledger.get_sale(db, sale_id), a, result.files, result.apdus, None)


def replace_card(
    db: Database,
    terminal: CardTerminal,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    settings: Settings,
    approval_request: str,
) -> tuple[CustomerView, int]:
    """A lost or damaged card: a blank card becomes the customer's card carrying the last
    purchase (so a purchase the meter had not loaded still reaches it), the old serial is
    blacklisted, the fee is taken.  Needs an approved ``replace_card`` request.

    The card is issued first; then one transaction binds it, blacklists the old card, uses up
    the approval and books the fee on the counter's open shift as that transaction reads it
    (locked).  A failed issue, or no open shift by then, changes nothing: the approval can be
    used for a retry, with a new blank card or with the card that was issued.  A write that
    fails after the binding is finished by presenting the same card again (no new fee)."""
    actor.authorize(Action.REPLACE_CARD, clock)
    utility_code = settings.value(UTILITY_CODE)
    old, done_count = _replaceable(db, customer_no)
    present = read_or_blank(terminal)
    if present is not None and present.serial_hex == old:
        _resume_replacement(
            db,
            terminal,
            present,
            done_count,
            actor=actor,
            customer_no=customer_no,
            clock=clock,
            utility_code=utility_code,
        )
        return customer_view(db, customer_no), 0
    if shifts.current_shift(db, actor.counter_id) is None:  # before a card is issued for nothing
        raise shifts.no_shift(actor.counter_id)
    card = card_to_bind(db, terminal, present, customer_no)
    fee = settings.value(REPLACEMENT_FEE)
    with db.write() as session:
        change, versions = _bind_replacement(
            session,
            old,
            card.serial_hex,
            fee,
            actor=actor,
            customer_no=customer_no,
            clock=clock,
            utility_code=utility_code,
            approval_request=approval_request,
            training=is_training(settings),
        )
    faults.checkpoint("card_bound")
    terminal.write(change, expect_serial=card.serial)
    _note_card_versions(db, customer_no, versions)
    return customer_view(db, customer_no), fee


def _replaceable(db: Database, customer_no: str) -> tuple[str, int]:
    """The serial of the customer's card and its purchase count, when a replacement may start:
    the customer has a card and no unfinished sale."""
    with db.read() as session:
        customer = get_customer(session, customer_no)
        if not customer.card_serial:
            raise Conflict(
                N_("Customer {customer_no} has no card yet; open the account instead."),
                customer_no=customer_no,
            )
        if ledger.unresolved_sale(session, customer.id) is not None:
            raise Conflict(
                N_("Customer {customer_no} has an unfinished sale; recover it first."),
                customer_no=customer_no,
            )
        return customer.card_serial, customer.purchase_count


def _resume_replacement(
    db: Database,
    terminal: CardTerminal,
    present: CardContents,
    done_count: int,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    utility_code: str,
) -> None:
    """The card an interrupted replacement bound already: finish its write, no new fee."""
    incomplete = present.parameters is None or (
        present.purchase is None or present.purchase.purchase_count < done_count
    )
    if not incomplete:
        raise CardRefused(reason=N_("it is not blank; a replacement is made on a blank card"))
    with db.read() as session:
        customer = get_customer(session, customer_no)
        change, versions = card_change(
            session,
            customer,
            last_completed(session, customer),
            utility_code,
            UserCardType.REPLACEMENT,
            clock.now(),
            force_params=True,
        )
    terminal.write(change, expect_serial=present.serial)
    with db.write() as session:
        customer = get_customer(session, customer_no, for_update=True)
        customer.card_param_version, customer.card_tariff_version_id = versions
        audit.record_by(
            session,
            actor,
            clock,
            AuditAction.REPLACE_CARD_RESUMED,
            target=customer_no,
            detail={"serial": present.serial_hex},
        )


def _bind_replacement(
    session: Session,
    old: str,
    new: str,
    fee: int,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    utility_code: str,
    approval_request: str,
    training: bool,
) -> tuple[CardWrite, tuple[int, int | None]]:
    """One transaction: bind the new card, blacklist the old one, use up the approval and book
    the fee on the open shift (read and locked here); the change the new card gets."""
    customer = get_customer(session, customer_no, for_update=True)
    if customer.card_serial != old or ledger.unresolved_sale(session, customer.id):
        raise Conflict(
            N_(
                "The card or the sales of customer {customer_no} changed while the card "
                "was issued; try again."
            ),
            customer_no=customer_no,
        )
    # the shift the fee is booked on, read and locked here: a shift closed meanwhile
    # stops the replacement instead of taking a fee into a closed cash count
    shift = shifts.open_shift_for(session, actor.counter_id, lock=True)
    if new != old:  # the same card erased and issued again stays usable
        check_bindable(session, new, customer_no)
    approvals.consume(
        session,
        approval_request,
        action=Action.REPLACE_CARD.value,
        target=customer_no,
        operator_id=actor.operator_id,
        clock=clock,
    )
    if new != old and session.get(CardBlacklist, old) is None:
        session.add(
            CardBlacklist(
                serial=old, customer_id=customer.id, reason="replaced", created_at=clock.now()
            )
        )
    customer.card_serial = new
    last = last_completed(session, customer)
    payment = FeePayment(
        id=str(uuid.uuid4()),
        customer_id=customer.id,
        kind="replacement",
        amount=fee,
        operator_id=actor.operator_id,
        counter_id=actor.counter_id,
        shift_id=shift.id,
        created_at=clock.now(),
    )
    session.add(payment)
    audit.record_by(
        session,
        actor,
        clock,
        AuditAction.REPLACE_CARD,
        target=customer_no,
        detail={"old": old, "new": new, "fee": fee, "shift": shift.id},
    )
    ledger.enqueue(
        session,
        "replacement",
        payment.id,
        {"customer_no": customer_no, "old": old, "new": new},
        fee,
        clock,
        training=training,
    )
    return card_change(
        session,
        customer,
        last,
        utility_code,
        UserCardType.REPLACEMENT,
        clock.now(),
        force_params=True,
    )


def _note_card_versions(db: Database, customer_no: str, versions: tuple[int, int | None]) -> None:
    """Remember which parameter and tariff versions the customer's card now carries."""
    with db.write() as session:
        customer = get_customer(session, customer_no, for_update=True)
        customer.card_param_version, customer.card_tariff_version_id = versions


def last_completed(session: Session, customer: Customer) -> Sale | None:
    return session.scalar(
        select(Sale).where(
            Sale.customer_id == customer.id,
            Sale.purchase_count == customer.purchase_count,
            Sale.state == SaleState.COMPLETED.value,
            Sale.kind == SaleKind.CARD.value,
        )
    )
