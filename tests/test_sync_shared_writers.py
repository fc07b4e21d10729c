"""Sync on a database that several counters share: the card balances (write-backs) on the
customer archive are reported with one cursor for all of them, which only ever moves forward;
a pull that appended to the audit log locks no more customers in that transaction, so it never
waits on a sale that waits on the audit log."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy import update

from app.persistence.models import Customer
from sync import contract as c
from sync.central.server import CentralServer
from sync.client import CentralClient
from sync.pull import get_setting
from sync.pull import pull_all
from sync.service import CONTROL_CURSOR
from sync.service import SyncService
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import OWING
from tests.rigs.counter import Counter
from tests.rigs.sync import Sleeps
from tests.rigs.sync import make_service
from tests.rigs.sync import register


def seen(counter: Counter, customer_no: str, at: dt.datetime, remaining: int) -> None:
    """The counter read the customer's card and its meter's write-back at ``at``."""
    with counter.db.write() as session:
        session.execute(
            update(Customer)
            .where(Customer.customer_no == customer_no)
            .values(write_back_seen_at=at, meter_remaining=remaining, meter_purchase_count=1)
        )


class Interleaved(CentralClient):
    """A client that lets ``meanwhile`` run once, while its first batch is on the way."""

    def __init__(self, *args: Any, meanwhile: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.meanwhile = meanwhile

    def post_batch(self, resource: str, items: Sequence[c.Model]) -> Any:
        if self.meanwhile is not None:
            run, self.meanwhile = self.meanwhile, None
            run()
        return super().post_batch(resource, items)


def test_a_slower_counter_does_not_take_the_cursor_back(
    counter: Counter, central: CentralServer
) -> None:
    first = counter.clock.now()
    seen(counter, CUSTOMER, first, 5000)
    posted: list[str] = []

    def c02_reports_further() -> None:  # while C01's reports are on the way
        seen(counter, OWING, first + dt.timedelta(minutes=5), 4000)
        client = CentralClient(central.url, register(central, "C02"))
        c02 = SyncService(counter.db, client, counter.clock, counter_id="C02", office_code="DEMO")
        assert c02.push_control()[0] == 2
        posted.append("C02")

    client = Interleaved(central.url, register(central), meanwhile=c02_reports_further)
    c01 = SyncService(counter.db, client, counter.clock, counter_id="C01", office_code="DEMO")
    assert c01.push_control()[0] == 1  # it read one write-back, before the other came
    assert posted == ["C02"]
    with counter.db.read() as session:
        cursor = get_setting(session, CONTROL_CURSOR) or ""
        owing = session.query(Customer.id).filter(Customer.customer_no == OWING).scalar()
    # C02's position stands: C01 reported less and did not write its older one over it
    assert cursor == f"{(first + dt.timedelta(minutes=5)).isoformat()}|{owing}"
    assert c01.push_control()[0] == 0  # nothing is reported twice


def test_a_pull_that_flagged_a_sale_does_not_hold_the_audit_log_while_it_waits(
    counter: Counter, central: CentralServer, sleeps: Sleeps
) -> None:
    """Page 1 closes a customer with an unsent sale (flagged and audited: the pull holds the
    audit head), page 2 changes a customer another counter is selling to right now (its row is
    locked, and that sale appends to the audit log next).  The pull must have let the head go
    before it waits for that customer, or both wait for each other."""
    if counter.db.dialect != "postgresql":
        pytest.skip("row locks: SQLite has one writer at a time")
    service = make_service(counter, central, sleeps)
    service.run_round()
    image = counter.open()
    counter.to_meter(image)
    counter.sell(image, 2000)  # offline: not sent yet
    central.store.update_customer(CUSTOMER, status="closed")
    central.store.update_customer(OWING, alarm1=3500)
    pulled: list[Any] = []
    with counter.db.engine.connect() as other:  # the other counter's sale, under way
        other.execute(text("SET lock_timeout = '5s'"))
        other.execute(
            text("SELECT id FROM customers WHERE customer_no = :no FOR UPDATE"), {"no": OWING}
        )
        puller = threading.Thread(
            target=lambda: pulled.append(
                pull_all(counter.db, service.client, counter.clock, counter_id="C01", page_size=1)
            )
        )
        puller.start()
        deadline = time.monotonic() + 10
        while not _someone_waits(counter) and time.monotonic() < deadline:
            time.sleep(0.05)
        # the sale appends to the audit log: the head is free (lock_timeout would raise)
        other.execute(text("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"))
        other.commit()
        puller.join(30)
    assert pulled and pulled[0].flagged == 2, pulled  # the opening and the sale


def _someone_waits(counter: Counter) -> bool:
    with counter.db.engine.connect() as conn:
        waiting = conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
        )
    return bool(waiting)
