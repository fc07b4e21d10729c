"""The station's schema with Alembic (``sync/central/migrations``), like the counter's.

A store upgrades its database to the newest revision when it starts.  Several worker processes
and hosts may start at once on one PostgreSQL: the upgrade runs under a transaction-level
advisory lock, so one of them migrates and the others find the schema current.  A database made
before the station had migrations (its tables made by ``create_all``, no version table) is
stamped at the first revision, which is that schema, and upgraded from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import inspect
from sqlalchemy import text

from app.errors import StationSchemaTooNew
from app.persistence.db import refuse_unknown_revision

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE = "c0001"
VERSION_TABLE = "central_alembic_version"
_LOCK_KEY = 0x43565354  # "CVST": the station's migration lock


def _config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    revision = ScriptDirectory.from_config(cfg).get_current_head()
    assert revision is not None
    return revision


def current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: Any, revision: str = "head") -> None:
    """Bring the database to ``revision`` (the newest by default), once across processes."""
    from alembic import command

    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        tables = set(inspect(conn).get_table_names())
        cfg = _config(conn)
        if VERSION_TABLE not in tables and "central_counters" in tables:
            command.stamp(cfg, BASELINE)  # made by create_all before there were migrations
        refuse_unknown_revision(
            conn, cfg, version_table=VERSION_TABLE, error=StationSchemaTooNew
        )  # a newer station's database: refused, never downgraded
        command.upgrade(cfg, revision)
        conn.commit()
