"""A damaged or faulty card exchanged (换卡) next to a lost card replaced (补卡): emulated card
images, the meter simulator and the real database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.domain.card import CardContents
from app.domain.card import CardKind
from app.domain.card import UnissuedCard
from app.domain.card import UserCardType
from app.domain.ledger import Situation
from app.errors import Conflict
from app.persistence.models import AuditEntry
from app.persistence.models import CardBlacklist
from app.persistence.models import FeePayment
from app.persistence.models import OutboxEntry
from app.services import approvals
from app.services import selling
from app.services.approvals import ApprovalRequired
from app.settings import Settings
from cardio.meter_sim.state import REASON_SERIAL
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import Counter


def exchange(
    counter: Counter, new: Path, old_card: CardContents | None, request: str | None = None
) -> selling.ExchangeOutcome:
    return counter.service(
        selling.exchange_card,
        counter.kit.terminal(new),
        customer_no=CUSTOMER,
        old_card=old_card,
        approval_request=request,
    )


def erase(counter: Counter, old: Path) -> str:
    return selling.erase_exchanged_card(
        counter.db,
        counter.kit.terminal(old),
        actor=counter.teller,
        customer_no=CUSTOMER,
        clock=counter.clock,
    )


def blacklist_reason(counter: Counter, serial: str) -> str | None:
    with counter.db.read() as session:
        row = session.get(CardBlacklist, serial)
        return None if row is None else row.reason


def replacement_rows(counter: Counter) -> list[dict[str, object]]:
    with counter.db.read() as session:
        rows = session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "replacement"))
        return [dict(r.payload) for r in rows]


def test_an_unloaded_purchase_and_the_write_back_carry_over_exactly(counter: Counter) -> None:
    old = counter.open()  # purchase 1: 50.00 yuan
    counter.to_meter(old)
    second = counter.sell(old, 2000).sale  # purchase 2, not loaded by the meter yet
    old_card = counter.kit.terminal(old).read()
    assert old_card.write_back is not None and old_card.write_back.purchase_count == 1
    new = counter.kit.blank()

    outcome = exchange(counter, new, old_card)  # no rule for exchange_card: no approval

    assert outcome.fee == 1000 and outcome.old_read and outcome.old_serial == old_card.serial_hex
    new_card = counter.kit.terminal(new).read()
    assert outcome.customer.card_serial == new_card.serial_hex != old_card.serial_hex
    assert new_card.parameters is not None
    assert new_card.parameters.user_card_type == UserCardType.REPLACEMENT
    assert new_card.purchase == old_card.purchase  # the same sale, count, tag and amount
    assert new_card.purchase is not None and new_card.purchase.purchase_count == 2
    # the old card's write-back is noted: the meter has loaded purchase 1, not 2
    c = counter.customer_row()
    assert (c.meter_purchase_count, c.meter_remaining) == (1, old_card.write_back.remaining)
    # blacklisted until it is erased; the fee and the record say which mode
    assert blacklist_reason(counter, old_card.serial_hex) == "exchanged"
    with counter.db.read() as session:
        assert [(f.kind, f.amount) for f in session.scalars(select(FeePayment))] == [
            ("exchange", 1000)
        ]
        actions = [e.action for e in session.scalars(select(AuditEntry))]
    assert "exchange_card" in actions and "replace_card" not in actions
    (row,) = replacement_rows(counter)
    assert row["mode"] == "damaged" and row["old_read"] is True and row["meter_count"] == 1

    # the old card is erased back to a blank card and is no longer blacklisted
    assert erase(counter, old) == old_card.serial_hex
    with pytest.raises(UnissuedCard):
        counter.kit.terminal(old).read()
    assert blacklist_reason(counter, old_card.serial_hex) is None

    # the meter loads purchase 2 once, from the new card, and rebinds to it
    before = counter.meter.state.remaining
    result = counter.meter.insert(counter.kit.terminal(new))
    assert result.accepted and result.credited == second.credit_fen
    assert counter.meter.state.remaining == before + second.credit_fen
    assert counter.meter.state.purchase_count == 2
    assert counter.meter.state.card_serial == new_card.serial_hex
    assert counter.sell(new, 1000).sale.purchase_count == 3


def test_the_old_card_is_blacklisted_when_it_cannot_be_erased(counter: Counter) -> None:
    old = counter.open()
    counter.to_meter(old)
    old_card = counter.kit.terminal(old).read()
    new = counter.kit.blank()
    exchange(counter, new, old_card)
    counter.to_meter(new)  # the meter now belongs to the new card
    # the customer keeps the faulty card: it stays blacklisted at the counter, and the meter
    # refuses it
    with pytest.raises(selling.CardRefused, match="blacklisted"):
        counter.sell(old, 1000)
    refused = counter.meter.insert(counter.kit.terminal(old))
    assert not refused.accepted and refused.reason == REASON_SERIAL
    # a card that is not the exchanged one is not erased
    with pytest.raises(selling.CardRefused, match="not a card exchanged"):
        erase(counter, new)


def test_the_write_back_makes_the_new_card_ready_where_a_lost_card_would_wait(
    counter: Counter,
) -> None:
    """The counter never saw the meter's write-back (the old card went from the meter to the
    exchange): read from the old card, it tells that purchase 1 is loaded, so the new card
    may be sold onto at once.  A lost card's replacement must go to the meter first."""
    old = counter.open()
    counter.to_meter(old)
    assert counter.customer_row().meter_purchase_count in (None, 0)
    new = counter.kit.blank()
    exchange(counter, new, counter.kit.terminal(old).read())
    a = selling.recover_with_card(
        counter.db, counter.kit.terminal(new), clock=counter.clock, settings=counter.settings
    )
    assert a.situation == Situation.READY
    assert counter.sell(new, 1000).sale.purchase_count == 2


