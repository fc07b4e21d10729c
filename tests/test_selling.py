"""The sale flow on emulated cards (in-process), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy import update

from app.domain.card import CardWrite
from app.domain.card import PurchaseRecord
from app.persistence.models import AuditEntry
from app.persistence.models import Customer
from app.persistence.models import OutboxEntry
from app.persistence.models import Setting
from app.services import approvals
from app.services import ledger
from app.services import selling
from app.services import shifts
from app.services import sync_status
from tests.cardkit import CardKit
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import OWING
from tests.rigs.counter import Counter


def test_open_sell_meter_sell(counter: Counter) -> None:
    image = counter.open()
    with pytest.raises(selling.InsertIntoMeterFirst):
        counter.sell(image, 1000)
    counter.to_meter(image)
    out = counter.sell(image, 3000, cash_received=5000)
    assert (out.sale.state, out.sale.purchase_count, out.change_fen) == ("completed", 2, 2000)
    assert out.files == ("purchase file",) and out.apdus == 6
    card = counter.kit.terminal(image).read()
    assert card.purchase is not None and card.purchase.purchase_count == 2
    with counter.db.read() as session:
        kinds = [o.kind for o in session.scalars(select(OutboxEntry).order_by(OutboxEntry.id))]
    assert kinds == ["card_bound", "sale", "sale"]  # each written with its fact


def test_arrears_are_collected_first(counter: Counter) -> None:
    image = counter.open(OWING, amount=None)
    with pytest.raises(Exception, match="minimum"):
        counter.sell(image, 3000)
    out = counter.sell(image, 10000)
    assert (out.sale.arrears_fen, out.sale.fees_fen, out.sale.credit_fen) == (3000, 500, 6500)
    card = counter.kit.terminal(image).read()
    assert card.purchase is not None and card.purchase.amount == 6500


def test_changed_thresholds_reach_the_card_with_the_sale(counter: Counter) -> None:
    image = counter.open()
    counter.to_meter(image)
    with counter.db.write() as session:
        session.execute(
            update(Customer)
            .where(Customer.customer_no == CUSTOMER)
            .values(alarm1=3000, param_version=Customer.param_version + 1)
        )
    out = counter.sell(image, 1000)
    assert out.files == ("parameter file", "purchase file")
    card = counter.kit.terminal(image).read()
    assert card.parameters is not None and card.parameters.alarm1 == 3000
    counter.to_meter(image)
    assert counter.meter.state.alarm1 == 3000  # the meter applied it by its update flag
    counter.to_meter(image)
    assert counter.sell(image, 1000).files == ("purchase file",)


def test_card_pulled_during_the_write_is_decided_by_the_card(counter: Counter) -> None:
    image = counter.open()
    counter.to_meter(image)
    for applied in (False, True):
        counter.sell_pulled(image, 2000, applied=applied)
        assert [s.state for s in selling.unresolved(counter.db)] == ["in_doubt"]
        a = counter.recover(image)
        assert [s.state for s in a.recovered] == ["completed" if applied else "failed"]
        assert selling.unresolved(counter.db) == []
        if applied:
            counter.to_meter(image)
    with counter.db.read() as session:
        c = session.scalar(select(Customer).where(Customer.customer_no == CUSTOMER))
        assert c is not None and c.purchase_count == 2


def test_crash_before_the_write_leaves_a_sale_the_next_start_resolves(counter: Counter) -> None:
    image = counter.open()
    counter.to_meter(image)
    pending = ledger.begin_card_sale(
        counter.db, actor=counter.teller, customer_no=CUSTOMER, amount=1500, clock=counter.clock
    )  # then "power cut"
    left = selling.recover_at_start(counter.db, "C01", counter.clock)
    assert [(s.sale_id, s.state) for s in left] == [(pending.sale_id, "in_doubt")]
    with pytest.raises(Exception, match="unfinished sale"):
        ledger.begin_card_sale(
            counter.db, actor=counter.teller, customer_no=CUSTOMER, amount=100, clock=counter.clock
        )
    out = counter.sell(image, 1500)  # presenting the card resolves it first
    assert [s.state for s in out.assessment.recovered] == ["failed"]
    assert out.sale.purchase_count == 2


def test_rewrite_a_card_that_lost_its_purchase(counter: Counter) -> None:
    image = counter.open()
    counter.to_meter(image)
    sold = counter.sell(image, 2500)
    previous = PurchaseRecord(5000, 1, b"\x00" * 8, None)
    counter.kit.terminal(image).write(CardWrite(purchase=previous))  # the card lost it
    with pytest.raises(selling.CardBehind):
        counter.sell(image, 100)
    out = selling.rewrite(
        counter.db,
        counter.kit.terminal(image),
        actor=counter.teller,
        clock=counter.clock,
        settings=counter.settings,
    )
    assert out.sale.sale_id == sold.sale.sale_id and out.sale.amount_fen == 2500
    with counter.db.read() as session:
        rows = session.scalars(select(OutboxEntry.kind)).all()
    assert rows.count("sale") == 2 and "rewrite" in rows  # no new money


def test_reversal_with_a_supervisor_other_than_the_seller(counter: Counter) -> None:
    image = counter.open()
    counter.to_meter(image)
    out = counter.sell(image, 4000)
    with pytest.raises(approvals.ApprovalDenied):
        approvals.approve_on_spot(
            counter.db,
            action="reverse",
            target=out.sale.sale_id,
            payload={},
            operator_id="t01",
            counter_id="C01",
            approver_id="t01",
            approver_role="teller",
            clock=counter.clock,
        )
    rev = counter.reverse(image, out.sale.sale_id)
    assert rev.state == "reversed"
    card = counter.kit.terminal(image).read()
    assert card.purchase is not None and card.purchase.purchase_count == 1
    assert counter.sell(image, 100).sale.purchase_count == 2  # the count was given back


def test_no_reversal_once_the_meter_loaded_it(counter: Counter) -> None:
    image = counter.open()
    counter.to_meter(image)
    out = counter.sell(image, 4000)
    counter.to_meter(image)
    with pytest.raises(selling.ReversalRefused, match="already loaded"):
        counter.reverse(image, out.sale.sale_id)


def test_replacement_card_carries_the_unloaded_purchase(counter: Counter) -> None:
    old = counter.open()
    counter.to_meter(old)
    counter.sell(old, 7000)  # sold, never reached the meter; then the card is lost
    new = counter.kit.blank()
    view, fee = counter.replace(new)
    assert fee == 2000 and view.card_serial != counter.kit.terminal(old).read().serial_hex
    with pytest.raises(selling.CardRefused, match="blacklisted"):
        counter.sell(old, 100)
    before = counter.meter.state.remaining
    counter.to_meter(new)  # the meter rebinds and loads purchase 2 from the new card
    assert counter.meter.state.remaining == before + 7000
    assert counter.sell(new, 100).sale.purchase_count == 3


def test_refused_cards(counter: Counter, tmp_path: Path) -> None:
    blank = counter.kit.blank()
    with pytest.raises(Exception, match="blank card"):
        counter.sell(blank, 100)
    stranger = CardKit(tmp_path / "x")  # another utility's keys: its card is not ours
    (tmp_path / "x").mkdir()
    other = stranger.blank()
    stranger.terminal(other).issue(1)
    with pytest.raises(selling.CardRefused, match="bound to no customer"):
        counter.sell_on(stranger.terminal(other), 100)


def test_card_ahead_of_the_ledger_is_an_anomaly(counter: Counter) -> None:
    image = counter.open()
    counter.to_meter(image)
    forged = PurchaseRecord(99900, 7, b"\x07" * 8, None)
    counter.kit.terminal(image).write(CardWrite(purchase=forged))
    with pytest.raises(selling.CardAnomaly):
        counter.sell(image, 100)
    with counter.db.read() as session:
        assert session.scalars(select(AuditEntry.action)).all().count("card_anomaly") == 1


def test_remote_payment_is_queued(counter: Counter) -> None:
    sale = counter.remote(8800)
    assert (sale.kind, sale.state, sale.purchase_count) == ("remote", "completed", None)
    with counter.db.read() as session:
        assert (
            session.scalar(select(OutboxEntry.kind).where(OutboxEntry.ref_id == sale.sale_id))
            == "remote"
        )
    with pytest.raises(Exception, match="card meter"):
        counter.remote(100, CUSTOMER)


def test_offline_limits_and_the_supervisor_override(counter: Counter) -> None:
    counter.settings.set("offline_max_sales", 2)
    image = counter.open()  # outbox: card_bound + sale
    counter.to_meter(image)
    with pytest.raises(selling.OfflineLimitReached, match="2 records"):
        counter.sell(image, 100)
    req = counter.approval("override_offline_limit", "C01")
    assert counter.sell(image, 100, override_request=req).sale.state == "completed"
    counter.settings.set("offline_max_sales", 1000)
    counter.settings.set("offline_max_hours", 2)
    counter.clock.advance(hours=3)
    counter.teller.last_activity = counter.clock.now()
    counter.to_meter(image)
    with pytest.raises(selling.OfflineLimitReached, match="2 hours"):
        counter.sell(image, 100)
    with counter.db.write() as session:  # a successful sync a moment ago
        session.add(Setting(key=sync_status.LAST_SUCCESS, value=counter.clock.now().isoformat()))
        for row in session.scalars(select(OutboxEntry)):
            row.sent_at = counter.clock.now()
    assert counter.sell(image, 100).sale.state == "completed"


def test_shift_close_counts_fees_and_reversals(counter: Counter) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    out = counter.sell(image, 4000)
    counter.reverse(image, out.sale.sale_id)
    counter.replace(counter.kit.blank())
    closed = shifts.close_shift(
        counter.db, actor=counter.teller, counted_fen=7000, clock=counter.clock
    )
    assert (closed.expected_fen, closed.variance_fen) == (5000 + 2000, 0)


def test_two_counters_cannot_sell_one_purchase_twice(counter: Counter) -> None:
    image = counter.open()
    counter.to_meter(image)
    other = counter.other_teller()
    first = ledger.begin_card_sale(
        counter.db, actor=other, customer_no=CUSTOMER, amount=100, clock=counter.clock
    )
    with pytest.raises(Exception, match="unfinished sale"):
        ledger.begin_card_sale(
            counter.db, actor=counter.teller, customer_no=CUSTOMER, amount=100, clock=counter.clock
        )
    # the card itself is here, so the other counter never wrote it: presenting it decides
    out = counter.sell(image, 100)
    assert [(s.sale_id, s.state) for s in out.assessment.recovered] == [(first.sale_id, "failed")]
    assert out.sale.purchase_count == 2
