"""A ``cardvend`` command started as a long-running process of its own (a simulator, the
station, a gateway), once it printed the line that says it is ready."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.rigs.env import child_env


def home_env(home: Path) -> dict[str, str]:
    """This environment without its ``CARDVEND_`` settings, with ``CARDVEND_HOME`` at ``home``."""
    env = child_env()
    env["CARDVEND_HOME"] = str(home)
    return env


def start(args: list[str], env: dict[str, str], wait_for: str) -> tuple[subprocess.Popen[str], str]:
    """``main.py --lang en ARGS``; (the process, its first line), which must hold ``wait_for``."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--lang", "en", *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if wait_for not in line:
        proc.kill()
        raise AssertionError(f"{args[:2]} did not start: {line!r}")
    return proc, line


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
