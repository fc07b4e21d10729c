"""Receipts and reports as people run them: `sell --receipt`, `receipt` (a reprint with its
approval), `print` on the configured printer, `report shift|daily|stats` — separate processes,
PDFs read back with poppler."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.persistence.models import ReceiptPrint
from tests.rigs.cli import ok_json
from tests.rigs.cli import run

REMOTE = "100000000010"
T01 = {"CARDVEND_PASSWORD": "demo-t01", "CARDVEND_APPROVER_PASSWORD": "demo-s01"}
S01 = {"CARDVEND_PASSWORD": "demo-s01"}


def pdftext(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("printing")
    assert run(home, "demo").returncode == 0
    r = run(home, "shift", "open", "--float", "100", "--operator", "t01", env=T01)
    assert r.returncode == 0, r.stderr
    return home


def sell(home: Path, amount: str, *extra: str) -> dict[str, Any]:
    return ok_json(
        run(
            home,
            "sell",
            "--customer",
            REMOTE,
            "--amount",
            amount,
            "--cash",
            "100",
            "--operator",
            "t01",
            "--json",
            *extra,
            env=T01,
        )
    )


def test_sale_receipt_then_controlled_reprints(home: Path) -> None:
    out = home / "original.pdf"
    sale = sell(home, "88", "--receipt", str(out), "--receipt-size", "58")
    assert sale["receipt"] == str(out)
    text = pdftext(out)
    assert "88.00" in text and REMOTE in text and "副本" not in text
    sale_id = sale["sale_id"]

    # a reprint needs a supervisor's approval by default
    copy = home / "copy.pdf"
    r = run(home, "receipt", sale_id, "--out", str(copy), "--operator", "t01", env=T01)
    assert r.returncode == 1 and "approv" in r.stderr.lower() and not copy.exists()
    r = run(home, "receipt", sale_id, "--out", str(copy), "--operator", "t01", "--approver",
            "t02", env={**T01, "CARDVEND_APPROVER_PASSWORD": "demo-t02"})  # fmt: skip
    assert r.returncode == 1 and not copy.exists()  # a teller does not approve
    first = ok_json(run(home, "receipt", sale_id, "--out", str(copy), "--operator", "t01",
                        "--approver", "s01", "--json", env=T01))  # fmt: skip
    assert first["copy_no"] == 1 and "副本 1" in pdftext(copy)
    en = home / "copy-en.pdf"
    second = ok_json(run(home, "receipt", sale_id, "--out", str(en), "--operator", "t01",
                         "--approver", "s01", "--size", "a4", "--receipt-lang", "en", "--json",
                         env=T01))  # fmt: skip
    assert second["copy_no"] == 2 and "COPY 2" in pdftext(en)
    db = Database(str(home / "data" / "cardvend.db"))
    with db.read() as session:
        copies = session.scalars(
            select(ReceiptPrint.copy_no).where(ReceiptPrint.sale_id == sale_id)
        ).all()
        audited = session.scalars(
            select(AuditEntry.detail).where(
                AuditEntry.action == "receipt_reprint", AuditEntry.target == sale_id
            )
        ).all()
    db.dispose()
    assert sorted(copies) == [1, 2] and len(audited) == 2


def test_a_receipt_that_cannot_be_saved_is_refused_before_the_sale(home: Path) -> None:
    before = ok_json(run(home, "sales", "list", "--customer", REMOTE, "--json",
                         "--operator", "t01", env=T01))  # fmt: skip
    bad = str(home / "no-such-dir" / "r.pdf")
    r = run(home, "sell", "--customer", REMOTE, "--amount", "10", "--operator", "t01",
            "--receipt", bad, env=T01)  # fmt: skip
    assert r.returncode == 1 and "no-such-dir does not exist" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    listed = ok_json(run(home, "sales", "list", "--customer", REMOTE, "--json",
                         "--operator", "t01", env=T01))  # fmt: skip
    assert listed == before  # no money was taken for a receipt that could not be saved


def test_print_on_the_configured_printer_and_a_printer_fault(home: Path) -> None:
    sale_id = sell(home, "20")["sale_id"]
    settings = home / "config" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    folder = home / "receipts-out"
    settings.write_text(json.dumps({"schema_version": 1, "printer": "pdf",
                                    "receipt_dir": str(folder)}))  # fmt: skip
    try:
        r = run(home, "print", sale_id, "--operator", "t01", "--approver", "s01", env=T01)
        assert r.returncode == 0, r.stderr
        (printed,) = folder.glob("*.pdf")
        assert "20.00" in pdftext(printed)
        settings.write_text(json.dumps({"schema_version": 1, "printer": "escpos",
                                        "printer_port": str(home / "ttyNONE")}))  # fmt: skip
        r = run(home, "print", sale_id, "--operator", "t01", "--approver", "s01", env=T01)
        assert r.returncode == 1 and "ttyNONE" in r.stderr and "Traceback" not in r.stderr
    finally:
        settings.unlink()


def test_reports_in_pdf_and_csv(home: Path) -> None:
    sell(home, "30")
    z = home / "z.pdf"
    r = run(home, "report", "shift", "--out", str(z), "--operator", "t01", env=T01)
    assert r.returncode == 0, r.stderr
    assert "30.00" in pdftext(z)
    daily = home / "daily.csv"
    r = run(home, "report", "daily", "--out", str(daily), "--operator", "t01", env=T01)
    assert r.returncode == 1 and "may not" in r.stderr  # a teller views, does not export
    r = run(home, "report", "daily", "--out", str(daily), "--operator", "s01", env=S01)
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(daily.read_text(encoding="utf-8-sig"))))
    assert len(rows) > 2 and any("t01" in cell for row in rows for cell in row)
    stats = home / "stats.pdf"
    r = run(home, "report", "stats", "--out", str(stats), "--operator", "s01",
            "--receipt-lang", "zh_CN", env=S01)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert pdftext(stats).strip()
