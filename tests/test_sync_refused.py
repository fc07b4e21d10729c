"""Sync against the reference central server over real HTTP: records the central side refuses
(set aside, reported, resent once fixed), offline limits and statuses per counter, reconciling the
live ledger, the outbox migration and the arrears pages. The counter runs on SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from app.persistence.models import ArrearsItem
from app.persistence.models import AuditEntry
from app.persistence.models import Customer
from app.persistence.models import OutboxEntry
from app.persistence.models import Sale
from app.services import auth
from app.services import selling
from app.services.sync_status import sync_status
from sync.central import models as central_models
from sync.central.server import CentralServer
from sync.client import CentralClient
from sync.client import RetryPolicy
from sync.service import SyncService
from sync.service import reconcile
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import OWING
from tests.rigs.counter import REMOTE
from tests.rigs.counter import Counter
from tests.rigs.sync import Sleeps
from tests.rigs.sync import a_day_of_sales
from tests.rigs.sync import a_day_synced
from tests.rigs.sync import central_sales
from tests.rigs.sync import make_service
from tests.rigs.sync import register

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
    from app.services.sync_status import refused_records
    from app.services.sync_status import requeue_refused

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
    from app.services.sync_status import refused_records
    from app.services.sync_status import requeue_refused

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
    from sync.central import wire as central_wire

    sales = remote_payments(counter, 6)
    monkeypatch.setattr(central_wire, "MAX_BODY", 2000)  # not six records in one request
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
    with counter.db.migration_connection() as conn:
        command.downgrade(counter.db.alembic_config(conn), "0006")
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
