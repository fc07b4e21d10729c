"""The card commands through a real pcscd: `cardvend card emulate` serves the card (and a PSAM)
on the vpcd slots, the other commands reach them with --reader like a physical reader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.pcsc_fixtures import READER_SLOT0, READER_SLOT1, Pcscd, wait_card_absent
from tests.test_cli import run


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


@pytest.fixture
def home(pcscd: Pcscd, tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def test_read_issue_erase_through_pcscd_with_a_psam(home: Path) -> None:
    image = home / "card.json"
    assert run(home, "card", "blank", "--image", str(image)).returncode == 0
    assert run(home, "card", "issue", "--image", str(image), "--kind", "user").returncode == 0
    card = Emulator(home, "--slot", "0", "--image", str(image))
    psam = None
    try:
        r = run(home, "card", "readers", "--json")
        assert r.returncode == 0, r.stderr
        assert {READER_SLOT0, READER_SLOT1} <= set(json.loads(r.stdout))
        r = run(home, "card", "read", "--reader", READER_SLOT0, "--json")
        assert r.returncode == 0, r.stderr
        first = json.loads(r.stdout)
        assert first["kind"] == "user"

        # from now on the master keys are used only inside the PSAM in the second slot
        psam = Emulator(home, "--slot", "1", "--psam")
        (home / "config").mkdir(exist_ok=True)
        (home / "config" / "settings.json").write_text(
            json.dumps({"schema_version": 1, "key_provider": "psam", "psam_reader": READER_SLOT1})
        )
        r = run(home, "card", "erase", "--reader", READER_SLOT0)
        assert r.returncode == 0, r.stderr
        r = run(home, "card", "issue", "--reader", READER_SLOT0, "--kind", "check")
        assert r.returncode == 0, r.stderr
        r = run(home, "card", "read", "--reader", READER_SLOT0, "--json")
        data = json.loads(r.stdout)
        assert (data["serial"], data["kind"]) == (first["serial"], "check")
    finally:
        card.stop()
        if psam is not None:
            psam.stop()
        wait_card_absent(READER_SLOT0)
        wait_card_absent(READER_SLOT1)
    # the emulator persisted what the card acknowledged
    r = run(home, "card", "read", "--image", str(image), "--json")
    assert json.loads(r.stdout)["kind"] == "check"


def test_no_card_and_unknown_reader(home: Path) -> None:
    r = run(home, "card", "read", "--reader", READER_SLOT0)
    assert r.returncode == 1 and "no card" in r.stderr.lower()
    r = run(home, "card", "read", "--reader", "No Such Reader 99")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
