"""Three counters of one office on its PostgreSQL database, each a process of its own with its
own home (counter id, token) and the database named by its ``db_url`` setting, against
``cardvend central serve``.

The second and third counters run ``cardvend init`` on the database the first set up (no new
administrator, no failure); all three register, then sell at once (tests/rigs/multi_seller.py)
onto the same customers' cards in turn and race each other for purchase N+1 of customers with
no card, while they sync.  Afterwards: no purchase count twice for any customer, every sale on
the central side exactly once under the counter that made it, each counter's shift holds its
own sales and nothing else, every outbox row sent by its own counter, and the audit chain that
all three appended to verifies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text

from app.ports import KeyRole
from cardio.emulator import CardImage
from cardio.keys import MasterKeys
from tests.conftest import ROOT
from tests.conftest import pg_schema
from tests.rigs.central_process import serve_central
from tests.rigs.cli import ok_json
from tests.rigs.cli import register_counter
from tests.rigs.cli import run
from tests.rigs.env import child_env
from tests.rigs.pg import schema_url

pytestmark = pytest.mark.pg

COUNTERS = {"C01": "t01", "C02": "t02", "C03": "s01"}
ROUNDS = 3  # each counter sells once onto every shared card per round
AMOUNT = 10_000  # fen; covers a demo customer's arrears and fees
RACE_ATTEMPTS = 12  # per race customer and counter


@pytest.fixture
def central(tmp_path: Path) -> Iterator[str]:
    yield from serve_central(tmp_path)


@pytest.fixture
def office_db() -> Iterator[str]:
    with pg_schema("office_") as schema:
        yield schema_url(schema)


def counter_home(tmp_path: Path, counter_id: str, url: str) -> Path:
    """A counter PC: its own settings with its counter id, the office and the office database."""
    home = tmp_path / counter_id
    (home / "config").mkdir(parents=True)
    settings = {"schema_version": 1, "counter_id": counter_id, "office_code": "DEMO", "db_url": url}
    (home / "config" / "settings.json").write_text(json.dumps(settings))
    return home


def env_for(home: Path) -> dict[str, str]:
    env = child_env(CARDVEND_HOME=str(home), CARDVEND_LANG="en")
    return env


def start(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env={**env_for(home), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def sync_all(homes: dict[str, Path]) -> dict[str, Any]:
    """Every counter syncs at the same moment, each a process of its own."""
    procs = {cid: start(home, "main.py", "sync", "--json") for cid, home in homes.items()}
    return {cid: json.loads(finish(p)) for cid, p in procs.items()}


def query(url: str, sql: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)).all())
    finally:
        engine.dispose()


def set_up_office(tmp_path: Path, url: str, central: str) -> dict[str, Path]:
    homes = {cid: counter_home(tmp_path, cid, url) for cid in COUNTERS}
    first = run(homes["C01"], "init")  # no password given: no administrator yet
    assert first.returncode == 0 and "No administrator" in first.stdout, first.stderr
    assert run(homes["C01"], "demo").returncode == 0
    for cid in ("C02", "C03"):  # the next counters run init on the office's database
        r = run(homes[cid], "init", env={"CARDVEND_ADMIN_PASSWORD": "another-admin-pw"})
        assert r.returncode == 0, r.stderr
        assert "created" not in r.stdout and "counter's id" not in r.stdout, r.stdout
    admins = query(url, "SELECT id FROM operators WHERE role = 'admin'")
    assert [a.id for a in admins] == ["a01"]  # init made no second administrator
    for cid, home in homes.items():
        r = register_counter(home, central, "office-secret")
        assert r.returncode == 0 and cid in r.stdout, r.stderr
    return homes


def make_cards(folder: Path, master: MasterKeys, customers: list[str]) -> list[list[str]]:
    cards = []
    for n, customer in enumerate(customers):
        serial = bytes([0xA0, n]) + os.urandom(6)
        keys = {int(r): k for r, k in master.diversified_card_keys(serial).items()}
        path = folder / f"card-{customer}.json"
        CardImage.blank(serial, keys).save(path)
        cards.append([customer, str(path)])
    return cards


def test_three_counters_sell_to_the_same_customers_and_sync(
    central: str, office_db: str, tmp_path: Path
) -> None:
    homes = set_up_office(tmp_path, office_db, central)
    rows = query(
        office_db,
        "SELECT customer_no FROM customers WHERE meter_kind = 'card' AND status = 'active' "
        "ORDER BY customer_no LIMIT 6",
    )
    shared, race = [r.customer_no for r in rows[:4]], [r.customer_no for r in rows[4:]]
    master = MasterKeys.generate()
    keys_path = tmp_path / "master-keys.json"
    keys_path.write_text(json.dumps({r.name: master.key(r).hex() for r in KeyRole}))
    cards = make_cards(tmp_path, master, shared)
    folder = tmp_path / "meet"
    folder.mkdir()
    sellers = {}
    for index, (cid, teller) in enumerate(COUNTERS.items()):
        plan = {
            "db": office_db, "keys": str(keys_path), "counter": cid, "teller": teller,
            "password": f"demo-{teller}", "index": index, "counters": len(COUNTERS),
            "folder": str(folder), "amount": AMOUNT, "rounds": ROUNDS, "cards": cards,
            "open": [c for i, c in enumerate(cards) if i % len(COUNTERS) == index],
            "race": race, "race_attempts": RACE_ATTEMPTS, "out": str(tmp_path / f"{cid}.json"),
        }  # fmt: skip
        plan_path = tmp_path / f"plan-{cid}.json"
        plan_path.write_text(json.dumps(plan))
        sellers[cid] = start(homes[cid], "-m", "tests.rigs.multi_seller", str(plan_path))
    during = []  # rounds of sync while they sell
    while any(proc.poll() is None for proc in sellers.values()):
        during.append(sync_all(homes))
    for proc in sellers.values():
        finish(proc)
    done = {cid: json.loads((tmp_path / f"{cid}.json").read_text()) for cid in COUNTERS}
    after = sync_all(homes)
    for cid in COUNTERS:
        assert done[cid]["errors"] == [], done[cid]["errors"]
        assert [r[cid]["refused"] for r in [*during, after]] == [0] * (len(during) + 1)
        again = ok_json(run(homes[cid], "sync", "--json"))
        assert (again["sent"], again["refused"], again["audit_diverged"]) == (0, 0, None)

    # no purchase count twice: each customer's live sales hold 1..n, and the ledger is at n
    live = query(
        office_db,
        "SELECT c.customer_no, c.purchase_count AS at, s.purchase_count AS n, s.id, "
        "s.counter_id, s.shift_id, s.amount FROM sales s JOIN customers c ON c.id = s.customer_id "
        "WHERE s.state = 'completed'",
    )
    by_customer: dict[str, list[int]] = {}
    for row in live:
        by_customer.setdefault(row.customer_no, []).append(row.n)
        assert row.at >= row.n
    for customer in shared:  # every counter sold onto every shared card, every round
        assert sorted(by_customer[customer]) == list(range(1, 1 + 1 + ROUNDS * len(COUNTERS)))
    for customer in race:
        counts = sorted(by_customer[customer])
        assert counts == list(range(1, len(counts) + 1))
    # the race was real: counters were refused purchase N+1 another counter held
    assert sum(sum(d["refusals"].values()) for d in done.values()) > 0, done
    assert {c for d in done.values() for c in d["refusals"]} <= {"sale_in_progress", "conflict"}

    # every sale on the central side exactly once, under the counter that made it
    made = sorted((s["id"], cid) for cid, d in done.items() for s in d["sales"])
    records = query(office_db, "SELECT counter_id, kind, sent_at FROM outbox")
    assert all(r.sent_at is not None and r.counter_id in COUNTERS for r in records)
    sent = sum(r[cid]["sent"] for r in [*during, after] for cid in COUNTERS)
    assert sent == len(records)  # each record sent once: some while the counters were selling
    assert sum(r[cid]["sent"] for r in during for cid in COUNTERS) > 0, during
    print(f"sync rounds during: {len(during)}, refusals: {[d['refusals'] for d in done.values()]}")
    assert sorted((r.id, r.counter_id) for r in live) == made
    central_db = f"sqlite:///{tmp_path / 'central.db'}"
    held = query(central_db, "SELECT id, counter_id FROM central_sales")
    assert sorted((r.id, r.counter_id) for r in held) == made
    outbox = query(
        office_db,
        "SELECT o.counter_id, s.counter_id AS seller, o.sent_at FROM outbox o "
        "JOIN sales s ON s.id = o.ref_id WHERE o.kind = 'sale'",
    )
    assert len(outbox) == len(made)
    assert all(r.counter_id == r.seller and r.sent_at is not None for r in outbox)

    # each counter's shift holds its own sales, and the three add up to the day's takings
    shifts = query(office_db, "SELECT id, counter_id, expected_cash, variance FROM shifts")
    assert sorted(r.counter_id for r in shifts) == sorted(COUNTERS)
    for row in shifts:
        mine = [r for r in live if r.shift_id == row.id]
        assert {r.counter_id for r in mine} == {row.counter_id}
        assert (
            row.expected_cash
            == sum(r.amount for r in mine)
            == done[row.counter_id]["shift"]["expected_fen"]
        )
        assert row.variance == 0
    assert sum(r.expected_cash for r in shifts) == sum(r.amount for r in live)

    # one audit chain, appended to by three processes, verifies
    r = run(homes["C02"], "audit", "verify", "--json", "--operator", "a01",
            env={"CARDVEND_PASSWORD": "demo-a01"})  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def test_counters_set_up_at_once_on_an_empty_database(office_db: str, tmp_path: Path) -> None:
    """Three counters run ``cardvend init`` at the same moment on the office's new database,
    each with an administrator's password: the migrations run once, every counter finds the
    schema ready, and one of them creates the only administrator."""
    homes = {cid: counter_home(tmp_path, cid, office_db) for cid in COUNTERS}
    procs = [
        start(home, "main.py", "init", env={"CARDVEND_ADMIN_PASSWORD": f"first-admin-{cid}"})
        for cid, home in homes.items()
    ]
    outs = [finish(p) for p in procs]
    assert all("Database ready at revision" in out for out in outs), outs
    assert sum("Administrator admin created" in out for out in outs) == 1, outs
    assert len(query(office_db, "SELECT version_num FROM alembic_version")) == 1
    assert len(query(office_db, "SELECT id FROM operators WHERE role = 'admin'")) == 1
