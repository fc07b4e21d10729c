"""Meter change (换表): the old meter's remaining credit and purchase count carried to the new
meter on the customer's card, as a transfer (not a sale: no money changes hands).

The old meter's state comes from one of three sources:

* ``card``: the customer's card after the old meter wrote back onto it (its genuine write-back
  names the old meter): the remaining balance and the purchase count the meter saw; a purchase
  on the card the old meter has not loaded yet is credit to carry as well;
* ``read``: a technician's DL/T 645 read of the old meter (:class:`MeterReading`, taken with
  :func:`app.services.meter_reading.read_for`, which checks ``read_meter`` and audits it);
* ``typed``: values typed from the old meter's display; needs an approved ``change_meter``
  request, used up in the same transaction as the change.

One write unit of work moves the customer to the new meter (``Customer.meter_no``), turns an
overdraft into an arrears item (must be collected), uses up the approval and records the
``meter_change`` account event (its detail: the old meter and its final reading; audited and
queued for the central system once).  Then the card is re-personalised: erased and issued
again (the old meter's write-back goes with it), written with the new meter's parameters as an
OPEN card and with the carried credit as a purchase-like transfer record whose purchase count
is the account's last one, tagged with the event id.  A new meter takes an OPEN card's
purchase as its first load whatever its number (``cardio/meter_sim``), so the purchase count
continues and the next sale is the next purchase on the new meter.

A card write that fails after the commit is finished by running the change again with the same
card and the same new meter number: the recorded event gives the transfer (no second event, no
second approval, no second arrears item).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from dataclasses import fields
from dataclasses import replace
from typing import Any
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import faults
from app.clock import Clock
from app.domain import ids
from app.domain.card import ANY_METER
from app.domain.card import CardContents
from app.domain.card import CardKind
from app.domain.card import CardWrite
from app.domain.card import UserCardType
from app.domain.customers import CustomerStatus
from app.domain.customers import MeterKind
from app.domain.permissions import Action
from app.errors import Conflict
from app.errors import ValidationError
from app.i18n import N_
from app.money import format_yuan
from app.persistence.db import Database
from app.persistence.models import AccountEvent
from app.persistence.models import ArrearsItem
from app.persistence.models import Customer
from app.ports import CardTerminal
from app.services import approvals
from app.services import ledger
from app.services.auth import Principal
from app.services.customers import CustomerView
from app.services.customers import get_customer
from app.services.customers import view_in_session
from app.services.lifecycle import record_event
from app.services.lifecycle.transfer import KIND
from app.services.lifecycle.transfer import last_change
from app.services.lifecycle.transfer import sold_since
from app.services.lifecycle.transfer import transfer_record
from app.services.meter_reading import MeterReading
from app.services.selling.assessment import identify
from app.services.selling.cardops import read_or_blank
from app.services.selling.errors import CardRefused
from app.services.selling.records import card_change
from app.services.selling.sale import is_training
from app.services.shifts import open_shift_id
from app.settings import UTILITY_CODE
from app.settings import Settings

SOURCE_CARD: Final = "card"
SOURCE_READ: Final = "read"
SOURCE_TYPED: Final = "typed"
SOURCES: Final = (SOURCE_CARD, SOURCE_READ, SOURCE_TYPED)


@dataclass(frozen=True)
class OldMeter:
    """The old meter's last state: remaining (fen, negative while in overdraft), the purchase
    count it loaded, its energy register (Wh) and when that was taken, where known."""

    remaining_fen: int
    purchase_count: int
    energy_wh: int | None = None
    taken_at: dt.datetime | None = None


@dataclass(frozen=True)
class MeterChangeRequest:
    """A meter change as a front end asks for it: the customer, the new meter, and where the
    old meter's state comes from (``source``, :data:`SOURCES`) with what that source takes."""

    customer_no: str
    new_meter_no: str
    source: str
    remaining_fen: int | None = None
    purchase_count: int | None = None
    reading: MeterReading | None = None
    energy_wh: int | None = None

    def arguments(self) -> dict[str, Any]:
        """The request as :func:`change_meter`'s keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class MeterChange:
    """A meter change as done (or finished by a retry: ``resumed``); what the slip prints."""

    event_id: str
    customer: CustomerView
    old_meter_no: str
    new_meter_no: str
    source: str
    remaining_fen: int  # what the old meter held (negative: overdraft used)
    unloaded_fen: int  # a purchase on the card the old meter had not loaded
    carried_fen: int  # the transfer written for the new meter
    arrears_fen: int  # the overdraft turned into an arrears item
    purchase_count: int  # the account's purchase count the new meter continues from
    energy_wh: int | None  # the old meter's final reading
    operator_id: str
    approver_id: str | None
    counter_id: str
    created_at: dt.datetime
    resumed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "customer": self.customer.to_json(),
            "old_meter_no": self.old_meter_no,
            "new_meter_no": self.new_meter_no,
            "source": self.source,
            "remaining_fen": self.remaining_fen,
            "unloaded_fen": self.unloaded_fen,
            "carried_fen": self.carried_fen,
            "arrears_fen": self.arrears_fen,
            "purchase_count": self.purchase_count,
            "energy_wh": self.energy_wh,
            "operator_id": self.operator_id,
            "approver_id": self.approver_id,
            "counter_id": self.counter_id,
            "created_at": self.created_at.isoformat(),
            "resumed": self.resumed,
        }


def change_meter(
    db: Database,
    terminal: CardTerminal | None,
    *,
    actor: Principal,
    customer_no: str,
    new_meter_no: str,
    clock: Clock,
    settings: Settings,
    source: str,
    remaining_fen: int | None = None,
    purchase_count: int | None = None,
    reading: MeterReading | None = None,
    energy_wh: int | None = None,
    approval_request: str | None = None,
) -> MeterChange:
    """Move ``customer_no`` from its meter to ``new_meter_no`` carrying the old meter's credit
    and purchase count on the customer's card (in ``terminal``).  ``source`` says where the old
    meter's state comes from (:data:`SOURCES`): ``typed`` takes ``remaining_fen`` and
    ``purchase_count`` (and ``energy_wh`` if known) and needs ``approval_request``; ``read``
    takes ``reading``; ``card`` the card's write-back."""
    actor.authorize(Action.CHANGE_METER, clock)
    if source not in SOURCES:
        raise ValidationError(detail=f"source must be one of {', '.join(SOURCES)}")
    new_meter_no = ids.check_meter_no(new_meter_no, "new_meter_no")
    if new_meter_no == ANY_METER:
        raise ValidationError(N_("{meter_no} is not a meter number."), meter_no=new_meter_no)
    if terminal is None:
        raise Conflict(N_("Put the customer's card in the reader to change the meter."))
    utility_code = settings.value(UTILITY_CODE)
    present = read_or_blank(terminal)
    resumed = _resume(db, terminal, present, actor, customer_no, new_meter_no, clock, settings)
    if resumed is not None:
        return resumed
    if present is None:
        raise CardRefused(reason=N_("it is blank; the meter change needs the customer's card"))
    with db.read() as session:
        customer = _changeable(session, present, customer_no, new_meter_no, utility_code)
        old = _old_meter(
            source, present, customer, remaining_fen, purchase_count, reading, energy_wh
        )
        unloaded = _unloaded(present, customer, old)
    if source == SOURCE_TYPED and not approval_request:
        raise Conflict(
            N_("Values typed from the old meter need a supervisor's approval (change_meter).")
        )
    net = old.remaining_fen + unloaded
    carried, arrears = max(net, 0), max(-net, 0)
    with db.write() as session:
        event, change = _commit(
            session,
            actor,
            clock,
            settings,
            customer_no=customer_no,
            new_meter_no=new_meter_no,
            source=source,
            old=old,
            unloaded=unloaded,
            carried=carried,
            arrears=arrears,
            approval_request=approval_request if source == SOURCE_TYPED else None,
        )
        event_id = event.id
    faults.checkpoint("meter_changed")
    _write_card(db, terminal, present.serial_hex, customer_no, change)
    return _outcome(db, event_id)


