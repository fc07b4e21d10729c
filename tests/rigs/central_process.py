"""The reference central server in its own process (cardvend central serve), as an office runs it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT
from tests.rigs.env import child_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CentralProcess:
    """``cardvend central serve --port P ARGS`` in a child process with its own home; ``url``
    is what its first line announced (``central listening on URL``)."""

    def __init__(
        self, home: Path, *args: str, lang: str = "en", exe: list[str] | None = None
    ) -> None:
        self.port = free_port()
        env = child_env(CARDVEND_HOME=str(home), CARDVEND_LANG=lang)
        home.mkdir(parents=True, exist_ok=True)
        self.stderr_path = home / "central-stderr.txt"  # a file: a full pipe would block it
        self._stderr = self.stderr_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [*(exe or [sys.executable, "main.py"]), "central", "serve", "--port", str(self.port),
             *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("central listening on "):
            self.proc.kill()
            self.proc.wait(10)
            self._stderr.close()
            raise AssertionError(f"the central server did not start: {line!r} {self.stderr()}")
        self.url = line.removeprefix("central listening on ").strip()

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")[-3000:]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int:
        """SIGTERM, and its exit status (killed after 15 s: then -9)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._stderr.close()


def serve_central(tmp_path: Path) -> Iterator[str]:
    """``cardvend central serve`` on a free port with its own SQLite database: yields its URL,
    stops it cleanly afterwards (wrap it in a fixture)."""
    central = CentralProcess(
        tmp_path / "central-home",
        "--db", f"sqlite:///{tmp_path / 'central.db'}", "--enrolment-key", "office-secret",
    )  # fmt: skip
    assert central.url == f"http://127.0.0.1:{central.port}"
    yield central.url
    assert central.stop() == 0  # SIGTERM is a clean stop
