"""Engine, connection settings, migrations and the unit of work.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` and foreign keys on; the
driver's own transaction handling is switched off so that SQLAlchemy emits ``BEGIN`` itself:
``BEGIN IMMEDIATE`` for a write unit of work (one writer at a time, no lock upgrade deadlocks) and
a plain ``BEGIN`` for reads (SQLAlchemy's documented pysqlite recipe).  The same code runs on
PostgreSQL, where write units of work lock the rows they change (``SELECT ... FOR UPDATE``).

A read unit of work is read-only and never commits: SQLite runs it with ``PRAGMA query_only``
under a deferred ``BEGIN`` (no write lock is ever taken), PostgreSQL as ``SET TRANSACTION READ
ONLY``; a write inside it fails, and it ends with a rollback.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy import text
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import URL
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from app.errors import DatabaseError
from app.errors import SchemaTooNew
from app.fileio import create_private_file
from app.fileio import private_dir

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
WRITE_OPTION = "cardvend_write"
READ_OPTION = "cardvend_read"
# one migration at a time per schema (released when the migration's transaction ends)
MIGRATION_LOCK = text(
    "SELECT pg_advisory_xact_lock(hashtext('cardvend.migrate.' || current_schema()))"
)


def normalize_url(url: str | URL) -> URL:
    """Accept ``sqlite:///file``, a plain path, ``postgresql://...`` (psycopg 3 is used)."""
    if isinstance(url, str) and "://" not in url:
        return URL.create("sqlite+pysqlite", database=str(Path(url).expanduser()))
    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(detail=f"bad database URL {url!s}") from exc
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    elif u.drivername == "sqlite":
        u = u.set(drivername="sqlite+pysqlite")
    return u


class _SQLiteHintCompiler(SQLiteCompiler):
    """Renders table hints (``with_hint(table, "NOT INDEXED", "sqlite")``), which SQLAlchemy's
    SQLite dialect otherwise drops; used to measure a query without its index."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        return text


def _install_sqlite_recipe(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy emit BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        read_only = bool(options.get(READ_OPTION))
        if conn.info.get(READ_OPTION, False) != read_only:  # a connection flag: set on change
            conn.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
            conn.info[READ_OPTION] = read_only
        if options.get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _install_read_only_transactions(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_OPTION):
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")


def _create_sqlite_file(database: str) -> None:
    """The database file and the folders that are missing, private (0600 in 0700): SQLite gives
    the -wal, -shm and -journal files the mode of the database file.  An existing folder keeps
    its mode (``--db`` may name a folder that is not ours)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        private_dir(Path(database).parent)
        create_private_file(database)
    except OSError as exc:
        raise DatabaseError(detail=f"{database}: {exc.strerror or exc}") from exc


class JsonText(str):
    """A JSON column's value that is already JSON text: stored as it is, not encoded again (a
    record whose canonical text was made for its hash)."""

    __slots__ = ()


def dump_json(value: Any) -> str:
    """The JSON columns' encoder: :class:`JsonText` as it is, anything else by ``json.dumps``."""
    if isinstance(value, JsonText):
        return str.__str__(value)
    return json.dumps(value)


# a pooled connection idle this long is pinged before it is handed out (see _install_idle_ping)
PING_AFTER_IDLE = 10.0  # seconds
_IDLE_SINCE = "cardvend_idle_since"