def _changeable(
    session: Session,
    present: CardContents,
    customer_no: str,
    new_meter_no: str,
    utility_code: str,
) -> Customer:
    """The customer, when its meter may be changed with this card."""
    customer = get_customer(session, customer_no)
    if customer.meter_kind != MeterKind.CARD or customer.status != CustomerStatus.ACTIVE:
        raise Conflict(
            N_("Customer {customer_no} is not an active card-meter customer."),
            customer_no=customer_no,
        )
    if not customer.card_serial:
        raise Conflict(
            N_("Customer {customer_no} has no card yet; open the account instead."),
            customer_no=customer_no,
        )
    if customer.meter_no == new_meter_no:
        raise Conflict(
            N_("Customer {customer_no} already has meter {meter_no}."),
            customer_no=customer_no,
            meter_no=new_meter_no,
        )
    _check_meter_free(session, customer, new_meter_no)
    if ledger.unresolved_sale(session, customer.id) is not None:
        raise Conflict(
            N_("Customer {customer_no} has an unfinished sale; recover it first."),
            customer_no=customer_no,
        )
    if identify(session, present, utility_code, lock=False).id != customer.id:
        raise CardRefused(reason=N_("it belongs to another customer"))
    card_count = present.purchase.purchase_count if present.purchase else 0
    if card_count < customer.purchase_count:
        raise Conflict(
            N_("The card is behind the ledger (card {card}, ledger {ledger}); rewrite it first."),
            card=card_count,
            ledger=customer.purchase_count,
        )
    if card_count > customer.purchase_count or present.purchase_genuine is False:
        raise CardRefused(reason=N_("its purchase record does not match the ledger"))
    return customer


