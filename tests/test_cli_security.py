"""`cardvend init`, `operators …` and `audit …` as a person runs them."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from tests.rigs.cli import run


@pytest.fixture
def home(tmp_path: Path) -> Path:
    assert run(tmp_path, "demo").returncode == 0
    return tmp_path


def as_(op: str, password: str | None = None, **extra: str) -> dict[str, str]:
    return {"CARDVEND_PASSWORD": password or f"demo-{op}", **extra}


def test_init_without_a_password_creates_no_admin(tmp_path: Path) -> None:
    r = run(tmp_path, "init")
    assert r.returncode == 0 and "No administrator exists yet" in r.stdout
    r = run(tmp_path, "init", env={"CARDVEND_ADMIN_PASSWORD": "first-admin-pw"})
    assert r.returncode == 0 and "Administrator admin created" in r.stdout
    r = run(tmp_path, "init", env={"CARDVEND_ADMIN_PASSWORD": "another-pw-123"})
    assert "created" not in r.stdout  # only the first start creates one
    r = run(
        tmp_path,
        "operators",
        "list",
        "--operator",
        "admin",
        "--json",
        env=as_("admin", "first-admin-pw"),
    )
    assert r.returncode == 0, r.stderr
    assert [o["id"] for o in json.loads(r.stdout)] == ["admin"]


def test_operator_lifecycle(home: Path) -> None:
    admin = as_("a01", CARDVEND_NEW_PASSWORD="teller-three-pw")
    r = run(
        home,
        "operators",
        "add",
        "t03",
        "--name",
        "赵六",
        "--role",
        "teller",
        "--operator",
        "a01",
        env=admin,
    )
    assert r.returncode == 0, r.stderr
    ops = json.loads(
        run(home, "operators", "list", "--operator", "a01", "--json", env=as_("a01")).stdout
    )
    t03 = {"id": "t03", "name": "赵六", "role": "teller", "disabled": False, "locked_until": None}
    assert t03 in ops
    assert (
        run(home, "operators", "disable", "t03", "--operator", "a01", env=as_("a01")).returncode
        == 0
    )
    r = run(home, "operators", "list", "--operator", "t03", env=as_("t03", "teller-three-pw"))
    assert r.returncode == 1 and "password is wrong" in r.stderr  # said like a wrong password
    assert "disabled" not in r.stderr
    assert (
        run(home, "operators", "enable", "t03", "--operator", "a01", env=as_("a01")).returncode == 0
    )
    r = run(
        home,
        "operators",
        "passwd",
        "--operator",
        "t03",
        env=as_("t03", "teller-three-pw", CARDVEND_NEW_PASSWORD="changed-by-me"),
    )
    assert r.returncode == 0, r.stderr
    r = run(
        home,
        "operators",
        "add",
        "t04",
        "--role",
        "teller",
        "--operator",
        "t03",
        env=as_("t03", "changed-by-me", CARDVEND_NEW_PASSWORD="whatever-123"),
    )
    assert r.returncode == 1 and "may not manage operators" in r.stderr


def test_wrong_or_missing_password(home: Path) -> None:
    r = run(home, "operators", "list", "--operator", "a01", env=as_("a01", "nope"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "password is wrong" in r.stderr
    r = run(home, "operators", "list", "--operator", "a01")
    assert r.returncode == 1 and "CARDVEND_PASSWORD" in r.stderr
    assert run(home, "operators", "list").returncode == 2  # --operator is required


def test_audit_verify_detects_an_edit_and_exports(home: Path, tmp_path: Path) -> None:
    r = run(home, "audit", "verify", "--operator", "a01", "--json", env=as_("a01"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True
    out = tmp_path / "audit.csv"
    r = run(home, "audit", "export", "--out", str(out), "--operator", "a01", env=as_("a01"))
    assert r.returncode == 0, r.stderr
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["action"] == "demo_load" and rows[1]["action"] == "login"
    con = sqlite3.connect(home / "data" / "cardvend.db")
    con.execute("UPDATE audit_log SET result = 'ok' WHERE seq = 2")  # quietly "fix" a row
    con.execute("UPDATE audit_log SET target = 'a02' WHERE seq = 2")
    con.commit()
    con.close()
    r = run(home, "audit", "verify", "--operator", "a01", env=as_("a01"))
    assert r.returncode == 1 and "row 2" in r.stderr
    r = run(home, "audit", "verify", "--operator", "t01", env=as_("t01"))
    assert r.returncode == 1 and "may not" in r.stderr


def test_no_secret_in_the_log_file(home: Path) -> None:
    run(home, "operators", "list", "--operator", "a01", env=as_("a01", "wrong-secret-42"))
    run(home, "operators", "list", "--operator", "a01", "-v", env=as_("a01"))
    log = (home / "logs" / "cardvend.log").read_text(encoding="utf-8")
    assert "wrong-secret-42" not in log and "demo-a01" not in log
