"""Serving the station: the FastAPI application of :mod:`sync.central.api` under uvicorn.

- :class:`CentralServer` serves in a background thread of this process (tests, benchmarks,
  demos): ``CentralServer(db_url).start()`` on a free loopback port, ``.url`` is where, ``.store``
  the data; it stops and starts again on the same port;
- :func:`serve_workers` serves with several uvicorn worker processes on one listening socket
  (``cardvend central serve --workers N``); each worker builds its own application, store and
  connection pool from :class:`ServeConfig` passed in the environment (:func:`app_from_env`).
  Nothing is kept in a worker's memory that another worker needs: tokens, idempotency keys,
  cursors and sequences are rows, so workers on several hosts can serve one PostgreSQL too.

With ``faults=True`` the application is wrapped in :class:`~sync.central.faults.FaultMiddleware`
(tests only; off unless asked for).  TLS: give a certificate and its key (PEM).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import logging
import os
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Self

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import URL
from starlette.types import ASGIApp

from app.background import Background
from app.clock import Clock
from sync.central.api import create_app
from sync.central.faults import Fault
from sync.central.faults import FaultInjector
from sync.central.faults import FaultMiddleware
from sync.central.faults import FaultSpec
from sync.central.ops import Metrics
from sync.central.ops import OpsMiddleware
from sync.central.ops import configure_logging
from sync.central.ops import prepare_multiprocess
from sync.central.ops import sync_lag
from sync.central.store import DEFAULT_CLOCK_SKEW
from sync.central.store import CentralStore

log = logging.getLogger(__name__)

CONFIG_ENV = "CARDVEND_CENTRAL_CONFIG"
KEEP_ALIVE = 75  # seconds an idle keep-alive connection stays open (longer than a sync interval)
BACKLOG = 2048  # an office's counters and a province's offices connect at once


def build_asgi(store: CentralStore, faults: FaultInjector) -> tuple[FastAPI, ASGIApp]:
    """The API over ``store`` and what uvicorn serves: the API with its metrics, request ids
    and access log around it (and the fault middleware when faults are on)."""
    app = create_app(store)
    metrics = Metrics(lag=sync_lag(store.engine, store.now))
    app.state.metrics = metrics
    app.state.observe_results = metrics.observe_results
    store.combiner.times = metrics
    served: ASGIApp = OpsMiddleware(app, metrics)
    # outermost: a dropped connection needs the server's own send (see faults._drop)
    return app, FaultMiddleware(served, faults) if faults.enabled else served


def _uvicorn_config(
    served: ASGIApp | str,
    *,
    tls_cert: str | None,
    tls_key: str | None,
    workers: int = 1,
    factory: bool = False,
) -> uvicorn.Config:
    return uvicorn.Config(
        served,
        factory=factory,
        workers=workers,
        log_config=None,  # the application's logging stays as the process set it up
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE,
        timeout_graceful_shutdown=5,
        backlog=BACKLOG,
        server_header=False,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: a free one), reusable at once after a stop."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP: asyncio then sets TCP_NODELAY on every accepted connection (a body
    # written after its headers would otherwise wait for the client's delayed ACK, 40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in str(host) else str(host)
    return f"{'https' if tls else 'http'}://{shown}:{port}"


class CentralServer(Background):
    """The station in a background thread: ``CentralServer(db_url).start()`` serves on a free
    loopback port (``port=0``); ``.url`` is where, ``.store`` the data."""

    def __init__(
        self,
        db_url: str | URL,
        host: str = "127.0.0.1",
        port: int = 0,
        enrolment_key: str | None = None,
        faults: bool = False,
        *,
        store: CentralStore | None = None,
        clock: Clock | None = None,
        clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        pool: dict[str, Any] | None = None,
    ) -> None:
        if store is None:
            store = CentralStore(
                db_url,
                clock=clock,
                enrolment_key=enrolment_key,
                clock_skew=clock_skew,
                **(pool or {}),
            )
        elif enrolment_key is not None:
            store.enrolment_key = enrolment_key
        self.store = store
        self.faults = FaultInjector(enabled=faults)
        self.host = host
        self.port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.app, self._served = build_asgi(self.store, self.faults)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the server is not started")
        return self._url

    def start(self) -> Self:
        """Serve in a background thread.  After :meth:`stop` it starts again on the same port
        (tests take the central system down and bring it back)."""
        if self._server is not None:
            return self
        sock = listen(self.host, self.port)
        self.port = int(sock.getsockname()[1])
        config = _uvicorn_config(self._served, tls_cert=self.tls_cert, tls_key=self.tls_key)
        server = uvicorn.Server(config)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:
                failure.append(exc)
            finally:
                sock.close()

        thread = threading.Thread(target=run, name=f"central-server:{self.port}", daemon=True)
        thread.start()
        while not server.started and thread.is_alive():
            thread.join(0.01)
        if not server.started:
            raise RuntimeError(f"the central server did not start: {failure[:1]!r}")
        self._server, self._thread = server, thread
        self._url = url_of(sock, self.tls_cert is not None)
        log.info("central server listening on %s", self._url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.store.dispose()


# --------------------------------------------------------------------------- worker processes


# allocations between collections of the youngest generation in a serving process (Python's
# default is 700: a 500-sale push keeps some 15,000 objects alive at once)
GC_YOUNG_THRESHOLD = 20_000


@dataclass(frozen=True)
class ServeConfig:
    """What every worker process builds its application from."""

    db_url: str
    enrolment_key: str | None = None
    faults: bool = False
    clock_skew_minutes: float = DEFAULT_CLOCK_SKEW.total_seconds() / 60
    pool_size: int | None = None
    db_connections: int = 80  # all workers together: within PostgreSQL's default of 100
    workers: int = 1
    log_json: bool = False

    def pool(self) -> dict[str, Any]:
        """A worker's pool: its share of ``db_connections``, of which ``pool_size`` (by default
        the whole share) stay open once opened and the rest are opened under a surge and closed
        after it (SQLite: one file, no pool).  Under a sustained load that needs more than the
        connections kept, every surge connection is a new PostgreSQL backend: with 10 kept, the
        full load bench opened 260 to 590 a minute (4.5 ms each, a process forked on the
        database's side), so by default a worker keeps what its load made it open."""
        if self.db_url.startswith("sqlite") or "://" not in self.db_url:
            return {}
        share = max(2, self.db_connections // max(1, self.workers))
        size = min(self.pool_size or share, share)
        return {"pool_size": size, "max_overflow": share - size}

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeConfig:
        raw = os.environ.get(CONFIG_ENV)
        if not raw:
            raise RuntimeError(f"{CONFIG_ENV} is not set: start workers with serve_workers()")
        return cls(**json.loads(raw))


def settle_heap() -> None:
    """Set a serving process's garbage collector for a heap that start-up built and serving
    only adds to for a moment: start-up's objects (modules, the application, the caches of
    SQLAlchemy and pydantic: some 160,000) are frozen out of the collector's view, and the
    youngest generation is collected after :data:`GC_YOUNG_THRESHOLD` allocations instead of
    700.  Without it a 500-sale push spent a third of its CPU in the collector, most of that
    in full collections walking start-up's objects again (see sync/README.md)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def app_from_env() -> ASGIApp:
    """uvicorn's application factory in a worker process."""
    config = ServeConfig.from_env()
    if config.log_json:
        configure_logging(json_lines=True)
    store = CentralStore(
        config.db_url,
        enrolment_key=config.enrolment_key,
        clock_skew=dt.timedelta(minutes=config.clock_skew_minutes),
        **config.pool(),
    )
    served = build_asgi(store, FaultInjector(enabled=config.faults))[1]
    settle_heap()
    return served


def serve_workers(
    config: ServeConfig,
    sock: socket.socket,
    workers: int,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Serve on ``sock`` with ``workers`` uvicorn worker processes until SIGINT or SIGTERM
    (uvicorn's supervisor restarts a worker that dies)."""
    from uvicorn.supervisors import Multiprocess

    os.environ[CONFIG_ENV] = config.to_env()
    metrics_dir = Path(tempfile.mkdtemp(prefix="cardvend-metrics-"))
    prepare_multiprocess(metrics_dir)  # a scrape on any worker adds up all of them
    uconfig = _uvicorn_config(
        f"{__name__}:app_from_env",
        tls_cert=tls_cert,
        tls_key=tls_key,
        workers=workers,
        factory=True,
    )
    try:
        Multiprocess(uconfig, sockets=[sock]).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if on_stop is not None:
            on_stop()


def tls_context_check(cert: str, key: str) -> None:
    """Fail early and clearly on a certificate or key that cannot be loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)


__all__ = [
    "CentralServer",
    "Fault",
    "FaultInjector",
    "FaultSpec",
    "ServeConfig",
    "app_from_env",
    "build_asgi",
    "listen",
    "serve_workers",
]
