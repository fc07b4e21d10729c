"""The load generator of :mod:`tests.bench.bench_central_load`: 2,000 counters (locust used as a
library: gevent, ``FastHttpUser`` on geventhttpclient, one greenlet and one keep-alive connection
per counter) against one central server, and the data they sell to.

It runs as a child process of its own (``python -m tests.bench.central_load_gen`` with the
:class:`LoadConfig` as JSON in ``BENCH_LOAD_CONFIG``) because importing locust monkey-patches the
whole interpreter (threads, sockets), which the other benchmarks must not get.  It prints its
phases as JSON lines on stdout and writes every sale id it made to the config's ``ids_file``.
"""

from __future__ import annotations

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

from tests.bench.common import percentile
from tests.bench.common import rounded

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


def sale_body(
    cust: Cust, rng: random.Random, counter: str, office: str, shift: str, now: str
) -> tuple[str, str]:
    """A valid sale of ``cust`` by ``counter`` (its id and its JSON text, made as text: the
    generator's CPU is part of what a load run measures).  One in 50 failed; the first
    completed sale of a customer who owes settles the arrears; a card sale's purchase count
    follows the card's, which the customer's record keeps."""
    sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    failed = rng.random() < 0.02
    credit = rng.randrange(1000, 50_000, 100)
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
        f'"operator_id":"T01","counter_id":"{counter}","office_code":"{office}",'
        f'"shift_id":"{shift}","card_serial":{serial},'
        f'"cash_received":{amount},"created_at":"{now}"}}'
    )
    return sid, body


# --------------------------------------------------------------------------- the generator


class LoadRun:
    """What the counters of one run share: the config, the phase flags and counts, the
    latencies measured in the window and every sale id made."""

    def __init__(self, cfg: LoadConfig) -> None:
        self.cfg = cfg
        self.per_counter = cfg.rate * (1 - cfg.big_share) / cfg.counters  # small sales a second
        self.big_per_round = cfg.rate * cfg.big_share * cfg.interval / (BIG_BATCH * cfg.counters)
        self.lat: dict[str, list[float]] = {}
        self.state: dict[str, Any] = {
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
        self.made_ids: list[str] = []
        self.pending_total = 0
        self.next_n = iter(range(cfg.counters))

    @staticmethod
    def say(record: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    def error(self, what: str) -> None:
        self.state["errors"] += 1
        if len(self.state["error_samples"]) < 10:
            self.state["error_samples"].append(what[:300])

    def timed(self, name: str, seconds: float) -> None:
        if self.state["measuring"]:
            self.lat.setdefault(name, []).append(seconds)


def generate(cfg: LoadConfig) -> None:
    """The load generator (a child process): prints phase lines (JSON) on stdout and writes
    every sale id it made to ``cfg.ids_file``."""
    import gevent
    from locust import events
    from locust.env import Environment

    from tests.bench.central_load_user import LoadCounter

    run = LoadRun(cfg)
    LoadCounter.load = run
    LoadCounter.host = cfg.url
    env = Environment(user_classes=[LoadCounter], events=events)
    runner = env.create_local_runner()
    lags: list[float] = []

    def watch_loop() -> None:
        while True:
            t0 = time.perf_counter()
            gevent.sleep(0.05)
            lags.append(time.perf_counter() - t0 - 0.05)

    watcher = gevent.spawn(watch_loop)
    try:
        done = _phases(run, runner, lags)
    finally:
        runner.quit()
        watcher.kill()
    Path(cfg.ids_file).write_text("\n".join(run.made_ids), encoding="utf-8")
    run.say(done)


def _phases(run: LoadRun, runner: Any, lags: list[float]) -> dict[str, Any]:
    """Register every counter, settle into the rhythm, measure the window and drain; answers
    the run's figures (the ``done`` line)."""
    import resource

    import gevent

    cfg, state = run.cfg, run.state
    t_start = time.monotonic()
    runner.start(cfg.counters, spawn_rate=cfg.spawn_rate)
    while state["registered"] + state["unregistered"] < cfg.counters:
        if time.monotonic() - t_start > cfg.counters / cfg.spawn_rate + 600:
            break
        gevent.sleep(0.2)
    spawn_s = time.monotonic() - t_start
    run.say({"phase": "registered", "counters": state["registered"], "seconds": spawn_s})
    registered = state["registered"]
    gevent.sleep(cfg.interval * 1.2)  # every counter into its rhythm
    lags.clear()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    state["measuring"] = True
    t0 = time.monotonic()
    run.say({"phase": "window_start", "t": time.time()})
    gevent.sleep(cfg.seconds)
    state["measuring"] = False
    window = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    run.say({"phase": "window_end", "t": time.time()})
    cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / window
    window_lags = list(lags)
    window_state = dict(state)
    # drain: no new sales, the counters push what is pending
    state["draining"] = True
    t_drain = time.monotonic()
    while run.pending_total > 0 and time.monotonic() - t_drain < cfg.drain_s:
        gevent.sleep(0.5)
    drain_s = time.monotonic() - t_drain
    return {
        "phase": "done",
        "window_s": rounded(window, 2),
        "spawn_s": rounded(spawn_s, 1),
        "registered": registered,
        "rounds": window_state["rounds"],
        "errors_window": window_state["errors"],
        "errors": state["errors"],
        "error_samples": state["error_samples"],
        "reviews": state["reviews"],
        "made": len(run.made_ids),
        "left_pending": run.pending_total,
        "drain_s": rounded(drain_s, 1),
        "latency": {name: _pcts(v) for name, v in sorted(run.lat.items())},
        "generator_cpu": rounded(cpu, 2),
        "loop_lag_p99_ms": rounded(percentile(window_lags, 99) * 1000, 1) if window_lags else None,
        "loop_lag_max_ms": rounded(max(window_lags) * 1000, 1) if window_lags else None,
    }


def _pcts(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": rounded(percentile(values, 50) * 1000, 1),
        "p99_ms": rounded(percentile(values, 99) * 1000, 1),
        "max_ms": rounded(max(values) * 1000, 1),
    }


if __name__ == "__main__":
    generate(LoadConfig(**json.loads(os.environ["BENCH_LOAD_CONFIG"])))
