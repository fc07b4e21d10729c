"""Backups of the counter's database while the counter keeps selling, and scheduled backups.

A backup is one zip file (mode 0600) holding the database copy and ``manifest.json``:

- SQLite: the online backup API (``sqlite3.Connection.backup``) copies the live file page by page
  from one read snapshot; sellers go on writing meanwhile (WAL). The copy is ``database.sqlite``.
- PostgreSQL: ``pg_dump -Fc`` of the counter's schema (``database.pgdump``), run on a snapshot
  exported by a REPEATABLE READ transaction that also reads the manifest's facts, so the facts
  and the dump are the same state. The password goes to pg_dump in ``PGPASSWORD``, never on its
  command line.

The manifest names the format and its version, the dialect, the Alembic revision of the copy,
the office and counter, when it was taken, the last sale, the audit head, the row count of every
table and the SHA-256 of the database copy (checked again by a restore: app/services/restore.py).

Scheduled backups (:func:`run_scheduled`) take one when the newest backup in the folder is older
than the interval, then delete the oldest beyond the number to keep. The decision reads the time
from the file names and the injected clock, never the files' modification times.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import create_engine
from sqlalchemy import text
from sqlalchemy.engine import URL

from app.clock import Clock
from app.errors import CardVendError
from app.fileio import PRIVATE_FILE
from app.fileio import private_dir
from app.fileio import replacing
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import Base

log = logging.getLogger(__name__)

FORMAT = "cardvend-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MEMBERS = {"sqlite": "database.sqlite", "postgresql": "database.pgdump"}
SUFFIX = ".cvbak"
# scheduled backups: cardvend-<office>-<counter>-<UTC stamp>.cvbak
_STAMP = "%Y%m%dT%H%M%SZ"
_SCHEDULED = re.compile(r"cardvend-[A-Za-z0-9_-]+-(\d{8}T\d{6}Z)\.cvbak", re.ASCII)
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- errors


class BackupError(CardVendError):
    code = "backup"
    template = N_("The backup could not be made: {detail}. Nothing was changed.")


class NotABackup(CardVendError):
    code = "not_a_backup"
    template = N_(
        "{path} is not a CardVend backup ({detail}). Choose a file made by 'cardvend backup'."
    )


class BackupChecksumError(CardVendError):
    code = "backup_checksum"
    template = N_(
        "The backup {path} is damaged or was changed: its database does not match its "
        "checksum. Nothing was restored; use another backup."
    )


class ForeignOffice(CardVendError):
    code = "backup_foreign_office"
    template = N_(
        "The backup {path} belongs to office {backup_office}, this counter to office {office}. "
        "Nothing was restored."
    )


class DialectMismatch(CardVendError):
    code = "backup_dialect"
    template = N_(
        "The backup {path} is a {backup_dialect} database and this counter uses {dialect}: it "
        "cannot be restored here. Restore it on a counter set up with {backup_dialect}."
    )


class ToolMissing(CardVendError):
    code = "backup_tool_missing"
    template = N_(
        "{tool} was not found. Install the PostgreSQL client programs (the same major version "
        "as the server) and try again."
    )


class ToolFailed(CardVendError):
    code = "backup_tool_failed"
    template = N_("{tool} failed: {detail}. Nothing was changed.")


# --------------------------------------------------------------------------- the manifest


@dataclass(frozen=True)
class Manifest:
    dialect: str
    revision: str | None
    office: str
    counter_id: str
    taken_at: str  # ISO 8601, UTC
    last_sale: dict[str, str] | None  # {"id", "at"}
    audit_seq: int
    audit_hash: str
    rows: dict[str, int]
    sha256: str = ""
    schema: str | None = None  # PostgreSQL: the schema dumped
    format: str = FORMAT
    version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def member(self) -> str:
        return MEMBERS[self.dialect]

    @property
    def last_sale_at(self) -> dt.datetime | None:
        return parse_time(self.last_sale["at"]) if self.last_sale else None

    def to_json(self) -> dict[str, Any]:
        data = {
            "format": self.format,
            "version": self.version,
            "dialect": self.dialect,
            "schema_revision": self.revision,
            "schema": self.schema,
            "office": self.office,
            "counter_id": self.counter_id,
            "taken_at": self.taken_at,
            "last_sale": self.last_sale,
            "audit_head": {"seq": self.audit_seq, "hash": self.audit_hash},
            "rows": self.rows,
            "sha256": self.sha256,
        }
        return {**data, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        head = data["audit_head"]
        last = data.get("last_sale")
        known = set(cls(**_EMPTY).to_json())
        return cls(
            dialect=str(data["dialect"]),
            revision=data.get("schema_revision"),
            office=str(data["office"]),
            counter_id=str(data["counter_id"]),
            taken_at=str(data["taken_at"]),
            last_sale={"id": str(last["id"]), "at": str(last["at"])} if last else None,
            audit_seq=int(head["seq"]),
            audit_hash=str(head["hash"]),
            rows={str(k): int(v) for k, v in data["rows"].items()},
            sha256=str(data["sha256"]),
            schema=data.get("schema"),
            format=str(data["format"]),
            version=int(data["version"]),
            extra={k: v for k, v in data.items() if k not in known},
        )


_EMPTY: dict[str, Any] = dict(
    dialect="sqlite", revision=None, office="", counter_id="", taken_at="", last_sale=None,
    audit_seq=0, audit_hash="", rows={},
)  # fmt: skip


def parse_time(value: object) -> dt.datetime | None:
    """A stored time (SQLite: text without an offset, meaning UTC) as an aware datetime."""
    if isinstance(value, dt.datetime):
        when = value
    else:
        try:
            when = dt.datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def ledger_facts(conn: Connection) -> dict[str, Any]:
    """The revision, last sale, audit head and row counts seen by ``conn`` (one snapshot)."""
    revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    last = conn.execute(
        text("SELECT id, created_at FROM sales ORDER BY created_at DESC, id DESC LIMIT 1")
    ).first()
    head = conn.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).first()
    rows = {
        t.name: int(conn.execute(text(f'SELECT count(*) FROM "{t.name}"')).scalar() or 0)
        for t in Base.metadata.sorted_tables
    }
    at = parse_time(last[1]) if last is not None else None
    return {
        "revision": revision,
        "last_sale": {"id": str(last[0]), "at": at.isoformat()} if last and at else None,
        "audit_seq": int(head[0]) if head else 0,
        "audit_hash": str(head[1]) if head else "",
        "rows": rows,
    }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- taking one


def sqlite_path(db: Database) -> Path:
    database = db.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(detail=N_("only a database file can be backed up"))
    return Path(database)


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of the live database ``source`` into the new file ``target`` through
    SQLite's online backup API, in rollback-journal mode (one self-contained file)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.commit()
    except sqlite3.Error as exc:
        raise BackupError(detail=str(exc)) from exc
    finally:
        dst.close()
        src.close()


def sqlite_facts(path: Path) -> dict[str, Any]:
    engine = create_engine(URL.create("sqlite+pysqlite", database=str(path)))
    try:
        with engine.connect() as conn:
            return ledger_facts(conn)
    finally:
        engine.dispose()


def pg_env(url: URL) -> dict[str, str]:
    """The environment of pg_dump/pg_restore for ``url``: the password in PGPASSWORD (never an
    argument), the server, user, database and sslmode in their PG* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for var, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
        ("PGSSLMODE", url.query.get("sslmode")),
    ):
        if value:
            env[var] = str(value)
    return env


