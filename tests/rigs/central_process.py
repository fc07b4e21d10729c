"""The reference central server in its own process (cardvend central serve), as an office runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_central(tmp_path: Path) -> Iterator[str]:
    """``cardvend central serve`` on a free port with its own SQLite database: yields its URL,
    stops it cleanly afterwards (wrap it in a fixture)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDVEND_")}
    env["CARDVEND_HOME"] = str(tmp_path / "central-home")
    proc = subprocess.Popen(
        [sys.executable, "main.py", "central", "serve", "--port", str(port),
         "--db", f"sqlite:///{tmp_path / 'central.db'}", "--enrolment-key", "office-secret"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert f"http://127.0.0.1:{port}" in line, proc.stderr.read() if proc.stderr else line
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    assert proc.wait(10) == 0  # SIGTERM is a clean stop
