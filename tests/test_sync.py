"""Sync against the reference central server over real HTTP: push, pull, faults, offline,
review flags, reconciliation, the audit head. The counter runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import delete, select, text, update

from app.clock import FixedClock
from app.persistence.db import Database
from app.persistence.models import ArrearsItem, AuditEntry, Customer, OutboxEntry, Sale
from app.services import auth, selling
from app.services.sync_status import sync_status
from sync import contract as c
from sync.central import models as central_models
from sync.central.server import CentralServer
from sync.client import CentralClient, RetryPolicy
from sync.errors import AuditDiverged, CentralBadResponse, CentralUnreachable
from sync.service import SyncService, reconcile
from tests.rigs.counter import CUSTOMER, OWING, REMOTE, Counter
from tests.rigs.sync import TOKENS, register, running_central


class Sleeps:
    """The client's sleep between retries, recorded (and not slept); ``then`` runs once."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.then: Any = None

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.then is not None:
            self.then()
            self.then = None


@pytest.fixture
def central(tmp_path: Path, clock: FixedClock) -> Iterator[CentralServer]:
    yield from running_central(tmp_path, clock, faults=True)


@pytest.fixture
def counter(demo_db: Database, clock: FixedClock, tmp_path: Path) -> Counter:
    return Counter(demo_db, clock, tmp_path)


def settle_centrally(central: CentralServer, ref: str, customer_no: str) -> None:
    """The item was paid at another counter: settled on the central side."""
    t = central_models.arrears_items

    def work(tx: Any) -> None:
        tx.conn.execute(update(t).where(t.c.ref == ref).values(settled_by_sale="elsewhere"))
        tx.touch_customer(customer_no)

    central.store.write(work, ("customers",))


def lose_centrally(central: CentralServer, sale_id: str) -> None:
    t = central_models.sales
    central.store.write(lambda tx: tx.conn.execute(delete(t).where(t.c.id == sale_id)))


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_service(
    counter: Counter, central: CentralServer, sleeps: Sleeps, **kw: Any
) -> SyncService:
    client = CentralClient(
        central.url,
        register(central),
        timeout=(2.0, kw.pop("read_timeout", 5.0)),
        retry=RetryPolicy(attempts=kw.pop("attempts", 3), sleep=sleeps),
    )
    return SyncService(
        counter.db, client, counter.clock, counter_id="C01", office_code="DEMO", **kw
    )


def central_sales(service: SyncService) -> dict[str, c.CounterSale]:
    held: dict[str, c.CounterSale] = {}
    after = 0
    while True:
        page = service.client.counter_sales(after, 1000)
        held.update({i.sale.id: i for i in page.items})
        if not page.has_more:
            return held
        after = page.next_cursor


def a_day_of_sales(counter: Counter) -> dict[str, str]:
    """An account opened, two sales, one reversed, a remote payment: what sync must carry."""
    image = counter.open()
    counter.to_meter(image)
    sold = counter.sell(image, 3000, cash_received=5000).sale.sale_id
    counter.to_meter(image)
    reversed_ = counter.sell(image, 1200).sale.sale_id
    counter.reverse(image, reversed_)
    remote = counter.remote(8800).sale_id
    return {"sold": sold, "reversed": reversed_, "remote": remote}


