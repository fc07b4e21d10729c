"""Exactly once, under faults: a randomized run of at least 1,000 push rounds against the real
reference central server. Every round may sell (remote payments, and now and then a card sale),
then pushes while the server drops connections before or after committing, answers 5xx (with
and without Retry-After), answers late (past the client's timeout), answers garbage after
committing, receives a batch twice, or the counter "restarts" in the middle of a push (after the
server committed a batch and before the counter marked it). In the end the central side holds
exactly the counter's settled sales: none missing, none twice.

``CARDVEND_SYNC_ROUNDS`` sets the number of rounds (the benchmark runs 10,000);
``CARDVEND_SYNC_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.clock import FixedClock
from app.persistence.db import Database
from app.persistence.models import OutboxEntry, Sale
from app.services import selling
from app.services.demo import demo_arrears, demo_customer, load_demo
from app.settings import OFFLINE_MAX_AMOUNT, OFFLINE_MAX_SALES, Settings
from sync import contract as c
from sync.central.server import CentralServer
from sync.client import CentralClient, RetryPolicy
from sync.errors import SyncError
from sync.outbox import push
from tests.rigs.counter import Counter

ROUNDS = int(os.environ.get("CARDVEND_SYNC_ROUNDS", "1000"))
SEED = int(os.environ.get("CARDVEND_SYNC_SEED", "20261129"))
REMOTES = [
    demo_customer(i)["customer_no"]
    for i in range(200)
    if demo_customer(i)["meter_kind"] == "remote" and not demo_arrears(i)
]


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


@pytest.fixture
def counter(tmp_path: Path, clock: FixedClock) -> Iterator[Counter]:
    db = Database(str(tmp_path / "counter.db"))
    db.migrate()
    load_demo(db, clock)
    yield Counter(db, clock, tmp_path)
    db.dispose()


def _pending(db: Database) -> int:
    with db.read() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(OutboxEntry).where(OutboxEntry.sent_at.is_(None))
            )
            or 0
        )


def test_exactly_once_under_faults(counter: Counter, central: CentralServer) -> None:
    rng = random.Random(SEED)
    settings = Settings()
    settings.set(OFFLINE_MAX_SALES.key, 1_000_000)
    settings.set(OFFLINE_MAX_AMOUNT.key, 10**11)
    counter.settings = settings
    token = (
        CentralClient(central.url)
        .register(c.RegisterRequest(counter_id="C01", office_code="DEMO"), None)
        .token
    )
    card = counter.open(amount=None)
    faults_seen: dict[str, int] = {}

    def client(crash_after: int | None = None) -> CrashingClient:
        return CrashingClient(
            central.url,
            token,
            crash_after=crash_after,
            timeout=(1.0, 0.25),
            retry=RetryPolicy(attempts=rng.choice((1, 2, 3)), base=0.001, max_wait=0.01),
        )

    for _ in range(ROUNDS):
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            selling.remote_payment(
                counter.db,
                actor=counter.teller,
                customer_no=rng.choice(REMOTES),
                amount=rng.randrange(100, 20_000),
                clock=counter.clock,
                settings=settings,
            )
        if rng.random() < 0.03:
            counter.to_meter(card)
            counter.sell(card, rng.randrange(100, 5000))
        fault = rng.choice(
            (
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
        )
        faults_seen[fault] = faults_seen.get(fault, 0) + 1
        crash_after = None
        if fault == "drop_after_commit":
            central.faults.arm(drop_after_commit=rng.choice((1, 2)))
        elif fault == "drop_before":
            central.faults.arm(drop_before=1)
        elif fault == "error_5xx":
            central.faults.arm(error_5xx=rng.choice((1, 2, 3)))
        elif fault == "retry_after":
            central.faults.arm(error_5xx=1, retry_after=0)
        elif fault == "latency" and rng.random() < 0.3:  # keep the slow rounds few
            central.faults.arm(latency_ms=400)
        elif fault == "malformed":
            central.faults.arm(malformed=1)
        elif fault == "restart":
            crash_after = rng.choice((0, 1))
        link = client(crash_after)
        try:
            push(
                counter.db, link, counter.clock, "DEMO", "C01", batch_size=rng.choice((1, 2, 7, 50))
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
            central.faults.clear()
    # the link is good again: everything goes out
    link = client()
    for _ in range(5):
        if _pending(counter.db) == 0:
            break
        push(counter.db, link, counter.clock, "DEMO", "C01", batch_size=500)
    assert _pending(counter.db) == 0
    held: list[str] = []
    after = 0
    while True:
        page = link.counter_sales(after, 1000)
        held += [i.sale.id for i in page.items]
        if not page.has_more:
            break
        after = page.next_cursor
    with counter.db.read() as session:
        local = set(
            session.scalars(
                select(Sale.id).where(Sale.state.in_(("completed", "failed", "reversed")))
            )
        )
    assert len(held) == len(set(held)), "a sale reached the central side twice"
    assert set(held) == local, (
        f"missing centrally: {len(local - set(held))}, unknown locally: {len(set(held) - local)}"
    )
    assert central.store.count("sales") == len(local)
    assert len(local) > ROUNDS // 2
    assert all(faults_seen.get(f, 0) > 0 for f in ("drop_after_commit", "restart", "malformed"))
