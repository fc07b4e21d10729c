"""Benchmarks of sync with the reference central server (run in its own process, over HTTP).

1. ``sync_initial_pull``: a counter with nothing but the demo data runs its first ``cardvend
   sync`` (a child process) against a central archive of N synthetic customers (1,000,000 by
   default; the central database is built once into the bench data folder and each run works on
   a copy). Targets for 1,000,000: at most 90 s and a peak RSS of the counter process of at most
   200 MB (measured: 99 MB and 75 s; 139 MB with 5,000-customer pages before, same time).
2. ``sync_push``: 10,000 settled sales waiting in the outbox are pushed in batches (500 per
   request); then the same number of other sales one request per sale. Targets: batches at most
   10 s and at least 10 times faster than one request per sale. ``--single-sample K`` times
   only K sales one by one and scales the figure up (marked ``extrapolated``).
3. ``sync_random``: the randomized exactly-once run of tests/test_sync_random.py with 10,000
   rounds (``--rounds``), reported with its wall time.
4. ``sync_random_two_servers``: the same rounds against two ``central serve`` processes on one
   PostgreSQL (tests/test_central_multi.py), the counter alternating between them; a fifth of
   ``--rounds``.  Skipped (``ok: false``) without a PostgreSQL server.
5. ``sync_push_tls``: one round of 500 sales pushed in one batch over HTTPS and over HTTP (the
   in-process server; the median of 9, interleaved), so TLS's cost is one figure.

    python -m tests.bench.bench_sync [--customers N] [--sales N] [--rounds N] [--data-dir DIR]
        [--only pull|push|random|random2|tls]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.bench.common import DEFAULT_DATA_DIR
from tests.bench.common import FULL_ROWS
from tests.bench.common import ROOT
from tests.bench.common import RUSAGE_LAUNCHER
from tests.bench.common import child_env
from tests.bench.common import emit
from tests.bench.common import maxrss_to_mb
from tests.bench.common import progress
from tests.bench.common import rounded
from tests.rigs.central_process import CentralProcess
from tests.rigs.sale_rows import sale_row

PULL_TARGET_S_PER_MILLION = 90.0
PULL_TARGET_RSS_MB = 200.0
PUSH_TARGET_S = 10.0
PUSH_TARGET_SPEEDUP = 10.0
CENTRAL_SCHEMA = 3  # bump when sync/central/models.py changes: the cached archive is rebuilt


def central_db(data_dir: Path, customers: int) -> Path:
    """The central database with ``customers`` synthetic customers (built once)."""
    path = data_dir / f"central-v{CENTRAL_SCHEMA}-{customers}.db"
    marker = path.with_suffix(".done")
    if path.exists() and marker.exists():
        return path
    path.unlink(missing_ok=True)
    progress(f"building the central archive of {customers:,} customers (once)...")
    t0 = time.perf_counter()
    from sync.central.seed import seed_demo
    from sync.central.seed import seed_synthetic
    from sync.central.store import CentralStore

    store = CentralStore(f"sqlite:///{path}")
    import datetime as dt

    seed_demo(store, dt.datetime.now(dt.UTC))
    seed_synthetic(store, customers)
    store.dispose()
    marker.write_text(json.dumps({"customers": customers}), encoding="utf-8")
    progress(f"  built in {time.perf_counter() - t0:.1f} s")
    return path


def central_process(db: Path, home: Path) -> CentralProcess:
    """``central serve`` on the SQLite database ``db`` as it is (no demo seed)."""
    return CentralProcess(home, "--db", f"sqlite:///{db}", "--no-seed")


def _cv(
    home: Path, *args: str, measure: bool = False, env: dict[str, str] | None = None
) -> tuple[float, float | None]:
    """Run ``main.py ARGS`` in a child; its wall time and (``measure``) its own peak RSS."""
    usage = home / "rusage.json"
    cmd = [sys.executable, "main.py", *args]
    if measure:
        cmd = [sys.executable, "-c", RUSAGE_LAUNCHER, str(usage), *args]
    t0 = time.perf_counter()
    r = subprocess.run(
        cmd, cwd=ROOT, env={**child_env(home), **(env or {})}, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"main.py {' '.join(args)} failed: {r.stderr[-2000:]}")
    if not measure:
        return elapsed, None
    ru = json.loads(usage.read_text(encoding="utf-8"))
    return elapsed, maxrss_to_mb(int(ru["ru_maxrss"]))


def bench_pull(customers: int, data_dir: Path) -> dict[str, Any]:
    db = central_db(data_dir, customers)
    home = data_dir / f"sync-home-{customers}"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    # the run registers a counter and records its audit heads: on a copy, so that the cached
    # archive stays as built and every run starts from the same central state
    work_db = home / "central.db"
    shutil.copyfile(db, work_db)
    central = central_process(work_db, home)
    try:
        _cv(home, "demo")
        _cv(
            home,
            "counter",
            "register",
            "--central",
            central.url,
            "--operator",
            "a01",
            env={"CARDVEND_PASSWORD": "demo-a01"},
        )
        progress(f"first sync of {customers:,} customers...")
        elapsed, peak = _cv(home, "sync", "--json", measure=True)
    finally:
        central.stop()
    target_s = PULL_TARGET_S_PER_MILLION * customers / FULL_ROWS
    return emit(
        {
            "bench": "sync_initial_pull",
            "customers": customers,
            "seconds": rounded(elapsed, 2),
            "customers_per_s": round(customers / elapsed),
            "peak_rss_mb": rounded(peak, 1) if peak is not None else None,
            "target": f"<= {target_s:.0f} s, <= {PULL_TARGET_RSS_MB:.0f} MB",
            "ok": elapsed <= target_s and peak is not None and peak <= PULL_TARGET_RSS_MB,
        }
    )


def _fill_outbox(db: Any, n: int, clock: Any) -> None:
    """``n`` settled remote payments with their outbox rows, written straight into the
    ledger tables (the sale flow itself is measured by bench_sale)."""
    from sqlalchemy import insert
    from sqlalchemy import select

    from app.persistence.models import Customer
    from app.persistence.models import OutboxEntry
    from app.persistence.models import Sale
    from app.persistence.models import Shift
    from app.persistence.models import TariffVersion

    now = clock.now()
    with db.write() as session:
        shift_id = session.scalar(select(Shift.id).where(Shift.closed_at.is_(None)))
        customers = session.execute(
            select(Customer.id, Customer.tariff_plan_id).where(Customer.meter_kind == "remote")
        ).all()
        versions = dict(session.execute(select(TariffVersion.plan_id, TariffVersion.id)).all())
        sales, rows = [], []
        for i in range(n):
            cid, plan = customers[i % len(customers)]
            sid = str(uuid.uuid4())
            amount = 1000 + i % 9000
            sales.append(
                sale_row(
                    sid,
                    cid,
                    amount,
                    kind="remote",
                    purchase_count=None,
                    tariff_version_id=versions[plan],
                    shift_id=shift_id,
                    at=now,
                    cash_received=amount,
                    wh_per_fen=10,
                    remote_status="queued",
                )
            )
            rows.append(
                {
                    "kind": "remote",
                    "ref_id": sid,
                    "counter_id": "C01",
                    "payload": {},
                    "amount": amount,
                    "created_at": now,
                    "attempts": 0,
                    "last_error": "",
                }
            )
        session.execute(insert(Sale.__table__), sales)
        session.execute(insert(OutboxEntry.__table__), rows)


def bench_push(sales: int, single_sample: int, data_dir: Path) -> dict[str, Any]:
    import datetime as dt

    from app.clock import FixedClock
    from app.persistence.db import Database
    from app.services import auth
    from app.services import shifts
    from app.services.demo import load_demo
    from sync.client import CentralClient
    from sync.contract import RegisterRequest
    from sync.outbox import push

    work = data_dir / "sync-push"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    central_file = work / "central.db"
    from sync.central.seed import seed_demo
    from sync.central.store import CentralStore

    clock = FixedClock(dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC))
    store = CentralStore(f"sqlite:///{central_file}")
    seed_demo(store, clock.now())
    store.dispose()
    central = central_process(central_file, work)
    try:
        db = Database(str(work / "counter.db"))
        db.migrate()
        load_demo(db, clock)
        teller = auth.login(db, "t01", "demo-t01", counter_id="C01", clock=clock)
        shifts.open_shift(db, actor=teller, float_fen=0, clock=clock)
        client = CentralClient(central.url)
        client.token = client.register(
            RegisterRequest(counter_id="C01", office_code="DEMO"), None
        ).token
        _fill_outbox(db, sales, clock)
        progress(f"pushing {sales:,} sales in batches...")
        t0 = time.perf_counter()
        batched = push(db, client, clock, "DEMO", "C01", batch_size=500)
        batch_s = time.perf_counter() - t0
        assert batched.sent == sales, batched
        sample = min(single_sample, sales)
        _fill_outbox(db, sample, clock)
        progress(f"pushing {sample:,} sales one request each...")
        t0 = time.perf_counter()
        one_by_one = push(db, client, clock, "DEMO", "C01", single=True)
        single_s = (time.perf_counter() - t0) * sales / sample
        assert one_by_one.sent == sample, one_by_one
        client.close()
        db.dispose()
    finally:
        central.stop()
    speedup = single_s / batch_s
    return emit(
        {
            "bench": "sync_push",
            "sales": sales,
            "batch_seconds": rounded(batch_s, 2),
            "batch_requests": batched.requests,
            "single_seconds": rounded(single_s, 2),
            "single_measured_sales": sample,
            "single_extrapolated": sample != sales,
            "speedup": rounded(speedup, 1),
            "target": f"<= {PUSH_TARGET_S:.0f} s and >= {PUSH_TARGET_SPEEDUP:.0f}x",
            "ok": batch_s <= PUSH_TARGET_S and speedup >= PUSH_TARGET_SPEEDUP,
        }
    )


def _pytest_rounds(bench: str, rounds: int, node: str, env_var: str) -> dict[str, Any]:
    env = {**os.environ, env_var: str(rounds), "QT_QPA_PLATFORM": "offscreen"}
    progress(f"{bench}: {rounds:,} rounds...")
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "--timeout", "3600", node],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    skipped = " skipped" in r.stdout and " passed" not in r.stdout
    ok = r.returncode == 0 and not skipped
    return emit(
        {
            "bench": bench,
            "rounds": rounds,
            "seconds": rounded(elapsed, 1),
            "passed": ok,
            **({"skipped": r.stdout[-500:]} if skipped else {}),
            "target": "the central side holds exactly the local sales",
            "ok": ok,
            **({} if r.returncode == 0 else {"output": r.stdout[-1500:]}),
        }
    )


def bench_random(rounds: int) -> dict[str, Any]:
    return _pytest_rounds(
        "sync_random", rounds, "tests/test_sync_random.py", "CARDVEND_SYNC_ROUNDS"
    )


def bench_random_two_servers(rounds: int) -> dict[str, Any]:
    return _pytest_rounds(
        "sync_random_two_servers",
        rounds,
        "tests/test_central_multi.py::test_two_server_processes_on_one_database_exactly_once",
        "CARDVEND_SYNC_MULTI_ROUNDS",
    )


def bench_push_tls(sales: int = 500, repeats: int = 9) -> dict[str, Any]:
    """One round of ``sales`` sales in one batch, over HTTPS and over HTTP (median seconds)."""
    import datetime as dt
    import statistics
    import tempfile

    import trustme

    from app.clock import FixedClock
    from app.persistence.db import Database
    from app.services import auth
    from app.services import shifts
    from app.services.demo import load_demo
    from sync.central.seed import seed_demo
    from sync.central.server import CentralServer
    from sync.client import CentralClient
    from sync.contract import RegisterRequest
    from sync.outbox import push

    clock = FixedClock(dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC))
    with tempfile.TemporaryDirectory(prefix="cardvend-bench-tls-") as tmp:
        work = Path(tmp)
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1")
        ca.cert_pem.write_to_path(str(work / "ca.pem"))
        issued.private_key_pem.write_to_path(str(work / "key.pem"))
        for i, blob in enumerate(issued.cert_chain_pems):
            blob.write_to_path(str(work / "cert.pem"), append=i > 0)
        links: dict[str, tuple[CentralServer, Database, CentralClient]] = {}
        try:
            for mode in ("https", "http"):
                tls = mode == "https"
                server = CentralServer(
                    f"sqlite:///{work / f'central-{mode}.db'}",
                    tls_cert=str(work / "cert.pem") if tls else None,
                    tls_key=str(work / "key.pem") if tls else None,
                )
                seed_demo(server.store, clock.now())
                db = Database(str(work / f"counter-{mode}.db"))
                db.migrate()
                load_demo(db, clock)
                teller = auth.login(db, "t01", "demo-t01", counter_id="C01", clock=clock)
                shifts.open_shift(db, actor=teller, float_fen=0, clock=clock)
                server.start()
                client = CentralClient(server.url, ca_bundle=str(work / "ca.pem") if tls else None)
                links[mode] = (server, db, client)
                client.token = client.register(
                    RegisterRequest(counter_id="C01", office_code="DEMO"), None
                ).token
            times: dict[str, list[float]] = {"https": [], "http": []}
            for i in range(repeats):  # interleaved: the machine's load hits both alike
                for mode in ("https", "http") if i % 2 else ("http", "https"):
                    server, db, client = links[mode]
                    _fill_outbox(db, sales, clock)
                    client.close()  # each round opens its connection (and TLS handshake)
                    t0 = time.perf_counter()
                    report = push(db, client, clock, "DEMO", "C01", batch_size=sales)
                    times[mode].append(time.perf_counter() - t0)
                    assert report.sent == sales, report
            medians = {mode: statistics.median(t) for mode, t in times.items()}
        finally:
            for server, db, client in links.values():
                client.close()
                server.stop()
                db.dispose()
    return emit(
        {
            "bench": "sync_push_tls",
            "sales": sales,
            "https_seconds": rounded(medians["https"], 3),
            "http_seconds": rounded(medians["http"], 3),
            "tls_ratio": rounded(medians["https"] / medians["http"], 2),
            "target": "HTTPS within 1.5x of HTTP for a 500-sale round",
            "ok": medians["https"] <= 1.5 * medians["http"],
        }
    )


def run(
    customers: int,
    data_dir: Path,
    *,
    sales: int = 10_000,
    single_sample: int = 10_000,
    rounds: int = 10_000,
    only: str | None = None,
) -> list[dict[str, Any]]:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    out = []
    if only in (None, "pull"):
        out.append(bench_pull(customers, data_dir))
    if only in (None, "push"):
        out.append(bench_push(sales, single_sample, data_dir))
    if rounds and only in (None, "random"):
        out.append(bench_random(rounds))
    if rounds and only in (None, "random2"):
        out.append(bench_random_two_servers(max(rounds // 5, 100)))
    if only in (None, "tls"):
        out.append(bench_push_tls())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=FULL_ROWS)
    p.add_argument("--sales", type=int, default=10_000)
    p.add_argument("--single-sample", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=10_000)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument(
        "--only",
        choices=("pull", "push", "random", "random2", "tls"),
        help="run one of them (random2: the two-server rounds)",
    )
    a = p.parse_args(argv)
    run(
        a.customers,
        a.data_dir,
        sales=a.sales,
        single_sample=a.single_sample,
        rounds=a.rounds,
        only=a.only,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
