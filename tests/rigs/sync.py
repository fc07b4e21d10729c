"""A counter's sync client registered with the in-process reference central server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.clock import FixedClock
from sync import contract as c
from sync.central.server import CentralServer
from sync.client import CentralClient
from sync.client import RetryPolicy
from sync.service import SyncService
from sync.service import reconcile
from tests.rigs.counter import Counter


def running_central(
    tmp_path: Path, clock: FixedClock, *, faults: bool = False
) -> Iterator[CentralServer]:
    """The in-process central server on its own SQLite database with the demo data, started;
    stopped afterwards (wrap it in a fixture).  ``faults``: it accepts injected faults."""
    from sync.central.seed import seed_demo

    server = CentralServer(f"sqlite:///{tmp_path / 'central.db'}", faults=faults)
    seed_demo(server.store, clock.now())
    server.start()
    yield server
    server.stop()


TOKENS: dict[tuple[str, str], str] = {}  # (central URL, counter id) -> its current token


def register(central: CentralServer, counter_id: str = "C01") -> str:
    """Register the counter, or register it again with its current token (as a counter does:
    the central system gives an existing counter id only to the holder of its token)."""
    client = CentralClient(central.url, TOKENS.get((central.url, counter_id)))
    answer = client.register(
        c.RegisterRequest(counter_id=counter_id, office_code="DEMO", name="test"), None
    )
    client.close()
    TOKENS[(central.url, counter_id)] = answer.token
    return answer.token


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
