"""Audit log benchmarks: appending with ``Actor.record`` and verifying the hash chain.

    python -m tests.bench.bench_audit [--appends N] [--rows N]

* ``append``: ``app.services.audit.Actor.record``, one write unit of work (one durable SQLite
  transaction, ``synchronous=FULL``) per row, as every audited action does; reference only.
* ``verify``: ``app.services.audit.verify`` over a chain of 100,000 rows (built in memory and
  bulk-inserted).  Target: verification at start must not hold up the counter, at most 2 s for
  100,000 rows (scaled linearly for another ``--rows``).  The peak Python memory of one more
  verification (tracemalloc, not timed) shows that it streams: it depends on the page size, not
  on the number of rows.
* ``verify_sales``: the same check over a log of the same length in which ``--sales`` rows
  (default 20,000) are the seals of as many sales in the ledger (app/domain/audit.py): every
  sale is checked against its latest seal too.  Same target.

The deterministic chain builders (:func:`make_chain`, :func:`load_chain`) are in
tests/rigs/audit.py, shared with tests/test_audit.py.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from app.clock import FixedClock
from app.domain.audit import GENESIS
from app.domain.audit import AuditRow
from app.domain.audit import VerifyResult
from app.domain.audit import canonical_detail
from app.domain.audit import row_hash
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.services import audit
from tests.bench.common import bench_main
from tests.bench.common import emit
from tests.bench.common import median
from tests.bench.common import percentile
from tests.bench.common import progress
from tests.bench.common import rounded
from tests.rigs.audit import START
from tests.rigs.audit import chain_fields
from tests.rigs.audit import load_chain
from tests.rigs.audit import make_chain
from tests.rigs.sale_rows import sale_row

TARGET_VERIFY_S_PER_100K = 2.0


def bench_append(folder: Path, appends: int) -> dict[str, Any]:
    db = Database(str(folder / "append.db"))
    db.migrate()
    clock = FixedClock(START)
    times: list[float] = []
    t0 = time.perf_counter()
    for i in range(appends):
        at, operator_id, counter_id, action, target, result, _ = chain_fields(i)
        clock.set(at)
        t = time.perf_counter()
        with db.write() as session:
            audit.Actor(operator_id, counter_id, clock).record(
                session, action, target, result=result, detail={"金额": i * 100, "备注": "购电"}
            )
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    ok = audit.verify(db).ok
    db.dispose()
    return {
        "bench": "audit",
        "kind": "append",
        "database": "sqlite",
        "rows": appends,
        "per_s": round(appends / total),
        "median_ms": rounded(median(times) * 1000),
        "p95_ms": rounded(percentile(times, 95) * 1000),
        "target": "reference only (one durable transaction per row)",
        "ok": ok,
    }


def timed_verify(
    db: Database, repeats: int, expected: Callable[[VerifyResult], bool]
) -> tuple[list[float], bool]:
    """``audit.verify`` ``repeats`` times: the times, and whether every result was ok and
    ``expected``."""
    times: list[float] = []
    correct = True
    for _ in range(repeats):
        t = time.perf_counter()
        result = audit.verify(db)
        times.append(time.perf_counter() - t)
        correct = correct and result.ok and expected(result)
    return times, correct


def bench_verify(folder: Path, rows: int, repeats: int = 3) -> list[dict[str, Any]]:
    progress(f"building and loading a {rows:,}-row audit chain ...")
    t0 = time.perf_counter()
    chain = make_chain(rows)
    t1 = time.perf_counter()
    db = Database(str(folder / "verify.db"))
    db.migrate()
    load_chain(db, chain)
    t2 = time.perf_counter()
    last = (chain[-1].seq, chain[-1].hash) if chain else (0, GENESIS)
    del chain
    progress(f"verifying {rows:,} rows {repeats} times ...")
    times, correct = timed_verify(
        db, repeats, lambda result: (result.last_seq, result.last_hash) == last
    )
    tracemalloc.start()
    audit.verify(db)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    db.dispose()
    target = TARGET_VERIFY_S_PER_100K * rows / 100_000
    seconds = median(times)
    return [
        {
            "bench": "audit",
            "kind": "bulk_load",
            "rows": rows,
            "build_s": rounded(t1 - t0),
            "insert_s": rounded(t2 - t1),
            "target": "reference only",
            "ok": True,
        },
        {
            "bench": "audit",
            "kind": "verify",
            "database": "sqlite",
            "rows": rows,
            "batch": audit.BATCH,
            "median_s": rounded(seconds),
            "max_s": rounded(max(times)),
            "rows_per_s": round(rows / seconds) if seconds else None,
            "peak_python_mb": rounded(peak / 2**20, 1),
            "target": f"<= {target:g} s",
            "ok": correct and seconds <= target,
        },
    ]


def sealed_sales(db: Database, count: int) -> list[dict[str, Any]]:
    """``count`` completed card sales of the demo customers, bulk-inserted (one shift), and the
    sealing values of each (the fields app.domain.audit.SEALED_FIELDS)."""
    from sqlalchemy import select

    from app.persistence.models import Customer
    from app.persistence.models import Sale
    from app.persistence.models import Shift
    from app.persistence.models import TariffVersion
    from app.services.demo import load_demo

    load_demo(db, FixedClock(START))
    with db.write() as session:
        customers = list(session.scalars(select(Customer.id).order_by(Customer.id)))
        version = session.scalars(select(TariffVersion.id)).first()
        session.add(
            Shift(id="bench-shift", operator_id="t01", counter_id="C01", opened_at=START,
                  float_amount=0)
        )  # fmt: skip
        session.flush()
        sales = []
        for i in range(count):
            amount = 1000 + i % 997 * 100
            sales.append(
                sale_row(
                    f"00000000-0000-4000-8000-{i:012d}",
                    customers[i % len(customers)],
                    amount,
                    purchase_count=i // len(customers) + 1,
                    tariff_version_id=version,
                    shift_id="bench-shift",
                    at=START + dt.timedelta(seconds=i),
                    cash_received=amount if i % 3 else None,
                )
            )
        for k in range(0, count, 5000):
            session.execute(insert(Sale), sales[k : k + 5000])
    return sales


def sale_chain(rows: int, sales: list[dict[str, Any]]) -> list[AuditRow]:
    """A valid chain of ``rows`` rows whose last ``len(sales)`` rows seal ``sales``."""
    from app.domain.audit import SEAL_KEY
    from app.domain.audit import sale_seal

    chain = make_chain(rows - len(sales))
    prev = chain[-1].hash if chain else GENESIS
    for i, sale in enumerate(sales):
        seq = len(chain) + 1
        at = START + dt.timedelta(days=30, seconds=i)
        detail = canonical_detail({"amount": sale["amount"], SEAL_KEY: sale_seal(sale)})
        digest = row_hash(prev, seq, at, "t01", "C01", "sale_complete", sale["id"], "ok", detail)
        chain.append(
            AuditRow(seq, at, "t01", "C01", "sale_complete", sale["id"], "ok", detail, prev,
                     digest)
        )  # fmt: skip
        prev = digest
    return chain


def bench_verify_sales(folder: Path, rows: int, count: int, repeats: int = 3) -> dict[str, Any]:
    progress(f"building a {rows:,}-row audit log sealing {count:,} sales ...")
    db = Database(str(folder / "verify-sales.db"))
    db.migrate()
    sales = sealed_sales(db, count)
    with db.write() as session:  # the demo's own rows make way for the built chain
        session.execute(AuditEntry.__table__.delete())
    load_chain(db, sale_chain(rows, sales))
    del sales
    times, correct = timed_verify(db, repeats, lambda result: result.rows == rows)
    db.dispose()
    target = TARGET_VERIFY_S_PER_100K * rows / 100_000
    seconds = median(times)
    return {
        "bench": "audit",
        "kind": "verify_sales",
        "database": "sqlite",
        "rows": rows,
        "sales": count,
        "median_s": rounded(seconds),
        "max_s": rounded(max(times)),
        "target": f"<= {target:g} s",
        "ok": correct and seconds <= target,
    }


def run(appends: int = 300, rows: int = 100_000, sales: int = 20_000) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="cardvend-bench-audit-") as tmp:
        folder = Path(tmp)
        records = [emit(bench_append(folder, appends))]
        records += [emit(r) for r in bench_verify(folder, rows)]
        records.append(emit(bench_verify_sales(folder, rows, min(sales, rows))))
    return records


def main(argv: list[str] | None = None) -> int:
    return bench_main(__doc__, run, argv, appends=300, rows=100_000, sales=20_000)


if __name__ == "__main__":
    sys.exit(main())
