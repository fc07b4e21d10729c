"""Restoring a backup (app/services/backup.py) over the counter's database.

Before anything is replaced: the manifest must be a CardVend backup of this dialect and office,
the database copy must match its SHA-256, the copy's audit chain and sale seals must verify
(app/services/audit.py), an administrator must sign in (against the copy: it is the database the
counter goes on with, and a counter whose disk died has no other), and the current database must
not hold sales or audit rows later than the backup's unless the restore is forced.

The database replaced is kept aside: SQLite ``<file>.before-restore-<UTC stamp>`` (a consistent
copy, 0600), PostgreSQL the schema renamed ``<schema>_before_restore_<stamp>``. The restored
log then gets a ``backup_restore`` row naming the backup, and the schema is upgraded to this
version's head. Sales made after the backup are gone from this counter but may be at the central
system: the caller tells the person to reconcile (sync is not ours to call here).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.permissions import Action
from app.errors import CardVendError
from app.fileio import fsync_directory
from app.i18n import N_
from app.persistence.db import Database
from app.services import audit as audit_service
from app.services.auth import Principal
from app.services.backup import BackupChecksumError
from app.services.backup import DialectMismatch
from app.services.backup import ForeignOffice
from app.services.backup import Manifest
from app.services.backup import NotABackup
from app.services.backup import ToolFailed
from app.services.backup import copy_sqlite
from app.services.backup import ledger_facts
from app.services.backup import parse_time
from app.services.backup import pg_env
from app.services.backup import pg_tool
from app.services.backup import read_manifest
from app.services.backup import run_tool
from app.services.backup import scratch_file
from app.services.backup import sha256_file
from app.services.backup import sqlite_path

log = logging.getLogger(__name__)

# signs in an administrator on the database given (the restored copy)
Authenticate = Callable[[Database], Principal]


class NewerLedger(CardVendError):
    code = "backup_newer_ledger"
    template = N_(
        "This counter's database is newer than the backup {path}: it has audit rows up to "
        "{current_seq} (the backup up to {backup_seq}) and its last sale at {current_sale} (the "
        "backup's at {backup_sale}). Restoring would lose them here; nothing was restored. Use "
        "--force only if this database is known to be wrong."
    )


class SchemaMismatch(CardVendError):
    code = "backup_schema"
    template = N_(
        "The backup {path} holds the PostgreSQL schema {backup_schema}, this counter uses "
        "{schema}. Nothing was restored; set the database URL to that schema to restore it."
    )


class NewerSchema(CardVendError):
    code = "backup_newer_schema"
    template = N_(
        "The backup {path} was made by a newer CardVend (database revision {revision}). Nothing "
        "was restored; update CardVend on this counter first."
    )


@dataclass(frozen=True)
class RestoreResult:
    manifest: Manifest
    kept_aside: str  # the file or schema holding the database replaced ("" when there was none)
    forced: bool


def check_backup(path: Path, db: Database, office: str) -> Manifest:
    """The manifest of ``path``, refused when it cannot go onto ``db`` of ``office``."""
    manifest = read_manifest(path)
    if manifest.dialect != db.dialect:
        raise DialectMismatch(path=str(path), backup_dialect=manifest.dialect, dialect=db.dialect)
    if manifest.office != office:
        raise ForeignOffice(path=str(path), backup_office=manifest.office, office=office)
    if manifest.revision is not None and not _known_revision(db, manifest.revision):
        raise NewerSchema(path=str(path), revision=manifest.revision)
    return manifest


def _known_revision(db: Database, revision: str) -> bool:
    """Whether this version's migrations know ``revision`` (it can be upgraded from)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(db.alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def extract(path: Path, manifest: Manifest, target: Path) -> None:
    """The backup's database copy into ``target``, checked against the manifest's SHA-256."""
    try:
        with zipfile.ZipFile(path) as z, z.open(manifest.member) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise NotABackup(path=str(path), detail=N_("its database copy is unreadable")) from exc
    if sha256_file(target) != manifest.sha256:
        raise BackupChecksumError(path=str(path))


def check_not_newer(db: Database, manifest: Manifest, path: Path, *, force: bool) -> None:
    """:class:`NewerLedger` when ``db`` has audit rows or sales later than the backup's."""
    if not db.is_initialized():
        return
    with db.engine.connect() as conn:
        current = ledger_facts(conn)
    sale = current["last_sale"]
    current_at = parse_time(sale["at"]) if sale else None
    backup_at = manifest.last_sale_at
    newer_sale = current_at is not None and (backup_at is None or current_at > backup_at)
    if current["audit_seq"] > manifest.audit_seq or newer_sale:
        if force:
            log.warning("restoring %s over a newer ledger (forced)", path)
            return
        raise NewerLedger(
            path=str(path),
            current_seq=current["audit_seq"],
            backup_seq=manifest.audit_seq,
            current_sale=current_at.isoformat() if current_at else "-",
            backup_sale=backup_at.isoformat() if backup_at else "-",
        )


