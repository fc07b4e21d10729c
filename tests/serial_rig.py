"""A serial line for tests: a socat pty pair (bytes written to one end come out of the other).

    from tests.serial_rig import PtyPair, needs_socat

``needs_socat`` skips a test where socat is not installed; the ``ptys`` fixture (registered in
``tests/conftest.py``) gives each test its own pair.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")


class PtyPair:
    """``socat pty,raw,echo=0,link=A pty,raw,echo=0,link=B``: bytes written to A come out of B."""

    def __init__(self, folder: Path) -> None:
        self.a = folder / "ttyA"
        self.b = folder / "ttyB"
        self.log = folder / "socat.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    "socat",
                    "-d",
                    "-d",
                    f"pty,raw,echo=0,link={self.a}",
                    f"pty,raw,echo=0,link={self.b}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not (self.a.exists() and self.b.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"socat did not make the pty pair: {self.log.read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(tmp_path)
    yield pair
    pair.stop()
