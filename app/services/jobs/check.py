"""Check cards: collecting a meter's reading and storing it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.clock import Clock
from app.domain import ids
from app.domain.card import ANY_METER
from app.domain.card import CardContents
from app.domain.card import CardKind
from app.domain.card import CardWrite
from app.domain.card import JobKind
from app.domain.card import JobRecord
from app.domain.card import WrongCardKind
from app.domain.permissions import Action
from app.errors import CardVendError
from app.persistence.db import Database
from app.persistence.models import Customer
from app.ports import CardTerminal
from app.services import audit
from app.services.auth import Principal
from app.services.jobs.cards import management_parameters
from app.services.jobs.cards import write_back_json
from app.services.jobs.errors import CheckCardEmpty
from app.services.jobs.errors import JobCardForged
from app.services.jobs.service import _allow
from app.services.jobs.service import _audit
from app.services.jobs.service import _refuse


@dataclass(frozen=True)
class CheckReading:
    serial: str
    meter_no: str
    customer_no: str | None  # None: no customer of this archive has that meter
    write_back: dict[str, Any]


def program_check_card(
    db: Database,
    actor: Principal,
    clock: Clock,
    terminal: CardTerminal,
    *,
    utility_code: str,
    meter_no: str | None = None,
) -> str:
    """Program the check card in ``terminal`` for one meter (or every meter); its serial."""
    _allow(db, actor, clock, Action.READ_METER, "check_card_program", meter_no or ANY_METER)
    target = ids.METER_NO.check(meter_no, "meter_no") if meter_no else ANY_METER
    card = terminal.read()
    if card.kind != CardKind.CHECK:
        raise _refuse(
            db,
            actor,
            clock,
            "check_card_program",
            target,
            WrongCardKind(found=card.kind.label, expected=CardKind.CHECK.label),
        )
    params = management_parameters(CardKind.CHECK, utility_code, target)
    job = JobRecord(uuid.uuid4().bytes, JobKind.CHECK)
    written = terminal.write(CardWrite(parameters=params, job=job), expect_serial=card.serial)
    serial = written.serial.hex().upper()
    audit.Actor.of(actor, clock).record_alone(
        db, "check_card_program", target, detail={"serial": serial}
    )
    return serial


def read_check_card(
    db: Database, actor: Principal, clock: Clock, terminal: CardTerminal
) -> CheckReading:
    """Read what a check card brought back and store it on the customer of that meter, so the
    next sync round sends it to the central system as a control report."""
    _allow(db, actor, clock, Action.READ_METER, "check_card_read", "-")
    card: CardContents = terminal.read()
    serial = card.serial_hex
    wb = card.write_back
    error: CardVendError | None = None
    if card.kind != CardKind.CHECK:
        error = WrongCardKind(found=card.kind.label, expected=CardKind.CHECK.label)
    elif wb is None:
        error = CheckCardEmpty(serial=serial)
    elif card.write_back_genuine is not True:
        error = JobCardForged(serial=serial)
    if error is not None:
        raise _refuse(db, actor, clock, "check_card_read", serial, error)
    assert wb is not None
    data = write_back_json(wb)
    with db.write() as session:
        customer = session.scalar(
            select(Customer).where(Customer.meter_no == wb.meter_no).with_for_update()
        )
        customer_no = None
        if customer is not None:
            customer_no = customer.customer_no
            customer.meter_remaining = wb.remaining
            customer.meter_purchase_count = wb.purchase_count
            customer.meter_illegal_insert_count = wb.illegal_insert_count
            customer.write_back_seen_at = clock.now()
        _audit(
            session,
            actor,
            clock,
            "check_card_read",
            wb.meter_no,
            serial=serial,
            customer_no=customer_no,
            write_back=data,
        )
    return CheckReading(serial, wb.meter_no, customer_no, data)
