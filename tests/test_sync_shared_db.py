"""Two counters on one database (an office's PostgreSQL, or one SQLite file), each a real
``cardvend`` process with its own home and counter id, against ``cardvend central serve``:
each sends only its own records, the shared archive is pulled once, and the sync status, the
remote-payment statuses and the audit head are per counter."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text

from tests.conftest import PG_URL
from tests.conftest import ROOT
from tests.conftest import drop_pg_schema
from tests.conftest import pg_available
from tests.rigs.central_process import serve_central
from tests.rigs.cli import ok_json
from tests.rigs.cli import run
from tests.rigs.counter import REMOTE
from tests.rigs.env import child_env

TELLERS = {"C01": "t01", "C02": "t02"}


@pytest.fixture
def central(tmp_path: Path) -> Iterator[str]:
    yield from serve_central(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'office.db'}"
        return
    if not pg_available():
        pytest.skip(f"no PostgreSQL server at {PG_URL}")
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        drop_pg_schema(schema)


def counter_home(tmp_path: Path, counter_id: str) -> Path:
    home = tmp_path / counter_id
    (home / "config").mkdir(parents=True)
    (home / "config" / "settings.json").write_text(
        json.dumps({"schema_version": 1, "counter_id": counter_id})
    )
    return home


def cv(home: Path, url: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return run(home, "--db", url, *args, env=env)


def sell(home: Path, url: str, counter_id: str, amount: str) -> str:
    teller = TELLERS[counter_id]
    r = cv(home, url, "sell", "--customer", REMOTE, "--amount", amount, "--operator", teller,
           "--json", env={"CARDVEND_PASSWORD": f"demo-{teller}"})  # fmt: skip
    sale = ok_json(r)
    return str(sale["sale_id"])


def test_counters_sharing_a_database_send_only_their_own(
    central: str,
    shared_url: str,
    tmp_path: Path,
) -> None:
    homes = {cid: counter_home(tmp_path, cid) for cid in TELLERS}
    assert cv(homes["C01"], shared_url, "demo").returncode == 0
    for cid, home in homes.items():
        r = cv(home, shared_url, "counter", "register", "--central", central,
               "--enrolment-key", "office-secret", "--operator", "a01",
               env={"CARDVEND_PASSWORD": "demo-a01"})  # fmt: skip
        assert r.returncode == 0 and cid in r.stdout, r.stderr
        teller = TELLERS[cid]
        r = cv(home, shared_url, "shift", "open", "--float", "0", "--operator", teller,
               env={"CARDVEND_PASSWORD": f"demo-{teller}"})  # fmt: skip
        assert r.returncode == 0, r.stderr
    sold = {
        "C01": [sell(homes["C01"], shared_url, "C01", a) for a in ("10", "11", "12")],
        "C02": [sell(homes["C02"], shared_url, "C02", a) for a in ("20", "21")],
    }
    for cid, home in homes.items():  # the status is per counter
        status = ok_json(cv(home, shared_url, "sync", "status", "--json"))
        assert (status["counter_id"], status["pending"]) == (cid, len(sold[cid]))

    # both counters sync at the same time, as two processes
    procs = {
        cid: subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--db", shared_url, "sync", "--json"],
            cwd=ROOT,
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cid, home in homes.items()
    }
    reports = {}
    for cid, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports[cid] = json.loads(out)
    for cid, report in reports.items():
        # only its own records went up, nothing refused (before: C01 sent C02's too, and the
        # central system refused them as another counter's)
        assert (report["sent"], report["refused"]) == (len(sold[cid]), 0), report
        assert report["audit_diverged"] is None
    for cid, home in homes.items():  # a second round each: nothing more, no divergence
        again = ok_json(cv(home, shared_url, "sync", "--json"))
        assert (again["sent"], again["refused"], again["audit_diverged"]) == (0, 0, None)
        status = ok_json(cv(home, shared_url, "sync", "status", "--json"))
        assert (status["online"], status["pending"], status["refused"]) == (True, 0, 0)
        diff = ok_json(cv(home, shared_url, "sync", "reconcile", "--json"))
        n = len(sold[cid])
        assert (diff["local"], diff["central"], diff["matched"]) == (n, n, n), diff

    # the central side holds each record exactly once, under the counter that made it
    engine = create_engine(f"sqlite:///{tmp_path / 'central.db'}")
    with engine.connect() as conn:
        held = conn.execute(text("SELECT id, counter_id FROM central_sales")).all()
    engine.dispose()
    assert sorted(held) == sorted((sid, cid) for cid, ids in sold.items() for sid in ids)
    # each counter learnt the central system's answer for its own remote payments
    db = create_engine(
        shared_url.replace("postgresql://", "postgresql+psycopg://")
        if shared_url.startswith("postgresql")
        else shared_url
    )
    with db.connect() as conn:
        statuses = dict(conn.execute(text("SELECT id, remote_status FROM sales")).all())
        keys = set(conn.scalars(text("SELECT key FROM settings WHERE key LIKE 'sync.%'")))
    db.dispose()
    assert {statuses[s] for ids in sold.values() for s in ids} == {"issued"}
    for cid in TELLERS:
        assert {f"sync.last_success@{cid}", f"sync.audit_acked_seq@{cid}"} <= keys


def _env(home: Path) -> dict[str, str]:

    env = child_env(CARDVEND_HOME=str(home), CARDVEND_LANG="en")
    return env