def a_day_synced(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> tuple[dict[str, str], SyncService]:
    """:func:`a_day_of_sales` sent in one round: the central system holds all four sales."""
    ids = a_day_of_sales(counter)
    service = make_service(counter, central, sleeps)
    service.run_round()
    assert reconcile(service.db, service.client, counter_id="C01", office_code="DEMO").matched == 4
    return ids, service


def local_settled(db: Database) -> set[str]:
    with db.read() as session:
        return set(
            session.scalars(
                select(Sale.id).where(Sale.state.in_(("completed", "failed", "reversed")))
            )
        )


def test_a_round_sends_the_day_and_the_central_side_holds_it_once(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    ids = a_day_of_sales(counter)
    service = make_service(counter, central, sleeps)
    before = sync_status(counter.db, counter.clock, "C01")
    assert before.pending == 6 and not before.online  # bind, 3 sales, reversal, remote
    report = service.run_round()
    assert report.push.sent == 6 and report.push.failed == 0
    held = central_sales(service)
    assert set(held) == local_settled(counter.db)
    assert held[ids["reversed"]].reversed and not held[ids["sold"]].reversed
    assert held[ids["sold"]].sale.cash_received == 5000
    after = sync_status(counter.db, counter.clock, "C01")
    assert (after.online, after.pending, after.oldest_pending_age_s) == (True, 0, None)
    assert after.last_success == counter.clock.now() and after.last_error == ""
    # the remote payment was issued by the central system, and the counter learnt it
    with counter.db.read() as session:
        assert session.get(Sale, ids["remote"]).remote_status == "issued"  # type: ignore[union-attr]
    # a second round sends nothing again
    again = service.run_round()
    assert (again.push.sent, again.push.duplicates) == (0, 0)
    assert reconcile(service.db, service.client, counter_id="C01", office_code="DEMO").serious == []


def test_response_lost_after_commit_is_resent_and_counted_once(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    a_day_of_sales(counter)
    service = make_service(counter, central, sleeps, attempts=1)
    central.faults.arm(drop_after_commit=1, path="/api/v1/sales/batch")
    with pytest.raises(CentralUnreachable):
        service.run_round()
    status = sync_status(counter.db, counter.clock, "C01")
    assert not status.online and "central_unreachable" in status.last_error
    assert status.pending == 5  # the binding went through, the sales' answer was lost
    report = service.run_round()
    # the same batch again, under the same Idempotency-Key: the first answer is replayed
    assert report.push.sent == 5 and report.push.failed == 0
    assert set(central_sales(service)) == local_settled(counter.db)
    assert central.store.count("sales") == 4


def test_retries_honour_retry_after_and_give_up_typed(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    a_day_of_sales(counter)
    service = make_service(counter, central, sleeps, attempts=3)
    central.faults.arm(error_5xx=2, retry_after=1, path="/api/v1/card-bindings")
    service.run_round()
    assert sleeps.calls[:2] == [1.0, 1.0]
    central.faults.arm(error_5xx=5, path="/api/v1/tariffs")
    with pytest.raises(CentralUnreachable, match="503"):
        service.run_round()
    assert len(sleeps.calls) == 4 and all(0 <= s <= 5 for s in sleeps.calls[2:])


def test_a_malformed_answer_changes_nothing(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    service = make_service(counter, central, sleeps)
    service.run_round()
    central.store.add_arrears("100000000002", "C-ARR-1", 1500, description="电费欠费")
    for _ in range(2):  # the server alternates: a body that is not JSON, then the wrong shape
        central.faults.arm(malformed=1, path="/api/v1/customers")
        with pytest.raises(CentralBadResponse):
            service.run_round()
        with counter.db.read() as session:
            assert session.scalar(select(ArrearsItem).where(ArrearsItem.ref == "C-ARR-1")) is None
    service.run_round()
    with counter.db.read() as session:
        item = session.scalar(select(ArrearsItem).where(ArrearsItem.ref == "C-ARR-1"))
        assert item is not None and item.amount == 1500


def test_a_timeout_is_retried_with_the_same_idempotency_key(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    a_day_of_sales(counter)
    service = make_service(counter, central, sleeps, read_timeout=0.3, attempts=3)
    central.faults.arm(latency_ms=800, path="/api/v1/sales/batch")
    sleeps.then = central.faults.clear  # the link is fast again for the retry
    service.run_round()  # the first try timed out (and committed late); the retry is answered
    assert len(sleeps.calls) == 1
    assert set(central_sales(service)) == local_settled(counter.db)
    assert len(central_sales(service)) == 4


def test_pull_applies_the_central_changes(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    service = make_service(counter, central, sleeps)
    service.run_round()
    store = central.store
    with counter.db.read() as session:
        param_before = session.scalar(
            select(Customer.param_version).where(Customer.customer_no == CUSTOMER)
        )
        settled_ref = session.scalar(
            select(ArrearsItem.ref).where(ArrearsItem.ref == f"DEMO-A-{OWING}")
        )
    assert settled_ref is not None
    store.update_customer(CUSTOMER, alarm1=3000)
    store.add_arrears(CUSTOMER, "C-ARR-2", 700, kind="fee", description="违约金")
    settle_centrally(central, f"DEMO-F-{OWING}", OWING)
    store.add_tariff_version(
        "RES-FLAT",
        "居民单一电价 Residential flat",
        {"kind": "flat", "flat_rate": 5600},
        counter.clock.now() + dt.timedelta(days=1),
    )
    report = service.run_round()
    assert report.pull.tariffs == 1 and report.pull.customers_changed == 1
    assert report.pull.arrears_changed == 2
    with counter.db.read() as session:
        cust = session.scalar(select(Customer).where(Customer.customer_no == CUSTOMER))
        assert cust is not None and cust.alarm1 == 3000 and cust.param_version == param_before + 1
        refs = set(
            session.scalars(
                select(ArrearsItem.ref).where(ArrearsItem.ref.in_(("C-ARR-2", f"DEMO-F-{OWING}")))
            )
        )
        assert refs == {"C-ARR-2"}  # the fee paid elsewhere is gone, the new one is here


def test_offline_sale_keeps_its_tariff_and_a_closed_customer_is_flagged_not_dropped(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    service = make_service(counter, central, sleeps)
    service.run_round()
    image = counter.open()  # offline: nothing sent yet
    counter.to_meter(image)
    sale = counter.sell(image, 2000).sale.sale_id
    # meanwhile the central side closes the customer and issues a price valid from before
    central.store.update_customer(CUSTOMER, status="closed")
    central.store.add_tariff_version(
        "RES-TOU",
        "居民分时电价 Residential time-of-use",
        {
            "kind": "tou",
            "periods": [{"name": "peak", "rate": 6000}, {"name": "valley", "rate": 4000}],
            "schedule": [
                {"start_minute": 0, "period": "valley"},
                {"start_minute": 480, "period": "peak"},
            ],
        },
        counter.clock.now() - dt.timedelta(hours=1),
    )
    report = service.run_round()
    assert sale in report.push.flagged
    held = central_sales(service)[sale]
    assert held.review == "customer_closed" and held.sale.tariff_version_no == 1
    with counter.db.read() as session:
        row = session.get(Sale, sale)
        assert row is not None and row.review == "customer_closed" and row.state == "completed"
    assert sync_status(counter.db, counter.clock, "C01").review == 2  # the opening sale too


def test_same_uuid_with_another_body_is_refused_and_reported(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    ids = a_day_of_sales(counter)
    service = make_service(counter, central, sleeps)
    with counter.db.read() as session:
        from sync.outbox import sale_body

        row = session.get(Sale, ids["sold"])
        assert row is not None
        body = sale_body(session, row, "DEMO")
    assert body is not None
    other = c.SaleRecord.model_validate(
        {**body, "amount": body["amount"] + 100, "credit": body["credit"] + 100}
    )
    assert service.client.post_one("sales", other).status == "created"
    # the same post again (same Idempotency-Key) is answered as the first time
    assert service.client.post_one("sales", other).status == "created"
    assert central.store.count("sales") == 1
    report = service.run_round()
    assert report.push.failed == 1
    status = sync_status(counter.db, counter.clock, "C01")
    assert status.refused == 1 and status.pending == 0 and status.refused_amount == 3000
    with counter.db.read() as session:
        row2 = session.scalar(select(OutboxEntry).where(OutboxEntry.ref_id == ids["sold"]))
        assert row2 is not None and row2.sent_at is None and row2.refused_code == "conflict"
        assert row2.refused_at is not None and "another body" in row2.refused_reason
    assert service.run_round().push.requests == 0  # set aside: not resent every round
    diff = reconcile(service.db, service.client, counter_id="C01", office_code="DEMO")
    assert [(d.sale_id, d.kind) for d in diff.serious] == [(ids["sold"], "different")]


def test_reconcile_reports_every_difference(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    ids, service = a_day_synced(counter, central, sleeps)
    lose_centrally(central, ids["sold"])
    with counter.db.write() as session:  # a sale the counter lost
        session.execute(
            update(OutboxEntry).where(OutboxEntry.ref_id == ids["remote"]).values(ref_id="gone")
        )
        session.delete(session.get(Sale, ids["remote"]))
    diff = reconcile(service.db, service.client, counter_id="C01", office_code="DEMO")
    kinds = {(d.sale_id, d.kind) for d in diff.serious}
    assert kinds == {(ids["sold"], "missing_central"), (ids["remote"], "missing_local")}


def test_a_rewritten_audit_history_is_flagged_and_the_sales_still_go_up(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    service = make_service(counter, central, sleeps)
    first = service.run_round().audit_seq
    assert first is not None and first > 0
    with counter.db.write() as session:  # rewrite the reported row
        session.execute(update(AuditEntry).where(AuditEntry.seq == first).values(hash="0" * 64))
    auth.login(counter.db, "t02", "demo-t02", counter_id="C01", clock=counter.clock)  # goes on
    a_day_of_sales(counter)
    counter.clock.advance(minutes=5)
    report = service.run_round()  # the divergence is reported, the round is not lost
    assert report.audit_diverged is not None and "rewritten" in report.audit_diverged
    assert report.audit_seq is None
    assert report.push.sent == 6 and report.push.failed == 0
    assert set(central_sales(service)) == local_settled(counter.db)
    status = sync_status(counter.db, counter.clock, "C01")
    assert "rewritten" in status.audit_diverged
    assert status.online and status.last_success == counter.clock.now() and status.pending == 0
    assert service.run_round().audit_diverged == report.audit_diverged  # still flagged
    with counter.db.read() as session:  # audited once, when it appeared
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "audit_diverged"))
        assert [r.result for r in rows] == ["failed"]
    with pytest.raises(AuditDiverged):  # the head alone still says so
        service.push_audit_head()


def test_bad_token_is_a_typed_error(counter: Counter, central: CentralServer) -> None:
    client = CentralClient(central.url, "x" * 40)
    service = SyncService(counter.db, client, counter.clock, counter_id="C01", office_code="DEMO")
    with pytest.raises(Exception, match="refused this counter's token"):
        service.run_round()


def test_post_without_idempotency_key_is_not_retried(central: CentralServer) -> None:
    token = register(central)
    central.faults.arm(error_5xx=1, path="/api/v1/sms")
    r = requests.post(
        central.url + "/api/v1/sms",
        data=json.dumps({}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=5,
    )
    assert r.status_code == 503
    sleeps = Sleeps()
    client = CentralClient(central.url, token, retry=RetryPolicy(sleep=sleeps))
    central.faults.arm(error_5xx=1, path="/api/v1/health")
    with pytest.raises(CentralUnreachable, match="503"):
        client._send("POST", "/health", c.Health)  # no Idempotency-Key: the 503 is final
    assert sleeps.calls == []


def test_background_worker_keeps_going_through_errors(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    import threading

    from sync.service import SyncWorker

    rounds: list[tuple[object, object]] = []
    done = threading.Event()

    def on_round(report: object, error: object) -> None:
        rounds.append((report, error))
        if report is not None and len(rounds) >= 2:
            done.set()

    a_day_of_sales(counter)
    central.faults.arm(error_5xx=50)  # the first round fails, whatever it retries
    worker = SyncWorker(
        lambda: make_service(counter, central, sleeps, attempts=1), 30.0, on_round=on_round
    ).start()
    try:
        for _ in range(100):
            if rounds:
                break
            done.wait(0.05)
        assert rounds and rounds[0][1] is not None  # failed, recorded, still running
        assert not sync_status(counter.db, counter.clock, "C01").online
        central.faults.clear()
        worker.sync_now()  # "sync now" does not wait for the interval
        assert done.wait(15)
    finally:
        worker.stop()
    status = sync_status(counter.db, counter.clock, "C01")
    assert status.online and status.pending == 0


def test_rewrites_and_replacements_reach_the_central_archive(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    from app.domain.card import CardWrite, PurchaseRecord

    old = counter.open()
    counter.to_meter(old)
    sold = counter.sell(old, 2500).sale.sale_id
    counter.kit.terminal(old).write(CardWrite(purchase=PurchaseRecord(5000, 1, b"\0" * 8, None)))
    counter.rewrite(old)
    new = counter.kit.blank()
    view, fee = counter.replace(new)
    service = make_service(counter, central, sleeps)
    report = service.run_round()
    assert report.push.failed == 0 and sync_status(counter.db, counter.clock, "C01").pending == 0
    with counter.db.read() as session:
        rows = {
            o.kind: o
            for o in session.scalars(select(OutboxEntry))
            if o.kind in ("rewrite", "replacement")
        }
    from sync.outbox import record_id

    rewrite = central.store.event("rewrites", record_id("rewrite", rows["rewrite"].ref_id))
    assert rewrite is not None and rewrite["sale_id"] == sold and rewrite["rewrite_no"] == 1
    repl = central.store.event("replacements", record_id("replacement", rows["replacement"].ref_id))
    assert repl is not None and repl["fee"] == fee == 2000
    held = central.store.customer(CUSTOMER)
    assert held is not None and held.card_serial == view.card_serial
    # the next pull brings the new serial back unchanged: the counter keeps selling on it
    service.run_round()
    counter.to_meter(new)
    assert counter.sell(new, 100).sale.purchase_count == 3


def test_receipt_codes_are_checked_by_the_central_system(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    from app.services import receipts

    ids = a_day_of_sales(counter)
    token = register(central)
    first = CentralClient(central.url, token).register(
        c.RegisterRequest(counter_id="C01", office_code="DEMO"), None
    )
    assert first.token != token  # a new token each time, the same receipt key
    TOKENS[(central.url, "C01")] = first.token
    key = bytes.fromhex(first.receipt_key)
    service = make_service(counter, central, sleeps)
    service.run_round()
    data = receipts.original_receipt(counter.db, ids["sold"], settings=counter.settings, key=key)
    check = service.client.check_receipt(ids["sold"], data.verification_code)
    assert (check.valid, check.known, check.amount) == (True, True, 3000)
    altered = receipts.verification_code(key, ids["sold"], data.customer_no, 30000, data.credit)
    assert not service.client.check_receipt(ids["sold"], altered).valid
    unknown = service.client.check_receipt("00000000-0000-4000-8000-000000000000", "AAAAAAAA")
    assert (unknown.valid, unknown.known) == (False, False)


def test_a_reversed_sale_owes_its_arrears_again_on_both_sides(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    image = counter.open(OWING, amount=None)
    sale = counter.sell(image, 10000).sale
    assert (sale.arrears_fen, sale.fees_fen) == (3000, 500)
    service = make_service(counter, central, sleeps)
    service.run_round()
    held = central.store.customer(OWING)
    assert held is not None and held.arrears == []  # paid off by the sale
    counter.reverse(image, sale.sale_id)
    open_refs = select(ArrearsItem.ref).where(
        ArrearsItem.ref.is_not(None), ArrearsItem.settled_by_sale_id.is_(None)
    )
    with counter.db.read() as session:
        local = set(session.scalars(open_refs.where(ArrearsItem.ref.like(f"%{OWING}"))))
    assert local == {f"DEMO-A-{OWING}", f"DEMO-F-{OWING}"}
    service.run_round()
    held = central.store.customer(OWING)
    assert held is not None and {a.ref for a in held.arrears} == local
    with counter.db.read() as session:
        again = session.scalars(open_refs.where(ArrearsItem.ref.like(f"%{OWING}"))).all()
    assert sorted(again) == sorted(local)  # the pull matched them, nothing doubled


def test_training_sales_never_reach_the_central_system(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    from app.settings import TRAINING_MODE

    counter.settings.set(TRAINING_MODE.key, True)
    ids = a_day_of_sales(counter)
    with counter.db.read() as session:
        assert session.scalar(select(OutboxEntry).limit(1)) is None
        flags = {s.id: s.training for s in session.scalars(select(Sale))}
    assert set(ids.values()) <= set(flags) and all(flags.values())
    service = make_service(counter, central, sleeps)
    assert service.run_round().push.sent == 0
    assert (
        central.store.count("sales") == 0
        and sync_status(counter.db, counter.clock, "C01").pending == 0
    )


# --------------------------------------------------------------------------- refused records


def remote_payments(counter: Counter, n: int, amount: int = 100) -> list[str]:
    return [counter.remote(amount + i).sale_id for i in range(n)]


def poison_operator(counter: Counter, sale_id: str, bad: str = "t02\n") -> None:
    """A hand edit the input checks would never let through: the sale's operator becomes
    ``t02`` with a trailing newline (a real operator row, so the foreign key holds)."""
    from sqlalchemy.orm import make_transient

    from app.persistence.models import Operator

    with counter.db.write() as session:
        if session.get(Operator, bad) is None:
            twin = session.get(Operator, "t02")
            assert twin is not None
            session.expunge(twin)
            make_transient(twin)
            twin.id = bad
            session.add(twin)
            session.flush()
        session.execute(update(Sale).where(Sale.id == sale_id).values(operator_id=bad))


def test_one_poisoned_record_among_100_is_set_aside_and_the_rest_go_up(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    from app.domain.permissions import PermissionDenied
    from app.services.sync_status import refused_records, requeue_refused

    sales = remote_payments(counter, 100)
    bad = sales[37]
    poison_operator(counter, bad)
    service = make_service(counter, central, sleeps)
    report = service.run_round()  # before: every round failed on the one record
    assert (report.push.sent, report.push.failed) == (99, 1)
    [refusal] = report.push.refusals
    assert (refusal.ref_id, refusal.code) == (bad, "invalid")
    assert "operator_id" in refusal.reason and "'t02\\n'" in refusal.reason
    held = central_sales(service)
    assert set(held) == set(sales) - {bad}  # 99 reached the central system, once each
    status = sync_status(counter.db, counter.clock, "C01")
    assert status.online and status.last_error == "" and status.last_success is not None
    assert (status.pending, status.refused, status.refused_amount) == (0, 1, 137)
    [listed] = refused_records(counter.db, "C01")
    assert listed.ref_id == bad and "operator_id" in listed.reason
    assert "cardvend sync retry" in listed.advice and str(listed.id) in listed.advice
    with counter.db.read() as session:
        assert session.scalar(
            select(AuditEntry.seq).where(
                AuditEntry.action == "sync_refused", AuditEntry.target == bad
            )
        )
    again = service.run_round()  # set aside: not sent in each round
    assert (again.push.requests, again.push.failed) == (0, 0)

    # the cause is fixed in the ledger; a supervisor re-queues it (a teller may not)
    with counter.db.write() as session:
        session.execute(update(Sale).where(Sale.id == bad).values(operator_id="t02"))
    with pytest.raises(PermissionDenied):
        requeue_refused(counter.db, counter.teller, counter.clock, [bad])
    assert requeue_refused(counter.db, counter.supervisor, counter.clock, [bad]) == [listed.id]
    status = sync_status(counter.db, counter.clock, "C01")
    assert (status.pending, status.refused) == (1, 0)
    report = service.run_round()
    assert (report.push.sent, report.push.failed) == (1, 0)
    assert set(central_sales(service)) == set(sales)
    assert central_sales(service)[bad].sale.operator_id == "t02"
    with counter.db.read() as session:
        retry = session.scalar(select(AuditEntry).where(AuditEntry.action == "sync_retry"))
        assert retry is not None and retry.operator_id == "s01"


def test_a_full_width_customer_number_is_refused_by_the_contract_check_alone(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    service = make_service(counter, central, sleeps)
    service.run_round()  # the archive is here; later pulls bring changes only
    sales = remote_payments(counter, 3)
    counter.open()  # a card customer: binding and sale go up as usual
    with counter.db.write() as session:  # the remote customer's number, typed full-width
        session.execute(
            update(Customer)
            .where(Customer.customer_no == REMOTE)
            .values(customer_no="１" + REMOTE[1:])
        )
    report = service.run_round()
    assert report.push.failed == 3 and {r.ref_id for r in report.push.refusals} == set(sales)
    assert all("customer_no" in r.reason for r in report.push.refusals)
    assert report.push.sent == 2


def test_a_record_the_central_side_refuses_is_set_aside_and_resent_once_fixed(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    from app.services.sync_status import refused_records, requeue_refused

    service = make_service(counter, central, sleeps)
    first = remote_payments(counter, 2)
    assert service.run_round().push.sent == 2
    [bad] = remote_payments(counter, 1, amount=500)
    with counter.db.write() as session:  # the ledger says another counter made it
        session.execute(update(Sale).where(Sale.id == bad).values(counter_id="C09"))
    report = service.run_round()
    assert (report.push.sent, report.push.failed) == (0, 1)
    assert report.push.refusals[0].code == "rejected"
    [listed] = refused_records(counter.db, "C01")
    assert "C09" in listed.reason and "administrator" in listed.advice
    assert service.run_round().push.requests == 0  # not resent in each round
    with counter.db.write() as session:
        session.execute(update(Sale).where(Sale.id == bad).values(counter_id="C01"))
    requeue_refused(counter.db, counter.supervisor, counter.clock, all_refused=True)
    # the same record alone again: a new Idempotency-Key, not the kept refusal replayed
    report = service.run_round()
    assert (report.push.sent, report.push.failed) == (1, 0)
    assert set(central_sales(service)) == {*first, bad}


def test_a_batch_the_central_side_refuses_whole_is_split_until_it_goes(
    counter: Counter, central: CentralServer, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync.central import server as central_server

    sales = remote_payments(counter, 6)
    monkeypatch.setattr(central_server, "MAX_BODY", 2000)  # not six records in one request
    report = make_service(counter, central, sleeps).run_round()
    assert (report.push.sent, report.push.failed) == (6, 0) and report.push.requests >= 3
    monkeypatch.undo()
    assert set(central_sales(make_service(counter, central, sleeps))) == set(sales)


def test_offline_limits_and_status_count_only_this_counters_records(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:

    other = counter.other_teller()

    def pay(actor: auth.Principal, amount: int = 100) -> str:
        return counter.remote(amount, actor=actor).sale_id

    theirs = [pay(other) for _ in range(3)]
    counter.settings.set("offline_max_sales", 3)
    mine = pay(counter.teller)  # before: C02's three records counted against C01 too
    with pytest.raises(selling.OfflineLimitReached, match="3 records"):
        pay(other)
    assert sync_status(counter.db, counter.clock, "C01").pending == 1
    assert sync_status(counter.db, counter.clock, "C02").pending == 3

    counter.settings.set("offline_max_sales", 1000)
    counter.settings.set("offline_max_hours", 2)
    counter.clock.advance(hours=3)
    for actor in (counter.teller, other):
        actor.last_activity = counter.clock.now()
    report = make_service(counter, central, sleeps).run_round()  # C01's round
    assert (report.push.sent, report.push.failed) == (1, 0)  # its own record only
    assert set(central_sales(make_service(counter, central, sleeps))) == {mine}
    assert sync_status(counter.db, counter.clock, "C02").last_success is None
    pay(counter.teller)  # C01 synced a moment ago
    with pytest.raises(selling.OfflineLimitReached, match="2 hours"):
        pay(other)  # C02 never did: its records wait for more than two hours
    with counter.db.read() as session:
        rows = session.scalars(select(OutboxEntry).where(OutboxEntry.ref_id.in_(theirs)))
        assert {(r.counter_id, r.sent_at) for r in rows} == {("C02", None)}


def test_reconcile_compares_the_live_ledger_not_the_frozen_body(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    ids, service = a_day_synced(counter, central, sleeps)
    with counter.db.write() as session:  # hand edits of sales already sent
        session.execute(update(Sale).where(Sale.id == ids["sold"]).values(amount=1, credit=1))
        session.execute(update(Sale).where(Sale.id == ids["remote"]).values(state="failed"))
        owing = session.scalar(select(Customer.id).where(Customer.customer_no == OWING))
        session.execute(update(Sale).where(Sale.id == ids["reversed"]).values(customer_id=owing))
    diff = reconcile(service.db, service.client, counter_id="C01", office_code="DEMO")
    found = {(d.sale_id, d.kind, d.detail) for d in diff.serious}
    assert found == {
        (ids["sold"], "different", "amount, credit"),
        (ids["remote"], "different", "state"),
        (ids["reversed"], "different", "customer_no"),
    }
    assert diff.matched == 1
    poison_operator(counter, ids["remote"])  # an edit no contract allows is named too
    diff = reconcile(service.db, service.client, counter_id="C01", office_code="DEMO")
    assert (ids["remote"], "different", "state, operator_id") in {
        (d.sale_id, d.kind, d.detail) for d in diff.serious
    }


def test_each_counter_follows_its_own_remote_payment_statuses(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:

    other = counter.other_teller()
    services = {
        cid: SyncService(
            counter.db,
            CentralClient(central.url, register(central, cid), retry=RetryPolicy(sleep=sleeps)),
            counter.clock,
            counter_id=cid,
            office_code="DEMO",
        )
        for cid in ("C01", "C02")
    }
    paid = {}
    for cid, actor in (("C01", counter.teller), ("C02", other)):
        paid[cid] = counter.remote(1000, actor=actor).sale_id
        assert services[cid].run_round().push.sent == 1
    # the central side changes both later: C01's first, so C02's comes after it in the stream
    central.store.set_remote_status(paid["C01"], "failed", "meter offline")
    central.store.set_remote_status(paid["C02"], "failed", "meter offline")
    services["C02"].run_round()  # before: this moved a shared cursor past C01's change
    services["C01"].run_round()
    with counter.db.read() as session:
        assert {session.get(Sale, s).remote_status for s in paid.values()} == {"failed"}  # type: ignore[union-attr]


def test_the_migration_gives_existing_outbox_rows_their_counter(counter: Counter) -> None:
    """A database from before: rows get the counter of the fact they report, and a row left
    unsent with a refusal is set aside as refused."""
    from alembic import command

    ids = a_day_of_sales(counter)  # C01: binding, sales, reversal, remote payment
    other = counter.other_teller()
    theirs = counter.remote(700, actor=other).sale_id
    with counter.db.read() as session:
        before = {r.id: r.counter_id for r in session.scalars(select(OutboxEntry))}
    assert set(before.values()) == {"C01", "C02"} and len(before) == 7
    with counter.db._write_engine.connect() as conn:
        command.downgrade(counter.db.alembic_config(conn), "0006")
        conn.commit()
    with counter.db.write() as session:
        session.execute(
            text(
                "UPDATE outbox SET last_error = 'conflict: held with another body' WHERE ref_id = :r"
            ),
            {"r": ids["sold"]},
        )
    counter.db.migrate()
    with counter.db.read() as session:
        rows = {r.id: r for r in session.scalars(select(OutboxEntry))}
    assert {i: r.counter_id for i, r in rows.items()} == before
    refused = {r.ref_id: (r.refused_code, r.refused_reason) for r in rows.values() if r.refused_at}
    assert refused == {ids["sold"]: ("conflict", "held with another body")}
    assert theirs in {r.ref_id for r in rows.values() if r.counter_id == "C02"}


@pytest.mark.parametrize("first", [CUSTOMER, OWING])
def test_an_arrears_item_moved_within_a_page_keeps_its_row(
    counter: Counter,
    central: CentralServer,
    sleeps: Sleeps,
    monkeypatch: pytest.MonkeyPatch,
    first: str,
) -> None:
    """A page is applied in slices: an item that moves to a customer in another slice of the
    same page is moved, not dropped and added again."""
    from sync import pull

    service = make_service(counter, central, sleeps)
    central.store.add_arrears(CUSTOMER, "C-MOVE", 900, description="电费欠费")
    service.run_round()
    with counter.db.read() as session:
        item = session.scalar(select(ArrearsItem).where(ArrearsItem.ref == "C-MOVE"))
        assert item is not None
        row_id = item.id
        owing_id = session.scalar(select(Customer.id).where(Customer.customer_no == OWING))
    t = central_models.arrears_items

    def move(tx: Any) -> None:
        tx.conn.execute(update(t).where(t.c.ref == "C-MOVE").values(customer_no=OWING))
        for cno in (first, CUSTOMER if first == OWING else OWING):
            tx.touch_customer(cno)  # the page lists them in this order

    central.store.write(move, ("customers",))
    monkeypatch.setattr(pull, "APPLY_CHUNK", 1)
    assert service.run_round().pull.arrears_changed == 1
    with counter.db.read() as session:
        items = session.scalars(select(ArrearsItem).where(ArrearsItem.ref == "C-MOVE")).all()
        assert [(i.id, i.customer_id) for i in items] == [(row_id, owing_id)]


def test_pages_that_have_arrived_are_applied_together_and_all_arrive(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    service = make_service(counter, central, sleeps)
    service.run_round()
    changed = [CUSTOMER, OWING, REMOTE]
    for i, cno in enumerate(changed):
        central.store.update_customer(cno, alarm1=3000 + i)
    service.page_size = 1  # one customer a page: several pages per transaction
    report = service.run_round()
    assert (report.pull.customers_changed, report.pull.pages) == (3, 3 + 3)  # + the other streams
    with counter.db.read() as session:
        alarms = dict(
            session.execute(
                select(Customer.customer_no, Customer.alarm1).where(
                    Customer.customer_no.in_(changed)
                )
            ).all()
        )
    assert alarms == {cno: 3000 + i for i, cno in enumerate(changed)}
    assert service.run_round().pull.customers_changed == 0  # the cursor is past them
