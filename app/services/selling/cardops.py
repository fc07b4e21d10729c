"""Card work other than a sale: open an account, write the last purchase again, replace a lost
card (补卡) or exchange a damaged one (换卡)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import faults
from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.card import CardContents
from app.domain.card import CardKind
from app.domain.card import CardWrite
from app.domain.card import UnissuedCard
from app.domain.card import UserCardType
from app.domain.customers import CustomerStatus
from app.domain.customers import MeterKind
from app.domain.ledger import Situation
from app.domain.permissions import Action
from app.errors import Conflict
from app.errors import NotFound
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import CardBlacklist
from app.persistence.models import Customer
from app.persistence.models import FeePayment
from app.persistence.models import Sale
from app.ports import CardTerminal
from app.services import approvals
from app.services import audit
from app.services import ledger
from app.services import shifts
from app.services.auth import Principal
from app.services.customers import CustomerView
from app.services.customers import customer_view
from app.services.customers import get_customer
from app.services.lifecycle.transfer import due_transfer
from app.services.selling.assessment import assess
from app.services.selling.errors import CardRefused
from app.services.selling.errors import NoRewriteNeeded
from app.services.selling.records import card_change
from app.services.selling.records import card_type
from app.services.selling.records import purchase_record
from app.services.selling.sale import SaleOutcome
from app.services.selling.sale import is_training
from app.services.selling.sale import sell
from app.settings import EXCHANGE_FEE
from app.settings import REPLACEMENT_FEE
from app.settings import UTILITY_CODE
from app.settings import ConfigVar
from app.settings import Settings

EXCHANGED = "exchanged"  # the blacklist reason of an exchanged card, lifted once it is erased


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


def blacklist_card(
    session: Session, serial: str, customer: Customer, reason: str, clock: Clock
) -> None:
    """Blacklist the card ``serial`` of ``customer`` (lost, replaced, closed); a card on the
    list already keeps its first entry."""
    if session.get(CardBlacklist, serial) is None:
        session.add(
            CardBlacklist(
                serial=serial, customer_id=customer.id, reason=reason, created_at=clock.now()
            )
        )


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
        _check_no_card(customer)
    card = card_to_bind(db, terminal, read_or_blank(terminal), customer_no)
    serial = card.serial_hex
    with db.read() as session:
        customer = get_customer(session, customer_no)
        change, versions = card_change(
            session,
            customer,
            None,
            utility_code,
            UserCardType.OPEN,
            clock.now(),
            on_card=card,
            force_params=True,
        )
    terminal.write(change, expect_serial=card.serial)
    faults.checkpoint("card_written")
    with db.write() as session:
        customer = get_customer(session, customer_no, for_update=True)
        _check_no_card(customer)  # another counter may have opened the account meanwhile
        check_bindable(session, serial, customer_no)
        customer.card_serial = serial
        ledger.note_card_versions(customer, versions)
        audit.Actor.of(actor, clock).record(
            session, AuditAction.OPEN_ACCOUNT, customer_no, detail={"serial": serial}
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


def _check_no_card(customer: Customer) -> None:
    if customer.card_serial:
        raise Conflict(
            N_("Customer {customer_no} already has a card; issue a replacement card instead."),
            customer_no=customer.customer_no,
        )


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
        raise NoRewriteNeeded(card=a.card_count, ledger=a.ledger_count)
    utility_code = settings.value(UTILITY_CODE)
    with db.read() as session:
        customer = get_customer(session, a.customer.customer_no)
        sale = ledger.completed_card_sale(session, customer.id, a.ledger_count)
        if sale is None:
            raise NotFound(what=N_("Sale"), key=f"{a.customer.customer_no}/{a.ledger_count}")
        change, versions = card_change(
            session,
            customer,
            sale,
            utility_code,
            card_type(contents, UserCardType.PURCHASE),
            clock.now(),
            on_card=contents,
        )
        sale_id = sale.id
    result = terminal.write(change, expect_serial=contents.serial)
    with db.write() as session:
        row = session.get(Sale, sale_id, with_for_update=True)
        customer = get_customer(session, a.customer.customer_no, for_update=True)
        assert row is not None
        row.rewrites += 1
        row.card_serial = contents.serial_hex
        ledger.note_card_versions(customer, versions)
        audit.Actor.of(actor, clock).record(
            session,
            AuditAction.REWRITE,
            sale_id,
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


@dataclass(frozen=True)
class ReplacementMode:
    """What differs between the two ways a card is replaced."""

    name: str  # "lost" (补卡) or "damaged" (换卡): the mode on the outbox record
    action: Action
    audit: AuditAction
    fee_kind: str  # FeePayment.kind
    fee: ConfigVar[int]  # the setting that prices it
    blacklist_reason: str


LOST = ReplacementMode(
    "lost",
    Action.REPLACE_CARD,
    AuditAction.REPLACE_CARD,
    "replacement",
    REPLACEMENT_FEE,
    "replaced",
)
DAMAGED = ReplacementMode(
    "damaged", Action.EXCHANGE_CARD, AuditAction.EXCHANGE_CARD, "exchange", EXCHANGE_FEE, EXCHANGED
)


@dataclass(frozen=True)
class ExchangeOutcome:
    """A damaged card exchanged: the customer as now, the fee (0: an interrupted exchange was
    finished), the old card's serial (None: finishing one) and whether it could be read."""

    customer: CustomerView
    fee: int
    old_serial: str | None
    old_read: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer.to_json(),
            "card_serial": self.customer.card_serial,
            "fee_fen": self.fee,
            "old_serial": self.old_serial,
            "old_read": self.old_read,
        }


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
    """A lost card (补卡): a blank card becomes the customer's card carrying the last
    purchase (so a purchase the meter had not loaded still reaches it), the old serial is
    blacklisted, the fee is taken.  Needs an approved ``replace_card`` request.

    The card is issued first; then one transaction binds it, blacklists the old card, uses up
    the approval and books the fee on the counter's open shift as that transaction reads it
    (locked).  A failed issue, or no open shift by then, changes nothing: the approval can be
    used for a retry, with a new blank card or with the card that was issued.  A write that
    fails after the binding is finished by presenting the same card again (no new fee)."""
    actor.authorize(Action.REPLACE_CARD, clock)
    fee = _replace(
        db,
        terminal,
        read_or_blank(terminal),
        LOST,
        actor=actor,
        customer_no=customer_no,
        clock=clock,
        settings=settings,
        approval_request=approval_request,
        carried={},
    )
    return customer_view(db, customer_no), fee