def _check_meter_free(session: Session, customer: Customer, meter_no: str) -> None:
    holder = session.scalar(
        select(Customer.customer_no).where(
            Customer.meter_no == meter_no, Customer.id != customer.id
        )
    )
    if holder is not None:
        raise Conflict(
            N_("Meter {meter_no} is already the meter of customer {holder}."),
            meter_no=meter_no,
            holder=holder,
        )


def _old_meter(
    source: str,
    card: CardContents,
    customer: Customer,
    remaining_fen: int | None,
    purchase_count: int | None,
    reading: MeterReading | None,
    energy_wh: int | None,
) -> OldMeter:
    """The old meter's state from ``source``."""
    if source == SOURCE_CARD:
        wb = card.write_back
        if wb is None or card.write_back_genuine is not True or wb.meter_no != customer.meter_no:
            raise CardRefused(
                reason=N_(
                    "it holds no write-back of the old meter {meter_no}; put it into the old "
                    "meter first"
                ),
                meter_no=customer.meter_no,
            )
        return OldMeter(wb.remaining, wb.purchase_count, wb.total_energy_wh, wb.time)
    if source == SOURCE_READ:
        if reading is None or reading.remaining_fen is None or reading.purchase_count is None:
            raise ValidationError(
                N_("The meter reading has no remaining balance or purchase count.")
            )
        if reading.addr != customer.meter_no:
            raise ValidationError(
                N_("The reading is of meter {addr}, not of the old meter {meter_no}."),
                addr=reading.addr,
                meter_no=customer.meter_no,
            )
        remaining = reading.remaining_fen - (reading.overdraft_fen or 0)
        return OldMeter(remaining, reading.purchase_count, reading.energy_wh, reading.meter_time)
    if remaining_fen is None or purchase_count is None:
        raise ValidationError(N_("Type the old meter's remaining balance and purchase count."))
    if purchase_count < 0 or (energy_wh is not None and energy_wh < 0):
        raise ValidationError(N_("The purchase count and the reading cannot be negative."))
    return OldMeter(remaining_fen, purchase_count, energy_wh, None)


