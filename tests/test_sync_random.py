"""Exactly once, under faults: a randomized run of at least 1,000 push rounds against the real
reference central server. Every round may sell (remote payments, and now and then a card sale),
then pushes while the server drops connections before or after committing, answers 5xx (with
and without Retry-After), answers late (past the client's timeout), answers garbage after
committing, receives a batch twice, or the counter "restarts" in the middle of a push (after the
server committed a batch and before the counter marked it). In the end the central side holds
exactly the counter's settled sales: none missing, none twice.  The rounds are
tests/rigs/fault_rounds.py (tests/test_central_multi.py runs them against two server processes).

``CARDVEND_SYNC_ROUNDS`` sets the number of rounds (the benchmark runs 10,000);
``CARDVEND_SYNC_SEED`` replays a run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.clock import FixedClock
from sync.central.server import CentralServer
from tests.rigs.counter import Counter
from tests.rigs.counter import counter_on_sqlite
from tests.rigs.fault_rounds import InProcessFaults
from tests.rigs.fault_rounds import run_fault_rounds

ROUNDS = int(os.environ.get("CARDVEND_SYNC_ROUNDS", "1000"))
SEED = int(os.environ.get("CARDVEND_SYNC_SEED", "20261129"))


@pytest.fixture
def counter(tmp_path: Path, clock: FixedClock) -> Iterator[Counter]:
    """The counter on SQLite only (the shared ``counter`` runs on PostgreSQL too)."""
    yield from counter_on_sqlite(tmp_path, clock)


def test_exactly_once_under_faults(counter: Counter, central: CentralServer) -> None:
    outcome = run_fault_rounds(counter, [InProcessFaults(central)], rounds=ROUNDS, seed=SEED)
    assert central.store.count("sales") == len(outcome.local)
