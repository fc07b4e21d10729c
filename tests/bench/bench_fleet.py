"""The simulated fleet of remote meters: thousands in one process behind one TCP endpoint.

    python -m tests.bench.bench_fleet [--meters N]

``fleet:serve`` -- ``cardvend fleet simulate`` with N meters (10,000 by default) at an hour a
second: seconds until it serves, its resident memory, the size of its state file, and one
acquisition round as the station makes it over one concentrator connection: every meter's
energy block (total and four rates) read in turn, as reads per second and the round's seconds.
Then every 10th meter tripped and the process stopped (SIGTERM) and started again: the seconds a
restart takes and whether every relay came back as it was left.  Targets: a round of 10,000
meters within 10 s on one connection, a start (or restart) within 10 s, under 300 MB resident.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cardio.dlt645 import MeterClient
from cardio.dlt645 import Password
from cardio.dlt645 import TcpSettings
from cardio.dlt645 import connect_tcp_link
from cardio.dlt645 import dataids as D
from cardio.dlt645.messages import RelayCommand
from tests.bench.common import bench_main
from tests.bench.common import emit
from tests.bench.common import progress
from tests.bench.common import rounded
from tests.rigs.env import child_env

ROOT = Path(__file__).resolve().parents[2]
ROUND_TARGET_S = 10.0
START_TARGET_S = 10.0
RSS_TARGET_MB = 300.0
FIRST = 300000000000


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _start(meters_file: Path, state: Path, home: Path) -> tuple[subprocess.Popen[str], int, float]:
    env = child_env()
    env["CARDVEND_HOME"] = str(home)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--lang", "en", "fleet", "simulate", "--tcp", "0",
         "--meters", str(meters_file), "--state", str(state), "--speed", "3600"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "127.0.0.1:" not in line:
        proc.kill()
        raise SystemExit(f"the fleet did not start: {line!r}")
    return proc, int(line.split("127.0.0.1:")[1].split()[0]), time.perf_counter() - t0


def run(meters: int = 10_000) -> list[dict[str, Any]]:
    addresses = [f"{FIRST + i:012d}" for i in range(meters)]
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        base = Path(tmp)
        meters_file = base / "meters.csv"
        meters_file.write_text("".join(a + "\n" for a in addresses))
        progress(f"fleet: {meters:,} meters")
        proc, port, start_s = _start(meters_file, base / "state", base / "home")
        client = MeterClient(connect_tcp_link(TcpSettings("127.0.0.1", port, timeout=5.0)))
        try:
            t0 = time.perf_counter()
            for address in addresses:
                client.read(address, D.POSITIVE_ENERGY_BLOCK)
            round_s = time.perf_counter() - t0
            rss = _rss_mb(proc.pid)
            until = client.read(addresses[0], D.DATE_TIME) + dt.timedelta(hours=12)
            tripped = addresses[::10]
            for address in tripped:
                client.relay(address, RelayCommand.TRIP, until, password=Password(),
                             operator="00000001")  # fmt: skip
        finally:
            client.link.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        state_kb = (base / "state" / "fleet.json").stat().st_size / 1024
        proc, port, restart_s = _start(meters_file, base / "state", base / "home")
        client = MeterClient(connect_tcp_link(TcpSettings("127.0.0.1", port, timeout=5.0)))
        try:
            kept = all(
                bool(client.read(a, D.STATUS_WORD_3) & D.Status3.RELAY_OPEN) == (i % 10 == 0)
                for i, a in enumerate(addresses[:200])
            )
        finally:
            client.link.close()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    round_target = ROUND_TARGET_S * meters / 10_000
    ok = (
        round_s <= round_target
        and max(start_s, restart_s) <= START_TARGET_S
        and rss <= RSS_TARGET_MB
        and kept
    )
    return [
        emit(
            {
                "bench": "fleet:serve",
                "meters": meters,
                "start_s": rounded(start_s, 2),
                "restart_s": rounded(restart_s, 2),
                "rss_mb": rounded(rss, 1),
                "state_kb": rounded(state_kb, 0),
                "round_s": rounded(round_s, 2),
                "reads_per_s": rounded(meters / round_s, 0),
                "relays_kept": kept,
                "target": (
                    f"round <= {round_target:g} s, start <= {START_TARGET_S:g} s, "
                    f"rss <= {RSS_TARGET_MB:g} MB"
                ),
                "ok": ok,
            }
        )
    ]


if __name__ == "__main__":
    sys.exit(bench_main(__doc__, run, None, meters=10_000))