def _stamp(clock: Clock) -> str:
    return clock.now().astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def restore(
    db: Database,
    path: str | os.PathLike[str],
    *,
    office: str,
    clock: Clock,
    authenticate: Authenticate,
    force: bool = False,
) -> RestoreResult:
    """Replace ``db`` by the backup ``path`` (see the module's description). ``db`` is disposed;
    the caller opens the restored database afresh."""
    source = Path(path)
    manifest = check_backup(source, db, office)
    job = _Restore(db, source, manifest, clock, authenticate, force)
    return job.sqlite() if manifest.dialect == "sqlite" else job.postgresql()


def _schema_in_dump(dump: Path, schema: str, env: dict[str, str]) -> bool:
    done = subprocess.run(
        [pg_tool("pg_restore"), "-l", str(dump)], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ToolFailed(tool="pg_restore", detail=done.stderr.strip()[:200])
    return re.search(rf"\bSCHEMA - {re.escape(schema)}\b", done.stdout) is not None


@dataclass(frozen=True)
class _Restore:
    """One restore: the live database, the checked backup ``source`` and its manifest, the
    clock, how the administrator signs in and whether it is forced; one method per dialect."""

    db: Database
    source: Path
    manifest: Manifest
    clock: Clock
    authenticate: Authenticate
    force: bool

    def _sign_in(self, db: Database) -> Principal:
        admin = self.authenticate(db)
        admin.authorize(Action.CHANGE_SETTINGS, self.clock)
        return admin

    def _record(self, db: Database, admin: Principal) -> None:
        """The restored log's row saying what it was restored from, and by whom."""
        manifest = self.manifest
        audit_service.Actor.of(admin, self.clock).record_alone(
            db,
            AuditAction.BACKUP_RESTORE,
            self.source.name[-120:],
            detail={
                "taken_at": manifest.taken_at,
                "audit_seq": manifest.audit_seq,
                "sha256": manifest.sha256,
                "forced": self.force,
            },
        )

    def sqlite(self) -> RestoreResult:
        db, source, manifest, clock = self.db, self.source, self.manifest, self.clock
        live = sqlite_path(db)
        live.parent.mkdir(parents=True, exist_ok=True)
        with scratch_file(live.parent, ".restore") as staged:
            extract(source, manifest, staged)
            copy = Database(str(staged))
            try:
                audit_service.verify_or_raise(copy)
                admin = self._sign_in(copy)
                check_not_newer(db, manifest, source, force=self.force)
                kept = ""
                if live.exists() and db.is_initialized():
                    aside = live.with_name(f"{live.name}.before-restore-{_stamp(clock)}")
                    copy_sqlite(live, aside)
                    os.chmod(aside, 0o600)
                    kept = str(aside)
                self._record(copy, admin)
                copy.migrate()
            finally:
                copy.dispose()
            db.dispose()
            for extra in ("-wal", "-shm", "-journal"):  # the old database's, never to be replayed
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{live}{extra}")
            os.replace(staged, live)
            fsync_directory(live.parent)
        log.warning("database %s restored from %s (taken %s)", live, source, manifest.taken_at)
        return RestoreResult(manifest, kept, self.force)

    def postgresql(self) -> RestoreResult:
        db, source, manifest = self.db, self.source, self.manifest
        tool = pg_tool("pg_restore")
        env = pg_env(db.url)
        with db.engine.connect() as conn:
            schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
        if manifest.schema != schema:
            raise SchemaMismatch(path=str(source), backup_schema=manifest.schema, schema=schema)
        with scratch_file(Path(tempfile.gettempdir()), ".dump") as dump:
            extract(source, manifest, dump)
            check_not_newer(db, manifest, source, force=self.force)
            creates_schema = _schema_in_dump(dump, schema, env)
            aside = f"{schema}_before_restore_{_stamp(self.clock)}".lower()[:63]
            db.dispose()
            with db.engine.begin() as conn:
                conn.execute(text(f'ALTER SCHEMA "{schema}" RENAME TO "{aside}"'))
                if not creates_schema:
                    conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            db.dispose()
            try:
                run_tool(
                    [tool, "--no-owner", "--single-transaction", "--exit-on-error",
                     "-d", env.get("PGDATABASE", "postgres"), str(dump)],
                    env,
                )  # fmt: skip
                audit_service.verify_or_raise(db)
                admin = self._sign_in(db)
            except BaseException:
                db.dispose()
                with db.engine.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                    conn.execute(text(f'ALTER SCHEMA "{aside}" RENAME TO "{schema}"'))
                db.dispose()
                raise
        self._record(db, admin)
        db.migrate()
        db.dispose()
        log.warning("schema %s restored from %s (taken %s)", schema, source, manifest.taken_at)
        return RestoreResult(manifest, aside, self.force)
