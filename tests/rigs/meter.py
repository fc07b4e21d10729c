"""cardvend meter simulate as a process (serial or TCP), for the meter commands and the meter page."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.rigs.env import child_env

METER = "200000000002"


def meter_env(home: Path, **extra: str) -> dict[str, str]:
    env = child_env()
    env.update({"CARDVEND_HOME": str(home), "CARDVEND_LANG": "en", **extra})
    return env


class Simulator:
    """``cardvend meter simulate`` as a process; :attr:`where` is what its first line names."""

    def __init__(self, home: Path, state: Path, *line: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "main.py"),
                "meter",
                "simulate",
                *line,
                "--meter-state",
                str(state),
                "--meter-no",
                METER,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=meter_env(home),
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first:
            self.stop()
            pytest.fail(f"the simulator did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.first = first
        found = re.search(r"tcp ([\d.]+:\d+)", first)
        self.endpoint = found.group(1) if found else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        assert self.proc.returncode in (0, -15), self.proc.stderr.read()  # type: ignore[union-attr]