def pg_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(tool=name)
    return path


def run_tool(args: list[str], env: Mapping[str, str]) -> None:
    """Run a PostgreSQL client program; its complaint becomes one clear error."""
    try:
        done = subprocess.run(args, env=dict(env), capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ToolFailed(tool=Path(args[0]).name, detail=str(exc)) from exc
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        detail = lines[0] if lines else f"exit status {done.returncode}"
        raise ToolFailed(tool=Path(args[0]).name, detail=detail)


def dump_postgresql(db: Database, target: Path) -> tuple[dict[str, Any], str]:
    """``pg_dump -Fc`` of the counter's schema into ``target`` on a snapshot whose facts are
    returned with the schema's name."""
    tool = pg_tool("pg_dump")
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
            facts = ledger_facts(conn)
            run_tool(
                [tool, "-Fc", "--no-owner", "--snapshot", snapshot, "-n", schema,
                 "-f", str(target)],
                pg_env(db.url),
            )  # fmt: skip
    return facts, schema


@contextlib.contextmanager
def scratch_file(folder: Path, suffix: str) -> Iterator[Path]:
    """A private temporary file name in ``folder``, removed at the end."""
    fd, name = tempfile.mkstemp(prefix=".cardvend-", suffix=suffix, dir=folder)
    os.close(fd)
    os.chmod(name, PRIVATE_FILE)
    path = Path(name)
    try:
        yield path
    finally:
        for extra in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(f"{path}{extra}")


def take_backup(
    db: Database, out: str | os.PathLike[str], *, office: str, counter_id: str, clock: Clock
) -> Manifest:
    """Write a backup of ``db`` to ``out`` (replacing it atomically; 0600) and return its
    manifest. Sales may go on meanwhile: the copy is one consistent state."""
    target = Path(out)
    if not target.parent.is_dir():
        raise BackupError(
            detail=N_("the folder {folder} does not exist"), folder=str(target.parent)
        )
    dialect = db.dialect
    if dialect not in MEMBERS:
        raise BackupError(detail=f"unsupported database {dialect}")
    if dialect == "postgresql":
        pg_tool("pg_dump")  # said before anything is done
    if not db.is_initialized():
        raise BackupError(detail=N_("the database has no CardVend tables yet"))
    taken_at = clock.now().astimezone(dt.UTC)
    schema = None
    with scratch_file(target.parent, ".part") as copy:
        if dialect == "sqlite":
            os.unlink(copy)
            copy_sqlite(sqlite_path(db), copy)
            facts = sqlite_facts(copy)
        else:
            facts, schema = dump_postgresql(db, copy)
        manifest = Manifest(
            dialect=dialect,
            office=office,
            counter_id=counter_id,
            taken_at=taken_at.isoformat(),
            sha256=sha256_file(copy),
            schema=schema,
            **facts,
        )
        try:
            with replacing(target) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(MANIFEST, json.dumps(manifest.to_json(), indent=2, sort_keys=True))
                z.write(copy, MEMBERS[dialect])
        except OSError as exc:
            raise BackupError(detail=f"{target}: {exc.strerror or exc}") from exc
    log.info(
        "backup %s taken: audit head %d, %d sales",
        target,
        manifest.audit_seq,
        manifest.rows.get("sales", 0),
    )
    return manifest


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """The manifest of the backup ``path``; :class:`NotABackup` when it is none."""
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read(MANIFEST).decode("utf-8"))
            names = set(z.namelist())
    except FileNotFoundError as exc:
        raise NotABackup(path=str(path), detail=N_("the file does not exist")) from exc
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise NotABackup(path=str(path), detail=N_("it has no manifest")) from exc
    try:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("format")
        manifest = Manifest.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NotABackup(path=str(path), detail=N_("its manifest is not readable")) from exc
    if manifest.version > FORMAT_VERSION:
        raise NotABackup(path=str(path), detail=N_("it was made by a newer CardVend"))
    if manifest.dialect not in MEMBERS or manifest.member not in names:
        raise NotABackup(path=str(path), detail=N_("it holds no database copy"))
    return manifest


