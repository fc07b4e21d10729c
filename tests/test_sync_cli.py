"""The sync commands as an office IT person runs them: ``cardvend central serve`` in its own
process, a counter registering with it, selling offline, syncing, status and reconciliation."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rigs.central_process import free_port
from tests.rigs.central_process import serve_central
from tests.rigs.cli import ok_json
from tests.rigs.cli import register_counter
from tests.rigs.cli import registered_counter
from tests.rigs.cli import run

PASSWORDS = {"CARDVEND_PASSWORD": "demo-t01"}
ADMIN = {"CARDVEND_PASSWORD": "demo-a01"}
REMOTE = "100000000010"


@pytest.fixture
def central(tmp_path: Path) -> Iterator[str]:
    yield from serve_central(tmp_path)


def test_register_sell_offline_sync_status_reconcile(central: str, tmp_path: Path) -> None:
    home = tmp_path / "counter"
    assert run(home, "demo").returncode == 0
    # not registered yet: a clear message, exit 1
    r = run(home, "sync")
    assert r.returncode == 1 and "not registered" in r.stderr
    r = register_counter(home, central, "wrong")
    assert r.returncode == 1 and "refused" in r.stderr
    r = register_counter(home, central, "office-secret")
    assert r.returncode == 0 and "C01" in r.stdout, r.stderr
    token = home / "data" / "central.token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert token.read_text().strip() not in (home / "config" / "settings.json").read_text()

    # offline sales: two remote payments before the first sync
    assert (
        run(home, "shift", "open", "--float", "0", "--operator", "t01", env=PASSWORDS).returncode
        == 0
    )
    for amount in ("88", "12.50"):
        r = run(home, "sell", "--customer", REMOTE, "--amount", amount, "--operator", "t01",
                "--json", env=PASSWORDS)  # fmt: skip
        assert r.returncode == 0, r.stderr
    status = ok_json(run(home, "sync", "status", "--json"))
    assert (status["online"], status["pending"], status["last_success"]) == (False, 2, None)
    assert status["pending_amount"] == 10050 and status["oldest_pending_age_s"] >= 0

    report = ok_json(run(home, "sync", "--json"))
    assert report["sent"] == 2 and report["tariffs"] == 0  # the demo tariffs are the same
    status = ok_json(run(home, "sync", "status", "--json"))
    assert (status["online"], status["pending"], status["last_error"]) == (True, 0, "")
    assert status["last_success"] is not None

    diff = ok_json(run(home, "sync", "reconcile", "--json"))
    assert (diff["local"], diff["central"], diff["matched"]) == (2, 2, 2)
    assert diff["differences"] == []

    text = run(home, "sync", "status", lang="zh_CN")
    assert text.returncode == 0 and "在线" in text.stdout, text.stdout


def test_central_down_is_offline_not_a_crash(tmp_path: Path) -> None:
    home = tmp_path / "counter"
    assert run(home, "demo").returncode == 0
    port = free_port()  # nobody listens here
    (home / "data").mkdir(parents=True, exist_ok=True)
    (home / "data" / "central.token").write_text("t" * 43)
    settings = home / "config" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(
        json.dumps({"schema_version": 1, "central_url": f"http://127.0.0.1:{port}"})
    )
    r = run(home, "sync")
    assert r.returncode == 1 and "cannot be reached" in r.stderr and "Traceback" not in r.stderr
    status = ok_json(run(home, "sync", "status", "--json"))
    assert status["online"] is False and "central_unreachable" in status["last_error"]


def test_a_reinstalled_counter_registers_again_with_an_enrolment_code(
    central: str, tmp_path: Path
) -> None:
    """The shared enrolment key registers a new counter, never an existing one: a reinstalled
    counter C01 needs a one-time code the central administrator issues."""
    first, again = tmp_path / "first", tmp_path / "reinstalled"
    for home in (first, again):
        assert run(home, "demo").returncode == 0
    register = ["counter", "register", "--central", central, "--enrolment-key", "office-secret"]
    r = run(first, *register, "--operator", "t01", env=PASSWORDS)  # a teller may not
    assert r.returncode == 1 and "may not" in r.stderr, r.stderr
    r = run(first, *register)  # who registers is a required argument: a usage error
    assert r.returncode == 2 and "--operator" in r.stderr, r.stderr
    assert run(first, *register, "--operator", "a01", env=ADMIN).returncode == 0
    assert ok_json(run(first, "sync", "--json"))["customers_new"] == 0
    # the same counter id from another install: refused, and the first keeps working
    r = run(again, *register, "--operator", "a01", env=ADMIN)
    assert r.returncode == 1 and "registered with the central system already" in r.stderr
    assert "cardvend central enrol C01" in r.stderr
    assert run(first, "sync").returncode == 0
    # the central administrator issues a code (printed alone on stdout)
    central_db = f"sqlite:///{tmp_path / 'central.db'}"
    r = run(tmp_path / "central-home", "central", "enrol", "C01", "--office", "DEMO",
            "--db", central_db, "--hours", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    code = r.stdout.strip()
    assert len(code.replace("-", "")) == 24 and "--enrolment-code" in r.stderr
    r = run(again, "counter", "register", "--central", central, "--enrolment-code", code,
            "--operator", "a01", env=ADMIN)  # fmt: skip
    assert r.returncode == 0 and "C01" in r.stdout, r.stderr
    assert run(again, "sync").returncode == 0
    r = run(first, "sync")  # its token was replaced
    assert r.returncode == 1 and "refused this counter's token" in r.stderr
    # used once: a third install cannot reuse it
    third = tmp_path / "third"
    assert run(third, "demo").returncode == 0
    r = run(third, "counter", "register", "--central", central, "--enrolment-code", code,
            "--operator", "a01", env=ADMIN)  # fmt: skip
    assert r.returncode == 1 and "refused to register" in r.stderr
    # the reinstalled counter registers again with its token, no code needed
    r = run(again, "counter", "register", "--central", central, "--operator", "a01", env=ADMIN)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "audit.csv"
    r = run(again, "audit", "export", "--out", str(out), "--operator", "a01", env=ADMIN)
    assert r.returncode == 0, r.stderr
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["action"] == "counter_register"]
    assert [(row["operator_id"], row["result"]) for row in rows] == [
        ("a01", "failed"),
        ("a01", "ok"),
        ("a01", "ok"),
    ]
    assert '"with_enrolment_code":true' in rows[1]["detail"]
    assert '"with_token":true' in rows[2]["detail"]
    r = run(tmp_path / "central-home", "central", "enrol", "bad id!", "--office", "DEMO",
            "--db", central_db)  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_a_poisoned_record_is_set_aside_listed_and_resent_after_the_fix(
    central: str, tmp_path: Path
) -> None:
    import sqlite3

    home = registered_counter(tmp_path / "counter", central)
    assert run(home, "shift", "open", "--float", "0", "--operator", "t01",
               env=PASSWORDS).returncode == 0  # fmt: skip
    sales = []
    for a in ("10", "11", "12"):
        r = run(home, "sell", "--customer", REMOTE, "--amount", a, "--operator", "t01", "--json",
                env=PASSWORDS)  # fmt: skip
        sales.append(ok_json(r)["sale_id"])
    db = sqlite3.connect(home / "data" / "cardvend.db")
    with db:  # a hand edit the input checks would refuse: operator "t02\n"
        db.execute(
            "INSERT INTO operators SELECT 't02' || char(10), name, role, office_code, "
            "password_hash, disabled, language, created_at, failed_logins, locked_until, "
            "password_changed_at FROM operators WHERE id = 't02'"
        )
        db.execute("UPDATE sales SET operator_id = 't02' || char(10) WHERE id = ?", (sales[1],))
    r = run(home, "sync")
    assert r.returncode == 0, r.stderr  # the round went through for the rest
    assert "refused and set aside" in r.stdout and sales[1] in r.stdout
    status = ok_json(run(home, "sync", "status", "--json"))
    assert (status["pending"], status["refused"], status["online"]) == (0, 1, True)
    [refused] = status["refused_records"]
    assert refused["ref_id"] == sales[1] and refused["code"] == "invalid"
    assert "operator_id" in refused["reason"] and "sync retry" in refused["advice"]
    text = run(home, "sync", "status")
    assert f"record {refused['id']}" in text.stdout and "what to do" in text.stdout
    zh = run(home, "sync", "status", lang="zh_CN")
    assert "拒绝" in zh.stdout, zh.stdout

    with db:
        db.execute("UPDATE sales SET operator_id = 't02' WHERE id = ?", (sales[1],))
    db.close()
    r = run(home, "sync", "retry", str(refused["id"]), "--operator", "t01", env=PASSWORDS)
    assert r.returncode == 1 and "may not" in r.stderr  # a teller may not
    r = run(home, "sync", "retry", "--all-refused", "--operator", "s01",
            env={"CARDVEND_PASSWORD": "demo-s01"})  # fmt: skip
    assert r.returncode == 0 and "1 refused records" in r.stdout, r.stderr
    report = ok_json(run(home, "sync", "--json"))
    assert (report["sent"], report["refused"]) == (1, 0)
    diff = ok_json(run(home, "sync", "reconcile", "--json"))
    assert (diff["local"], diff["matched"], diff["differences"]) == (3, 3, [])
