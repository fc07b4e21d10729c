"""Benchmark: ``app.services.customers.find_customers`` on the database of ``bench_import``.

Runs in this process against ``<data dir>/home-N/data/cardvend.db`` (built by
``bench_import.run`` when missing).  Query kinds, each with texts that exist (recomputed from the
deterministic generator, random but seeded):

* ``customer_no`` and ``meter_no`` (12 digits, exact): median target <= 2 ms;
* ``name_prefix_1`` and ``name_prefix_2`` (the first 1 or 2 characters of a real name) and
  ``phone_suffix`` (the last 4, 5 or 6 digits of a real phone): p95 target <= 30 ms.

Then a few of the same texts run with ``use_index=False`` (the query with SQLite's NOT INDEXED,
i.e. a table scan) and the ratio unindexed/indexed is printed per kind.  That comparison also
checks that the SQL sent to SQLite really says NOT INDEXED and that both return the same
customers; its target is that the index is faster than the scan.

    python -m tests.bench.bench_find [--rows N] [--data-dir DIR] [--queries 200] [--scans 5]
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event

from app.persistence.db import Database
from app.services.customers import CustomerView
from app.services.customers import count_customers
from app.services.customers import find_customers
from tests.bench import bench_import
from tests.bench.common import DEFAULT_DATA_DIR
from tests.bench.common import FIRST_CUSTOMER_NO
from tests.bench.common import FIRST_METER_NO
from tests.bench.common import FULL_ROWS
from tests.bench.common import bench_main
from tests.bench.common import customer_row
from tests.bench.common import emit
from tests.bench.common import median
from tests.bench.common import percentile
from tests.bench.common import progress
from tests.bench.common import rounded

TARGET_EXACT_MEDIAN_MS = 2.0
TARGET_PREFIX_P95_MS = 30.0
WARMUP = 10
SEED = 20260101

Check = Callable[[str, list[CustomerView]], bool]


def _texts(kind: str, rows: int, count: int, rng: random.Random) -> list[str]:
    picks = [rng.randrange(rows) for _ in range(count)]
    if kind == "customer_no":
        return [str(FIRST_CUSTOMER_NO + i) for i in picks]
    if kind == "meter_no":
        return [str(FIRST_METER_NO + i) for i in picks]
    if kind == "name_prefix_1":
        return [customer_row(i).name[:1] for i in picks]
    if kind == "name_prefix_2":
        return [customer_row(i).name[:2] for i in picks]
    if kind == "phone_suffix":
        return [customer_row(i).phone[-(4 + n % 3) :] for n, i in enumerate(picks)]
    raise ValueError(kind)


def _expected(kind: str) -> Check:
    """Whether a result is right for its text: the customer asked for, or every hit matches."""
    if kind == "customer_no":
        return lambda t, found: [c.customer_no for c in found] == [t]
    if kind == "meter_no":
        return lambda t, found: [c.meter_no for c in found] == [t]
    if kind.startswith("name_prefix"):
        return lambda t, found: bool(found) and all(c.name.startswith(t) for c in found)
    return lambda t, found: (
        bool(found)
        and all("".join(ch for ch in c.phone if ch.isdigit()).endswith(t) for c in found)
    )


KINDS: dict[str, tuple[str, float]] = {
    # kind: (statistic that has a target, target in ms)
    "customer_no": ("median_ms", TARGET_EXACT_MEDIAN_MS),
    "meter_no": ("median_ms", TARGET_EXACT_MEDIAN_MS),
    "name_prefix_1": ("p95_ms", TARGET_PREFIX_P95_MS),
    "name_prefix_2": ("p95_ms", TARGET_PREFIX_P95_MS),
    "phone_suffix": ("p95_ms", TARGET_PREFIX_P95_MS),
}


class StatementLog:
    """Records the SQL statements the engine sends while ``capture()`` is active."""

    def __init__(self, db: Database) -> None:
        self.active = False
        self.statements: list[tuple[str, Any]] = []
        event.listen(db.engine, "before_cursor_execute", self._on_execute)

    def _on_execute(
        self,
        _conn: Any,
        _cursor: Any,
        statement: str,
        parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        if self.active:
            self.statements.append((statement, parameters))

    @contextmanager
    def capture(self) -> Iterator[list[tuple[str, Any]]]:
        self.statements = []
        self.active = True
        try:
            yield self.statements
        finally:
            self.active = False


def _customer_queries(statements: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(s, p) for s, p in statements if "FROM customers" in s]


def _query_plan(db: Database, statements: list[tuple[str, Any]]) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of each captured customer query, one string per query."""
    plans = []
    with db.engine.connect() as conn:
        for statement, params in _customer_queries(statements):
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            plans.append("; ".join(str(r[-1]) for r in rows))
    return plans


def _time(db: Database, text: str, *, use_index: bool) -> tuple[float, list[CustomerView]]:
    t0 = time.perf_counter_ns()
    found = find_customers(db, text, use_index=use_index)
    return (time.perf_counter_ns() - t0) / 1e6, found


