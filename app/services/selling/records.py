"""What a card write carries: the parameter, tariff and purchase records, and the change a
customer's card needs."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session

from app.domain.card import CardContents
from app.domain.card import CardKind
from app.domain.card import CardWrite
from app.domain.card import ParameterRecord
from app.domain.card import PurchaseRecord
from app.domain.card import TariffRecord
from app.domain.card import UpdateFlags
from app.domain.card import UserCardType
from app.persistence.models import Customer
from app.persistence.models import Sale
from app.services.tariffs import next_version
from app.services.tariffs import version_in_force


def tariff_record(version: Any) -> TariffRecord:
    return TariffRecord(version.version_no, version.effective_from, version.spec.to_dict())


def parameter_record(
    c: Customer, utility_code: str, card_type: UserCardType, *, flags: UpdateFlags
) -> ParameterRecord:
    return ParameterRecord(
        card_kind=CardKind.USER,
        utility_code=utility_code,
        user_card_type=card_type,
        customer_no=c.customer_no,
        meter_no=c.meter_no,
        alarm1=c.alarm1,
        alarm2=c.alarm2,
        overdraft_limit=c.overdraft_limit,
        credit_ceiling=c.credit_ceiling,
        ct_ratio=c.ct_ratio,
        pt_ratio=c.pt_ratio,
        update_flags=flags,
        param_version=c.param_version,
    )


def purchase_record(sale: Sale) -> PurchaseRecord:
    return PurchaseRecord(
        sale.credit, sale.purchase_count or 0, uuid.UUID(sale.id).bytes[:8], sale.created_at
    )


EMPTY_PURCHASE = PurchaseRecord(0, 0, b"\x00" * 8, None)


def card_change(
    session: Session,
    customer: Customer,
    sale: Sale | None,
    utility_code: str,
    card_type: UserCardType,
    at: dt.datetime,
    *,
    on_card: CardContents | None = None,
    force_params: bool = False,
) -> tuple[CardWrite, tuple[int, int | None]]:
    """What the customer's card gets written (``on_card``: the card as read just before; None
    for a blank one) and the (parameter version, current tariff id) it then carries.

    The current tariff file holds the version in force at ``at`` and changes only when another
    version becomes due.  A version decided for later goes into the backup tariff file as soon
    as the card is worked on, so the meter switches on time by itself.  A meter takes tariff
    files only under a newer parameter version: a card bringing a tariff its meter may not have
    yet carries the next parameter version (the caller stores it:
    :func:`app.services.ledger.note_card_versions`)."""
    tariff = version_in_force(session, customer.tariff_plan_id, at)
    upcoming = next_version(session, customer.tariff_plan_id, at)
    backup = tariff_record(upcoming) if upcoming is not None else None
    params_changed = force_params or customer.card_param_version != customer.param_version
    tariff_changed = force_params or customer.card_tariff_version_id != tariff.id
    backup_changed = backup is not None and (force_params or not holds_tariff(on_card, backup))
    known = customer.card_tariff_version_id is not None  # a meter has had a tariff of ours
    newer = known and (customer.card_tariff_version_id != tariff.id or backup_changed)
    param_version = customer.param_version + 1 if newer else customer.param_version
    flags = UpdateFlags.NONE
    if params_changed or tariff_changed or backup_changed:
        flags |= UpdateFlags.PARAMETERS
    if tariff_changed:
        flags |= UpdateFlags.CURRENT_TARIFF
    if backup_changed:
        flags |= UpdateFlags.BACKUP_TARIFF
    params = parameter_record(customer, utility_code, card_type, flags=flags)
    change = CardWrite(
        parameters=replace(params, param_version=param_version) if flags else None,
        current_tariff=tariff_record(tariff) if tariff_changed else None,
        backup_tariff=backup if backup_changed else None,
        purchase=purchase_record(sale) if sale is not None else None,
    )
    return change, (param_version, tariff.id)


def holds_tariff(card: CardContents | None, record: TariffRecord) -> bool:
    """Whether the card's backup tariff file already holds ``record``."""
    held = None if card is None else card.backup_tariff
    return (
        held is not None
        and held.version_no == record.version_no
        and held.effective_from == record.effective_from
        and held.spec == record.spec
    )


def card_type(contents: CardContents, otherwise: UserCardType) -> UserCardType:
    """The user-card type to write with new parameters.  An open or replacement card that no
    meter has written back to yet stays what it is: the meter binds to a card only by that type,
    so a replacement card rewritten as a purchase card before its first visit would be refused
    by the customer's meter for good."""
    params = contents.parameters
    if (
        contents.write_back is None
        and params is not None
        and params.user_card_type in (UserCardType.OPEN, UserCardType.REPLACEMENT)
    ):
        return params.user_card_type
    return otherwise