def test_an_unreadable_card_is_exchanged_from_the_ledger(counter: Counter) -> None:
    old = counter.open()
    counter.to_meter(old)
    counter.sell(old, 2000)  # purchase 2, then the card broke before it reached the meter
    old_serial = counter.kit.terminal(old).read().serial_hex
    new = counter.kit.blank()
    outcome = exchange(counter, new, None)
    assert outcome.fee == 1000 and not outcome.old_read
    new_card = counter.kit.terminal(new).read()
    assert new_card.purchase is not None and new_card.purchase.purchase_count == 2
    assert blacklist_reason(counter, old_serial) == "exchanged"
    (row,) = replacement_rows(counter)
    assert row["mode"] == "damaged" and row["old_read"] is False
    assert counter.meter.insert(counter.kit.terminal(new)).credited == 2000
    assert counter.meter.state.purchase_count == 2


def test_an_in_doubt_sale_on_the_old_card_is_decided_by_the_exchange(counter: Counter) -> None:
    old = counter.open()
    counter.to_meter(old)
    card_os = counter.kit.os(old)
    terminal = counter.kit.terminal(old, card_os)
    contents = terminal.read()
    card_os.pull_after(5, applied=False)  # the write of purchase 2 never reached the card
    with pytest.raises(selling.SaleInDoubt):
        selling.sell(
            counter.db,
            terminal,
            actor=counter.teller,
            amount=2000,
            clock=counter.clock,
            settings=counter.settings,
            contents=contents,
        )
    # a lost-card replacement cannot start while the sale is unresolved
    with pytest.raises(Conflict, match="unfinished sale"):
        counter.replace(counter.kit.blank())
    new = counter.kit.blank()
    outcome = exchange(counter, new, counter.kit.terminal(old).read())
    assert outcome.customer.purchase_count == 1  # the card decided: the sale failed
    new_card = counter.kit.terminal(new).read()
    assert new_card.purchase is not None and new_card.purchase.purchase_count == 1


def test_approval_follows_the_exchange_rule_and_fees_follow_the_mode(counter: Counter) -> None:
    old = counter.open()
    old_card = counter.kit.terminal(old).read()
    approvals.set_rule(
        counter.db,
        admin_id="a01",
        admin_role="admin",
        action="exchange_card",
        steps=[{"role": "supervisor"}],
        ttl_minutes=30,
        counter_id="C01",
        clock=counter.clock,
    )
    new = counter.kit.blank()
    with pytest.raises(ApprovalRequired):
        exchange(counter, new, old_card)
    assert counter.customer_row().card_serial == old_card.serial_hex  # nothing bound
    request = counter.approval("exchange_card", CUSTOMER)
    settings = Settings()
    settings.set("exchange_fee_fen", 1500)
    counter.settings = settings
    outcome = exchange(counter, new, old_card, request)
    assert outcome.fee == 1500
    assert approvals.get_request(counter.db, request).state == "used"


def test_the_old_card_in_the_blank_cards_reader_is_refused(counter: Counter) -> None:
    old = counter.open()
    old_card = counter.kit.terminal(old).read()
    with pytest.raises(selling.CardRefused, match="old card"):
        exchange(counter, old, old_card)
    another = counter.kit.blank()
    counter.kit.terminal(another).issue(CardKind.USER)
    with pytest.raises(selling.CardRefused, match="not the card bound"):
        exchange(counter, counter.kit.blank(), counter.kit.terminal(another).read())


def test_a_lost_card_still_takes_its_approval_and_fee(counter: Counter) -> None:
    counter.open()
    request = counter.approval("replace_card", CUSTOMER)
    _, fee = counter.replace_card(counter.kit.terminal(counter.kit.blank()), request)
    assert fee == 2000
    (row,) = replacement_rows(counter)
    assert row["mode"] == "lost"