def exchange_card(
    db: Database,
    terminal: CardTerminal,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    settings: Settings,
    old_card: CardContents | None,
    approval_request: str | None = None,
) -> ExchangeOutcome:
    """A damaged or faulty card the customer brings (换卡): ``old_card`` is that card as read
    just before (None: it could not be read).  A blank card in ``terminal`` becomes the
    customer's card.

    A readable old card is assessed first, as a sale would: an unfinished sale it can decide is
    decided, and its meter write-back (what the meter last loaded and has left) is noted on the
    customer, so the new card starts where the old one was.  The new card carries the last
    purchase of the ledger, which is the old card's own purchase record (same sale, same count:
    the meter loads it once, from whichever card comes first).  The old serial is blacklisted
    in the binding transaction; :func:`erase_exchanged_card` erases the old card afterwards and
    lifts the blacklisting, so the erased card can serve as a blank.  The fee is
    ``exchange_fee_fen``; an approval is needed only when a rule for ``exchange_card`` says so.
    The binding and a write that fails afterwards behave as in :func:`replace_card`."""
    actor.authorize(Action.EXCHANGE_CARD, clock)
    with db.read() as session:
        current = get_customer(session, customer_no).card_serial
    present = read_or_blank(terminal)
    resuming = present is not None and present.serial_hex == current
    carried: dict[str, Any] = {"old_read": old_card is not None}
    if old_card is not None and resuming and old_card.serial_hex == current:
        raise CardRefused(reason=N_("it is the old card; put a blank card in the reader"))
    if old_card is not None and not resuming:
        carried.update(_carry_over(db, old_card, current, clock, settings, actor))
    fee = _replace(
        db,
        terminal,
        present,
        DAMAGED,
        actor=actor,
        customer_no=customer_no,
        clock=clock,
        settings=settings,
        approval_request=approval_request,
        carried=carried,
    )
    return ExchangeOutcome(
        customer_view(db, customer_no),
        fee,
        None if resuming else current,
        old_card is not None,
    )


