"""A counter's sync client registered with the in-process reference central server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from app.clock import FixedClock
from sync import contract as c
from sync.central.server import CentralServer
from sync.client import CentralClient


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
