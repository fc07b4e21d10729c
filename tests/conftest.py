"""Shared fixtures. ``db`` runs a test on SQLite and, where a server is reachable, on PostgreSQL
(``CARDVEND_TEST_PG_URL``, default postgresql://127.0.0.1:5432/test), each test in its own schema."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.clock import FixedClock
from app.i18n import set_language
from app.persistence.db import Database
from app.persistence.db import normalize_url
from tests.pcsc_fixtures import pcscd  # noqa: F401  (session fixture: a real pcscd)
from tests.rigs.counter import Counter
from tests.rigs.pg import PG_URL
from tests.rigs.pg import create_pg_schema
from tests.rigs.pg import drop_pg_schema
from tests.rigs.pg import in_schema
from tests.rigs.pg import pg_available
from tests.rigs.pg import schema_url
from tests.serial_rig import ptys  # noqa: F401  (a socat pty pair per test)

if TYPE_CHECKING:
    from sync.central.server import CentralServer
    from tests.rigs.sync import Sleeps

ROOT = Path(__file__).resolve().parent.parent
# fixtures shared by the modules of one part (the central server's store/server/api, the meter
# simulator's master/keys/env); a module's own fixture of the same name wins
pytest_plugins = ["tests.rigs.central", "tests.rigs.meter_sim"]


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    set_language("en")
    yield
    set_language("en")


@pytest.fixture(autouse=True)
def _no_card_connection_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test on the real pcscd leaves no card connection of its own open once its fixtures
    are torn down: a connection dropped without close() keeps the reader "in use" for every
    other program, and a later test that waits for a free reader would fail in its place."""
    if "pcscd" not in request.fixturenames:
        yield
        return
    import gc

    from cardio.pcsc import channel

    before = set(map(id, channel.connected_channels()))
    dropped = channel.dropped_connected
    yield
    left = [c for c in channel.connected_channels() if id(c) not in before]
    assert not left, f"card connections left open: {left}"
    gc.collect()  # a channel dropped without close() is counted when it is collected
    if request.node.get_closest_marker("drops_card_connection") is None:
        assert channel.dropped_connected == dropped, "a card connection was dropped unclosed"


DEMO_LOADED_AT = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(DEMO_LOADED_AT)


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


@contextmanager
def station_db(kind: str, tmp_path: Path) -> Iterator[str]:
    """A station database URL for a process of its own: ``kind`` "sqlite" (``station.db`` in
    ``tmp_path``) or "postgresql" (a schema for the ``with`` block)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'station.db'}"
        return
    with pg_schema() as schema:
        yield schema_url(schema)


def make_pg_database() -> tuple[Database, str]:
    schema = create_pg_schema()
    url = normalize_url(PG_URL)
    db = Database(url, **in_schema(schema))
    return db, schema


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


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per test process, which ``db`` copies (a migration is about
    0.3 s, which a thousand tests would pay again for the same schema)."""
    path = tmp_path_factory.mktemp("migrated") / "cardvend.db"
    template = Database(str(path))
    template.migrate()
    template.dispose()  # the last connection checkpoints the write-ahead log into the file
    return path


@pytest.fixture
def db(empty_db: Database, _migrated_sqlite: Path) -> Database:
    if empty_db.dialect == "sqlite" and empty_db.url.database:
        empty_db.dispose()
        # into the file the engine made (0600, not yet opened): the schema of a migration
        shutil.copyfile(_migrated_sqlite, empty_db.url.database)
    else:
        empty_db.migrate()
    return empty_db


@pytest.fixture(scope="session")
def _demo_sqlite(_migrated_sqlite: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The migrated SQLite file with the demo data loaded at :data:`DEMO_LOADED_AT`, which
    ``demo_db`` copies (the demo's five operators cost five password derivations, about 0.2 s,
    which a thousand tests would pay again for the same rows)."""
    from app.services.demo import load_demo

    path = tmp_path_factory.mktemp("demo") / "cardvend.db"
    shutil.copyfile(_migrated_sqlite, path)
    template = Database(str(path))
    load_demo(template, FixedClock(DEMO_LOADED_AT))
    template.dispose()
    return path


@pytest.fixture
def demo_db(db: Database, clock: FixedClock, _demo_sqlite: Path) -> Database:
    from app.services.demo import load_demo

    if db.dialect == "sqlite" and db.url.database and clock.now() == DEMO_LOADED_AT:
        db.dispose()
        shutil.copyfile(_demo_sqlite, db.url.database)  # what load_demo(db, clock) writes
        return db
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


KEYSTORE_PASSPHRASE = "office-keys-2026"


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    """The office's keystore as IT hands it out for a counter's setup (outside the counter's
    home), protected by :data:`KEYSTORE_PASSPHRASE`."""
    from cardio.keys import create_keystore

    path = tmp_path / "it" / "keystore.json"
    path.parent.mkdir()
    create_keystore(path, KEYSTORE_PASSPHRASE)
    return path


@pytest.fixture
def sleeps() -> Sleeps:
    """The sync client's sleeps between retries, recorded instead of slept."""
    from tests.rigs.sync import Sleeps

    return Sleeps()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test on the real pcscd is marked ``vpcd``: the virtual card slots are one
    machine-wide resource that a session holds for as long as it runs (tests/pcsc_fixtures.py),
    so ``make test`` runs the rest on a worker per core (pytest-xdist, ``-m "not vpcd"``) and
    these in one process after it (``-m vpcd``)."""
    for item in items:
        if "pcscd" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.vpcd)
