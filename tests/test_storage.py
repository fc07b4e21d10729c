"""Storage: SQLite durability settings, BEGIN IMMEDIATE for writes, migrations on both databases."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.errors import DatabaseError
from app.persistence.db import Database
from app.persistence.db import normalize_url
from app.persistence.models import Base
from app.persistence.models import Office


def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "a.db"))
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_write_unit_begins_immediate_and_read_does_not(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    db = Database(str(path))
    db.migrate()
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with db.write() as session:
        session.execute(select(Office)).all()  # a read inside a write unit of work
        # the RESERVED lock is already held: nobody else can start writing
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # free again once committed
    other.execute("ROLLBACK")
    with db.read() as session:
        session.execute(select(Office)).all()
        other.execute("BEGIN IMMEDIATE")  # a reader does not block a writer
        other.execute("ROLLBACK")
    other.close()


def test_a_write_inside_a_read_unit_fails_and_nothing_is_committed(db: Database) -> None:
    """A read unit of work is read-only (SQLite ``query_only``, PostgreSQL ``READ ONLY``) and
    never commits; a write unit on the same connection afterwards writes normally."""
    with pytest.raises(DBAPIError, match=r"(?i)read.?only"), db.read() as session:
        session.add(Office(code="R1", name="read"))
        session.flush()
    with db.read() as session:
        assert session.get(Office, "R1") is None
        with pytest.raises(DBAPIError, match=r"(?i)read.?only"):
            session.execute(text("UPDATE offices SET name = 'x'"))
    with db.write() as session:
        session.add(Office(code="W1", name="write"))
    with db.read() as session:
        assert session.get(Office, "W1") is not None


def test_a_read_unit_takes_no_write_lock_and_does_not_commit(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    db = Database(str(path))
    db.migrate()
    statements: list[str] = []
    event.listen(
        db.engine, "before_cursor_execute", lambda *a: statements.append(str(a[2]).upper())
    )
    event.listen(db.engine, "commit", lambda conn: statements.append("COMMIT"))
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with db.read() as session:
        session.execute(select(Office)).all()
        other.execute("BEGIN IMMEDIATE")  # nobody is kept from writing
        other.execute("ROLLBACK")
    other.close()
    assert not any(s.startswith("COMMIT") or "IMMEDIATE" in s for s in statements)


def test_sqlite_foreign_keys_enforced(tmp_path: Path) -> None:
    from sqlalchemy.exc import IntegrityError

    db = Database(str(tmp_path / "a.db"))
    db.migrate()
    with pytest.raises(IntegrityError), db.write() as session:
        session.execute(
            text(
                "INSERT INTO operators (id, name, role, office_code, disabled, created_at) "
                "VALUES ('x1', 'x', 'teller', 'NOPE', 0, '2026-01-01 00:00:00')"
            )
        )


def test_migrations_match_models_and_rerun(empty_db: Database) -> None:
    empty_db.migrate()
    empty_db.migrate()  # idempotent
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(empty_db.alembic_config()).get_current_head()
    assert empty_db.current_revision() == head
    with empty_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_datetimes_round_trip_aware_and_naive_refused(db: Database) -> None:
    from app.clock import FixedClock
    from app.domain.operators import Role
    from app.persistence.models import Operator
    from app.services.operators import add_operator

    shanghai = dt.timezone(dt.timedelta(hours=8))
    when = dt.datetime(2026, 5, 1, 8, 30, tzinfo=shanghai)
    with db.write() as session:
        session.add(Office(code="O1", name="o"))
        add_operator(session, "t9", "T", Role.TELLER, None, FixedClock(when), office="O1")
    with db.read() as session:
        op = session.get(Operator, "t9")
        assert op is not None
        assert op.created_at == when and op.created_at.utcoffset() == dt.timedelta(0)
    with pytest.raises(Exception, match="naive"), db.write() as session:
        op = session.get(Operator, "t9")
        assert op is not None
        op.created_at = dt.datetime(2026, 1, 1)
        session.flush()


def test_database_url_forms(tmp_path: Path) -> None:
    assert normalize_url(str(tmp_path / "x.db")).drivername == "sqlite+pysqlite"
    assert normalize_url("postgresql://h:5432/db").drivername == "postgresql+psycopg"
    with pytest.raises(DatabaseError):
        Database("nosuchdb://host/x")


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "nodir" / "x.db"))
    db.migrate()  # the folder is created
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(DatabaseError):
        Database(f"sqlite:///{blocked}/x.db").migrate()


def test_upgrade_from_the_first_revision_keeps_data(empty_db: Database) -> None:
    """A database made by an older CardVend upgrades in place."""
    empty_db.migrate("0001")
    with empty_db.write() as session:
        session.execute(text("INSERT INTO offices (code, name) VALUES ('O1', 'office')"))
    empty_db.migrate()
    with empty_db.read() as session:
        assert session.execute(text("SELECT name FROM offices")).scalar() == "office"
