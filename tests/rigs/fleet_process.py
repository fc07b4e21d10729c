"""The demo fleet simulator (``cardvend fleet simulate --demo``) as a process of its own, serving
DL/T 645 over TCP on a free port: for tests that read remote meters through real sockets."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tests.rigs.processes import start, stop


@contextlib.contextmanager
def fleet_process(tmp_path: Path) -> Iterator[str]:
    """The simulator running with its state in ``tmp_path``; yields "127.0.0.1:PORT"."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDVEND_")}
    env["CARDVEND_HOME"] = str(tmp_path / "fleet-home")
    proc, line = start(
        ["fleet", "simulate", "--tcp", "0", "--demo", "--state", str(tmp_path / "fleet")],
        env,
        "Serving",
    )
    try:
        yield "127.0.0.1:" + line.split("127.0.0.1:")[1].split()[0]
    finally:
        stop([proc])
