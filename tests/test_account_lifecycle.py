"""Close, pause and resume an account: the settlement (card credit not loaded, the meter's
remaining balance, arrears and fees first, the rest refunded on the shift or kept as a credit
note), the card erased or blacklisted, sales refused while paused, and each step sent to the
reference central server once and pulled by another counter."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.clock import FixedClock
from app.domain import settlement as st
from app.domain.card import UnissuedCard
from app.errors import CardVendError
from app.errors import Conflict
from app.errors import ValidationError
from app.persistence.db import Database
from app.persistence.models import AccountEvent
from app.persistence.models import ArrearsItem
from app.persistence.models import CardBlacklist
from app.persistence.models import Customer
from app.persistence.models import OutboxEntry
from app.services import approvals
from app.services import selling
from app.services import shifts
from app.services.customers import customer_view
from app.services.lifecycle import account
from app.services.reports import daily_report
from app.services.reports import shift_report
from app.settings import CLOSE_REFUND_MODE
from sync.central import models as central_models
from sync.central.seed import set_customer_status
from sync.central.server import CentralServer
from sync.client import CentralClient
from sync.pull import pull_all
from sync.service import SyncService
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import OWING
from tests.rigs.counter import REMOTE
from tests.rigs.counter import Counter
from tests.rigs.sync import register
from tests.rigs.sync import running_central


def close(
    counter: Counter, image: Path | None, customer: str = CUSTOMER, **kw: Any
) -> st.Settlement:
    return counter.service(
        account.close_account,
        None if image is None else counter.kit.terminal(image),
        customer_no=customer,
        approval_request=counter.approval("close_account", customer),
        **kw,
    )


def pause(
    counter: Counter, customer: str = CUSTOMER, reason: str = "vacant house", **kw: Any
) -> None:
    counter.service(account.pause_account, customer_no=customer, reason=reason, **kw)


def resume(counter: Counter, customer: str = CUSTOMER) -> None:
    counter.service(account.resume_account, customer_no=customer)


def owe(db: Database, customer: str, kind: str, amount: int, ref: str | None = None) -> None:
    with db.write() as session:
        cid = session.scalar(select(Customer.id).where(Customer.customer_no == customer))
        assert cid is not None
        session.add(
            ArrearsItem(
                customer_id=cid,
                kind=kind,
                amount=amount,
                must_collect=True,
                ref=ref,
                created_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            )
        )


def open_dues(db: Database, customer: str) -> int:
    with db.read() as session:
        cid = session.scalar(select(Customer.id).where(Customer.customer_no == customer))
        return len(session.scalars(select(ArrearsItem).where(ArrearsItem.customer_id == cid)).all())


def events(db: Database) -> list[tuple[str, int, str]]:
    with db.read() as session:
        return [
            (e.kind, e.refund, e.reason)
            for e in session.scalars(select(AccountEvent).order_by(AccountEvent.created_at))
        ]


def expected_cash(counter: Counter) -> int:
    view = shifts.current_shift(counter.db, "C01")
    assert view is not None
    with counter.db.read() as session:
        shift = session.get(shifts.Shift, view.shift_id)  # type: ignore[attr-defined]
        return shifts.expected_cash(session, shift)


def a_customer_with_credit(counter: Counter) -> Path:
    """50.00 loaded by the meter (its write-back on the card), 30.00 more on the card not yet
    loaded, then 12.00 arrears and a 3.00 fee owed."""
    image = counter.open(amount=5000)
    counter.to_meter(image)
    counter.sell(image, 3000)
    owe(counter.db, CUSTOMER, "arrears", 1200)
    owe(counter.db, CUSTOMER, "fee", 300)
    return image


def test_close_with_the_card_refunds_what_is_left_on_the_shift(counter: Counter) -> None:
    image = a_customer_with_credit(counter)
    serial = counter.kit.terminal(image).read().serial_hex
    done = close(counter, image, reason="moved away")
    assert (done.unloaded, done.unloaded_purchases, done.meter_remaining) == (3000, 1, 5000)
    assert (done.arrears, done.fees, done.balance) == (1200, 300, 6500)
    assert (done.mode, done.refund, done.credit_note, done.card) == ("refund", 6500, 0, "erased")
    assert done.meter_source == st.FROM_WRITE_BACK and done.approver_id == "s01"
    with pytest.raises(UnissuedCard):  # the card is blank again
        counter.kit.terminal(image).read()
    view = customer_view(counter.db, CUSTOMER)
    assert (view.status, view.status_reason, view.card_serial) == ("closed", "moved away", None)
    assert open_dues(counter.db, CUSTOMER) == 0
    assert events(counter.db) == [("close", 6500, "moved away")]
    with counter.db.read() as session:
        assert session.get(CardBlacklist, serial) is None  # erased: it may be issued again
        event = session.scalars(select(AccountEvent)).one()
        assert event.detail["balance"] == 6500 and event.detail["unloaded"] == 3000
    # the cash handed back comes out of the shift's expected cash, and the Z-report shows it
    assert expected_cash(counter) == 5000 + 3000 - 6500
    report = shift_report(
        counter.db, done_shift(counter), actor=counter.supervisor, clock=counter.clock
    )
    assert (report.refunds_count, report.refunds_fen) == (1, 6500)
    assert report.net_cash_fen == 8000 - 6500 == report.expected_cash_fen
    assert report.refunds[0].customer_no == CUSTOMER
    # the office's day shows it too, by the operator and the counter that handed it back
    day = daily_report(
        counter.db,
        "DEMO",
        counter.clock.now().date(),
        actor=counter.supervisor,
        clock=counter.clock,
    )
    for row in (day.by_counter[0], day.by_operator[0], day.totals):
        assert (row.refunds_count, row.refunds_fen) == (1, 6500)
        assert row.net_cash_fen == 8000 - 6500
    # nothing more is sold to a closed account
    with pytest.raises(Conflict, match="not an active card-meter customer"):
        counter.open()


def test_a_card_erased_for_a_close_that_then_fails_says_so_in_the_tellers_language(
    counter: Counter,
) -> None:
    """The close is refused after the card was erased (here: its approval is not one the
    counter holds): the teller reads what to do, with the refusal in the same language."""
    image = a_customer_with_credit(counter)
    with pytest.raises(Conflict, match="Close it again without the card") as raised:
        counter.service(
            account.close_account,
            counter.kit.terminal(image),
            customer_no=CUSTOMER,
            approval_request="00000000-0000-4000-8000-000000000000",
        )
    with pytest.raises(UnissuedCard):  # the card was erased
        counter.kit.terminal(image).read()
    assert customer_view(counter.db, CUSTOMER).status == "active"
    refusal = raised.value.params["detail"]
    assert isinstance(refusal, CardVendError)
    in_chinese = raised.value.localized("zh_CN")
    assert refusal.localized("zh_CN") in in_chinese and refusal.localized("en") not in in_chinese
    assert refusal.localized("en") in str(raised.value)  # the log keeps English


def done_shift(counter: Counter) -> str:
    view = shifts.current_shift(counter.db, "C01")
    assert view is not None
    return view.shift_id


def test_close_as_a_credit_note_hands_no_cash_back(counter: Counter) -> None:
    image = a_customer_with_credit(counter)
    counter.settings.set(CLOSE_REFUND_MODE.key, "credit_note")
    done = close(counter, image)
    assert (done.mode, done.refund, done.credit_note) == ("credit_note", 0, 6500)
    assert events(counter.db) == [("close", 0, "")]
    assert expected_cash(counter) == 8000


def test_an_overdraft_must_be_paid_before_the_close(counter: Counter) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    with pytest.raises(Conflict, match=r"owes 8\.00 yuan"):
        close(counter, None, meter_read=account.MeterRead(remaining=-800, purchase_count=1))
    assert customer_view(counter.db, CUSTOMER).status == "active" and events(counter.db) == []
    # arrears more than the credit left: refused too, with the amount
    owe(counter.db, CUSTOMER, "arrears", 7000)
    with pytest.raises(Conflict, match=r"owes 20\.00 yuan"):
        close(counter, image)
    counter.kit.terminal(image).read()  # the card was not erased


def test_a_kept_card_is_blacklisted(counter: Counter) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    counter.sell(image, 1000)
    with pytest.raises(Conflict, match="not loaded"):  # the refunded credit would reach the meter
        close(counter, image, card_outcome="keep")
    counter.to_meter(image)
    serial = counter.kit.terminal(image).read().serial_hex
    done = close(counter, image, card_outcome="keep")
    assert (done.card, done.unloaded, done.meter_remaining, done.refund) == ("kept", 0, 6000, 6000)
    with counter.db.read() as session:
        assert session.get(CardBlacklist, serial) is not None
    with pytest.raises(selling.CardRefused, match="blacklisted"):
        counter.sell(image, 1000)


def test_a_card_that_cannot_be_read_closes_from_the_last_write_back(counter: Counter) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    counter.sell(image, 2000)  # the sale notes the meter's write-back: 50.00 left
    serial = counter.kit.terminal(image).read().serial_hex
    done = close(counter, None)
    assert (done.card, done.unloaded, done.meter_remaining, done.refund) == (
        "unreadable",
        2000,
        5000,
        7000,
    )
    with counter.db.read() as session:
        assert session.get(CardBlacklist, serial) is not None


def test_a_remote_customer_closes_from_the_meter_remaining(counter: Counter) -> None:
    with counter.db.write() as session:
        customer = session.scalars(select(Customer).where(Customer.customer_no == REMOTE)).one()
        customer.meter_remaining = 4321
    done = close(counter, None, REMOTE)
    assert (done.card, done.unloaded, done.meter_remaining, done.refund) == ("none", 0, 4321, 4321)


def test_pause_stops_sales_with_the_reason_and_resume_allows_them(counter: Counter) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    pause(counter, reason="dispute over the bill")
    view = customer_view(counter.db, CUSTOMER)
    assert (view.status, view.status_reason) == ("paused", "dispute over the bill")
    with pytest.raises(Conflict, match=r"paused \(dispute over the bill\)"):
        counter.sell(image, 1000)
    with pytest.raises(Conflict, match="only an active account can be paused"):
        pause(counter)
    resume(counter)
    assert customer_view(counter.db, CUSTOMER).status_reason == ""
    with pytest.raises(Conflict, match="only a paused account can be resumed"):
        resume(counter)
    counter.sell(image, 1000)
    assert events(counter.db) == [("pause", 0, "dispute over the bill"), ("resume", 0, "")]
    # a paused account can be closed; a closed one cannot be paused, resumed or closed again
    pause(counter)
    counter.to_meter(image)
    close(counter, image)
    for step in (pause, resume):
        with pytest.raises(Conflict, match="closed"):
            step(counter)
    with pytest.raises(Conflict, match="closed"):
        close(counter, None)


def test_a_pause_rule_set_by_the_administrator_asks_for_an_approval(counter: Counter) -> None:
    """Pausing needs no approval by default; once a rule asks for one it is required (and the
    approver is recorded), and the close and the typed meter change always keep theirs."""
    rule = {"role": "supervisor", "distinct": True}

    def set_rule(action: str, steps: list[dict[str, Any]]) -> None:
        approvals.set_rule(
            counter.db,
            admin_id="a01",
            admin_role="admin",
            action=action,
            steps=steps,
            ttl_minutes=30,
            counter_id="C01",
            clock=counter.clock,
        )

    set_rule("pause_account", [rule])
    with pytest.raises(approvals.ApprovalRequired):
        pause(counter)
    assert customer_view(counter.db, CUSTOMER).status == "active"
    pause(counter, reason="dispute", approval_request=counter.approval("pause_account", CUSTOMER))
    with counter.db.read() as session:
        event = session.scalars(select(AccountEvent)).one()
        assert (event.kind, event.approver_id) == ("pause", "s01")
    set_rule("pause_account", [])  # back to no approval: resume goes through as asked
    resume(counter)
    for always in ("close_account", "change_meter"):
        with pytest.raises(ValidationError, match="always needed"):
            set_rule(always, [])


# --------------------------------------------------------------------------- central


@pytest.fixture
def central(tmp_path: Path, clock: FixedClock) -> Iterator[CentralServer]:
    yield from running_central(tmp_path, clock)


def sync_service(
    db: Database, central: CentralServer, clock: FixedClock, counter_id: str
) -> SyncService:
    client = CentralClient(central.url, register(central, counter_id))
    return SyncService(db, client, clock, counter_id=counter_id, office_code="DEMO")


def outbox_events(db: Database) -> list[tuple[str, bool]]:
    with db.read() as session:
        return [
            (row.kind, row.sent_at is not None)
            for row in session.scalars(
                select(OutboxEntry)
                .where(OutboxEntry.kind == "account_event")
                .order_by(OutboxEntry.id)
            )
        ]


def central_status(central: CentralServer, customer: str) -> str:
    record = central.store.customer(customer)
    assert record is not None
    return record.status


def test_each_step_is_sent_once_and_another_counter_pulls_it(
    counter: Counter, central: CentralServer, tmp_path: Path
) -> None:
    from app.services.demo import load_demo

    here = sync_service(counter.db, central, counter.clock, "C01")
    other_db = Database(str(tmp_path / "other.db"))
    other_db.migrate()
    load_demo(other_db, counter.clock)
    there = sync_service(other_db, central, counter.clock, "C02")
    image = counter.open(amount=5000)
    counter.to_meter(image)
    here.run_round()
    pause(counter)
    assert outbox_events(counter.db) == [("account_event", False)]
    here.run_round()
    assert central_status(central, CUSTOMER) == "paused"
    there.run_round()
    assert customer_view(other_db, CUSTOMER).status == "paused"
    resume(counter)
    here.run_round()
    assert central_status(central, CUSTOMER) == "active"
    # OWING's demo arrears (known centrally) are paid by its close, there too
    counter.open(OWING, amount=None)
    close(counter, None, OWING, meter_read=account.MeterRead(remaining=6000, purchase_count=0))
    report = here.run_round()
    assert report.push.failed == 0
    assert outbox_events(counter.db) == [("account_event", True)] * 3
    again = here.run_round()
    assert (again.push.sent, again.push.duplicates) == (0, 0)
    assert central_status(central, OWING) == "closed"
    owed = central.store.customer(OWING)
    assert owed is not None and owed.arrears == []
    t = central_models.arrears_items
    with central.store._reading() as conn:
        settled = set(conn.scalars(select(t.c.settled_by_sale).where(t.c.customer_no == OWING)))
    assert len(settled) == 1 and None not in settled
    there.run_round()
    assert customer_view(other_db, OWING).status == "closed"
    assert open_dues(other_db, OWING) == 0
    other_db.dispose()


def test_a_close_made_centrally_while_offline_stops_sales_here(
    counter: Counter, central: CentralServer
) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    here = sync_service(counter.db, central, counter.clock, "C01")
    here.run_round()
    # a pause made here and not sent yet is not undone by a pull of the older central status
    pause(counter, reason="dispute")
    central.store.update_customer(CUSTOMER, alarm1=2500)
    pull_all(counter.db, here.client, counter.clock, counter_id="C01")
    view = customer_view(counter.db, CUSTOMER)
    assert (view.status, view.status_reason, view.alarm1) == ("paused", "dispute", 2500)
    here.run_round()
    assert central_status(central, CUSTOMER) == "paused"
    # closed centrally meanwhile (this counter offline): pulled, the pause's reason is gone
    set_customer_status(central.store, CUSTOMER, "closed")
    here.run_round()
    view = customer_view(counter.db, CUSTOMER)
    assert (view.status, view.status_reason) == ("closed", "")
    with pytest.raises(Conflict, match="closed; only active customers can buy"):
        counter.sell(image, 1000)


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs pdftotext (poppler-utils)")
@pytest.mark.parametrize(("language", "words"), [("en", "Refunded in cash"), ("zh_CN", "现金退款")])
def test_the_settlement_statement_in_both_languages(
    counter: Counter, tmp_path: Path, language: str, words: str
) -> None:
    from printing.reports import settlement_pdf

    done = close(counter, a_customer_with_credit(counter), reason="moved away")
    pdf = tmp_path / f"statement-{language}.pdf"
    pdf.write_bytes(settlement_pdf(done, language=language))
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert words in text and CUSTOMER in text and "65.00" in text and "moved away" in text
