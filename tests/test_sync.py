"""Sync against the reference central server over real HTTP: push, pull, faults, offline,
review flags, reconciliation, the audit head. The counter runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import requests
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update

from app.persistence.db import Database
from app.persistence.models import ArrearsItem
from app.persistence.models import AuditEntry
from app.persistence.models import Customer
from app.persistence.models import OutboxEntry
from app.persistence.models import Sale
from app.services import auth
from app.services.sync_status import sync_status
from sync import contract as c
from sync.central import models as central_models
from sync.central.server import CentralServer
from sync.client import CentralClient
from sync.client import RetryPolicy
from sync.errors import AuditDiverged
from sync.errors import CentralBadResponse
from sync.errors import CentralUnreachable
from sync.service import SyncService
from sync.service import reconcile
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import OWING
from tests.rigs.counter import Counter
from tests.rigs.sync import TOKENS
from tests.rigs.sync import Sleeps
from tests.rigs.sync import a_day_of_sales
from tests.rigs.sync import a_day_synced
from tests.rigs.sync import central_sales
from tests.rigs.sync import make_service
from tests.rigs.sync import register


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
    # the late first try still holds its records while the retry waits: the retry's timeout
    # leaves a second of room for that on a loaded machine
    service = make_service(counter, central, sleeps, read_timeout=1.5, attempts=3)
    central.faults.arm(latency_ms=2000, path="/api/v1/sales/batch")
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
    from app.domain.card import CardWrite
    from app.domain.card import PurchaseRecord

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
