"""The load generator of :mod:`tests.bench.bench_central_load`: 2,000 counters (locust used as a
library: gevent, ``FastHttpUser`` on geventhttpclient, one greenlet and one keep-alive connection
per counter) against one central server, and the data they sell to.

It runs as a child process of its own (``python -m tests.bench.central_load_gen`` with the
:class:`LoadConfig` as JSON in ``BENCH_LOAD_CONFIG``) because importing locust monkey-patches the
whole interpreter (threads, sockets), which the other benchmarks must not get.  It prints its
phases as JSON lines on stdout and writes every sale id it made to the config's ``ids_file``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.common import percentile, rounded

ENROLMENT_KEY = "bench-load-enrolment-key"
FULL_COUNTERS, FULL_SECONDS = 2000, 60.0
QUICK_COUNTERS, QUICK_SECONDS = 200, 10.0
# a counter's rhythm: the counter application's default sync interval (``sync_interval_s``,
# 60 s); the quick run's 200 counters sync every 6 s, the same rounds per second in all
FULL_INTERVAL = 60.0
QUICK_INTERVAL = FULL_INTERVAL * QUICK_COUNTERS / FULL_COUNTERS
COUNTERS_PER_OFFICE = 20
CUSTOMERS_PER_COUNTER = 25  # each counter sells to its own customers: purchase counts follow
BIG_BATCH = 500
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


if __name__ == "__main__":
    generate(LoadConfig(**json.loads(os.environ["BENCH_LOAD_CONFIG"])))