def _unloaded(card: CardContents, customer: Customer, old: OldMeter) -> int:
    """The credit on the card the old meter has not loaded: the card's purchase when the meter
    is one purchase behind the ledger; nothing when it is level."""
    ledger_count = customer.purchase_count
    if old.purchase_count == ledger_count:
        return 0
    if old.purchase_count == ledger_count - 1 and card.purchase is not None:
        return card.purchase.amount
    raise Conflict(
        N_(
            "The old meter's purchase count {meter} does not fit the ledger's {ledger}; "
            "check the values."
        ),
        meter=old.purchase_count,
        ledger=ledger_count,
    )


def _commit(
    session: Session,
    actor: Principal,
    clock: Clock,
    settings: Settings,
    *,
    customer_no: str,
    new_meter_no: str,
    source: str,
    old: OldMeter,
    unloaded: int,
    carried: int,
    arrears: int,
    approval_request: str | None,
) -> tuple[AccountEvent, CardChange]:
    """The one transaction of a meter change; the event and the card change to write."""
    customer = get_customer(session, customer_no, for_update=True)
    if customer.meter_no == new_meter_no or ledger.unresolved_sale(session, customer.id):
        raise Conflict(
            N_("Customer {customer_no} changed meanwhile; try again."), customer_no=customer_no
        )
    _check_meter_free(session, customer, new_meter_no)
    if customer.purchase_count == 0 and carried > 0:
        raise Conflict(
            N_("The old meter shows credit, but nothing was ever sold onto this account.")
        )
    if customer.credit_ceiling and carried > customer.credit_ceiling:
        raise Conflict(
            N_("The carried credit {amount} yuan is above the credit ceiling; check the values."),
            amount=format_yuan(carried),
        )
    approver_id = None
    if approval_request is not None:
        approver_id = approvals.consume_by(
            session,
            actor,
            approval_request,
            action=Action.CHANGE_METER,
            target=customer_no,
            clock=clock,
        ).approver
    old_meter_no = customer.meter_no
    customer.meter_no = new_meter_no
    customer.meter_purchase_count = None  # the new meter has written nothing back yet
    customer.meter_remaining = None
    customer.meter_illegal_insert_count = None
    session.flush()  # the meter number is unique: a clash shows here
    if arrears:
        session.add(
            ArrearsItem(
                customer_id=customer.id,
                kind="arrears",
                description=f"overdraft on meter {old_meter_no}"[:120],
                amount=arrears,
                must_collect=True,
                created_at=clock.now(),
            )
        )
    # no money changes hands: an open shift is noted, not needed
    shift = open_shift_id(session, actor.counter_id)
    detail = {
        "old_meter_no": old_meter_no,
        "new_meter_no": new_meter_no,
        "source": source,
        "remaining_fen": old.remaining_fen,
        "meter_purchase_count": old.purchase_count,
        "purchase_count": customer.purchase_count,
        "unloaded_fen": unloaded,
        "carried_fen": carried,
        "arrears_fen": arrears,
        "final_energy_wh": old.energy_wh,
        "final_read_at": old.taken_at.isoformat() if old.taken_at else None,
        "card_serial": customer.card_serial,
    }
    event = record_event(
        session,
        customer,
        KIND,
        actor,
        clock,
        detail=detail,
        approver_id=approver_id,
        shift_id=shift,
        new_meter_no=new_meter_no,
        training=is_training(settings),
    )
    return event, _transfer_change(session, customer, event, settings, clock)


def _transfer_change(
    session: Session, customer: Customer, event: AccountEvent, settings: Settings, clock: Clock
) -> CardChange:
    """The card change for the new meter: all parameter files (an OPEN card of the new meter)
    and the carried credit as a transfer record with the account's purchase count."""
    change, versions = card_change(
        session,
        customer,
        None,
        settings.value(UTILITY_CODE),
        UserCardType.OPEN,
        clock.now(),
        force_params=True,
    )
    return replace(change, purchase=transfer_record(event)), versions


