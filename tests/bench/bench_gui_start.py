"""GUI start benchmark: from process start to a usable login window.

    python -m tests.bench.bench_gui_start [--runs N] [--importtime]

A fresh CARDVEND_HOME whose database is prepared beforehand (``ui.app.prepare``: migrations and
the demo data; its time is reported on its own as ``kind: "prepare"``, the first start's work),
then ``--runs`` child processes (default 5), each ``python main.py`` as a person starts it: the
real ``main.main([])`` → ``ui.app.run_gui`` → the login dialog, with the database's start-up work
(``prepare`` again: migrations checked, in-doubt sales recovered, the audit chain verified) in
the background behind it.  A small launcher (:data:`LAUNCHER`) wraps ``ui.app.start_session`` to
watch, without changing what runs:

* ``shown``: the login dialog's first paint;
* ``ready``: the start-up work done (a sign-in is taken at once, not made to wait);
* ``usable``: the later of the two.

Each is measured from the process start: the parent's clock when it spawned the child (wall
time, so it includes the interpreter's own start).  Qt runs offscreen unless QT_QPA_PLATFORM
says otherwise.  Target: median ``usable`` at most 1.5 s.  ``--importtime`` runs one more child
with ``-X importtime`` and prints the slowest imports before the login (stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.common import ROOT
from tests.bench.common import child_env
from tests.bench.common import emit
from tests.bench.common import median
from tests.bench.common import progress
from tests.bench.common import rounded

TARGET_S = 1.5
TIMEOUT_S = 60

# Runs ``main.main([])`` with ``ui.app.start_session`` wrapped: prints one JSON line with the
# wall-clock times (time.time()) of the launcher's first line, the login dialog's first paint
# and the end of the start-up work, then quits the application.
LAUNCHER = """\
import time
T_TOP = time.time()
import json, sys
sys.argv = ["main.py"]
import main
import ui.app as ui_app

_start_session = ui_app.start_session
marks = {"top": T_TOP}

def start_session(ctx, **kw):
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    marks["session"] = time.time()
    session = _start_session(ctx, **kw)

    class FirstPaint(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Paint and "shown" not in marks:
                marks["shown"] = time.time()
            return False

    watcher = FirstPaint()
    session.dialog.installEventFilter(watcher)
    session._bench_watcher = watcher

    def check():
        if session.ready and "ready" not in marks:
            marks["ready"] = time.time()
        if "ready" in marks and "shown" in marks:
            timer.stop()
            marks["dialog"] = type(session.dialog).__name__
            print("BENCH " + json.dumps(marks), flush=True)
            QApplication.instance().quit()

    timer = QTimer()
    timer.setInterval(2)
    timer.timeout.connect(check)
    timer.start()
    session._bench_timer = timer
    return session

ui_app.start_session = start_session
sys.exit(main.main([]))
"""


def prepare_home(home: Path) -> float:
    """Migrations and the demo data in ``home``, as the first start does; seconds taken."""
    from tests.rigs.context import make_ctx
    from ui.app import prepare

    ctx = make_ctx(home)
    t0 = time.perf_counter()
    prepare(ctx)
    seconds = time.perf_counter() - t0
    ctx.db.dispose()
    return seconds


def start_once(home: Path, extra: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """One ``python main.py`` up to a usable login window; (times from the spawn, stderr)."""
    env = child_env(home)
    env.setdefault("QT_QPA_PLATFORM", os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    spawn = time.time()
    proc = subprocess.run(
        [sys.executable, *(extra or []), "-c", LAUNCHER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(
            f"the login window did not come up (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    marks = json.loads(line[6:])
    times = {
        "interpreter_s": marks["top"] - spawn,
        "to_session_s": marks["session"] - spawn,
        "shown_s": marks["shown"] - spawn,
        "ready_s": marks["ready"] - spawn,
        "dialog": marks["dialog"],
    }
    times["usable_s"] = max(times["shown_s"], times["ready_s"])
    return times, proc.stderr


def slowest_imports(stderr: str, top: int = 12) -> list[tuple[str, float]]:
    """The ``-X importtime`` lines with the largest cumulative times (seconds)."""
    found: list[tuple[str, float]] = []
    for raw in stderr.splitlines():
        if not raw.startswith("import time:") or "|" not in raw:
            continue
        parts = [p.strip() for p in raw[len("import time:") :].split("|")]
        try:
            cumulative = int(parts[1]) / 1e6
        except (ValueError, IndexError):
            continue
        found.append((parts[2], cumulative))
    found.sort(key=lambda x: -x[1])
    return found[:top]


def bench_start(runs: int, importtime: bool = False) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cardvend-bench-gui-") as tmp:
        home = Path(tmp)
        progress("preparing the database (migrations, demo data) ...")
        prep = prepare_home(home)
        records.append(
            emit(
                {
                    "bench": "gui_start",
                    "kind": "prepare",
                    "seconds": rounded(prep),
                    "target": "reference (the first start's database work, not in the start time)",
                    "ok": True,
                }
            )
        )
        samples: list[dict[str, Any]] = []
        for i in range(runs):
            times, _stderr = start_once(home)
            progress(
                f"start {i + 1}/{runs}: usable {times['usable_s']:.3f} s "
                f"(painted {times['shown_s']:.3f} s, ready {times['ready_s']:.3f} s, "
                f"interpreter {times['interpreter_s']:.3f} s)"
            )
            samples.append(times)
        usable = [s["usable_s"] for s in samples]
        med = median(usable)
        records.append(
            emit(
                {
                    "bench": "gui_start",
                    "kind": "login_usable",
                    "runs": runs,
                    "dialog": samples[-1]["dialog"],
                    "platform": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
                    "median_s": rounded(med),
                    "max_s": rounded(max(usable)),
                    "shown_median_s": rounded(median([s["shown_s"] for s in samples])),
                    "ready_median_s": rounded(median([s["ready_s"] for s in samples])),
                    "interpreter_median_s": rounded(median([s["interpreter_s"] for s in samples])),
                    "samples_s": [rounded(u) for u in usable],
                    "target": f"median_s <= {TARGET_S:g} (process start to a usable login)",
                    "ok": med <= TARGET_S,
                }
            )
        )
        if importtime:
            _times, stderr = start_once(home, ["-X", "importtime"])
            for name, seconds in slowest_imports(stderr):
                progress(f"import {name}: {seconds * 1000:.0f} ms cumulative")
    return records


def run(runs: int = 5) -> list[dict[str, Any]]:
    return bench_start(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--importtime", action="store_true", help="list the slowest imports")
    args = parser.parse_args(argv)
    bench_start(args.runs, args.importtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
