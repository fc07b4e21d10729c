"""A replacement card stays a replacement card until the meter has seen it.

The meter rebinds to a new card only when the card says it is a replacement (or the first card of
a meter with none).  A replacement card that already carries the purchase the meter loaded is
ready to sell on at once; if the customer's parameters changed meanwhile (a pull from the central
system), that sale -- or a rewrite -- writes the parameter file again.  It must keep the card's
type: written as a plain purchase card, the meter never rebinds and refuses the customer's only
card.  Found by the kill campaign (tests/bench/bench_kill.py)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from app.domain.card import CardWrite
from app.domain.card import UserCardType
from app.persistence.models import Customer
from app.services import selling
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import Counter


def replaced(counter: Counter) -> Path:
    """The customer's card, loaded by the meter and seen at the counter since, then lost and
    replaced."""
    old = counter.open()
    counter.to_meter(old)
    seen = counter.recover(old)
    assert (seen.situation, seen.meter_count) == ("ready", 1)
    new = counter.kit.blank()
    counter.replace(new)
    return new


def new_thresholds(counter: Counter, alarm1: int) -> None:
    with counter.db.write() as session:
        session.execute(
            update(Customer)
            .where(Customer.customer_no == CUSTOMER)
            .values(alarm1=alarm1, param_version=Customer.param_version + 1)
        )


def card_type(counter: Counter, image: Path) -> UserCardType:
    params = counter.kit.terminal(image).read().parameters
    assert params is not None
    return params.user_card_type


def test_a_sale_with_new_parameters_keeps_a_replacement_card_one(counter: Counter) -> None:
    new = replaced(counter)
    assert card_type(counter, new) == UserCardType.REPLACEMENT
    new_thresholds(counter, 3000)
    out = counter.sell(new, 1000)  # ready at once: the meter loaded purchase 1 from the old card
    assert out.files == ("parameter file", "purchase file")
    before = counter.meter.state.remaining
    result = counter.meter.insert(counter.kit.terminal(new))  # the meter rebinds to it
    assert result.accepted and result.reason is None, result
    assert card_type(counter, new) == UserCardType.REPLACEMENT
    assert counter.meter.state.remaining == before + 1000
    assert counter.meter.state.alarm1 == 3000
    # seen by the meter: from now on the card is written as a purchase card
    new_thresholds(counter, 3100)
    counter.sell(new, 1000)
    assert card_type(counter, new) == UserCardType.PURCHASE
    assert counter.meter.insert(counter.kit.terminal(new)).accepted


def test_a_rewrite_with_new_parameters_keeps_a_replacement_card_one(counter: Counter) -> None:
    new = replaced(counter)
    counter.sell(new, 1000)
    # the card loses purchase 2 before the meter saw it (the previous purchase comes back)
    counter.kit.terminal(new).write(CardWrite(purchase=_purchase_of(counter, 1)))
    new_thresholds(counter, 3000)
    out = counter.rewrite(new)
    assert out.sale.purchase_count == 2 and "parameter file" in out.files
    result = counter.meter.insert(counter.kit.terminal(new))
    assert result.accepted and result.reason is None, result
    assert card_type(counter, new) == UserCardType.REPLACEMENT
    assert counter.meter.state.purchase_count == 2


def _purchase_of(counter: Counter, count: int) -> object:
    from sqlalchemy import select

    from app.persistence.models import Sale

    with counter.db.read() as session:
        sale = session.scalar(
            select(Sale).where(Sale.purchase_count == count, Sale.state == "completed")
        )
        assert sale is not None
        return selling.purchase_record(sale)
