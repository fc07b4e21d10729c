"""Backups and restores of the counter's database (app/services/backup.py, restore.py, the CLI):
a backup taken while a teller keeps selling restores into a fresh home with its sales and an
intact audit chain; a changed file, a foreign office, another dialect and a newer ledger are
refused; scheduled backups keep the newest N; PostgreSQL through pg_dump/pg_restore."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from app.clock import FixedClock
from app.domain.audit import AuditAction
from app.persistence.db import Database
from app.persistence.db import normalize_url
from app.persistence.models import AuditEntry
from app.persistence.models import Sale
from app.services import audit as audit_service
from app.services import auth
from app.services import backup as backup_service
from app.services import restore as restore_service
from app.services.demo import load_demo
from tests.conftest import pg_schema
from tests.rigs.cli import run
from tests.rigs.counter import Counter
from tests.rigs.counter import counter_on_sqlite
from tests.rigs.pg import PG_URL
from tests.rigs.pg import drop_pg_schema
from tests.rigs.pg import in_schema


def admin(clock: FixedClock) -> restore_service.Authenticate:
    return lambda db: auth.login(db, "a01", "demo-a01", counter_id="C01", clock=clock)


def take(db: Database, out: Path, clock: FixedClock) -> backup_service.Manifest:
    return backup_service.take_backup(db, out, office="DEMO", counter_id="C01", clock=clock)


def restore(
    db: Database, path: Path, clock: FixedClock, **kw: object
) -> restore_service.RestoreResult:
    return restore_service.restore(  # type: ignore[arg-type]
        db, path, office="DEMO", clock=clock, authenticate=admin(clock), **kw
    )


def sales(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Sale)) or 0)


def last_action(db: Database) -> str:
    with db.read() as session:
        return str(session.scalar(select(AuditEntry.action).order_by(AuditEntry.seq.desc())))


@pytest.fixture
def sqlite_counter(tmp_path: Path, clock: FixedClock) -> Iterator[Counter]:
    yield from counter_on_sqlite(tmp_path, clock, tmp_path / "live" / "cardvend.db")


def test_a_backup_taken_while_selling_restores_into_a_fresh_home(
    sqlite_counter: Counter, tmp_path: Path, clock: FixedClock
) -> None:
    counter = sqlite_counter
    counter.open()
    stop, sold, errors = threading.Event(), [0], []

    def keep_selling() -> None:
        try:
            while not stop.is_set():
                counter.remote(100)
                sold[0] += 1
        except Exception as exc:  # reported below: the test fails
            errors.append(exc)

    seller = threading.Thread(target=keep_selling)
    seller.start()
    try:
        while sold[0] < 3 and not errors:
            stop.wait(0.01)
        before = sales(counter.db)
        out = tmp_path / "during.cvbak"
        manifest = take(counter.db, out, clock)
        after_backup = sold[0]
        while sold[0] < after_backup + 3 and not errors:  # and the selling goes on
            stop.wait(0.01)
    finally:
        stop.set()
        seller.join(60)
    assert not errors, errors
    assert before <= manifest.rows["sales"] < sales(counter.db)
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert manifest.dialect == "sqlite" and manifest.last_sale is not None
    assert manifest.revision == counter.db.current_revision()

    fresh = Database(str(tmp_path / "fresh" / "data" / "cardvend.db"))
    result = restore(fresh, out, clock)
    assert result.kept_aside == ""  # nothing was there to keep
    again = Database(str(tmp_path / "fresh" / "data" / "cardvend.db"))
    assert sales(again) == manifest.rows["sales"]
    verified = audit_service.verify_or_raise(again)
    assert verified.last_seq > manifest.audit_seq
    assert last_action(again) == AuditAction.BACKUP_RESTORE
    again.dispose()


def rewrite(src: Path, dst: Path, *, manifest: dict[str, object] | None = None,
            member: bytes | None = None) -> None:  # fmt: skip
    """A copy of the backup ``src`` with its manifest or database copy replaced."""
    with zipfile.ZipFile(src) as z:
        old = json.loads(z.read("manifest.json"))
        name = next(n for n in z.namelist() if n != "manifest.json")
        data = z.read(name)
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest or old))
        z.writestr(name, member if member is not None else data)


def good_backup(
    counter: Counter, tmp_path: Path, clock: FixedClock
) -> tuple[Path, dict[str, object]]:
    """An account opened, then a backup taken into ``good.cvbak``: (the file, its manifest)."""
    counter.open()
    good = tmp_path / "good.cvbak"
    return good, take(counter.db, good, clock).to_json()


def database_copy(backup: Path) -> bytes:
    """The SQLite database copy inside ``backup``."""
    with zipfile.ZipFile(backup) as z:
        return z.read("database.sqlite")


def test_changed_or_foreign_backups_are_refused(
    sqlite_counter: Counter, tmp_path: Path, clock: FixedClock
) -> None:
    good, manifest = good_backup(sqlite_counter, tmp_path, clock)
    target = Database(str(tmp_path / "target" / "cardvend.db"))
    copy = bytearray(database_copy(good))

    bad = tmp_path / "bad.cvbak"
    copy[len(copy) // 2] ^= 0xFF  # one byte of the database copy changed
    rewrite(good, bad, member=bytes(copy))
    with pytest.raises(backup_service.BackupChecksumError):
        restore(target, bad, clock)

    rewrite(good, bad, manifest={**manifest, "office": "OTHER"})
    with pytest.raises(backup_service.ForeignOffice) as info:
        restore(target, bad, clock)
    assert "OTHER" in info.value.localized()

    (tmp_path / "notes.txt").write_text("not a backup")
    with pytest.raises(backup_service.NotABackup):
        restore(target, tmp_path / "notes.txt", clock)
    rewrite(good, bad, manifest={**manifest, "format": "something-else"})
    with pytest.raises(backup_service.NotABackup):
        restore(target, bad, clock)

    on_pg = Database(normalize_url(PG_URL))  # never connected: the dialect alone refuses
    with pytest.raises(backup_service.DialectMismatch) as refused:
        restore(on_pg, good, clock)
    assert "sqlite" in refused.value.localized() and "postgresql" in refused.value.localized()
    assert not target.is_initialized()  # nothing was restored by any of these


def test_missing_client_programs_and_newer_schemas_are_said_clearly(
    sqlite_counter: Counter, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.cvbak"
    manifest = take(sqlite_counter.db, good, clock).to_json()
    bad = tmp_path / "newer.cvbak"
    rewrite(good, bad, manifest={**manifest, "schema_revision": "9999_from_the_future"})
    with pytest.raises(restore_service.NewerSchema):
        restore(Database(str(tmp_path / "target" / "cardvend.db")), bad, clock)

    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_dump on this PATH
    on_pg = Database(normalize_url(PG_URL))
    with pytest.raises(backup_service.ToolMissing) as info:
        take(on_pg, tmp_path / "pg.cvbak", clock)
    assert "pg_dump was not found" in info.value.localized()
    assert not (tmp_path / "pg.cvbak").exists()


def test_a_backup_whose_audit_log_was_edited_is_refused(
    sqlite_counter: Counter, tmp_path: Path, clock: FixedClock
) -> None:
    good, manifest = good_backup(sqlite_counter, tmp_path, clock)
    copy = tmp_path / "copy.db"
    copy.write_bytes(database_copy(good))
    edited = Database(str(copy))
    with edited.engine.begin() as conn:  # a sale made smaller, checksum made to match
        conn.execute(text("UPDATE sales SET amount = amount - 1, credit = credit - 1"))
    edited.dispose()
    bad = tmp_path / "bad.cvbak"
    sha = backup_service.sha256_file(copy)
    rewrite(good, bad, manifest={**manifest, "sha256": sha}, member=copy.read_bytes())
    with pytest.raises(audit_service.AuditVerifyFailed):
        restore(Database(str(tmp_path / "target" / "cardvend.db")), bad, clock)


def test_a_newer_ledger_is_kept_unless_forced_and_then_kept_aside(
    sqlite_counter: Counter, tmp_path: Path, clock: FixedClock
) -> None:
    counter = sqlite_counter
    counter.open()
    out = tmp_path / "b.cvbak"
    manifest = take(counter.db, out, clock)
    restore(counter.db, out, clock)  # nothing newer yet: accepted
    clock.advance(minutes=5)
    counter.remote(700)
    newer = sales(counter.db)
    assert newer == manifest.rows["sales"] + 1
    with pytest.raises(restore_service.NewerLedger):
        restore(counter.db, out, clock)
    assert sales(counter.db) == newer  # untouched

    result = restore(counter.db, out, clock, force=True)
    assert result.forced and sales(counter.db) == manifest.rows["sales"]
    aside = Path(result.kept_aside)
    assert aside.name.startswith("cardvend.db.before-restore-")
    assert os.stat(aside).st_mode & 0o777 == 0o600
    kept = Database(str(aside))
    assert sales(kept) == newer  # the sale the restore dropped is still in the file kept aside
    kept.dispose()
    audit_service.verify_or_raise(counter.db)
    with counter.db.read() as session:
        row = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert row is not None and row.action == AuditAction.BACKUP_RESTORE
    assert row.target == "b.cvbak" and json.loads(row.detail)["forced"] is True


def test_the_schedule_takes_one_when_due_and_keeps_the_newest(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    t0 = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
    assert backup_service.is_due(folder, t0, 24)  # none yet
    assert not backup_service.is_due(folder, t0, 0)  # scheduling off
    folder.mkdir()
    (folder / backup_service.backup_name("DEMO", "C01", t0)).write_bytes(b"x")
    (folder / "my-notes.cvbak").write_bytes(b"not ours")  # never counted, never deleted
    assert not backup_service.is_due(folder, t0 + dt.timedelta(hours=23, minutes=59), 24)
    assert backup_service.is_due(folder, t0 + dt.timedelta(hours=24), 24)
    assert backup_service.is_due(folder, t0 - dt.timedelta(hours=1), 24)  # clock set back

    for day in range(1, 6):
        name = backup_service.backup_name("DEMO", "C01", t0 + dt.timedelta(days=day))
        (folder / name).write_bytes(b"x")
    deleted = backup_service.prune(folder, 3)
    left = [p.name for _when, p in backup_service.scheduled_backups(folder)]
    assert len(deleted) == 3 and len(left) == 3
    assert left[-1] == backup_service.backup_name("DEMO", "C01", t0 + dt.timedelta(days=5))
    assert (folder / "my-notes.cvbak").exists()


def test_scheduled_backups_of_a_database(
    demo_db: Database, tmp_path: Path, clock: FixedClock
) -> None:
    if demo_db.dialect == "postgresql":
        pg_tools()
    schedule = backup_service.Schedule(tmp_path / "backups", interval_hours=24, keep=2)
    who = {"office": "DEMO", "counter_id": "C01", "clock": clock}
    taken = []
    for hours in (0, 1, 24, 48, 49, 72):
        clock.set(dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(hours=hours))
        result = backup_service.run_scheduled(demo_db, schedule, **who)  # type: ignore[arg-type]
        taken.append(result.taken is not None)
    assert taken == [True, False, True, True, False, True]
    left = backup_service.scheduled_backups(schedule.folder)
    assert [when.day for when, _p in left] == [3, 4]
    for _when, path in left:
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert backup_service.read_manifest(path).dialect == demo_db.dialect


def test_the_command_line(tmp_path: Path) -> None:
    home, fresh = tmp_path / "home", tmp_path / "fresh"
    assert run(home, "demo").returncode == 0
    out = tmp_path / "cli.cvbak"
    r = run(home, "backup", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert run(home, "backup", "--out", str(out)).returncode != 0  # no silent overwrite
    assert run(home, "backup", "--out", str(out), "--force").returncode == 0
    r = run(home, "backup", "--scheduled")
    assert r.returncode == 0 and "Backup written" in r.stdout, r.stderr
    r = run(home, "backup", "--scheduled")
    assert r.returncode == 0 and "No backup is due" in r.stdout, r.stderr

    password = {"CARDVEND_PASSWORD": "demo-a01"}
    r = run(fresh, "restore", str(out), "--operator", "a01", env={"CARDVEND_PASSWORD": "wrong"})
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list((fresh / "data").glob("*before-restore*"))
    r = run(fresh, "restore", str(out), "--operator", "a01", env=password)
    assert r.returncode == 0, r.stderr
    assert "cardvend sync reconcile" in r.stdout
    r = run(fresh, "audit", "verify", "--operator", "a01", env=password)
    assert r.returncode == 0 and "intact" in r.stdout, r.stderr
    r = run(fresh, "restore", str(tmp_path / "missing.cvbak"), "--operator", "a01", env=password)
    assert r.returncode == 1 and "not a CardVend backup" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- PostgreSQL


def pg_tools() -> None:
    """Skip unless pg_dump/pg_restore exist and match the server's major version."""
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    version = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True).stdout
    client = int(re.search(r"(\d+)\.", version).group(1))  # type: ignore[union-attr]
    engine = Database(normalize_url(PG_URL)).engine
    try:
        with engine.connect() as conn:
            server = int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000
    except Exception as exc:
        pytest.skip(f"no PostgreSQL server at {PG_URL}: {exc}")
    finally:
        engine.dispose()
    if client < server:
        pytest.skip(f"pg_dump {client} cannot dump a PostgreSQL {server} server")