def _carry_over(
    db: Database,
    old_card: CardContents,
    current: str | None,
    clock: Clock,
    settings: Settings,
    actor: Principal,
) -> dict[str, Any]:
    """Assess the old card (decides an unfinished sale, notes its write-back on the customer)
    and check that its purchase is the ledger's; what it carried, for the audit and outbox."""
    if old_card.serial_hex != current:
        raise CardRefused(reason=N_("it is not the card bound to this customer"))
    a = assess(db, old_card, clock, settings=settings, actor=actor)
    purchase = old_card.purchase
    if purchase is not None and a.card_count == a.ledger_count and a.card_count:
        with db.read() as session:
            customer = get_customer(session, a.customer.customer_no)
            last = last_completed(session, customer)
            # after a meter change no sale has followed, the card holds its transfer
            transfer = due_transfer(session, customer)
        tags = {purchase_record(last).sale_tag} if last is not None else set()
        if transfer is not None:
            tags.add(transfer.sale_tag)
        if purchase.sale_tag not in tags:
            raise CardRefused(reason=N_("its last purchase is not the one in the ledger"))
    wb = old_card.write_back
    return {
        "card_count": a.card_count,
        "meter_count": a.meter_count,
        "meter_remaining": wb.remaining if wb is not None else None,
        "situation": a.situation.value,
    }


def erase_exchanged_card(
    db: Database,
    terminal: CardTerminal,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
) -> str:
    """Erase the old card of an exchange (it is in ``terminal``) back to a blank card and lift
    its blacklisting; its serial.  A card that cannot be erased stays blacklisted."""
    actor.authorize(Action.EXCHANGE_CARD, clock)
    serial = terminal.read().serial_hex
    with db.read() as session:
        customer = get_customer(session, customer_no)
        row = session.get(CardBlacklist, serial)
        if row is None or row.reason != EXCHANGED or row.customer_id != customer.id:
            raise CardRefused(reason=N_("it is not a card exchanged for this customer"))
    terminal.erase()
    with db.write() as session:
        row = session.get(CardBlacklist, serial)
        if row is not None:
            session.delete(row)
        audit.Actor.of(actor, clock).record(
            session, AuditAction.EXCHANGE_CARD, customer_no, detail={"erased": serial}
        )
    return serial


def _replace(
    db: Database,
    terminal: CardTerminal,
    present: CardContents | None,
    mode: ReplacementMode,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    settings: Settings,
    approval_request: str | None,
    carried: dict[str, Any],
) -> int:
    """Both modes: finish an interrupted replacement on its card (returns 0), or bind the blank
    card in ``present`` and write it (returns the mode's fee)."""
    utility_code = settings.value(UTILITY_CODE)
    fee = settings.value(mode.fee)
    old, done_count = _replaceable(db, customer_no)
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
        return 0
    if shifts.current_shift(db, actor.counter_id) is None:  # before a card is issued for nothing
        raise shifts.no_shift(actor.counter_id)
    card = card_to_bind(db, terminal, present, customer_no)
    with db.write() as session:
        change, versions = _bind_replacement(
            session,
            old,
            card,
            fee,
            mode,
            actor=actor,
            customer_no=customer_no,
            clock=clock,
            utility_code=utility_code,
            approval_request=approval_request,
            training=is_training(settings),
            carried=carried,
        )
    faults.checkpoint("card_bound")
    terminal.write(change, expect_serial=card.serial)
    _note_card_versions(db, customer_no, versions)
    return fee


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
        change, versions = replacement_change(
            session, customer, last_completed(session, customer), utility_code, clock, present
        )
    terminal.write(change, expect_serial=present.serial)
    with db.write() as session:
        customer = get_customer(session, customer_no, for_update=True)
        ledger.note_card_versions(customer, versions)
        audit.Actor.of(actor, clock).record(
            session,
            AuditAction.REPLACE_CARD_RESUMED,
            customer_no,
            detail={"serial": present.serial_hex},
        )


