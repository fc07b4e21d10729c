"""Operating the station: metrics in the Prometheus text format and structured request logs.

- :class:`Metrics` holds the station's metrics in a registry of its own (several stations can run
  in one test process): requests by route template and status, a latency histogram by route,
  records applied and refused by resource and outcome (:meth:`Metrics.observe_results`), where a
  posted record's time goes on the write path (waiting for its group, the group's connection and
  office locks, applying and committing: :class:`sync.central.base.WriteTimes`), and at scrape
  time the sync lag per counter read from the database.  With several uvicorn workers
  (``PROMETHEUS_MULTIPROC_DIR`` set before they start, :func:`prepare_multiprocess`) every
  worker writes its values to that folder and a scrape on any worker adds them up.
- :class:`OpsMiddleware` (pure ASGI) times every request, counts it under its route template
  (never the raw path: a customer number in a label would make a series per customer), gives it
  a request id (the caller's ``X-Request-Id`` when it is a short ASCII token, else a new one),
  answers it in ``X-Request-Id``, and logs one JSON line per request on
  ``cardvend.central.access``.  Every log record written while the request is handled carries
  the id (:class:`RequestIdFilter`); :func:`configure_logging` installs JSON lines for the
  serve command.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy import select
from starlette.types import ASGIApp
from starlette.types import Message
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from sync import contract as c
from sync.central import models as m

log = logging.getLogger(__name__)
access_log = logging.getLogger("cardvend.central.access")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_ID_HEADER = "X-Request-Id"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GROUP_BUCKETS = (1, 10, 50, 100, 250, 500, 600, 1000, 2000)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def prepare_multiprocess(folder: Path) -> None:
    """Before worker processes start: their metrics go to ``folder`` (emptied first)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)


def _multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class _SyncLag(Collector):
    """Seconds since each counter was last heard from, read at scrape time."""

    def __init__(self, lag: Callable[[], dict[str, float]]) -> None:
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "cardvend_central_sync_lag_seconds",
            "Seconds since the counter last pulled or pushed",
            labels=["counter"],
        )
        try:
            lags = self.lag()
        except Exception:  # a scrape must not fail on the database: the gauge is left out
            log.exception("sync lag: the database did not answer")
            return
        for counter_id, seconds in sorted(lags.items()):
            family.add_metric([counter_id], seconds)
        yield family


class Metrics:
    """The station's metrics (one registry per application)."""

    def __init__(self, lag: Callable[[], dict[str, float]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.lag = lag
        self.requests = Counter(
            "cardvend_central_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cardvend_central_request_seconds",
            "Time to answer a request, by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.records = Counter(
            "cardvend_central_records",
            "Posted records by resource and outcome (created, duplicate, conflict, rejected:CODE)",
            ["resource", "outcome"],
            registry=self.registry,
        )
        self.write_queue = Histogram(
            "cardvend_central_write_queue_seconds",
            "Time a post waited for a group commit to take it",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.write_phase = Histogram(
            "cardvend_central_write_seconds",
            "Time of a write transaction of posted records, by phase (locks: a connection, BEGIN "
            "and the offices' locks; applying: the records and the commit)",
            ["phase"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.write_records = Histogram(
            "cardvend_central_write_group_records",
            "Posted records one write transaction held",
            buckets=GROUP_BUCKETS,
            registry=self.registry,
        )
        if lag is not None:
            self.registry.register(_SyncLag(lag))

    # the write path's times (sync.central.base.WriteTimes)
    def queued(self, seconds: float) -> None:
        self.write_queue.observe(seconds)

    def written(self, records: int, locks: float, applying: float) -> None:
        self.write_phase.labels("locks").observe(locks)
        self.write_phase.labels("applying").observe(applying)
        self.write_records.observe(records)

    def observe_results(self, resource: str, results: list[c.ItemResult]) -> None:
        counts: dict[str, int] = {}
        for r in results:
            outcome = f"rejected:{r.code}" if r.status == "rejected" and r.code else r.status
            counts[outcome] = counts.get(outcome, 0) + 1
        for outcome, n in counts.items():
            self.records.labels(resource, outcome).inc(n)

    def render(self) -> tuple[bytes, str]:
        """The text format: this process's registry, or every worker's when there are several."""
        if not _multiprocess():
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        if self.lag is not None:
            registry.register(_SyncLag(self.lag))
        return generate_latest(registry), CONTENT_TYPE_LATEST


def sync_lag(engine: Any, now: Callable[[], dt.datetime]) -> Callable[[], dict[str, float]]:
    """Seconds since each registered counter last reached the station: its last authenticated
    request where the store keeps it, else its newest idempotent post."""

    def lag() -> dict[str, float]:
        if "last_seen_at" in m.counters.c:
            query = select(m.counters.c.id, m.counters.c.last_seen_at)
        else:
            keys = m.idempotency_keys.c
            query = select(keys.counter_id, func.max(keys.created_at)).group_by(keys.counter_id)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        current = now()
        return {
            str(counter_id): max(0.0, (current - seen).total_seconds())
            for counter_id, seen in rows
            if seen is not None
        }

    return lag


# --------------------------------------------------------------------------- request logs


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return str(text)
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The matched route's path template, or ``unmatched`` (a label never holds a raw path)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class OpsMiddleware:
    """Request id, access log and request metrics around the API."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        token = request_id_var.set(rid)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = route_template(scope)
            if self.metrics is not None:
                self.metrics.requests.labels(route, scope["method"], str(status)).inc()
                self.metrics.latency.labels(route).observe(elapsed)
            state = scope.get("state") or {}
            access_log.info(
                "%s %s %d",
                scope["method"],
                route,
                status,
                extra={
                    "access": {
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "counter_id": state.get("counter_id"),
                    }
                },
            )
            request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    """Puts the request id of the request being handled on every record (``-`` outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message (and the access
    fields of an access line, the exception of an error)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", request_id_var.get()),
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            entry.update(access)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(json_lines: bool, level: int = logging.INFO) -> None:
    """The serve command's logging: to stderr, JSON lines or text, with the request id."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level or level, level))


__all__ = [
    "JsonFormatter",
    "Metrics",
    "OpsMiddleware",
    "RequestIdFilter",
    "configure_logging",
    "prepare_multiprocess",
    "route_template",
    "sync_lag",
]
