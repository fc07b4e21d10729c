"""``cardvend card emulate`` in its own process: a card image (or a PSAM) served on a vpcd slot,
reached through pcscd like a card in a physical reader.

``stop()`` returns once pcscd has seen the card leave its slot.  The emulator process cannot keep
a pulled card out long enough for pcscd's poll the way an in-process ``VpcdCard`` does (that rule
is per process), so a card served next in the slot would otherwise be taken for this one: pcscd
answers with this card's ATR and the first command fails ("Transaction failed")."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.pcsc_fixtures import READER_SLOT0
from tests.pcsc_fixtures import READER_SLOT1
from tests.pcsc_fixtures import wait_card_absent
from tests.rigs.env import child_env


class Emulator:
    def __init__(self, home: Path, *args: str) -> None:
        slot = args[args.index("--slot") + 1] if "--slot" in args else "0"
        self.reader = {"0": READER_SLOT0, "1": READER_SLOT1}[slot]
        env = child_env(CARDVEND_HOME=str(home), CARDVEND_LANG="en")
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
        wait_card_absent(self.reader)