def _bind_replacement(
    session: Session,
    old: str,
    card: CardContents,
    fee: int,
    mode: ReplacementMode,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    utility_code: str,
    approval_request: str | None,
    training: bool,
    carried: dict[str, Any],
) -> tuple[CardWrite, tuple[int, int | None]]:
    """One transaction: bind the new card, blacklist the old one, use up the approval and book
    the fee on the open shift (read and locked here); the change the new card gets."""
    new = card.serial_hex
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
    _use_approval(session, mode, approval_request, actor, customer_no, clock)
    if new != old:
        blacklist_card(session, old, customer, mode.blacklist_reason, clock)
    customer.card_serial = new
    last = last_completed(session, customer)
    payment = FeePayment(
        id=str(uuid.uuid4()),
        customer_id=customer.id,
        kind=mode.fee_kind,
        amount=fee,
        operator_id=actor.operator_id,
        counter_id=actor.counter_id,
        shift_id=shift.id,
        created_at=clock.now(),
    )
    session.add(payment)
    audit.Actor.of(actor, clock).record(
        session,
        mode.audit,
        customer_no,
        detail={"old": old, "new": new, "fee": fee, "shift": shift.id, **carried},
    )
    ledger.enqueue(
        session,
        "replacement",
        payment.id,
        {"customer_no": customer_no, "old": old, "new": new, "mode": mode.name, **carried},
        fee,
        clock,
        training=training,
    )
    return replacement_change(session, customer, last, utility_code, clock, card)


def replacement_change(
    session: Session,
    customer: Customer,
    last: Sale | None,
    utility_code: str,
    clock: Clock,
    card: CardContents,
) -> tuple[CardWrite, tuple[int, int | None]]:
    """What a replacement card gets: all parameter files and the account's last purchase --
    the last sale's record, or the transfer of a meter change no sale has followed yet (the
    new meter may not have loaded it: it must reach the new meter from this card)."""
    change, versions = card_change(
        session,
        customer,
        last,
        utility_code,
        UserCardType.REPLACEMENT,
        clock.now(),
        on_card=card,
        force_params=True,
    )
    transfer = due_transfer(session, customer)
    if transfer is not None:
        change = dataclasses.replace(change, purchase=transfer)
    return change, versions


def _use_approval(
    session: Session,
    mode: ReplacementMode,
    request_id: str | None,
    actor: Principal,
    customer_no: str,
    clock: Clock,
) -> None:
    """A lost card always needs its approved request; an exchange only when its rule says so."""
    if mode is LOST:
        approvals.consume_by(
            session, actor, request_id or "", action=mode.action, target=customer_no, clock=clock
        )
        return
    approvals.require_by(
        session, actor, request_id, action=mode.action, target=customer_no, clock=clock
    )


def _note_card_versions(db: Database, customer_no: str, versions: tuple[int, int | None]) -> None:
    """Remember which parameter and tariff versions the customer's card now carries."""
    with db.write() as session:
        customer = get_customer(session, customer_no, for_update=True)
        ledger.note_card_versions(customer, versions)


def last_completed(session: Session, customer: Customer) -> Sale | None:
    """The sale of the customer's last purchase (None: no card purchase yet)."""
    return ledger.completed_card_sale(session, customer.id, customer.purchase_count)