# --------------------------------------------------------------------------- scheduling


def backup_name(office: str, counter_id: str, when: dt.datetime) -> str:
    return f"cardvend-{office}-{counter_id}-{when.astimezone(dt.UTC).strftime(_STAMP)}{SUFFIX}"


def scheduled_backups(folder: Path) -> list[tuple[dt.datetime, Path]]:
    """The scheduled backups in ``folder``, oldest first, by the time in their names."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in folder.iterdir():
            m = _SCHEDULED.fullmatch(entry.name)
            if m and entry.is_file():
                when = dt.datetime.strptime(m.group(1), _STAMP).replace(tzinfo=dt.UTC)
                found.append((when, entry))
    return sorted(found)


def is_due(folder: Path, now: dt.datetime, interval_hours: int) -> bool:
    """Whether a scheduled backup is due: scheduling is on and the newest is ``interval_hours``
    old (or there is none). A newest one in the future (a clock set back) counts as old."""
    if interval_hours <= 0:
        return False
    found = scheduled_backups(folder)
    if not found:
        return True
    newest = found[-1][0]
    return newest > now or now - newest >= dt.timedelta(hours=interval_hours)


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete the oldest scheduled backups beyond the newest ``keep`` (at least one is kept)."""
    found = scheduled_backups(folder)
    doomed = [path for _when, path in found[: max(len(found) - max(keep, 1), 0)]]
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        log.info("old backup %s deleted", path)
    return doomed


@dataclass(frozen=True)
class Schedule:
    folder: Path
    interval_hours: int
    keep: int


@dataclass(frozen=True)
class ScheduledResult:
    taken: Path | None
    deleted: list[Path]
    manifest: Manifest | None = None


def run_scheduled(
    db: Database, schedule: Schedule, *, office: str, counter_id: str, clock: Clock
) -> ScheduledResult:
    """Take a backup into the schedule's folder when one is due, then apply the retention."""
    private_dir(schedule.folder)
    now = clock.now()
    taken = manifest = None
    if is_due(schedule.folder, now, schedule.interval_hours):
        taken = schedule.folder / backup_name(office, counter_id, now)
        manifest = take_backup(db, taken, office=office, counter_id=counter_id, clock=clock)
    deleted = prune(schedule.folder, schedule.keep) if taken is not None else []
    return ScheduledResult(taken, deleted, manifest)


def schedule_of(settings: Any, data_dir: Path) -> Schedule:
    """The schedule the settings give (``backup_dir`` empty: backups/ in the data folder)."""
    from app.settings import BACKUP_DIR
    from app.settings import BACKUP_INTERVAL_HOURS
    from app.settings import BACKUP_KEEP

    folder = settings.value(BACKUP_DIR) or str(data_dir / "backups")
    return Schedule(
        Path(folder).expanduser(),
        settings.value(BACKUP_INTERVAL_HOURS),
        settings.value(BACKUP_KEEP),
    )
