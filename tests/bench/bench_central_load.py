"""Load and scale of the reference central server: 2,000 counters against one server on
PostgreSQL (issue 16, "Load and scale").

Each simulated counter registers (enrolment key), then runs sync rounds at a counter's rhythm
(one every ``--interval`` seconds, jittered): it pushes its pending sales in batches of at most
500 (``POST /sales/batch`` with an Idempotency-Key, the same key again after an error, as the
outbox does), then pulls its deltas (tariffs, its office's customers, its remote purchases, its
office's jobs) from its cursors.  Sales accrue at ``--rate`` sales/s over all counters; a share
of them (``--big-share``) arrives as 500-sale backlogs (a counter back from an outage), so that
500-sale batches run all through the window.  The sales are valid for the contract: customers of
the counter's office, amount = arrears + fees + credit, card purchase counts that follow, the
open arrears items settled by their ref, remote payments for remote meters.

Measured over the sustained window (``--seconds``): sale records applied per second (the
``central_sales`` count at the window's start and end), sync rounds per second, p50/p99 of the
pulls and of 500-sale batches, errors, the CPU of the server, of the load generator and of
PostgreSQL.  Then the counters push what is still pending (drain) and the run checks that every
sale generated is held exactly once, that no other sale is, that no sale was refused or flagged
for review, and that the customers' purchase counts equal the number of completed card sales.

The server runs as a child (``main.py central serve --port 0 --db <PG schema> --no-seed
--enrolment-key K [--workers N]``) on a fresh PostgreSQL schema seeded from this process and
dropped after the run.  ``--baseline-rev REV`` runs the same load against the server of git
revision REV (its tree exported with ``git archive`` into a temporary folder, started with this
venv's Python) to give the ratio to the old standard-library server.

The load generator is locust used as a library (gevent, ``FastHttpUser`` on geventhttpclient):
one OS process, one greenlet per counter, a keep-alive connection each.  It runs in a child
process of its own because importing locust monkey-patches the whole interpreter (threads,
sockets), which the other benchmarks of ``tests.bench.run`` must not get.  Its CPU time and the
lag of its event loop are reported with every run: a loop lag of more than a few ms or a CPU near
one core would mean the generator, not the server, sets the pace.

    python -m tests.bench.bench_central_load [--counters 2000] [--seconds 60] [--workers 1,2,4]
        [--baseline-rev REV] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.bench.common import ROOT, child_env, emit, percentile, progress, rounded

PG_URL = os.environ.get("CARDVEND_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
ENROLMENT_KEY = "bench-load-enrolment-key"
FULL_COUNTERS, FULL_SECONDS = 2000, 60.0
QUICK_COUNTERS, QUICK_SECONDS = 200, 10.0
COUNTERS_PER_OFFICE = 20
CUSTOMERS_PER_COUNTER = 25  # each counter sells to its own customers: purchase counts follow
BIG_BATCH = 500
TARGET_RATE = 2000.0  # sale records applied per second
TARGET_P99_BIG_MS = 500.0
# the last revision whose central server is the standard-library ThreadingHTTPServer
BASELINE_REV = "20dc5726ad9379ec6573620a4035fac7bdc5b924"
FIRST_CUSTOMER = 700_000_000_001
FIRST_METER = 800_000_000_001


@dataclass
class LoadConfig:
    url: str
    counters: int
    seconds: float
    rate: float  # sales offered per second, all counters together
    big_share: float  # the share of the sales that arrive as 500-sale backlogs
    interval: float  # seconds between the rounds of one counter
    spawn_rate: float  # counters started per second
    customers_cursor: int  # where the counters' customer pulls start (synced before the run)
    ids_file: str
    seed: int = 16
    drain_s: float = 180.0


# --------------------------------------------------------------------------- the data


def office_code(office: int) -> str:
    return f"LOAD{office:03d}"


def counter_id(n: int) -> str:
    return f"LC{n:05d}"


def customer_no(n: int, k: int) -> str:
    """The k-th customer of counter n (counters of one office share the office's archive)."""
    return f"{FIRST_CUSTOMER + n * CUSTOMERS_PER_COUNTER + k:012d}"


def seed_archive(url: str, counters: int) -> int:
    """The offices' customers (each counter's own, in its office) and the demo tariff plans;
    answers the customers stream's last seq (where the counters' pulls start)."""
    from sync.central.seed import seed_tariffs
    from sync.central.store import CentralStore

    store = CentralStore(url)
    try:
        seed_tariffs(store)
        offices = (counters + COUNTERS_PER_OFFICE - 1) // COUNTERS_PER_OFFICE
        for office in range(offices):
            first = office * COUNTERS_PER_OFFICE
            n = min(COUNTERS_PER_OFFICE, counters - first) * CUSTOMERS_PER_COUNTER
            start = FIRST_CUSTOMER + first * CUSTOMERS_PER_COUNTER
            store.add_customers(_office_customers(n, start, office_code(office)))
        return store.last_seq("customers")
    finally:
        store.dispose()


def _office_customers(n: int, start: int, office: str) -> Iterator[dict[str, Any]]:
    from sync.central.seed import synthetic_customers

    for row in synthetic_customers(n, start, office_code=office):
        row["meter_no"] = f"{FIRST_METER + int(row['customer_no']) - FIRST_CUSTOMER:012d}"
        yield row


@dataclass(slots=True)
class Cust:
    no: str
    plan: str
    remote: bool
    ref: str | None  # its open arrears item (settled by its first completed sale)
    count: int = 0  # the card's purchase count, as this counter knows it


def counter_customers(n: int) -> list[Cust]:
    """Counter n's customers as the seeded archive holds them (see seed.synthetic_customers:
    the i-th of an office is remote every 10th, owes 30 yuan every 25th, plans cycle)."""
    from app.services import demo

    plans = tuple(demo.PLANS)
    office_first = (n // COUNTERS_PER_OFFICE) * COUNTERS_PER_OFFICE * CUSTOMERS_PER_COUNTER
    out = []
    for k in range(CUSTOMERS_PER_COUNTER):
        i = n * CUSTOMERS_PER_COUNTER + k - office_first  # its index in the office
        no = customer_no(n, k)
        out.append(
            Cust(
                no=no,
                plan=plans[i % len(plans)],
                remote=(i + 1) % 10 == 0,
                ref=f"SYN-A-{no}" if i % 25 == 0 else None,
            )
        )
    return out


# --------------------------------------------------------------------------- the generator


def generate(cfg: LoadConfig) -> None:
    """The load generator (a child process): prints phase lines (JSON) on stdout and writes
    every sale id it made to ``cfg.ids_file``."""
    import resource

    import gevent
    from locust import FastHttpUser, events, task
    from locust.env import Environment

    per_counter = cfg.rate * (1 - cfg.big_share) / cfg.counters  # small sales per second
    big_per_round = cfg.rate * cfg.big_share * cfg.interval / (BIG_BATCH * cfg.counters)
    lat: dict[str, list[float]] = {}
    state: dict[str, Any] = {
        "registered": 0,
        "unregistered": 0,
        "measuring": False,
        "draining": False,
        "rounds": 0,
        "errors": 0,
        "error_samples": [],
        "reviews": 0,
        "sent_sales": 0,
    }
    made_ids: list[str] = []
    pending_total = [0]
    next_n = iter(range(cfg.counters))

    def say(record: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    def error(what: str) -> None:
        state["errors"] += 1
        if len(state["error_samples"]) < 10:
            state["error_samples"].append(what[:300])

    def timed(name: str, seconds: float) -> None:
        if state["measuring"]:
            lat.setdefault(name, []).append(seconds)

    class Counter(FastHttpUser):  # type: ignore[misc]
        host = cfg.url
        network_timeout = 120.0
        connection_timeout = 60.0
        max_retries = 0
        insecure = True

        def wait_time(self) -> float:
            return self._rng.uniform(0.8, 1.2) * cfg.interval

        def on_start(self) -> None:
            self.n = next(next_n)
            self._rng = random.Random(cfg.seed * 100_003 + self.n)
            self.cid = counter_id(self.n)
            self.office = office_code(self.n // COUNTERS_PER_OFFICE)
            self.custs = counter_customers(self.n)
            self.shift = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            self.pending: list[tuple[str, str]] = []  # (id, JSON body)
            self.cursors = {
                "tariffs": 0,
                "customers": cfg.customers_cursor,
                "remote-purchases": 0,
                "jobs": 0,
            }
            self.last = time.monotonic()
            self.token = self.register()
            self.auth = {"Authorization": f"Bearer {self.token}"}
            self.pull()  # the first round's pulls (from the cursors it had)
            state["registered"] += 1

        def register(self) -> str:
            """Register with the enrolment key; a failed attempt (counted as an error) is
            tried again after a pause, as a counter's administrator would."""
            body = json.dumps({"counter_id": self.cid, "office_code": self.office})
            for attempt in range(8):
                t0 = time.perf_counter()
                with self.client.post(
                    "/api/v1/counters/register",
                    data=body,
                    headers={
                        "Content-Type": "application/json",
                        "X-Enrolment-Key": ENROLMENT_KEY,
                        "Idempotency-Key": uuid.uuid4().hex,
                    },
                    name="register",
                    catch_response=True,
                ) as resp:
                    if resp.status_code == 200:
                        timed("register", time.perf_counter() - t0)
                        return str(json.loads(resp.text)["token"])
                    resp.failure(f"register {resp.status_code}")
                    error(f"register {self.cid}: {resp.status_code} {(resp.text or '')[:200]}")
                gevent.sleep(self._rng.uniform(1, 2) * 2**attempt)
            state["unregistered"] += 1
            raise RuntimeError(f"{self.cid} could not register")

        # ---------------------------------------------------------------- sales

        def sale(self, now: str) -> tuple[str, str]:
            r = self._rng
            cust = self.custs[r.randrange(len(self.custs))]
            sid = str(uuid.UUID(int=r.getrandbits(128), version=4))
            failed = r.random() < 0.02
            credit = r.randrange(1000, 50_000, 100)
            arrears, refs = 0, "[]"
            if cust.ref is not None and not failed:
                arrears, refs = 3000, f'["{cust.ref}"]'
                cust.ref = None
            amount = arrears + credit
            if cust.remote:
                kind, count, serial = "remote", "null", "null"
            else:
                kind, serial = "card", f'"CS{cust.no}"'
                count = str(cust.count + 1)
                if not failed:
                    cust.count += 1
            body = (
                f'{{"id":"{sid}","kind":"{kind}",'
                f'"state":"{"failed" if failed else "completed"}",'
                f'"customer_no":"{cust.no}","purchase_count":{count},"amount":{amount},'
                f'"arrears":{arrears},"fees":0,"credit":{credit},"energy_wh":{credit * 2},'
                f'"tariff_plan":"{cust.plan}","tariff_version_no":1,"settled_refs":{refs},'
                f'"operator_id":"T01","counter_id":"{self.cid}","office_code":"{self.office}",'
                f'"shift_id":"{self.shift}","card_serial":{serial},'
                f'"cash_received":{amount},"created_at":"{now}"}}'
            )
            made_ids.append(sid)
            return sid, body

        def accrue(self) -> None:
            t = time.monotonic()
            elapsed, self.last = t - self.last, t
            if state["draining"]:
                return
            expect = per_counter * elapsed
            n = int(expect) + (1 if self._rng.random() < expect - int(expect) else 0)
            if self._rng.random() < big_per_round:
                n += BIG_BATCH
            now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
            for _ in range(n):
                self.pending.append(self.sale(now))
            pending_total[0] += n

        def push(self) -> None:
            while self.pending:
                batch = self.pending[:BIG_BATCH]
                ids = [sid for sid, _ in batch]
                key = hashlib.sha256(("/sales/batch\n" + "\n".join(ids)).encode()).hexdigest()
                body = '{"items":[' + ",".join(b for _, b in batch) + "]}"
                name = "push 500" if len(batch) == BIG_BATCH else "push <500"
                t0 = time.perf_counter()
                with self.client.post(
                    "/api/v1/sales/batch",
                    data=body,
                    headers={
                        **self.auth,
                        "Content-Type": "application/json",
                        "Idempotency-Key": key[:48],
                    },
                    name=name,
                    catch_response=True,
                ) as resp:
                    took = time.perf_counter() - t0
                    if resp.status_code != 200:
                        resp.failure(f"{resp.status_code}")
                        error(f"{name} {self.cid}: {resp.status_code} {(resp.text or '')[:200]}")
                        return  # the batch stays pending: the next round sends it again
                    results = json.loads(resp.text)["results"]
                    bad = [r for r in results if r["status"] not in ("created", "duplicate")]
                    state["reviews"] += sum(1 for r in results if r.get("review"))
                    if bad or len(results) != len(batch):
                        resp.failure("refused items")
                        error(f"{name} {self.cid}: {len(bad)} refused, first {bad[:1]}")
                timed(name, took)
                timed("push", took)
                del self.pending[: len(batch)]
                pending_total[0] -= len(batch)
                state["sent_sales"] += len(batch)

        # ---------------------------------------------------------------- pulls

        def pull(self) -> None:
            for pulled, limit in (
                ("tariffs", 1000),
                ("customers", 1000),
                ("remote-purchases", 1000),
                ("jobs", 1000),
            ):
                while True:
                    t0 = time.perf_counter()
                    with self.client.get(
                        f"/api/v1/{pulled}?after={self.cursors[pulled]}&limit={limit}",
                        headers=self.auth,
                        name=f"pull {pulled}",
                        catch_response=True,
                    ) as resp:
                        took = time.perf_counter() - t0
                        if resp.status_code != 200:
                            resp.failure(f"{resp.status_code}")
                            error(f"pull {pulled} {self.cid}: {resp.status_code}")
                            return
                        page = json.loads(resp.text)
                    timed(f"pull {pulled}", took)
                    timed("pull", took)
                    self.cursors[pulled] = page["next_cursor"]
                    if not page["has_more"]:
                        break

        @task
        def round(self) -> None:
            self.accrue()
            self.push()
            self.pull()
            if state["measuring"]:
                state["rounds"] += 1

    env = Environment(user_classes=[Counter], events=events)
    runner = env.create_local_runner()
    lags: list[float] = []

    def watch_loop() -> None:
        while True:
            t0 = time.perf_counter()
            gevent.sleep(0.05)
            lags.append(time.perf_counter() - t0 - 0.05)

    watcher = gevent.spawn(watch_loop)
    t_start = time.monotonic()
    runner.start(cfg.counters, spawn_rate=cfg.spawn_rate)
    while state["registered"] + state["unregistered"] < cfg.counters:
        if time.monotonic() - t_start > cfg.counters / cfg.spawn_rate + 600:
            break
        gevent.sleep(0.2)
    spawn_s = time.monotonic() - t_start
    say({"phase": "registered", "counters": state["registered"], "seconds": spawn_s})
    registered = state["registered"]
    gevent.sleep(cfg.interval * 1.2)  # every counter into its rhythm
    lags.clear()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    state["measuring"] = True
    t0 = time.monotonic()
    say({"phase": "window_start", "t": time.time()})
    gevent.sleep(cfg.seconds)
    state["measuring"] = False
    window = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    say({"phase": "window_end", "t": time.time()})
    cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / window
    window_lags = list(lags)
    window_state = dict(state)
    # drain: no new sales, the counters push what is pending
    state["draining"] = True
    t_drain = time.monotonic()
    while pending_total[0] > 0 and time.monotonic() - t_drain < cfg.drain_s:
        gevent.sleep(0.5)
    drain_s = time.monotonic() - t_drain
    runner.quit()
    watcher.kill()
    Path(cfg.ids_file).write_text("\n".join(made_ids), encoding="utf-8")

    def pcts(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"n": 0}
        return {
            "n": len(values),
            "p50_ms": rounded(percentile(values, 50) * 1000, 1),
            "p99_ms": rounded(percentile(values, 99) * 1000, 1),
            "max_ms": rounded(max(values) * 1000, 1),
        }

    say(
        {
            "phase": "done",
            "window_s": rounded(window, 2),
            "spawn_s": rounded(spawn_s, 1),
            "registered": registered,
            "rounds": window_state["rounds"],
            "errors_window": window_state["errors"],
            "errors": state["errors"],
            "error_samples": state["error_samples"],
            "reviews": state["reviews"],
            "made": len(made_ids),
            "left_pending": pending_total[0],
            "drain_s": rounded(drain_s, 1),
            "latency": {name: pcts(v) for name, v in sorted(lat.items())},
            "generator_cpu": rounded(cpu, 2),
            "loop_lag_p99_ms": rounded(percentile(window_lags, 99) * 1000, 1)
            if window_lags
            else None,
            "loop_lag_max_ms": rounded(max(window_lags) * 1000, 1) if window_lags else None,
        }
    )


# --------------------------------------------------------------------------- the orchestrator


@contextmanager
def pg_schema() -> Iterator[tuple[str, Any]]:
    """A fresh PostgreSQL schema (dropped afterwards): the server's URL and an engine on it."""
    from sqlalchemy import text

    from app.persistence.db import make_engine

    schema = "load_" + uuid.uuid4().hex[:10]
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL.replace('postgresql://', 'postgresql+psycopg://', 1)}"
    url += f"?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    try:
        yield url, engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def pg_reachable() -> bool:
    from sqlalchemy import text

    from app.persistence.db import make_engine

    engine = make_engine(PG_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def server_accepts_workers(cwd: Path) -> bool:
    r = subprocess.run(
        [sys.executable, "main.py", "central", "serve", "--help"],
        cwd=cwd,
        env=child_env(Path(tempfile.gettempdir())),
        capture_output=True,
        text=True,
    )
    return "--workers" in r.stdout


@contextmanager
def exported(rev: str) -> Iterator[Path]:
    """The tree of git revision ``rev`` in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="cardvend-rev-") as tmp:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


class Server:
    def __init__(self, cwd: Path, url: str, workers: int | None, home: Path) -> None:
        cmd = [sys.executable, "main.py", "central", "serve", "--port", "0", "--db", url]
        cmd += ["--no-seed", "--enrolment-key", ENROLMENT_KEY]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        self.log = (home / "server.log").open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=child_env(home),
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "central listening on" not in line:
            self.stop()
            raise RuntimeError(
                f"the central server did not start: {line!r}; see {home / 'server.log'}"
            )
        self.url = line.split("central listening on", 1)[1].strip()

    def cpu_seconds(self) -> float:
        import psutil

        try:
            proc = psutil.Process(self.proc.pid)
            total = 0.0
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
            return total
        except psutil.NoSuchProcess:
            return 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def postgres_cpu_seconds() -> float:
    import psutil

    total = 0.0
    for p in psutil.process_iter(["name"]):
        if p.info["name"] in ("postgres", "postmaster"):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def _count(engine: Any) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM central_sales")).scalar_one())


def _verify(engine: Any, ids_file: Path) -> dict[str, Any]:
    from sqlalchemy import text

    made = ids_file.read_text(encoding="utf-8").split()
    with engine.connect() as conn:
        held = list(conn.scalars(text("SELECT id FROM central_sales")))
        reviews = int(
            conn.execute(
                text("SELECT count(*) FROM central_sales WHERE review IS NOT NULL")
            ).scalar_one()
        )
        refusals = int(conn.execute(text("SELECT count(*) FROM central_refusals")).scalar_one())
        card_sales = int(
            conn.execute(
                text(
                    "SELECT count(*) FROM central_sales WHERE kind = 'card' AND state = 'completed'"
                )
            ).scalar_one()
        )
        counts = int(
            conn.execute(
                text("SELECT coalesce(sum(purchase_count), 0) FROM central_customers")
            ).scalar_one()
        )
    made_set, held_set = set(made), set(held)
    return {
        "made": len(made),
        "held": len(held),
        "missing": len(made_set - held_set),
        "unexpected": len(held_set - made_set),
        "doubled": (len(held) - len(held_set)) + (len(made) - len(made_set)),
        "reviews": reviews,
        "refusals": refusals,
        "purchase_counts_match": counts == card_sales,
    }


def run_one(
    *,
    label: str,
    cwd: Path,
    workers: int | None,
    counters: int,
    seconds: float,
    rate: float,
    big_share: float,
    interval: float,
    work: Path,
) -> dict[str, Any]:
    home = work / label
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    with pg_schema() as (url, engine):
        progress(f"[{label}] seeding {counters:,} counters' customers...")
        cursor = seed_archive(url, counters)
        server = Server(cwd, url, workers, home)
        progress(f"[{label}] server at {server.url}; {counters:,} counters registering...")
        cfg = LoadConfig(
            url=server.url,
            counters=counters,
            seconds=seconds,
            rate=rate,
            big_share=big_share,
            interval=interval,
            spawn_rate=max(50.0, counters / 20),
            customers_cursor=cursor,
            ids_file=str(home / "ids.txt"),
        )
        gen = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.bench_central_load", "--generate"],
            cwd=ROOT,
            env={**child_env(home), "BENCH_LOAD_CONFIG": json.dumps(asdict(cfg))},
            stdout=subprocess.PIPE,
            stderr=(home / "generator.log").open("w", encoding="utf-8"),
            text=True,
        )
        assert gen.stdout is not None
        marks: dict[str, tuple[float, int, float, float]] = {}
        done: dict[str, Any] = {}
        try:
            for line in gen.stdout:
                msg = json.loads(line)
                phase = msg["phase"]
                if phase in ("window_start", "window_end"):
                    marks[phase] = (
                        time.monotonic(),
                        _count(engine),
                        server.cpu_seconds(),
                        postgres_cpu_seconds(),
                    )
                    progress(f"[{label}] {phase}")
                elif phase == "registered":
                    progress(f"[{label}] {msg['counters']:,} registered in {msg['seconds']:.1f} s")
                elif phase == "done":
                    done = msg
            gen.wait()
        finally:
            if gen.poll() is None:
                gen.kill()
            server.stop()
        if not done or "window_end" not in marks:
            raise RuntimeError(f"the load generator failed; see {home / 'generator.log'}")
        progress(f"[{label}] verifying...")
        check = _verify(engine, Path(cfg.ids_file))
    (t0, n0, s0, p0), (t1, n1, s1, p1) = marks["window_start"], marks["window_end"]
    span = t1 - t0
    applied = (n1 - n0) / span
    big = done["latency"].get("push 500", {"n": 0})
    pull = done["latency"].get("pull", {"n": 0})
    intact = (
        check["missing"] == 0
        and check["unexpected"] == 0
        and check["doubled"] == 0
        and check["refusals"] == 0
        and check["reviews"] == 0
        and check["purchase_counts_match"]
        and done["left_pending"] == 0
    )
    ok = (
        applied >= TARGET_RATE
        and big.get("n", 0) > 0
        and big["p99_ms"] <= TARGET_P99_BIG_MS
        and done["errors"] == 0
        and intact
    )
    return emit(
        {
            "bench": "central_load",
            "server": label,
            "workers": workers,
            "counters": counters,
            "window_s": rounded(span, 1),
            "offered_sales_per_s": rate,
            "applied_sales_per_s": round(applied),
            "rounds_per_s": rounded(done["rounds"] / done["window_s"], 1),
            "pull_p50_ms": pull.get("p50_ms"),
            "pull_p99_ms": pull.get("p99_ms"),
            "batch500_n": big.get("n", 0),
            "batch500_p50_ms": big.get("p50_ms"),
            "batch500_p99_ms": big.get("p99_ms"),
            "latency": done["latency"],
            "errors": done["errors"],
            "errors_in_window": done["errors_window"],
            "error_samples": done["error_samples"],
            "register_s": done["spawn_s"],
            "drain_s": done["drain_s"],
            "left_pending": done["left_pending"],
            "check": check,
            "intact": intact,
            "cpu_cores": {
                "server": rounded((s1 - s0) / span, 2),
                "postgres": rounded((p1 - p0) / span, 2),
                "generator": done["generator_cpu"],
            },
            "generator_loop_lag_p99_ms": done["loop_lag_p99_ms"],
            "target": (
                f">= {TARGET_RATE:.0f} sales/s applied, p99 of a 500-sale batch <= "
                f"{TARGET_P99_BIG_MS:.0f} ms, no error, nothing lost or doubled"
            ),
            "ok": ok,
        }
    )


# --------------------------------------------------------------------------- profile


def profile_batch(batches: int = 20, top: int = 25) -> dict[str, Any]:
    """Where the server's time goes on a 500-sale batch: the whole request handling in process
    (CentralApp.handle: validation, hashing, the store's transaction, the answer), no socket,
    under cProfile; the top functions by own time and by cumulative time."""
    import cProfile
    import pstats
    from email.message import Message

    from sync.central.faults import FaultInjector
    from sync.central.server import CentralApp, Request
    from sync.central.store import CentralStore

    with pg_schema() as (url, _engine):
        cursor = seed_archive(url, COUNTERS_PER_OFFICE)
        del cursor
        store = CentralStore(url, enrolment_key=ENROLMENT_KEY)
        from sync import contract as c
        from sync.central.enrol import Credentials

        app = CentralApp(store, faults=FaultInjector())
        token = store.register(
            c.RegisterRequest(counter_id=counter_id(0), office_code=office_code(0)),
            Credentials(enrolment_key=ENROLMENT_KEY),
        ).token
        custs = counter_customers(0)
        rng = random.Random(1)
        shift = str(uuid.uuid4())
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())

        def body() -> tuple[bytes, str]:
            items = []
            for _ in range(BIG_BATCH):
                cust = custs[rng.randrange(len(custs))]
                credit = rng.randrange(1000, 50_000, 100)
                arrears, refs = (3000, [cust.ref]) if cust.ref else (0, [])
                cust.ref = None
                if not cust.remote:
                    cust.count += 1
                items.append(
                    {
                        "id": str(uuid.uuid4()),
                        "kind": "remote" if cust.remote else "card",
                        "state": "completed",
                        "customer_no": cust.no,
                        "purchase_count": None if cust.remote else cust.count,
                        "amount": arrears + credit,
                        "arrears": arrears,
                        "fees": 0,
                        "credit": credit,
                        "energy_wh": credit * 2,
                        "tariff_plan": cust.plan,
                        "tariff_version_no": 1,
                        "settled_refs": refs,
                        "operator_id": "T01",
                        "counter_id": counter_id(0),
                        "office_code": office_code(0),
                        "shift_id": shift,
                        "card_serial": None if cust.remote else f"CS{cust.no}",
                        "cash_received": arrears + credit,
                        "created_at": now,
                    }
                )
            return json.dumps({"items": items}).encode(), uuid.uuid4().hex

        def request(data: bytes, key: str) -> Request:
            headers = Message()
            headers["Authorization"] = f"Bearer {token}"
            headers["Content-Type"] = "application/json"
            headers["Idempotency-Key"] = key
            return Request("POST", "/api/v1/sales/batch", {}, headers, lambda: data)

        bodies = [body() for _ in range(batches + 2)]
        for data, key in bodies[:2]:  # warm up
            assert app.handle(request(data, key)).status == 200
        prof = cProfile.Profile()
        times = []
        for data, key in bodies[2:]:
            req = request(data, key)
            t0 = time.perf_counter()
            prof.enable()
            answer = app.handle(req)
            prof.disable()
            times.append(time.perf_counter() - t0)
            assert answer.status == 200, answer.body[:300]
        store.dispose()
    stats = pstats.Stats(prof)
    total = sum(times)

    def rows(key: str) -> list[dict[str, Any]]:
        entries = stats.stats  # type: ignore[attr-defined]
        ordered = sorted(entries.items(), key=lambda kv: kv[1][2 if key == "tottime" else 3])
        out = []
        for (file, line, func), (_cc, nc, tt, ct, _callers) in reversed(ordered[-top:]):
            where = file.replace(str(ROOT) + "/", "")
            if "site-packages/" in where:
                where = where.split("site-packages/", 1)[1]
            out.append(
                {
                    "function": f"{where}:{line}:{func}",
                    "calls": nc,
                    "own_ms_per_batch": rounded(tt * 1000 / batches, 2),
                    "cum_ms_per_batch": rounded(ct * 1000 / batches, 2),
                }
            )
        return out

    return emit(
        {
            "bench": "central_load_profile",
            "batches": batches,
            "batch_size": BIG_BATCH,
            "ms_per_batch_profiled": rounded(total * 1000 / batches, 1),
            "by_own_time": rows("tottime"),
            "by_cumulative_time": rows("cumtime"),
            "target": "information for the rewrite (no target)",
            "ok": True,
        }
    )


# --------------------------------------------------------------------------- entry points


def run(
    *,
    counters: int = FULL_COUNTERS,
    seconds: float = FULL_SECONDS,
    workers: tuple[int, ...] = (1, 2, 4),
    baseline_rev: str | None = None,
    rate: float | None = None,
    big_share: float = 1 / 3,
    interval: float = 5.0,
    data_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """The load runs against this tree's server for each worker count (skipped, with the
    reason, when it has no ``--workers``), then against ``baseline_rev``'s server."""
    work = (data_dir or ROOT / "bench-data") / "central-load"
    work.mkdir(parents=True, exist_ok=True)
    # the offered load: the target's rate for the full 2,000 counters plus a fifth, scaled
    offered = rate if rate is not None else TARGET_RATE * 1.2 * counters / FULL_COUNTERS
    common = {
        "counters": counters,
        "seconds": seconds,
        "rate": offered,
        "big_share": big_share,
        "interval": interval,
        "work": work,
    }
    if not pg_reachable():
        return [
            emit(
                {
                    "bench": "central_load",
                    "skipped": f"no PostgreSQL server at {PG_URL}",
                    "target": "a PostgreSQL server to measure against",
                    "ok": False,
                }
            )
        ]
    out = []
    multi = server_accepts_workers(ROOT)
    for n in workers:
        if not multi and n != 1:
            out.append(
                emit(
                    {
                        "bench": "central_load",
                        "server": "worktree",
                        "workers": n,
                        "skipped": "this tree's 'central serve' has no --workers option",
                        "target": "a server that runs several workers",
                        "ok": False,
                    }
                )
            )
            continue
        out.append(
            run_one(label=f"worktree-w{n}", cwd=ROOT, workers=n if multi else None, **common)
        )
    if baseline_rev:
        with exported(baseline_rev) as tree:
            rec = run_one(label=f"baseline-{baseline_rev[:10]}", cwd=tree, workers=None, **common)
        out.append(rec)
        mine = [r for r in out[:-1] if "applied_sales_per_s" in r]
        if mine and rec["applied_sales_per_s"]:
            best = max(mine, key=lambda r: r["applied_sales_per_s"])
            out.append(
                emit(
                    {
                        "bench": "central_load_ratio",
                        "baseline_rev": baseline_rev,
                        "best": best["server"],
                        "applied_ratio": rounded(
                            best["applied_sales_per_s"] / rec["applied_sales_per_s"], 2
                        ),
                        "batch500_p99_ratio": rounded(
                            rec["batch500_p99_ms"] / best["batch500_p99_ms"], 2
                        )
                        if rec.get("batch500_p99_ms") and best.get("batch500_p99_ms")
                        else None,
                        "target": "information (the new server against the old one)",
                        "ok": True,
                    }
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="200 counters for 10 s, one worker")
    p.add_argument("--counters", type=int)
    p.add_argument("--seconds", type=float)
    p.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    p.add_argument("--baseline-rev", help=f"also run the server of this git revision "
                   f"(e.g. {BASELINE_REV[:7]}, the standard-library server)")  # fmt: skip
    p.add_argument("--baseline-only", action="store_true", help="only the baseline run")
    p.add_argument("--rate", type=float, help="sales offered per second (all counters)")
    p.add_argument("--big-share", type=float, default=1 / 3)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between rounds")
    p.add_argument("--profile", action="store_true", help="profile a 500-sale batch instead")
    a = p.parse_args(argv)
    if a.generate:
        generate(LoadConfig(**json.loads(os.environ["BENCH_LOAD_CONFIG"])))
        return 0
    if a.profile:
        profile_batch()
        return 0
    counters = a.counters or (QUICK_COUNTERS if a.quick else FULL_COUNTERS)
    seconds = a.seconds or (QUICK_SECONDS if a.quick else FULL_SECONDS)
    workers = tuple(int(w) for w in a.workers.split(",") if w.strip())
    if a.quick and a.workers == "1,2,4":
        workers = (1,)
    run(
        counters=counters,
        seconds=seconds,
        workers=() if a.baseline_only else workers,
        baseline_rev=a.baseline_rev,
        rate=a.rate,
        big_share=a.big_share,
        interval=a.interval,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
