"""The card balances (write-backs) on the customer archive that counters sharing a database
report to the central system: one cursor for all of them, which only ever moves forward."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import update

from app.persistence.models import Customer
from sync import contract as c
from sync.central.server import CentralServer
from sync.client import CentralClient
from sync.pull import get_setting
from sync.service import CONTROL_CURSOR, SyncService
from tests.rigs.counter import CUSTOMER, OWING, Counter
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