def _install_idle_ping(engine: Engine, after: float) -> None:
    """Ping a pooled connection before handing it out only when it has been idle ``after``
    seconds or more; a dead one is replaced (the pool's documented ``DisconnectionError``).

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: under a server's load that is a
    round trip and its driver work for each statement (a pull of the station checks out twice).
    A connection in steady use has just proved itself; one that waited long is where a database
    restart or an idle timeout hides.  A restart during steady use shows on the next statement of
    each connection then in use, once: the driver reports the disconnect and the pool replaces
    every connection older than it."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < after:
            return  # new, or in steady use
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"an idle pooled connection is gone: {exc}") from exc


def make_engine(
    url: str | URL, *, echo: bool = False, ping_after: float = PING_AFTER_IDLE, **kwargs: Any
) -> Engine:
    """The engine of ``url``; on a server database a pooled connection idle ``ping_after``
    seconds is pinged before use (see :func:`_install_idle_ping`)."""
    u = normalize_url(url)
    kwargs.setdefault("json_serializer", dump_json)
    if u.get_backend_name() == "sqlite":
        _create_sqlite_file(u.database or "")
        engine = create_engine(u, echo=echo, **kwargs)
        _install_sqlite_recipe(engine)
        engine.dialect.statement_compiler = _SQLiteHintCompiler
        return engine
    try:
        engine = create_engine(u, echo=echo, **kwargs)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise DatabaseError(detail=f"unsupported database URL {u.drivername}://...") from exc
    _install_idle_ping(engine, ping_after)
    _install_read_only_transactions(engine)
    return engine


class Database:
    """One database: the engine, the unit-of-work factories and the migrations."""

    def __init__(self, url: str | URL, *, engine: Engine | None = None, **kwargs: Any) -> None:
        self.url = normalize_url(url)
        self.engine = engine or make_engine(self.url, **kwargs)
        self._write_engine = self.engine.execution_options(**{WRITE_OPTION: True})
        self._read = sessionmaker(
            self.engine.execution_options(**{READ_OPTION: True}), expire_on_commit=False
        )
        self._write = sessionmaker(self._write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write unit of work: one transaction, committed at the end, rolled back on error."""
        with self._write() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read unit of work: one read-only transaction, rolled back at the end (a write in it
        fails: SQLite ``query_only``, PostgreSQL ``READ ONLY``); no write lock is taken."""
        with self._read() as session:
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read unit of work in which every statement sees the same committed state
        (PostgreSQL: REPEATABLE READ, where READ COMMITTED would give each statement its own;
        SQLite: a WAL read transaction is one snapshot already)."""
        with self.read() as session:
            if self.dialect == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    def migrate(self, revision: str = "head") -> None:
        """Create or upgrade the schema with Alembic; :class:`SchemaTooNew` when a newer CardVend
        made the database (it is never downgraded).  On PostgreSQL the counters of an office
        share the database and may run ``cardvend init`` at the same moment: the migration runs
        under a transaction-level advisory lock on the schema, so the others wait and then find
        it done (without it two ``CREATE TABLE`` of one table collide)."""
        from alembic import command

        try:
            with self.migration_connection() as conn:
                if self.dialect == "postgresql":
                    conn.execute(MIGRATION_LOCK)
                cfg = self.alembic_config(conn)
                refuse_unknown_revision(conn, cfg)
                command.upgrade(cfg, revision)
        except OperationalError as exc:
            raise DatabaseError(detail=str(exc.orig)) from exc

    @contextmanager
    def migration_connection(self) -> Iterator[Any]:
        """A connection for Alembic: on SQLite foreign keys are off while it runs (a batch
        migration rebuilds tables) and every reference is checked before the commit."""
        with self._write_engine.connect() as conn, _foreign_keys_deferred(conn):
            yield conn
            _check_foreign_keys(conn)
            conn.commit()

    def alembic_config(self, connection: Any = None) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        # configparser interpolates '%': escape it (URLs carry %-encoded options)
        url = self.url.render_as_string(hide_password=False).replace("%", "%%")
        cfg.set_main_option("sqlalchemy.url", url)
        cfg.attributes["connection"] = connection
        return cfg

    def check_revision(self) -> None:
        """:class:`SchemaTooNew` when the database's schema is newer than this code knows.
        Every command opens the database: the usual case (a revision this code has) is read
        without loading Alembic, which takes longer than the rest of a short command's start."""
        with self.engine.connect() as conn:
            if set(stamped_revisions(conn)) <= known_revisions(MIGRATIONS_DIR / "versions"):
                return
            refuse_unknown_revision(conn, self.alembic_config(conn))

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def is_initialized(self) -> bool:
        with self.engine.connect() as conn:
            return bool(inspect(conn).has_table("customers"))

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _foreign_keys_deferred(conn: Any) -> Iterator[None]:
    """SQLite: foreign keys off while migrating.  A batch migration rebuilds a table (a copy, then
    DROP and rename); with foreign keys on, dropping a table that other rows refer to fails, so
    a database with sales could not take a migration that rebuilds ``sales``.  The pragma only
    works outside a transaction, so it goes to the driver's connection before the upgrade
    begins; :func:`_check_foreign_keys` checks every reference before the commit."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.dbapi_connection
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        if conn.in_transaction():
            conn.rollback()
        raw.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(conn: Any) -> None:
    if conn.dialect.name == "sqlite":
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise DatabaseError(detail=f"the upgrade broke references: {broken[:3]}")


_REVISION_LINE = re.compile(r"""^revision(?:: *str)? *= *["']([^"']+)["']""", re.MULTILINE)


@functools.cache
def known_revisions(versions_dir: Path) -> frozenset[str]:
    """The revisions of the migration scripts in ``versions_dir`` (their ``revision = "..."``
    lines, the same that Alembic reads)."""
    return frozenset(
        match.group(1)
        for path in versions_dir.glob("*.py")
        for match in _REVISION_LINE.finditer(path.read_text(encoding="utf-8"))
    )


def stamped_revisions(connection: Any, version_table: str = "alembic_version") -> list[str]:
    """The revisions the database is stamped at (none before its first migration)."""
    if not inspect(connection).has_table(version_table):
        return []
    return [str(v) for v in connection.scalars(text(f"SELECT version_num FROM {version_table}"))]


def refuse_unknown_revision(
    connection: Any,
    cfg: Any,
    *,
    version_table: str = "alembic_version",
    error: type[SchemaTooNew] = SchemaTooNew,
) -> None:
    """Raise ``error`` when the database stands at a revision the migrations of ``cfg`` do not
    have: a newer version made it, and upgrading (or downgrading) from there is not possible."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    context = MigrationContext.configure(connection, opts={"version_table": version_table})
    found = context.get_current_heads()
    script = ScriptDirectory.from_config(cfg)
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = [rev for rev in found if rev not in known]
    if unknown:
        raise error(found=", ".join(unknown), known=script.get_current_head())
