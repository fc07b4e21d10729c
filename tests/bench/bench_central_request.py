"""The station's CPU per request: what one request of each kind costs the server, measured
from its process's CPU time, with one client asking one request at a time.

A load run's rates move by half from one run to the next on a shared 2-core machine; the CPU a
request costs the server moves far less, and it is what sets the rate a machine can serve.  The
server (``main.py central serve --port 0 --db <PG schema> --no-seed``, one worker) serves one
registered counter of the load bench's archive (:mod:`tests.bench.central_load_gen`); the
kinds are:

- ``health``: ``GET /health`` (no authentication, no database);
- ``pull_empty``: a page of jobs after the end (authentication and one empty query);
- ``pull_customers``: a page of 100 customers of the office;
- ``push_10`` and ``push_500``: a batch of 10 and of 500 new sales (``POST /sales/batch``).

With ``--against REV`` the server of git revision REV (its tree exported, on a schema of its
own) runs beside this tree's, and blocks of each kind alternate between the two servers
(``--repeats`` blocks each, the order swapped every repeat), so that a slow minute of the
machine falls on both: each kind's line gives both medians and the median ratio of this tree's
block to the other's, with its range.  PostgreSQL's CPU per request is given beside the
server's (the backends' CPU over the same blocks).

    python -m tests.bench.bench_central_request [--requests 2000] [--repeats 6] [--against REV]
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench.bench_central_load import Server
from tests.bench.bench_central_load import exported
from tests.bench.bench_central_load import pg_schema
from tests.bench.bench_central_load import postgres_cpu_seconds
from tests.bench.central_load_gen import ENROLMENT_KEY
from tests.bench.central_load_gen import counter_customers
from tests.bench.central_load_gen import counter_id
from tests.bench.central_load_gen import office_code
from tests.bench.central_load_gen import sale_body
from tests.bench.central_load_gen import seed_archive
from tests.bench.common import ROOT
from tests.bench.common import bench_main
from tests.bench.common import emit
from tests.bench.common import progress
from tests.bench.common import rounded
from tests.rigs.pg import PG_URL
from tests.rigs.pg import pg_available

API = "/api/v1"
# requests of each kind per measured block, as a share of --requests
KINDS: dict[str, float] = {
    "health": 1.0,
    "pull_empty": 1.0,
    "pull_customers": 0.5,
    "push_10": 0.2,
    "push_500": 0.01,
}


class OneCounter:
    """A counter of the load archive (counter 0 of office 0) against one server, asking one
    request at a time; every answer is checked (status, and each sale created)."""

    def __init__(self, server: Server) -> None:
        import requests

        self.server = server
        self.http = requests.Session()
        self.cid, self.office = counter_id(0), office_code(0)
        self.custs = counter_customers(0)
        self.rng = random.Random(16)
        self.shift = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        body = json.dumps({"counter_id": self.cid, "office_code": self.office})
        r = self.http.post(
            server.url + API + "/counters/register",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Enrolment-Key": ENROLMENT_KEY,
                "Idempotency-Key": uuid.uuid4().hex,
            },
            timeout=60,
        )
        if r.status_code != 200:
            raise RuntimeError(f"register: {r.status_code} {r.text[:200]}")
        self.auth = {"Authorization": f"Bearer {r.json()['token']}"}
        self.failures = 0

    def get(self, path: str) -> None:
        r = self.http.get(self.server.url + API + path, headers=self.auth, timeout=60)
        self.failures += r.status_code != 200

    def push(self, n: int) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        sales = [
            sale_body(
                self.custs[self.rng.randrange(len(self.custs))],
                self.rng,
                self.cid,
                self.office,
                self.shift,
                now,
            )
            for _ in range(n)
        ]
        key = hashlib.sha256("\n".join(sid for sid, _ in sales).encode()).hexdigest()[:48]
        r = self.http.post(
            self.server.url + API + "/sales/batch",
            data='{"items":[' + ",".join(body for _, body in sales) + "]}",
            headers={**self.auth, "Content-Type": "application/json", "Idempotency-Key": key},
            timeout=120,
        )
        ok = r.status_code == 200 and all(
            x["status"] == "created" and not x.get("review") for x in r.json()["results"]
        )
        self.failures += not ok

    def kind(self, name: str) -> Callable[[], None]:
        return {
            "health": lambda: self.get("/health"),
            "pull_empty": lambda: self.get(f"/jobs?after={2**62}&limit=1000"),
            "pull_customers": lambda: self.get("/customers?after=0&limit=100"),
            "push_10": lambda: self.push(10),
            "push_500": lambda: self.push(500),
        }[name]


def block_ms(client: OneCounter, name: str, n: int) -> tuple[float, float]:
    """The CPU milliseconds per request of the server and of PostgreSQL (the one server asks
    it meanwhile) over ``n`` requests of kind ``name``."""
    ask = client.kind(name)
    server, postgres = client.server.cpu_seconds(), postgres_cpu_seconds()
    for _ in range(n):
        ask()
    return (
        (client.server.cpu_seconds() - server) * 1000 / n,
        (postgres_cpu_seconds() - postgres) * 1000 / n,
    )


def run(requests: int = 2000, repeats: int = 6, against: str = "") -> list[dict[str, Any]]:
    if not pg_available():
        return [
            emit(
                {
                    "bench": "central_request",
                    "skipped": f"no PostgreSQL server at {PG_URL}",
                    "target": "a PostgreSQL server to measure against",
                    "ok": False,
                }
            )
        ]
    with contextlib.ExitStack() as stack:
        trees = {"worktree": ROOT}
        if against:
            trees = {against: stack.enter_context(exported(against)), **trees}
        clients: dict[str, OneCounter] = {}
        for label, tree in trees.items():
            url, _engine = stack.enter_context(pg_schema())
            seed_archive(url, 1)
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cv-req-")))
            server = Server(tree, url, None, home)
            stack.callback(server.stop)
            clients[label] = OneCounter(server)
            progress(f"[{label}] server at {server.url}")
        blocks: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for name, share in KINDS.items():  # warm: caches, prepared statements, the pool
            for client in clients.values():
                block_ms(client, name, max(3, int(requests * share) // 20))
        for rep in range(repeats):
            order = list(clients) if rep % 2 == 0 else list(reversed(clients))
            for name, share in KINDS.items():
                n = max(1, int(requests * share) // repeats)
                for label in order:
                    blocks.setdefault((name, label), []).append(block_ms(clients[label], name, n))
            progress(f"repeat {rep + 1}/{repeats}")
        failures = {label: client.failures for label, client in clients.items()}
    out = []
    for name, share in KINDS.items():
        mine = [server for server, _ in blocks[(name, "worktree")]]
        record: dict[str, Any] = {
            "bench": "central_request",
            "kind": name,
            "requests": max(1, int(requests * share) // repeats) * repeats,
            "server_cpu_ms": rounded(statistics.median(mine), 3),
            "postgres_cpu_ms": rounded(
                statistics.median(pg for _, pg in blocks[(name, "worktree")]), 3
            ),
        }
        if against:
            theirs = [server for server, _ in blocks[(name, against)]]
            ratios = [a / b for a, b in zip(mine, theirs, strict=True) if b > 0]
            record |= {
                "against": against,
                "against_server_cpu_ms": rounded(statistics.median(theirs), 3),
                "against_postgres_cpu_ms": rounded(
                    statistics.median(pg for _, pg in blocks[(name, against)]), 3
                ),
                "ratio_median": rounded(statistics.median(ratios), 3) if ratios else None,
                "ratio_range": [rounded(min(ratios), 3), rounded(max(ratios), 3)]
                if ratios
                else None,
            }
        record |= {
            "failures": failures,
            "target": "every answer right (a figure to compare changes by, no speed target)",
            "ok": not any(failures.values()),
        }
        out.append(emit(record))
    return out


if __name__ == "__main__":
    sys.exit(
        bench_main(
            __doc__,
            run,
            None,
            helps={
                "requests": "requests of the cheap kinds in all (pushes: a share of it)",
                "repeats": "measured blocks of each kind (alternating with --against's)",
                "against": "a git revision whose server runs beside this tree's",
            },
            requests=2000,
            repeats=6,
            against="",
        )
    )
