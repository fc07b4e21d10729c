"""Operating the station over real HTTP: /health, /ready, Prometheus metrics (one process and
several workers), request ids and JSON access logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from sync import contract as c
from sync.central import CentralServer
from sync.central import CentralStore
from sync.central import seed as central_seed
from sync.central.ops import JsonFormatter
from sync.central.ops import RequestIdFilter
from tests.rigs.central import FIRST
from tests.rigs.central import NOW
from tests.rigs.central import Api
from tests.rigs.central import register
from tests.rigs.central import sale
from tests.rigs.central_process import CentralProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CentralServer]:
    store = CentralStore(str(tmp_path / "central.db"))
    central_seed.seed_demo(store, NOW)
    with CentralServer(store.url, store=store) as srv:
        yield srv


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = requests.get(url + c.API_PREFIX + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_health_and_ready_need_no_token(server: CentralServer) -> None:
    assert requests.get(server.url + "/api/v1/health", timeout=5).json()["status"] == "ok"
    r = requests.get(server.url + "/api/v1/ready", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert r.json()["database"] == "ok"


def test_metrics_count_requests_by_route_template_and_records_by_outcome(
    server: CentralServer,
) -> None:
    api = Api(server.url, register(server.url, "M1"))
    before = samples(server.url)
    for _ in range(3):
        assert api.get(f"/customers/{FIRST}/control-status").status_code in (200, 404)
    assert api.get("/customers/100000000002/control-status").status_code in (200, 404)
    assert api.get("/no/such/path").status_code == 404
    body = {"items": [sale(counter_id="M1"), sale(counter_id="M1")]}
    assert api.post("/sales/batch", body, key="metrics-batch-1").status_code == 200
    assert api.post("/sales/batch", body, key="metrics-batch-2").status_code == 200  # duplicates
    found = samples(server.url)
    template = "/api/v1/customers/{customer_no}/control-status"
    counted = sum(
        v - before.get(k, 0.0)
        for k, v in found.items()
        if k[0] == "cardvend_central_requests_total" and ("route", template) in k[1]
    )
    assert counted == 4  # both customers under one template
    assert not any(FIRST in str(k) for k in found)  # no raw path became a label value
    assert (
        value(
            found, "cardvend_central_requests_total", route="unmatched", method="GET", status="404"
        )
        >= 1
    )
    assert value(found, "cardvend_central_records_total", resource="sales", outcome="created") == 2
    assert (
        value(found, "cardvend_central_records_total", resource="sales", outcome="duplicate") == 2
    )
    batch = "/api/v1/sales/batch"
    assert value(found, "cardvend_central_request_seconds_count", route=batch) == 2
    assert value(found, "cardvend_central_request_seconds_bucket", route=batch, le="10.0") == 2
    # the write path: each post waited for a group, each group's transaction timed by phase
    queued = value(found, "cardvend_central_write_queue_seconds_count") - value(
        before, "cardvend_central_write_queue_seconds_count"
    )
    groups = {
        phase: value(found, "cardvend_central_write_seconds_count", phase=phase)
        - value(before, "cardvend_central_write_seconds_count", phase=phase)
        for phase in ("locks", "applying")
    }
    records = value(found, "cardvend_central_write_group_records_sum") - value(
        before, "cardvend_central_write_group_records_sum"
    )
    assert queued == 2 and groups["locks"] == groups["applying"] and 1 <= groups["locks"] <= 2
    assert records == 4  # two posts of two records, in one group or two
    assert value(found, "cardvend_central_write_seconds_sum", phase="applying") > 0
    lag = value(found, "cardvend_central_sync_lag_seconds", counter="M1")
    assert ("cardvend_central_sync_lag_seconds", (("counter", "M1"),)) in found and lag >= 0


def test_request_id_is_echoed_generated_and_logged_as_json(server: CentralServer) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("cardvend.central.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        token = register(server.url, "R1")
        r = requests.get(
            server.url + "/api/v1/tariffs",
            headers={"X-Request-Id": "support-case-42", "Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert r.status_code == 200 and r.headers["X-Request-Id"] == "support-case-42"
        made = requests.get(server.url + "/api/v1/health", timeout=5).headers["X-Request-Id"]
        assert len(made) == 32 and made != "support-case-42"
        bad = requests.get(
            server.url + "/api/v1/health", headers={"X-Request-Id": "not/an id!"}, timeout=5
        )
        assert bad.headers["X-Request-Id"] not in ("not/an id!", "")
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    tariffs = next(x for x in lines if x["request_id"] == "support-case-42")
    assert tariffs["route"] == "/api/v1/tariffs" and tariffs["status"] == 200
    assert tariffs["method"] == "GET" and tariffs["counter_id"] == "R1"
    assert tariffs["duration_ms"] >= 0 and tariffs["logger"] == "cardvend.central.access"
    assert any(x["request_id"] == made for x in lines)


def test_metrics_add_up_across_worker_processes(tmp_path: Path) -> None:
    central = CentralProcess(
        tmp_path / "home", "--db", f"sqlite:///{tmp_path / 'central.db'}", "--workers", "2"
    )
    try:
        before = samples(central.url)
        for _ in range(40):  # new connections: the kernel spreads them over both workers
            assert requests.get(central.url + "/api/v1/health", timeout=10).status_code == 200
        found = samples(central.url)
        n = value(
            found,
            "cardvend_central_requests_total",
            route="/api/v1/health",
            method="GET",
            status="200",
        )
        assert (
            n
            - value(
                before,
                "cardvend_central_requests_total",
                route="/api/v1/health",
                method="GET",
                status="200",
            )
            == 40
        )
        pids = {k for k in found if k[0] == "cardvend_central_requests_total"}
        assert pids  # the families come from the workers' files
    finally:
        assert central.stop() == 0


def test_the_workers_share_the_database_connections() -> None:
    """``--workers N`` never opens more than ``--db-connections`` in all (PostgreSQL refuses
    clients past its max_connections, 100 by default)."""
    from sync.central.server import ServeConfig

    one = ServeConfig(db_url="postgresql://x/y", workers=1).pool()
    four = ServeConfig(db_url="postgresql://x/y", workers=4).pool()
    # by default a worker keeps what it opened: no new backend per surge under a steady load
    assert one == {"pool_size": 80, "max_overflow": 0}
    assert four == {"pool_size": 20, "max_overflow": 0}
    for workers in range(1, 9):
        pool = ServeConfig(db_url="postgresql://x/y", workers=workers, pool_size=30).pool()
        assert workers * (pool["pool_size"] + pool["max_overflow"]) <= 80
    assert ServeConfig(db_url="sqlite:///station.db", workers=2).pool() == {}


def test_one_process_sizes_its_pool_like_a_worker() -> None:
    """``--pool-size`` and ``--db-connections`` hold with one process too (they once applied
    only to ``--workers N``)."""
    from sync.central.server import ServeConfig
    from tests.conftest import pg_schema
    from tests.rigs.pg import schema_url

    with pg_schema() as schema:
        config = ServeConfig(db_url=schema_url(schema), pool_size=3, db_connections=5)
        server = CentralServer(config.db_url, pool=config.pool())
        try:
            pool = server.store.engine.pool
            assert config.pool() == {"pool_size": 3, "max_overflow": 2}
            assert pool.size() == 3
            assert getattr(pool, "_max_overflow", None) == 2
        finally:
            server.store.dispose()
