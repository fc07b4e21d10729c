"""The reference central server over real HTTP: a counter's session with its token, record bodies,
and a seeded central store on SQLite or PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from app.clock import FixedClock
from app.services import demo
from sync import contract as c
from sync.central import CentralServer
from sync.central import CentralStore
from sync.central import seed as central_seed
from tests.conftest import PG_URL
from tests.conftest import in_schema
from tests.conftest import pg_schema

FIRST = str(demo.FIRST_CUSTOMER)  # 100000000001: card meter, owes DEMO-A-... and DEMO-F-...


REMOTE = str(demo.FIRST_CUSTOMER + 9)  # the first remote-meter customer


CARD = str(demo.FIRST_CUSTOMER + 1)  # a card meter without arrears


NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
# the next morning: where the control and SMS tests start the station's clock
START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


HEX = "0123456789abcdef" * 4


class Api:
    """A counter talking to the server: requests.Session with its bearer token."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base + c.API_PREFIX
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.base + path, params=params, timeout=10)

    def post(self, path: str, body: Any, key: str | None = "auto", **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if key == "auto":
            key = uuid.uuid4().hex
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.http.post(self.base + path, json=body, headers=headers, timeout=10, **kw)

    def put(self, path: str, body: Any) -> requests.Response:
        return self.http.put(self.base + path, json=body, timeout=10)

    def pull(self, path: str, after: int = 0, limit: int = 1000) -> tuple[list[Any], int]:
        items: list[Any] = []
        while True:
            r = self.get(path, after=after, limit=limit)
            assert r.status_code == 200, r.text
            page = r.json()
            items += page["items"]
            after = page["next_cursor"]
            if not page["has_more"]:
                return items, after


def register(base: str, counter_id: str = "C1", office: str = "DEMO", **headers: str) -> str:
    r = requests.post(
        base + c.API_PREFIX + "/counters/register",
        json={"counter_id": counter_id, "office_code": office, "name": "Counter " + counter_id},
        headers=headers,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    c.RegisterResponse.model_validate_json(r.content)
    token: str = r.json()["token"]
    return token


def sale(
    customer_no: str = FIRST,
    *,
    counter_id: str = "C1",
    kind: str = "card",
    state: str = "completed",
    **over: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "kind": kind,
        "state": state,
        "customer_no": customer_no,
        "purchase_count": 1 if kind == "card" else None,
        "amount": 10_000,
        "arrears": 0,
        "fees": 0,
        "credit": 10_000,
        "energy_wh": 18_000,
        "tariff_plan": "RES-FLAT",
        "tariff_version_no": 1,
        "settled_refs": [],
        "operator_id": "t01",
        "counter_id": counter_id,
        "office_code": "DEMO",
        "shift_id": str(uuid.uuid4()),
        "card_serial": None,
        "cash_received": 10_000,
        "created_at": "2026-03-01T17:00:00+08:00",
    }
    body.update(over)
    return body


def event(resource: str, counter_id: str = "C1", **fields: Any) -> dict[str, Any]:
    body = {"id": str(uuid.uuid4()), "counter_id": counter_id, **fields}
    c.POSTED[resource].model_validate(body)
    return body


def reversal(sale_id: str, counter_id: str = "C1") -> dict[str, Any]:
    """A reversal of the whole sale ``sale_id`` (100.00), approved by s01 at 18:00."""
    return event(
        "reversals",
        counter_id,
        sale_id=sale_id,
        amount=10_000,
        operator_id="t01",
        approver_id="s01",
        created_at="2026-03-01T18:00:00+08:00",
    )


@contextmanager
def seeded_store(kind: str, tmp_path: Path, **store_args: Any) -> Iterator[CentralStore]:
    """A central store seeded with the demo data, on ``kind`` ("sqlite" in ``tmp_path``, or
    "postgresql": a schema of its own; the test is skipped without a server); ``store_args``
    for :class:`CentralStore` (a clock, say)."""
    with ExitStack() as stack:
        if kind == "sqlite":
            s = CentralStore(str(tmp_path / "central.db"), **store_args)
        else:
            schema = stack.enter_context(pg_schema())
            s = CentralStore(PG_URL, **in_schema(schema), **store_args)
        try:
            central_seed.seed_demo(s, NOW)
            yield s
        finally:
            s.dispose()


# --------------------------------------------------------------------------- fixtures
# (registered for every module by conftest's pytest_plugins; a module's own fixture of the same
# name wins)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CentralStore]:
    """A seeded central store on each database."""
    with seeded_store(request.param, tmp_path) as s:
        yield s


@pytest.fixture(params=["sqlite", "postgresql"])
def clocked_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock
) -> Iterator[CentralStore]:
    """A seeded central store on each database that keeps the test's ``clock`` (a module whose
    tests move the station's time from another start sets its own ``clock``)."""
    with seeded_store(request.param, tmp_path, clock=clock) as s:
        yield s


@pytest.fixture
def server(store: CentralStore) -> Iterator[CentralServer]:
    """The in-process central server over ``store``, faults armable."""
    with CentralServer(store.url, faults=True, store=store) as srv:
        yield srv


@pytest.fixture
def api(server: CentralServer) -> Api:
    """A counter registered with ``server``."""
    return Api(server.url, register(server.url))
