"""Shared fixtures. ``db`` runs a test on SQLite and, where a server is reachable, on PostgreSQL
(``CARDVEND_TEST_PG_URL``, default postgresql://127.0.0.1:5432/test), each test in its own schema."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text

from app.clock import FixedClock
from app.i18n import set_language
from app.persistence.db import Database, make_engine, normalize_url
from tests.pcsc_fixtures import pcscd  # noqa: F401  (session fixture: a real pcscd)
from tests.rigs.counter import Counter
from tests.serial_rig import ptys  # noqa: F401  (a socat pty pair per test)

if TYPE_CHECKING:
    from sync.central.server import CentralServer
    from tests.rigs.sync import Sleeps

PG_URL = os.environ.get("CARDVEND_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parent.parent
_pg_state: dict[str, bool] = {}


def pg_available() -> bool:
    if "ok" not in _pg_state:
        try:
            engine = make_engine(PG_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            _pg_state["ok"] = True
        except Exception:
            _pg_state["ok"] = False
    return _pg_state["ok"]


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    set_language("en")
    yield
    set_language("en")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC))


def create_pg_schema(prefix: str = "t_") -> str:
    """A new empty PostgreSQL schema (a test's own database there); drop it with
    :func:`drop_pg_schema`."""
    schema = prefix + uuid.uuid4().hex[:12]
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return schema


@contextmanager
def pg_schema(prefix: str = "central_") -> Iterator[str]:
    """A PostgreSQL schema for the ``with`` block (the test is skipped without a server)."""
    if not pg_available():
        pytest.skip(f"no PostgreSQL server at {PG_URL}")
    schema = create_pg_schema(prefix)
    try:
        yield schema
    finally:
        drop_pg_schema(schema)


def in_schema(schema: str) -> dict[str, Any]:
    """Engine arguments that put a connection's tables in ``schema``."""
    return {"connect_args": {"options": f"-csearch_path={schema}"}}


def make_pg_database() -> tuple[Database, str]:
    schema = create_pg_schema()
    url = normalize_url(PG_URL)
    db = Database(url, connect_args={"options": f"-csearch_path={schema}"})
    return db, schema


def drop_pg_schema(schema: str) -> None:
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database with no schema yet."""
    if request.param == "sqlite":
        db = Database(str(tmp_path / "cardvend.db"))
        yield db
        db.dispose()
        return
    if not pg_available():
        pytest.skip(f"no PostgreSQL server at {PG_URL}")
    db, schema = make_pg_database()
    try:
        yield db
    finally:
        db.dispose()
        drop_pg_schema(schema)


@pytest.fixture
def db(empty_db: Database) -> Database:
    empty_db.migrate()
    return empty_db


@pytest.fixture
def demo_db(db: Database, clock: FixedClock) -> Database:
    from app.services.demo import load_demo

    load_demo(db, clock)
    return db


@pytest.fixture
def counter(demo_db: Database, clock: FixedClock, tmp_path: Path) -> Counter:
    """A counter on the demo database with an emulated card and a meter simulator."""
    return Counter(demo_db, clock, tmp_path)


@pytest.fixture
def central(tmp_path: Path, clock: FixedClock) -> Iterator[CentralServer]:
    """The in-process central server with the demo data; faults can be armed through its test
    endpoint (none are unless a test arms them). Modules that need another kind of central
    server define their own ``central``."""
    from tests.rigs.sync import running_central

    yield from running_central(tmp_path, clock, faults=True)


@pytest.fixture
def sleeps() -> Sleeps:
    """The sync client's sleeps between retries, recorded instead of slept."""
    from tests.rigs.sync import Sleeps

    return Sleeps()
