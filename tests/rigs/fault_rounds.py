"""The randomized fault rounds of exactly once (tests/test_sync_random.py and the two-server run
of tests/test_central_multi.py): a counter sells, faults are armed on the central server the
round talks to, the counter pushes, and in the end the central side holds exactly the counter's
settled sales, none missing, none twice.

The counter reaches the central side through its ``central_url`` setting, which names one of
the ``targets`` in turn (round ``i`` uses ``targets[i % len(targets)]``): one server, or several
server processes on one database.  A target arms its faults in-process
(:class:`InProcessFaults`) or over HTTP (:class:`HttpFaults`, ``POST /_test/faults``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol

import requests
from sqlalchemy import func
from sqlalchemy import select

from app.persistence.db import Database
from app.persistence.models import OutboxEntry
from app.persistence.models import Sale
from app.services import selling
from app.services.demo import demo_arrears
from app.services.demo import demo_customer
from app.settings import CENTRAL_CA_BUNDLE
from app.settings import CENTRAL_URL
from app.settings import OFFLINE_MAX_AMOUNT
from app.settings import OFFLINE_MAX_SALES
from sync import contract as c
from sync.central.faults import FAULTS_PATH
from sync.central.server import CentralServer
from sync.client import CentralClient
from sync.client import RetryPolicy
from sync.errors import SyncError
from sync.outbox import push
from tests.rigs.counter import Counter

REMOTES = [
    demo_customer(i)["customer_no"]
    for i in range(200)
    if demo_customer(i)["meter_kind"] == "remote" and not demo_arrears(i)
]
FAULTS = (
    "none",
    "none",
    "none",
    "drop_after_commit",
    "drop_before",
    "error_5xx",
    "retry_after",
    "latency",
    "malformed",
    "duplicate",
    "restart",
)


class FaultTarget(Protocol):
    """A central server the counter can be pointed at, whose faults can be armed."""

    @property
    def url(self) -> str: ...

    def arm(self, **spec: Any) -> None: ...

    def clear(self) -> None: ...


class InProcessFaults:
    """A :class:`CentralServer` of this process: faults armed on its injector."""

    def __init__(self, server: CentralServer) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url

    def arm(self, **spec: Any) -> None:
        self.server.faults.arm(**spec)

    def clear(self) -> None:
        self.server.faults.clear()


class HttpFaults:
    """A central server in another process (``central serve --faults``): faults armed through
    ``POST /_test/faults``, cleared with ``DELETE``."""

    def __init__(self, url: str, ca_bundle: str | None = None) -> None:
        self._url = url.rstrip("/")
        self.http = requests.Session()
        self.http.verify = ca_bundle or True

    @property
    def url(self) -> str:
        return self._url

    def arm(self, **spec: Any) -> None:
        r = self.http.post(self._url + FAULTS_PATH, json=spec, timeout=5)
        assert r.status_code == 200, r.text

    def clear(self) -> None:
        r = self.http.delete(self._url + FAULTS_PATH, timeout=5)
        assert r.status_code == 200, r.text

    def close(self) -> None:
        self.http.close()


class Crash(Exception):
    """The counter process died here."""


class CrashingClient(CentralClient):
    """Dies right after the server answered a batch (the answer is never marked)."""

    def __init__(self, *args: Any, crash_after: int | None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.crash_after = crash_after
        self.last_batch: tuple[str, list[c.Model]] | None = None

    def post_batch(
        self, resource: str, items: Sequence[c.Model], *, key_ids: Sequence[str] | None = None
    ) -> c.BatchResult:
        result = super().post_batch(resource, items, key_ids=key_ids)
        self.last_batch = (resource, list(items))
        if self.crash_after is not None:
            self.crash_after -= 1
            if self.crash_after < 0:
                raise Crash()
        return result


def pending(db: Database) -> int:
    """Outbox rows not yet marked sent."""
    with db.read() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(OutboxEntry).where(OutboxEntry.sent_at.is_(None))
            )
            or 0
        )


def settled_sales(db: Database) -> set[str]:
    """The ids of the sales the central side must hold (settled: sent once settled)."""
    with db.read() as session:
        return set(
            session.scalars(
                select(Sale.id).where(Sale.state.in_(("completed", "failed", "reversed")))
            )
        )


def held_sales(link: CentralClient) -> list[str]:
    """The ids of this counter's sales as the central side lists them (repeats kept)."""
    held: list[str] = []
    after = 0
    while True:
        page = link.counter_sales(after, 1000)
        held += [i.sale.id for i in page.items]
        if not page.has_more:
            return held
        after = page.next_cursor


@dataclass
class RoundsOutcome:
    rounds: int
    seconds: float
    local: set[str]
    held: list[str]
    faults_seen: dict[str, int] = field(default_factory=dict)
    fault_seconds: dict[str, float] = field(default_factory=dict)  # time spent, by fault
    urls_used: dict[str, int] = field(default_factory=dict)


