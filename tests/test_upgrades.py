"""Upgrades: every migration of the counter and of the station, step by step with a row in every
table, on SQLite and PostgreSQL, ending at the schema the models declare; the demo database of
each released counter schema (``tests/data/released``, made by that release's own code:
``tests/tools/released_fixtures.py``) upgraded by the normal start-up path and used; and a
database newer than the code refused with one clear line, never downgraded."""

from __future__ import annotations

import gzip
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.clock import FixedClock
from app.errors import SchemaTooNew
from app.errors import StationSchemaTooNew
from app.persistence.db import MIGRATIONS_DIR
from app.persistence.db import Database
from app.persistence.db import known_revisions
from app.persistence.db import make_engine
from app.persistence.db import stamped_revisions
from app.persistence.models import Base
from app.services import audit as audit_service
from sync.central import models as central_models
from sync.central import schema
from tests.conftest import PG_URL
from tests.conftest import pg_schema
from tests.rigs.cli import run
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import Counter
from tests.rigs.pg import in_schema
from tests.rigs.upgrade_data import Filled
from tests.rigs.upgrade_data import check
from tests.rigs.upgrade_data import fill

RELEASED = Path(__file__).parent / "data" / "released"
# Differences between the migrated schema and the models that are known and harmless; each
# with its reason.  Empty today: every difference fails the test.
BENIGN: list[tuple[str, str]] = []


