"""Run every benchmark of the counter core in order and print their figures as JSON lines.

    python -m tests.bench.run            # 1,000,000 customers
    python -m tests.bench.run --quick    # 100,000 customers (and 100 kills), a fast check

stdout holds only JSON lines (progress goes to stderr); the last line is a summary.  A missed
target is reported as ``"ok": false`` and the exit status stays 0; a benchmark that crashes
ends the run with a traceback and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench import bench_audit
from tests.bench import bench_card
from tests.bench import bench_central_load
from tests.bench import bench_central_request
from tests.bench import bench_control
from tests.bench import bench_dlt645
from tests.bench import bench_find
from tests.bench import bench_fleet
from tests.bench import bench_gui_search
from tests.bench import bench_gui_start
from tests.bench import bench_import
from tests.bench import bench_kill
from tests.bench import bench_receipt
from tests.bench import bench_reports
from tests.bench import bench_sale
from tests.bench import bench_sync
from tests.bench.common import DEFAULT_DATA_DIR
from tests.bench.common import FULL_ROWS
from tests.bench.common import QUICK_ROWS
from tests.bench.common import emit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"use {QUICK_ROWS:,} customers instead of {FULL_ROWS:,}",
    )
    parser.add_argument("--rows", type=int, help="number of customers (overrides --quick)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="where the CSV and the databases go (default: bench-data/)",
    )
    args = parser.parse_args(argv)
    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    quick = rows < FULL_ROWS

    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    records += bench_import.run(rows, args.data_dir)
    if bench_import.completed_import(args.data_dir.resolve(), rows) is not None:
        records += bench_find.run(rows, args.data_dir)
    else:  # not every row was imported (see the import record): nothing sound to search
        records.append(
            emit(
                {
                    "bench": "find",
                    "rows": rows,
                    "skipped": "the import did not complete",
                    "target": "a complete database to search",
                    "ok": False,
                }
            )
        )
    records += bench_card.run()
    records += bench_dlt645.run()
    records += bench_fleet.run(10_000 if not quick else 2_000)
    records += bench_control.run(rows, 10_000 if not quick else 1_000, 100 if not quick else 20)
    records += bench_sale.run()
    records += bench_kill.run(bench_kill.QUICK_KILLS if quick else bench_kill.FULL_KILLS)
    records += bench_audit.run()
    records += bench_receipt.run()
    records += bench_gui_start.run()
    if bench_import.completed_import(args.data_dir.resolve(), rows) is not None:
        records += bench_gui_search.run(rows, args.data_dir)
    records += bench_reports.run(sales=5000, customers=rows)
    records += bench_sync.run(
        rows,
        args.data_dir,
        sales=10_000,
        single_sample=1_000 if quick else 10_000,
        rounds=1_000 if quick else 10_000,
    )
    records += bench_central_request.run(requests=500 if quick else 2000)
    if quick:  # 200 counters for 10 s against this tree's server
        records += bench_central_load.run(
            counters=bench_central_load.QUICK_COUNTERS,
            seconds=bench_central_load.QUICK_SECONDS,
            workers=(1,),
            data_dir=args.data_dir,
        )
    else:  # 2,000 counters for 60 s with 1, 2 and 4 workers, and the old server as baseline
        records += bench_central_load.run(
            baseline_rev=bench_central_load.BASELINE_REV, data_dir=args.data_dir
        )
    failed = [
        r["bench"] + (f":{r['kind']}" if "kind" in r else "") for r in records if not r.get("ok")
    ]
    emit(
        {
            "bench": "summary",
            "rows": rows,
            "records": len(records),
            "seconds": round(time.perf_counter() - t0, 1),
            "failed": failed,
            "target": "every benchmark meets its target",
            "ok": not failed,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
