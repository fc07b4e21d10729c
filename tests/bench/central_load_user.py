"""One counter of the load bench (:mod:`tests.bench.central_load_gen`) as a locust user: it
registers, then each round sells what its rhythm says, pushes what is pending (500 a batch) and
pulls its office's deltas.  Importing this module imports locust, which monkey-patches the
interpreter: only the generator's child process imports it."""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from typing import Any
from typing import ClassVar

import gevent
from locust import FastHttpUser
from locust import task

from tests.bench.central_load_gen import BIG_BATCH
from tests.bench.central_load_gen import COUNTERS_PER_OFFICE
from tests.bench.central_load_gen import ENROLMENT_KEY
from tests.bench.central_load_gen import LoadRun
from tests.bench.central_load_gen import counter_customers
from tests.bench.central_load_gen import counter_id
from tests.bench.central_load_gen import office_code
from tests.bench.central_load_gen import sale_body

PULLED = ("tariffs", "customers", "remote-purchases", "jobs")


def status_and_text(resp: Any) -> str:
    """A refused request's status and the start of its answer, for the error list."""
    return f"{resp.status_code} {(resp.text or '')[:200]}"


class LoadCounter(FastHttpUser):
    load: ClassVar[LoadRun]  # set by the generator before the users start
    network_timeout = 120.0
    connection_timeout = 60.0
    max_retries = 0
    insecure = True

    def wait_time(self) -> float:
        return self._rng.uniform(0.8, 1.2) * self.load.cfg.interval

    def on_start(self) -> None:
        run = self.load
        self.n = next(run.next_n)
        self._rng = random.Random(run.cfg.seed * 100_003 + self.n)
        self.cid = counter_id(self.n)
        self.office = office_code(self.n // COUNTERS_PER_OFFICE)
        self.custs = counter_customers(self.n)
        self.shift = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        self.pending: list[tuple[str, str]] = []  # (id, JSON body)
        self.cursors = dict.fromkeys(PULLED, 0)
        self.cursors["customers"] = run.cfg.customers_cursor
        self.last = time.monotonic()
        self.token = self.register()
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.pull()  # the first round's pulls (from the cursors it had)
        run.state["registered"] += 1
        # a counter's rounds start at a phase of their own: counters do not open their day in
        # the same few seconds, as they registered here (else every round of all of them would
        # fall into the registration's 8 s of each interval: a surge at 1.5 times the rate,
        # then a pause, instead of the rate)
        gevent.sleep(self._rng.uniform(0, run.cfg.interval))

    def post_json(self, path: str, body: str, name: str, headers: dict[str, str]) -> Any:
        """POST the JSON ``body`` to ``path`` (counted under ``name``); the caller judges the
        response and marks it failed."""
        return self.client.post(
            path,
            data=body,
            headers={"Content-Type": "application/json", **headers},
            name=name,
            catch_response=True,
        )

    def register(self) -> str:
        """Register with the enrolment key; a failed attempt (counted as an error) is tried
        again after a pause, as a counter's administrator would."""
        body = json.dumps({"counter_id": self.cid, "office_code": self.office})
        for attempt in range(8):
            t0 = time.perf_counter()
            headers = {"X-Enrolment-Key": ENROLMENT_KEY, "Idempotency-Key": uuid.uuid4().hex}
            with self.post_json("/api/v1/counters/register", body, "register", headers) as resp:
                if resp.status_code == 200:
                    self.load.timed("register", time.perf_counter() - t0)
                    return str(json.loads(resp.text)["token"])
                resp.failure(f"register {resp.status_code}")
                self.load.error(f"register {self.cid}: {status_and_text(resp)}")
            gevent.sleep(self._rng.uniform(1, 2) * 2**attempt)
        self.load.state["unregistered"] += 1
        raise RuntimeError(f"{self.cid} could not register")

    # ---------------------------------------------------------------- sales

    def sale(self, now: str) -> tuple[str, str]:
        cust = self.custs[self._rng.randrange(len(self.custs))]
        sid, body = sale_body(cust, self._rng, self.cid, self.office, self.shift, now)
        self.load.made_ids.append(sid)
        return sid, body

    def accrue(self) -> None:
        t = time.monotonic()
        elapsed, self.last = t - self.last, t
        if self.load.state["draining"]:
            return
        expect = self.load.per_counter * elapsed
        n = int(expect) + (1 if self._rng.random() < expect - int(expect) else 0)
        if self._rng.random() < self.load.big_per_round:
            n += BIG_BATCH
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        for _ in range(n):
            self.pending.append(self.sale(now))
        self.load.pending_total += n

    def push(self) -> None:
        run = self.load
        while self.pending:
            batch = self.pending[:BIG_BATCH]
            ids = [sid for sid, _ in batch]
            key = hashlib.sha256(("/sales/batch\n" + "\n".join(ids)).encode()).hexdigest()
            body = '{"items":[' + ",".join(b for _, b in batch) + "]}"
            name = "push 500" if len(batch) == BIG_BATCH else "push <500"
            t0 = time.perf_counter()
            headers = {**self.auth, "Idempotency-Key": key[:48]}
            with self.post_json("/api/v1/sales/batch", body, name, headers) as resp:
                took = time.perf_counter() - t0
                if resp.status_code != 200:
                    resp.failure(f"{resp.status_code}")
                    run.error(f"{name} {self.cid}: {status_and_text(resp)}")
                    return  # the batch stays pending: the next round sends it again
                results = json.loads(resp.text)["results"]
                bad = [r for r in results if r["status"] not in ("created", "duplicate")]
                run.state["reviews"] += sum(1 for r in results if r.get("review"))
                if bad or len(results) != len(batch):
                    resp.failure("refused items")
                    run.error(f"{name} {self.cid}: {len(bad)} refused, first {bad[:1]}")
            run.timed(name, took)
            run.timed("push", took)
            del self.pending[: len(batch)]
            run.pending_total -= len(batch)
            run.state["sent_sales"] += len(batch)

    # ---------------------------------------------------------------- pulls

    def pull(self) -> None:
        for pulled in PULLED:
            while True:
                t0 = time.perf_counter()
                with self.client.get(
                    f"/api/v1/{pulled}?after={self.cursors[pulled]}&limit=1000",
                    headers=self.auth,
                    name=f"pull {pulled}",
                    catch_response=True,
                ) as resp:
                    took = time.perf_counter() - t0
                    if resp.status_code != 200:
                        resp.failure(f"{resp.status_code}")
                        self.load.error(f"pull {pulled} {self.cid}: {resp.status_code}")
                        return
                    page = json.loads(resp.text)
                self.load.timed(f"pull {pulled}", took)
                self.load.timed("pull", took)
                self.cursors[pulled] = page["next_cursor"]
                if not page["has_more"]:
                    break

    @task
    def round(self) -> None:
        self.accrue()
        self.push()
        self.pull()
        if self.load.state["measuring"]:
            self.load.state["rounds"] += 1
