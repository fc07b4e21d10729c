"""``cardvend card emulate`` in its own process: a card image (or a PSAM) served on a vpcd slot,
reached through pcscd like a card in a physical reader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


class Emulator:
    def __init__(self, home: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARDVEND_")}
        env.update(CARDVEND_HOME=str(home), CARDVEND_LANG="en")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "card", "emulate", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "Serving card" in line, (line, self.proc.stderr.read() if self.proc.stderr else "")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0