CardChange = tuple[CardWrite, tuple[int, int | None]]


def _write_card(
    db: Database,
    terminal: CardTerminal,
    serial: str,
    customer_no: str,
    change: CardChange,
    *,
    erase: bool = True,
) -> None:
    """Erase the card (and the old meter's write-back with it), issue it again as a user card
    and write the transfer; then note the versions the card carries.  ``erase``: False for a
    card already blank (a change stopped between the erase and the issue)."""
    write, versions = change
    if erase:
        terminal.erase()
        faults.checkpoint("card_erased")
    card = terminal.issue(CardKind.USER)
    if card.serial_hex != serial:  # another blank card was put in: give it back blank
        terminal.erase()
        raise CardRefused(reason=N_("it is not the card bound to this customer"))
    terminal.write(write, expect_serial=card.serial)
    with db.write() as session:
        customer = get_customer(session, customer_no, for_update=True)
        customer.card_param_version, customer.card_tariff_version_id = versions


def _resume(
    db: Database,
    terminal: CardTerminal,
    present: CardContents | None,
    actor: Principal,
    customer_no: str,
    new_meter_no: str,
    clock: Clock,
    settings: Settings,
) -> MeterChange | None:
    """Finish a meter change to ``new_meter_no`` whose card write did not complete (the card
    still shows the old meter, or is blank, or half written); ``None`` when there is none.  A
    card that already carries the transfer only gets its versions noted."""
    with db.read() as session:
        customer = get_customer(session, customer_no)
        if customer.meter_no != new_meter_no:
            return None
        event = last_change(session, customer)
        if event is None or event.detail.get("new_meter_no") != new_meter_no:
            return None
        if present is not None and present.serial_hex != customer.card_serial:
            raise CardRefused(reason=N_("it is not the card bound to this customer"))
        if sold_since(session, customer, event):
            raise Conflict(
                N_("Customer {customer_no} already has meter {meter_no}."),
                customer_no=customer_no,
                meter_no=new_meter_no,
            )
        change = _transfer_change(session, customer, event, settings, clock)
        event_id = event.id
        serial = customer.card_serial
    tag = uuid.UUID(event_id).bytes[:8]
    done = (
        present is not None
        and present.kind == CardKind.USER
        and present.parameters is not None
        and present.parameters.meter_no == new_meter_no
        and present.purchase is not None
        and present.purchase.sale_tag == tag
    )
    if done and present is not None and present.write_back is not None:
        raise Conflict(  # the new meter has taken the card already
            N_("Customer {customer_no} already has meter {meter_no}."),
            customer_no=customer_no,
            meter_no=new_meter_no,
        )
    if done:
        with db.write() as session:
            customer = get_customer(session, customer_no, for_update=True)
            customer.card_param_version, customer.card_tariff_version_id = change[1]
    else:
        assert serial is not None  # erased, not issued again yet: no erase
        _write_card(db, terminal, serial, customer_no, change, erase=present is not None)
    return replace(_outcome(db, event_id), resumed=True)


def _outcome(db: Database, event_id: str) -> MeterChange:
    with db.read() as session:
        event = session.get(AccountEvent, event_id)
        assert event is not None
        customer = session.get(Customer, event.customer_id)
        assert customer is not None
        view = view_in_session(session, customer)
        d = event.detail
        energy = d.get("final_energy_wh")
        return MeterChange(
            event_id=event.id,
            customer=view,
            old_meter_no=str(d["old_meter_no"]),
            new_meter_no=str(d["new_meter_no"]),
            source=str(d["source"]),
            remaining_fen=int(d["remaining_fen"]),
            unloaded_fen=int(d["unloaded_fen"]),
            carried_fen=int(d["carried_fen"]),
            arrears_fen=int(d["arrears_fen"]),
            purchase_count=int(d["purchase_count"]),
            energy_wh=None if energy is None else int(energy),
            operator_id=event.operator_id,
            approver_id=event.approver_id,
            counter_id=event.counter_id,
            created_at=event.created_at,
        )
