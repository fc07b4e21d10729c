"""`cardvend demo` goes only into a database of its own: one that holds operators or customers
that are not the demo's is refused, nothing written (the demo's a01 has a published password).
On a demo database it stays idempotent, and the window still loads the demo into an empty one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.clock import FixedClock
from app.persistence.db import Database
from app.services import auth
from app.services import demo
from tests.rigs.cli import HEADER
from tests.rigs.cli import run
from tests.rigs.context import make_ctx

REFUSED = "This database holds {what} that are not the demo's (such as {example})"


def counts(home: Path) -> tuple[int, int, int, int]:
    """operators, customers, tariff plans, audit rows."""
    con = sqlite3.connect(home / "data" / "cardvend.db")
    try:
        return tuple(  # type: ignore[return-value]
            con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("operators", "customers", "tariff_plans", "audit_log")
        )
    finally:
        con.close()


def refused(home: Path, what: str, example: str) -> None:
    before = counts(home)
    r = run(home, "demo")
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith("cardvend: " + REFUSED.format(what=what, example=example))
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert counts(home) == before  # nothing written, not even an audit row
    r = run(home, "--lang", "zh_CN", "demo")
    assert r.returncode == 1 and "不属于演示数据" in r.stderr


@pytest.mark.parametrize("admin_id", ["boss", "a01"])
def test_a_real_administrator_keeps_the_demo_out(tmp_path: Path, admin_id: str) -> None:
    """Also when the administrator's id is a demo id: it is not the demo's operator."""
    r = run(tmp_path, "init", "--admin-id", admin_id,
            env={"CARDVEND_ADMIN_PASSWORD": "a-real-secret"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    refused(tmp_path, "operators", admin_id)
    assert counts(tmp_path)[:3] == (1, 0, 0)
    r = run(tmp_path, "operators", "list", "--operator", "a01",
            env={"CARDVEND_PASSWORD": "demo-a01"})  # fmt: skip
    assert r.returncode == 1  # no published password opens this database


def test_imported_customers_keep_the_demo_out(tmp_path: Path) -> None:
    # importing takes an administrator, so the database has one; the customer refuses the demo
    # even where the operator would not (its office and number are not the demo's)
    init = run(
        tmp_path, "init", "--admin-id", "boss", env={"CARDVEND_ADMIN_PASSWORD": "long-secret-1"}
    )
    assert init.returncode == 0, init.stderr
    f = tmp_path / "c.csv"
    f.write_text(HEADER + "700000000001,甲,,,800000000001,card,RES-FLAT,BJ01,1,1\n")
    # the plan must exist for the import: take it from a demo database's definition
    db = Database(str(tmp_path / "data" / "cardvend.db"))
    try:
        from app.services.tariffs import add_version
        from app.services.tariffs import ensure_plan

        with db.write() as session:
            ensure_plan(session, "RES-FLAT", "flat")
            add_version(session, "RES-FLAT", demo.PLANS["RES-FLAT"][1], demo.SWITCH_OVER,
                        FixedClock(demo.SWITCH_OVER))  # fmt: skip
    finally:
        db.dispose()
    r = run(tmp_path, "customers", "import", str(f), "--operator", "boss",
            env={"CARDVEND_PASSWORD": "long-secret-1"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(tmp_path / "data" / "cardvend.db")
    with con:  # leave only the customer to tell this database from the demo's
        con.execute("DELETE FROM operators WHERE id = 'boss'")
    con.close()
    refused(tmp_path, "customers", "700000000001")


def test_a_customer_added_to_a_demo_database_is_not_the_demos(tmp_path: Path) -> None:
    assert run(tmp_path, "demo").returncode == 0
    f = tmp_path / "c.csv"
    f.write_text(HEADER + "700000000001,甲,,,800000000001,card,RES-FLAT,DEMO,1,1\n")
    r = run(tmp_path, "customers", "import", str(f), "--operator", "a01",
            env={"CARDVEND_PASSWORD": "demo-a01"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    refused(tmp_path, "customers", "700000000001")


def test_idempotent_on_a_demo_database(tmp_path: Path) -> None:
    r = run(tmp_path, "demo")
    assert r.returncode == 0 and "5 operators, 3 tariff plans, 1000 customers added" in r.stdout
    before = counts(tmp_path)
    r = run(tmp_path, "demo")
    assert r.returncode == 0 and "0 operators, 0 tariff plans, 0 customers added" in r.stdout
    assert counts(tmp_path) == before
    con = sqlite3.connect(tmp_path / "data" / "cardvend.db")
    con.execute("DELETE FROM customers WHERE customer_no = '100000000500'")  # no arrears, no card
    con.commit()
    con.close()
    r = run(tmp_path, "demo")
    assert r.returncode == 0 and "0 operators, 0 tariff plans, 1 customers added" in r.stdout


def test_the_window_loads_the_demo_into_an_empty_database_only(tmp_path: Path) -> None:
    from ui.app import prepare

    ctx = make_ctx(tmp_path / "empty")
    assert prepare(ctx).ok
    assert auth.login(ctx.db, "a01", "demo-a01", counter_id="C01", clock=ctx.clock)
    ctx.db.dispose()

    home = tmp_path / "real"
    r = run(home, "init", env={"CARDVEND_ADMIN_PASSWORD": "a-real-secret"})
    assert r.returncode == 0, r.stderr
    before = counts(home)
    ctx = make_ctx(home)
    assert prepare(ctx).ok  # starts, without the demo
    ctx.db.dispose()
    assert counts(home) == before