def asides(db: Database, schema: str) -> list[str]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"),
            {"p": f"{schema}_before_restore_%"},
        )
        return [str(r[0]) for r in rows]


@pytest.mark.pg
def test_postgresql_schema_backup_and_restore(tmp_path: Path, clock: FixedClock) -> None:
    pg_tools()
    with pg_schema("t_") as schema:
        db = Database(normalize_url(PG_URL), **in_schema(schema))
        aside = ""
        try:
            db.migrate()
            load_demo(db, clock)
            counter = Counter(db, clock, tmp_path)
            counter.open()
            out = tmp_path / "pg.cvbak"
            manifest = take(db, out, clock)
            assert manifest.dialect == "postgresql" and manifest.schema == schema
            assert os.stat(out).st_mode & 0o777 == 0o600
            clock.advance(minutes=5)
            counter.remote(700)
            with pytest.raises(restore_service.NewerLedger):
                restore(db, out, clock)
            wrong = lambda d: auth.login(d, "a01", "wrong", counter_id="C01", clock=clock)  # noqa: E731
            with pytest.raises(auth.LoginFailed):  # restored, then put back as it was
                restore_service.restore(
                    db, out, office="DEMO", clock=clock, authenticate=wrong, force=True
                )
            assert sales(db) == manifest.rows["sales"] + 1
            assert asides(db, schema) == []
            result = restore(db, out, clock, force=True)
            aside = result.kept_aside
            assert aside.startswith(f"{schema}_before_restore_")
            assert sales(db) == manifest.rows["sales"]
            audit_service.verify_or_raise(db)
            assert last_action(db) == AuditAction.BACKUP_RESTORE
            kept = Database(normalize_url(PG_URL), **in_schema(aside))
            assert sales(kept) == manifest.rows["sales"] + 1
            kept.dispose()
        finally:
            db.dispose()
            if aside:
                drop_pg_schema(aside)


def test_the_window_timer_takes_a_due_backup(
    tmp_path: Path, clock: FixedClock, qtbot: object
) -> None:
    from tests.rigs.context import make_ctx
    from ui.backup_timer import BackupTimer
    from ui.bridge import Ops

    ctx = make_ctx(tmp_path / "home", clock=clock, data="demo")
    ops = Ops()
    timer = BackupTimer(ctx, ops)
    try:
        timer.check()
        qtbot.waitUntil(lambda: not timer.running, timeout=30000)  # type: ignore[attr-defined]
        folder = ctx.paths.data_dir / "backups"
        assert len(backup_service.scheduled_backups(folder)) == 1
        timer.check()  # not due again on the same clock
        qtbot.waitUntil(lambda: not timer.running, timeout=30000)  # type: ignore[attr-defined]
        clock.advance(hours=24)
        timer.check()
        qtbot.waitUntil(lambda: not timer.running, timeout=30000)  # type: ignore[attr-defined]
        assert len(backup_service.scheduled_backups(folder)) == 2
    finally:
        timer.stop()
        ops.shutdown()
        ctx.db.dispose()