def _chain(script_location: Path) -> list[str]:
    """The revisions oldest first (0008 was never used: 0009 follows 0007)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    revisions = [r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()]
    return list(reversed(revisions))


def _diff(engine: sa.Engine, metadata: sa.MetaData, *, version_table: str) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": version_table,
                "include_name": lambda name, kind, _p: (
                    not (kind == "table" and name in {"alembic_version", "central_alembic_version"})
                ),
            },
        )
        diff = compare_metadata(context, metadata)
    return [d for d in diff if repr(d) not in {b for b, _ in BENIGN}]


def _empty_tables(engine: sa.Engine, metadata: sa.MetaData) -> list[str]:
    with engine.connect() as conn:
        return [
            t.name
            for t in metadata.sorted_tables
            if not conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
        ]


def test_the_counter_chain_is_one_line() -> None:
    """One head, each revision down to the one before (0008 was never used)."""
    chain = _chain(MIGRATIONS_DIR)
    assert chain[:9] == ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0009", "0010"]


def test_every_counter_step_keeps_the_rows(empty_db: Database) -> None:
    """From the first schema to the newest, one step at a time: a row in every table before each
    step, every row found again after it, the columns added since filled."""
    filled = Filled()
    for revision in _chain(MIGRATIONS_DIR):
        empty_db.migrate(revision)
        assert empty_db.current_revision() == revision
        assert check(empty_db.engine, filled) == [], revision
        fill(empty_db.engine, filled)
    assert _empty_tables(empty_db.engine, Base.metadata) == []  # every table had a row
    assert _diff(empty_db.engine, Base.metadata, version_table="alembic_version") == []


@pytest.fixture(params=["sqlite", "postgresql"])
def station_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'central.db'}")
        yield engine
        engine.dispose()
        return
    with pg_schema("central_up_") as name:
        engine = make_engine(PG_URL, **in_schema(name))
        yield engine
        engine.dispose()


def test_every_station_step_keeps_the_rows(station_engine: sa.Engine) -> None:
    filled = Filled()
    for revision in _chain(schema.MIGRATIONS_DIR):
        schema.upgrade(station_engine, revision)
        with station_engine.connect() as conn:
            assert schema.current(conn) == revision
        assert check(station_engine, filled) == [], revision
        fill(station_engine, filled)
    assert _empty_tables(station_engine, central_models.metadata) == []
    diff = _diff(station_engine, central_models.metadata, version_table=schema.VERSION_TABLE)
    assert diff == []


# --- the released demo databases -------------------------------------------------------------


def _released() -> list[str]:
    return sorted(p.name.removesuffix(".sql.gz") for p in RELEASED.glob("*.sql.gz"))


def _load_released(revision: str, path: Path) -> None:
    script = gzip.decompress((RELEASED / f"{revision}.sql.gz").read_bytes()).decode()
    conn = sqlite3.connect(path)
    try:
        conn.executescript(script)
    finally:
        conn.close()


def test_every_released_counter_schema_has_its_demo_database() -> None:
    """Each schema up to the last release has its demo database; revisions after it (made
    since, not released yet) get theirs when they are released (tests/tools/released_fixtures.py)."""
    released, chain = _released(), _chain(MIGRATIONS_DIR)
    assert len(released) >= 9 and released == chain[: len(released)]


@pytest.mark.parametrize("revision", _released())
def test_a_released_demo_database_upgrades_and_sells(
    revision: str, tmp_path: Path, clock: FixedClock
) -> None:
    """What ``cardvend init`` / the window do on a copy of the demo database of each release:
    it reaches the newest schema, keeps its operators, tariffs and customers, its audit log
    verifies, and a sale goes through."""
    path = tmp_path / "cardvend.db"
    _load_released(revision, path)
    db = Database(str(path))
    assert db.current_revision() == revision
    with db.read() as session:
        before = {
            t: session.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
            for t in ("customers", "operators", "tariff_plans", "tariff_versions", "offices")
        }
    db.migrate()
    assert db.current_revision() == _chain(MIGRATIONS_DIR)[-1]
    with db.read() as session:
        after = {t: session.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in before}
    assert after == before and before["customers"] == 1000 and before["operators"] == 5
    assert audit_service.verify(db).ok
    assert _diff(db.engine, Base.metadata, version_table="alembic_version") == []
    counter = Counter(db, clock, tmp_path)  # the demo teller logs in and opens a shift
    card = counter.open(CUSTOMER, None)  # a card opened, then a sale on it
    assert counter.sell(card, 3000).sale.amount_fen == 3000


# --- newer than the code: refused, never downgraded ------------------------------------------


def _pretend_newer(engine: sa.Engine, table: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {table} SET version_num = '9999'"))


def test_a_newer_counter_database_is_refused_not_downgraded(empty_db: Database) -> None:
    empty_db.migrate()
    _pretend_newer(empty_db.engine, "alembic_version")
    with pytest.raises(SchemaTooNew) as refused:
        empty_db.migrate()
    text = refused.value.localized("en")
    head = _chain(MIGRATIONS_DIR)[-1]
    assert "newer CardVend (schema 9999)" in text and f"knows up to {head}" in text
    assert "Install the newer version or restore a backup" in text
    assert "9999" in refused.value.localized("zh_CN")
    with pytest.raises(SchemaTooNew):
        empty_db.check_revision()
    assert empty_db.current_revision() == "9999"  # nothing was changed
    with empty_db.read() as session:  # the tables are all there: nothing was dropped
        assert session.execute(sa.text("SELECT count(*) FROM customers")).scalar() == 0


def test_the_quick_revision_check_knows_what_alembic_knows(empty_db: Database) -> None:
    """A command checks the database's revision without loading Alembic: the revisions it
    reads from the scripts are Alembic's, for the counter's and the station's migrations."""
    for location in (MIGRATIONS_DIR, schema.MIGRATIONS_DIR):
        assert known_revisions(location / "versions") == set(_chain(location))
    with empty_db.engine.connect() as conn:
        assert stamped_revisions(conn) == []
    empty_db.migrate()
    with empty_db.engine.connect() as conn:
        assert stamped_revisions(conn) == [_chain(MIGRATIONS_DIR)[-1]]
    empty_db.check_revision()  # the newest revision passes


def test_the_command_line_refuses_a_newer_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(home, "init").returncode == 0
    found = list(home.rglob("*.db"))
    engine = make_engine(f"sqlite:///{found[0]}")
    _pretend_newer(engine, "alembic_version")
    engine.dispose()
    for args in (("init",), ("customers", "find", "x")):
        result = run(home, *args)
        assert result.returncode == 1
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "newer CardVend (schema 9999)" in lines[0], result.stderr


def test_a_newer_station_database_is_refused(station_engine: sa.Engine) -> None:
    schema.upgrade(station_engine)
    _pretend_newer(station_engine, schema.VERSION_TABLE)
    with pytest.raises(StationSchemaTooNew) as refused:
        schema.upgrade(station_engine)
    assert "station database was made by a newer CardVend station (schema 9999)" in str(
        refused.value
    )
    with station_engine.connect() as conn:
        assert schema.current(conn) == "9999"