def ensure_database(rows: int, data_dir: Path) -> Path:
    data_dir = Path(data_dir).resolve()
    if bench_import.completed_import(data_dir, rows) is None:
        progress(f"no imported database of {rows:,} customers in {data_dir}; running bench_import")
        bench_import.run(rows, data_dir)
        if bench_import.completed_import(data_dir, rows) is None:
            raise RuntimeError("bench_import did not produce a complete database")
    return bench_import.database_path(data_dir, rows)


def run(
    rows: int = FULL_ROWS,
    data_dir: Path = DEFAULT_DATA_DIR,
    *,
    queries: int = 200,
    scans: int = 5,
    seed: int = SEED,
) -> list[dict[str, Any]]:
    path = ensure_database(rows, data_dir)
    db = Database(str(path))
    log = StatementLog(db)
    records: list[dict[str, Any]] = []
    try:
        total = count_customers(db)
        expected_total = rows + bench_import.DEMO_CUSTOMERS
        if total != expected_total:
            raise RuntimeError(f"{path} has {total} customers, expected {expected_total}")
        rng = random.Random(seed)
        texts = {kind: _texts(kind, rows, queries, rng) for kind in KINDS}
        indexed: dict[str, list[tuple[float, list[CustomerView]]]] = {}

        for kind, (stat, target) in KINDS.items():
            progress(f"find {kind}: {queries} queries with the index ...")
            check = _expected(kind)
            for text in texts[kind][:WARMUP]:
                find_customers(db, text)
            with log.capture() as statements:
                find_customers(db, texts[kind][0])
            plan = _query_plan(db, statements)
            results = [_time(db, text, use_index=True) for text in texts[kind]]
            indexed[kind] = results
            ms = [r[0] for r in results]
            wrong = [
                t for t, (_, found) in zip(texts[kind], results, strict=True) if not check(t, found)
            ]
            figures = {"median_ms": median(ms), "p95_ms": percentile(ms, 95)}
            records.append(
                emit(
                    {
                        "bench": "find",
                        "kind": kind,
                        "rows": rows,
                        "queries": len(ms),
                        "median_ms": rounded(figures["median_ms"]),
                        "p95_ms": rounded(figures["p95_ms"]),
                        "max_ms": rounded(max(ms)),
                        "mean_ms": rounded(sum(ms) / len(ms)),
                        "mean_results": rounded(sum(len(r[1]) for r in results) / len(results), 1),
                        "wrong_results": len(wrong),
                        "query_plan": plan,
                        "target": f"{stat} <= {target:g}",
                        f"target_{stat}": target,
                        "ok": figures[stat] <= target and not wrong,
                        "examples": texts[kind][:3],
                    }
                )
            )

        for kind in KINDS:
            chosen = texts[kind][:scans]
            progress(f"find {kind}: {len(chosen)} queries without the index (table scans) ...")
            with log.capture() as statements:
                find_customers(db, chosen[0], use_index=False)
            sql = _customer_queries(statements)
            not_indexed = bool(sql) and all("NOT INDEXED" in s for s, _ in sql)
            plan = _query_plan(db, statements)
            scanned = [_time(db, text, use_index=False) for text in chosen]
            same = all(
                {c.customer_no for c in found} == {c.customer_no for c in indexed[kind][n][1]}
                for n, (_, found) in enumerate(scanned)
            )
            scan_ms = median([ms for ms, _ in scanned])
            index_ms = median([indexed[kind][n][0] for n in range(len(chosen))])
            ratio = scan_ms / index_ms if index_ms > 0 else float("inf")
            record: dict[str, Any] = {
                "bench": "find_unindexed",
                "kind": kind,
                "rows": rows,
                "queries": len(scanned),
                "median_ms": rounded(scan_ms),
                "indexed_median_ms": rounded(index_ms),
                "ratio_unindexed_to_indexed": rounded(ratio, 1),
                "not_indexed_in_sql": not_indexed,
                "same_results": same,
                "query_plan": plan,
                "target": "NOT INDEXED in the SQL, same results, ratio > 1",
                "target_min_ratio": 1.0,
                "ok": not_indexed and same and ratio > 1.0,
            }
            if not not_indexed:
                record["problem"] = (
                    "use_index=False did not put NOT INDEXED into the SQL sent to SQLite, so "
                    "this compares the indexed query with itself"
                )
                statement = sql[0][0] if sql else ""
                record["sql_from"] = " ".join(statement[statement.find("FROM") :].split())
            records.append(emit(record))
    finally:
        db.dispose()
    return records


def main(argv: list[str] | None = None) -> int:
    helps = {"queries": "indexed queries per kind", "scans": "unindexed queries per kind"}
    return bench_main(
        __doc__, run, argv, helps=helps,
        rows=FULL_ROWS, data_dir=DEFAULT_DATA_DIR, queries=200, scans=5,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
