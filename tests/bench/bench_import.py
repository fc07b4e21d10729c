"""Benchmark: ``cardvend customers import`` of a large customer CSV.

A deterministic CSV of N customers (1,000,000 by default) is generated into the bench data
folder (reused when it is already there).  In a fresh CARDVEND_HOME, ``main.py demo`` runs in a
child process first (tariff plans, office DEMO, the administrator a01), then ``main.py customers
import FILE --json --operator a01`` runs in a second child process whose wall time is measured
here and whose peak RSS it reports itself at exit (RUSAGE_SELF, see ``common.RUSAGE_LAUNCHER``),
so the demo process does not count.

Targets for 1,000,000 rows: at most 60 s and at most 300 MB peak RSS.  For a smaller N the time
target scales linearly (the same rows per second); the memory target does not.

The resulting database stays in ``<data dir>/home-N/data/cardvend.db`` for ``bench_find``;
``<data dir>/home-N/bench-import.json`` records that the import completed.

    python -m tests.bench.bench_import [--rows N] [--data-dir DIR] [--profile FILE.prof]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.common import DEFAULT_DATA_DIR
from tests.bench.common import FULL_ROWS
from tests.bench.common import ROOT
from tests.bench.common import RUSAGE_LAUNCHER
from tests.bench.common import child_env
from tests.bench.common import children_peak_rss_mb
from tests.bench.common import emit
from tests.bench.common import ensure_customers_csv
from tests.bench.common import maxrss_to_mb
from tests.bench.common import progress
from tests.bench.common import rounded

TARGET_SECONDS_PER_MILLION = 60.0
TARGET_PEAK_RSS_MB = 300.0
MARKER = "bench-import.json"
DEMO_CUSTOMERS = 1000  # main.py demo adds these; the generated numbers do not collide with them
DEMO_ADMIN, DEMO_ADMIN_PASSWORD = "a01", "demo-a01"  # main.py demo adds this administrator

# the import under cProfile, for --profile: same as RUSAGE_LAUNCHER plus a stats dump
_PROFILE_LAUNCHER = """\
import cProfile, sys
prof_out = sys.argv.pop(1)
prof = cProfile.Profile()
scope = {"__name__": "__main__"}
rc = 0
try:
    prof.runctx(compile(LAUNCHER, "<launcher>", "exec"), scope, scope)
except SystemExit as exc:
    rc = exc.code
prof.dump_stats(prof_out)
sys.exit(rc)
"""


def home_dir(data_dir: Path, rows: int) -> Path:
    return data_dir / f"home-{rows}"


def database_path(data_dir: Path, rows: int) -> Path:
    return home_dir(data_dir, rows) / "data" / "cardvend.db"


def completed_import(data_dir: Path, rows: int) -> dict[str, Any] | None:
    """The record of a completed import of ``rows`` customers, or None."""
    try:
        marker = json.loads((home_dir(data_dir, rows) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker.get("rows") != rows or not database_path(data_dir, rows).is_file():
        return None
    return dict(marker)


def _run_checked(
    cmd: list[str], env: dict[str, str], what: str
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed with exit code {proc.returncode}:\n{proc.stderr}")
    return proc


def run(
    rows: int = FULL_ROWS, data_dir: Path = DEFAULT_DATA_DIR, *, profile: Path | None = None
) -> list[dict[str, Any]]:
    data_dir = Path(data_dir).resolve()
    csv_file = ensure_customers_csv(data_dir, rows)
    home = home_dir(data_dir, rows)
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    env = child_env(home)

    progress(f"main.py demo in {home} ...")
    t0 = time.perf_counter()
    _run_checked([sys.executable, "main.py", "demo"], env, "main.py demo")
    demo_seconds = time.perf_counter() - t0

    rusage_file = home / "import-rusage.json"
    # an administrator's set-up step: the demo administrator runs it
    args = ["customers", "import", str(csv_file.path), "--json", "--operator", DEMO_ADMIN]
    import_env = {**env, "CARDVEND_PASSWORD": DEMO_ADMIN_PASSWORD}
    if profile is None:
        cmd = [sys.executable, "-c", RUSAGE_LAUNCHER, str(rusage_file), *args]
    else:
        launcher = _PROFILE_LAUNCHER.replace("LAUNCHER", repr(RUSAGE_LAUNCHER), 1)
        cmd = [
            sys.executable,
            "-c",
            launcher,
            str(Path(profile).resolve()),
            str(rusage_file),
            *args,
        ]
    progress(f"main.py customers import {csv_file.path.name} ({rows:,} rows) ...")
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=import_env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - t0
    children_max_mb = children_peak_rss_mb()
    try:
        report = json.loads(proc.stdout)
        usage = json.loads(rusage_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"the import printed no JSON report (exit code {proc.returncode}): {exc}\n"
            f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
        ) from exc

    db = database_path(data_dir, rows)
    wal = db.with_name(db.name + "-wal")
    peak_mb = maxrss_to_mb(int(usage["ru_maxrss"]))
    target_seconds = TARGET_SECONDS_PER_MILLION * rows / 1_000_000
    complete = (
        report.get("committed") is True
        and report.get("imported") == rows
        and report.get("bad") == 0
        and proc.returncode == 0
    )
    record: dict[str, Any] = {
        "bench": "import",
        "rows": rows,
        "imported": report.get("imported"),
        "bad": report.get("bad"),
        "committed": report.get("committed"),
        "exit_code": proc.returncode,
        "seconds": rounded(seconds, 2),
        "rows_per_s": round(rows / seconds) if seconds > 0 else None,
        "peak_rss_mb": rounded(peak_mb, 1),
        "cpu_user_seconds": rounded(float(usage["ru_utime"]), 2),
        "cpu_system_seconds": rounded(float(usage["ru_stime"]), 2),
        "children_max_rss_mb": rounded(children_max_mb, 1),
        "demo_seconds": rounded(demo_seconds, 2),
        "csv_mb": rounded(csv_file.bytes / 2**20, 1),
        "csv_reused": not csv_file.generated,
        "csv_generate_seconds": rounded(csv_file.seconds, 2),
        "db_mb": rounded(db.stat().st_size / 2**20, 1) if db.exists() else None,
        "wal_mb_after": rounded(wal.stat().st_size / 2**20, 1) if wal.exists() else 0.0,
        "profiled": profile is not None,
        "target": (
            f"seconds <= {target_seconds:g} and peak_rss_mb <= {TARGET_PEAK_RSS_MB:g}"
            " and every row imported"
        ),
        "target_seconds": rounded(target_seconds, 1),
        "target_peak_rss_mb": TARGET_PEAK_RSS_MB,
        "ok": complete and seconds <= target_seconds and peak_mb <= TARGET_PEAK_RSS_MB,
        "database": str(db),
        "csv": str(csv_file.path),
    }
    if report.get("errors"):
        record["first_errors"] = report["errors"][:5]
    if complete:
        (home / MARKER).write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    return [emit(record)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=FULL_ROWS)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--profile", type=Path, help="run the import under cProfile, stats here")
    args = parser.parse_args(argv)
    run(args.rows, args.data_dir, profile=args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
