"""Private files on POSIX: what CardVend writes (database and its -wal/-shm, the log and its
rotated files, receipts, reports, exports, the keystore) is 0600 and the folders it makes are
0700; existing folders of ours are tightened, a folder the user chose keeps its mode.  A counter
day runs as separate processes started with the usual umask 022; the pieces are also checked
in-process, where no umask helps."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.persistence.db import Database
from tests.rigs.cli import run

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")

REMOTE = "100000000010"
T01 = {"CARDVEND_PASSWORD": "demo-t01", "CARDVEND_APPROVER_PASSWORD": "demo-s01"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """Processes start with 022 here, as on most systems (files 0644, folders 0755)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def ok(r: object) -> None:
    assert getattr(r, "returncode", None) == 0, getattr(r, "stderr", r)


def test_a_counter_day_leaves_only_private_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    chosen = tmp_path / "my-exports"  # a folder the user picked for --out and --receipt
    chosen.mkdir(mode=0o755)
    ok(run(home, "demo"))
    ok(run(home, "card", "blank", "--image", str(chosen / "card.json"), "--operator", "f01",
           env={"CARDVEND_PASSWORD": "demo-f01"}))  # fmt: skip
    ok(run(home, "shift", "open", "--float", "100", "--operator", "t01", env=T01))
    r = run(home, "sell", "--customer", REMOTE, "--amount", "30", "--cash", "50", "--json",
            "--receipt", str(chosen / "receipt.pdf"), "--operator", "t01", env=T01)  # fmt: skip
    ok(r)
    sale_id = json.loads(r.stdout)["sale_id"]
    ok(run(home, "receipt", sale_id, "--out", str(chosen / "copy.pdf"), "--operator", "t01",
           "--approver", "s01", env=T01))  # fmt: skip
    settings = home / "config" / "settings.json"
    settings.write_text(json.dumps({"schema_version": 1, "printer": "pdf"}))
    settings.chmod(0o600)
    ok(run(home, "print", sale_id, "--operator", "t01", "--approver", "s01", env=T01))
    ok(run(home, "report", "shift", "--out", str(chosen / "z.pdf"), "--operator", "t01", env=T01))
    ok(run(home, "report", "daily", "--out", str(chosen / "daily.csv"), "--operator", "s01",
           env={"CARDVEND_PASSWORD": "demo-s01"}))  # fmt: skip
    ok(run(home, "audit", "export", "--out", str(chosen / "audit.csv"), "--operator", "a01",
           env={"CARDVEND_PASSWORD": "demo-a01"}))  # fmt: skip

    # SQLite gives -wal and -shm the database file's mode: open it as another program would
    con = sqlite3.connect(home / "data" / "cardvend.db")
    assert con.execute("SELECT count(*) FROM customers").fetchone() == (1000,)
    wal, shm = home / "data" / "cardvend.db-wal", home / "data" / "cardvend.db-shm"
    assert wal.exists() and shm.exists()
    assert (mode(wal), mode(shm)) == (0o600, 0o600)
    con.close()

    made = {p.relative_to(home).as_posix(): mode(p) for p in [home, *home.rglob("*")]}
    for name in ("data/cardvend.db", "data/keystore.json", "logs/cardvend.log", "data/receipts"):
        assert name in made
    assert list((home / "data" / "receipts").glob("*.pdf"))
    assert {n: m for n, m in made.items() if (home / n).is_dir() and m != 0o700} == {}
    assert {n: m for n, m in made.items() if (home / n).is_file() and m != 0o600} == {}

    files = {p.name: mode(p) for p in chosen.iterdir()}
    assert files == dict.fromkeys(
        ("card.json", "receipt.pdf", "copy.pdf", "z.pdf", "daily.csv", "audit.csv"), 0o600
    )
    assert mode(chosen) == 0o755  # the user's folder keeps its mode


def test_existing_folders_of_ours_are_tightened(tmp_path: Path) -> None:
    """An older version left data, config and logs 0755 and the database 0644: the next start
    closes the folders; the folder the user named as the home, or for --db, keeps its mode."""
    home = tmp_path / "home"
    for sub in ("", "config", "data", "logs"):
        (home / sub).mkdir(mode=0o755, exist_ok=True)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    ok(run(home, "init"))
    assert {d: mode(home / d) for d in ("config", "data", "logs")} == dict.fromkeys(
        ("config", "data", "logs"), 0o700
    )
    assert mode(home) == 0o755
    assert mode(home / "data" / "cardvend.db") == 0o600
    ok(run(home, "--db", str(shared / "office.db"), "init"))
    assert mode(shared) == 0o755 and mode(shared / "office.db") == 0o600


def test_the_log_and_its_rotated_files_are_private(tmp_path: Path) -> None:
    import main

    logs = tmp_path / "logs"
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    main.configure_logging(logs, "INFO", False)
    (handler,) = [h for h in root.handlers if h not in before]
    try:
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        handler.maxBytes = 300  # rotate after a few lines
        for i in range(40):
            logging.getLogger("cardvend.test").info("customer 1000000000%02d paid", i)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
    names = sorted(p.name for p in logs.iterdir())
    assert names == ["cardvend.log", *(f"cardvend.log.{i}" for i in range(1, 6))]
    assert {n: mode(logs / n) for n in names} == dict.fromkeys(names, 0o600)
    assert mode(logs) == 0o700


def test_a_database_is_created_private(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "new" / "cardvend.db"))
    try:
        db.migrate()
        with db.read() as session:  # the connection is open: -wal and -shm exist
            session.connection().exec_driver_sql("SELECT 1")
            got = {p.name: mode(p) for p in (tmp_path / "new").iterdir()}
    finally:
        db.dispose()
    assert got == dict.fromkeys(("cardvend.db", "cardvend.db-wal", "cardvend.db-shm"), 0o600)
    assert mode(tmp_path / "new") == 0o700


def test_the_pdf_folder_printer(tmp_path: Path) -> None:
    from printing.backends import PdfFolderPrinter
    from tests.rigs.receipts import make_receipt

    made = PdfFolderPrinter(tmp_path / "new" / "receipts", "80")
    made.print_receipt(make_receipt(), language="en")
    (pdf,) = (tmp_path / "new" / "receipts").iterdir()
    assert (mode(tmp_path / "new"), mode(pdf.parent), mode(pdf)) == (0o700, 0o700, 0o600)

    chosen = tmp_path / "chosen"
    chosen.mkdir(mode=0o755)
    PdfFolderPrinter(chosen, "80").print_receipt(make_receipt(), language="en")
    (pdf,) = chosen.iterdir()
    assert (mode(chosen), mode(pdf)) == (0o755, 0o600)