def run_fault_rounds(
    counter: Counter,
    targets: Sequence[FaultTarget],
    *,
    rounds: int,
    seed: int,
    counter_id: str = "C01",
    office: str = "DEMO",
) -> RoundsOutcome:
    """``rounds`` rounds of sell / arm a fault / push, the counter's ``central_url`` moving
    through ``targets`` round by round; then a clean push of what is left.  Checks that the
    central side holds every settled sale exactly once and answers what it saw."""
    rng = random.Random(seed)
    settings = counter.settings
    settings.set(OFFLINE_MAX_SALES.key, 1_000_000)
    settings.set(OFFLINE_MAX_AMOUNT.key, 10**11)
    settings.set(CENTRAL_URL.key, targets[0].url)
    bundle = settings.value(CENTRAL_CA_BUNDLE) or None
    # registered once, on the first server: the token is a row, every server of the database
    # knows it
    token = (
        CentralClient(targets[0].url, ca_bundle=bundle)
        .register(c.RegisterRequest(counter_id=counter_id, office_code=office), None)
        .token
    )
    card = counter.open(amount=None)
    outcome = RoundsOutcome(rounds=rounds, seconds=0.0, local=set(), held=[])

    def client(crash_after: int | None = None, *, calm: bool = False) -> CrashingClient:
        return CrashingClient(
            settings.value(CENTRAL_URL),
            token,
            ca_bundle=settings.value(CENTRAL_CA_BUNDLE) or None,
            crash_after=crash_after,
            timeout=(5.0, 30.0) if calm else (1.0, 0.25),
            retry=RetryPolicy(attempts=rng.choice((1, 2, 3)), base=0.001, max_wait=0.01),
        )

    t0 = time.perf_counter()
    for number in range(rounds):
        target = targets[number % len(targets)]
        settings.set(CENTRAL_URL.key, target.url)
        outcome.urls_used[target.url] = outcome.urls_used.get(target.url, 0) + 1
        _sell_some(counter, card, rng)
        fault = rng.choice(FAULTS)
        outcome.faults_seen[fault] = outcome.faults_seen.get(fault, 0) + 1
        link = client(_arm(target, fault, rng))
        started = time.perf_counter()
        try:
            push(
                counter.db,
                link,
                counter.clock,
                office,
                counter_id,
                batch_size=rng.choice((1, 2, 7, 50)),
            )
            if fault == "duplicate" and link.last_batch is not None:
                resource, items = link.last_batch  # the same batch delivered again:
                replay = link.post_batch(resource, items)  # same key: the first answer
                assert {r.status for r in replay.results} <= {"created", "duplicate"}
                for item in items[:3]:  # and item by item (other keys): known already
                    assert link.post_one(resource, item).status == "duplicate"
        except (SyncError, Crash):
            pass
        finally:
            link.close()
            target.clear()
            spent = time.perf_counter() - started
            outcome.fault_seconds[fault] = outcome.fault_seconds.get(fault, 0.0) + spent
    # the link is good again: everything goes out, through each server in turn
    for attempt in range(5):
        if pending(counter.db) == 0:
            break
        settings.set(CENTRAL_URL.key, targets[attempt % len(targets)].url)
        link = client(calm=True)
        try:
            push(counter.db, link, counter.clock, office, counter_id, batch_size=500)
        finally:
            link.close()
    outcome.seconds = time.perf_counter() - t0
    assert pending(counter.db) == 0
    outcome.local = settled_sales(counter.db)
    for target in targets:  # every server answers the same: the state is the database's
        settings.set(CENTRAL_URL.key, target.url)
        link = client(calm=True)
        try:
            outcome.held = _held_once(link, outcome.local, target.url)
        finally:
            link.close()
    assert len(outcome.local) > rounds // 2
    assert all(
        outcome.faults_seen.get(f, 0) > 0 for f in ("drop_after_commit", "restart", "malformed")
    )
    return outcome


def _sell_some(counter: Counter, card: Any, rng: random.Random) -> None:
    """A round's sales: a few remote payments, now and then a card sale."""
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        selling.remote_payment(
            counter.db,
            actor=counter.teller,
            customer_no=rng.choice(REMOTES),
            amount=rng.randrange(100, 20_000),
            clock=counter.clock,
            settings=counter.settings,
        )
    if rng.random() < 0.03:
        counter.to_meter(card)
        counter.sell(card, rng.randrange(100, 5000))


def _arm(target: FaultTarget, fault: str, rng: random.Random) -> int | None:
    """Arm ``fault`` on the server; answers after how many posts the client crashes (a restart
    of the counter mid-push), None for no crash."""
    if fault == "drop_after_commit":
        target.arm(drop_after_commit=rng.choice((1, 2)))
    elif fault == "drop_before":
        target.arm(drop_before=1)
    elif fault == "error_5xx":
        target.arm(error_5xx=rng.choice((1, 2, 3)))
    elif fault == "retry_after":
        target.arm(error_5xx=1, retry_after=0)
    elif fault == "latency" and rng.random() < 0.3:  # keep the slow rounds few
        target.arm(latency_ms=400)
    elif fault == "malformed":
        target.arm(malformed=1)
    elif fault == "restart":
        return rng.choice((0, 1))
    return None


def _held_once(link: CentralClient, local: set[str], url: str) -> list[str]:
    """The sales the server holds, each once and exactly the counter's settled ones."""
    held = held_sales(link)
    assert len(held) == len(set(held)), f"a sale reached the central side twice ({url})"
    assert set(held) == local, (
        f"missing centrally: {len(local - set(held))}, "
        f"unknown locally: {len(set(held) - local)} ({url})"
    )
    return held
