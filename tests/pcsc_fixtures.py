"""A real pcscd with the vpcd virtual readers, for tests that go through PC/SC.

``pcscd`` (session scope): reuses a pcscd that is already running (``pgrep -x pcscd``), otherwise
starts ``pcscd --foreground`` and stops it after the session.  Skips with the reason when the
daemon, the vpcd driver or pyscard is missing.  Works as root in CI (creates /run/pcscd).

A pcscd started here reads a reader.conf.d of its own (``--config``) whose vpcd reader listens on
the driver's default ports (35963, 35964) when they are free, else on the next free pair: any
process may hold one of them (a listening server, or a long-lived connection that the kernel gave
it as its local port), and the driver then cannot listen, so the readers never appear.  The
session exports the port to the emulators it starts (``CARDVEND_VPCD_PORT``).

A vpcd slot serves one card connection at a time, so test sessions running side by side on one
machine would take each other's cards.  The fixture therefore holds an advisory lock
(``$TMPDIR/cardvend-vpcd.lock``) for the whole session: sessions take turns, waiting up to
``CARDVEND_VPCD_LOCK_TIMEOUT`` seconds (default 240).

Register in conftest with ``from tests.pcsc_fixtures import pcscd  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardio.vpcd import VPCD_PORT
from cardio.vpcd import VPCD_PORT_ENV
from cardio.vpcd import VPCD_SLOTS

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_RUN_DIR = Path("/run/pcscd")
READER_SLOT0 = "Virtual PCD 00 00"
READER_SLOT1 = "Virtual PCD 00 01"
START_TIMEOUT = 15.0
POLL = 0.05
# pcscd polls the vpcd driver for presence every 0.4 s; a card back sooner is never seen leaving
PCSCD_POLL_MARGIN = 1.0
LOCK_PATH = Path(tempfile.gettempdir()) / "cardvend-vpcd.lock"
PORT_SEARCH = 100  # port pairs tried after the default one


def _listenable(port: int) -> bool:
    """Whether the vpcd driver could listen on ``port`` now (it binds every address with
    SO_REUSEADDR, so a connection lingering in TIME_WAIT does not stand in its way)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_vpcd_port(preferred: int = VPCD_PORT) -> int:
    """Slot 0's port for a pcscd started here: the preferred one when all its slots' ports are
    free, else the first free run of ports above it."""
    for n in range(PORT_SEARCH + 1):
        base = preferred + n * VPCD_SLOTS
        if all(_listenable(base + slot) for slot in range(VPCD_SLOTS)):
            return base
    raise RuntimeError(f"no {VPCD_SLOTS} free ports for the vpcd readers from {preferred} on")


def vpcd_config(folder: Path, port: int) -> Path:
    """A reader.conf.d for ``pcscd --config``: the vpcd reader (named as the Debian package
    names it) listening on ``port`` and the ports after it, one per slot."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vpcd").write_text(
        'FRIENDLYNAME "Virtual PCD"\n'
        f"DEVICENAME   /dev/null:0x{port:04X}\n"
        f"LIBPATH      {VPCD_DRIVER}\n"
        f"CHANNELID    0x{port:04X}\n",
        encoding="ascii",
    )
    return folder


class Pcscd:
    """The suite's pcscd: one that was already running (reused, never touched) or one started
    here, which tests may stop and start again (``owned``)."""

    def __init__(self, binary: str | None, readers: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.readers = readers
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.config: Path | None = None  # the reader.conf.d of a pcscd started here
        self.port = int(os.environ.get(VPCD_PORT_ENV) or VPCD_PORT)  # slot 0's vpcd port

    @property
    def started_here(self) -> bool:
        return self.binary is not None

    owned = started_here

    def start(self) -> None:
        assert self.binary is not None, "only a pcscd started here can be started again"
        with contextlib.suppress(PermissionError):
            PCSCD_RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.log_path is None:
            handle = tempfile.NamedTemporaryFile(prefix="pcscd-", suffix=".log", delete=False)
            handle.close()
            self.log_path = Path(handle.name)
        if self.config is None:
            self.port = free_vpcd_port()
            self.config = vpcd_config(Path(tempfile.mkdtemp(prefix="pcscd-conf-")), self.port)
        os.environ[VPCD_PORT_ENV] = str(self.port)  # for the emulators, here and in children
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--foreground", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        names = wait_for_readers()
        if READER_SLOT0 not in names:
            output = self.log_path.read_text(errors="replace")[-4000:]
            pytest.fail(
                f"pcscd did not offer {READER_SLOT0!r} (vpcd port {self.port}) within "
                f"{START_TIMEOUT:.0f} s (exit code {self.proc.poll()}); its log:\n{output}"
            )
        self.readers = names

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _find_pcscd() -> str | None:
    found = shutil.which("pcscd")
    if found:
        return found
    for candidate in ("/usr/sbin/pcscd", "/usr/local/sbin/pcscd", "/sbin/pcscd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def pcscd_running() -> bool:
    if shutil.which("pgrep"):
        return (
            subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, check=False).returncode
            == 0
        )
    for comm in Path("/proc").glob("[0-9]*/comm"):  # no pgrep: look at /proc directly
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == "pcscd":
                return True
    return False


def _virtual_readers() -> tuple[str, ...]:
    from smartcard.System import readers

    try:
        names = [str(r) for r in readers()]
    except Exception:
        return ()
    return tuple(n for n in names if n.startswith("Virtual PCD"))


def wait_for_readers(timeout: float = START_TIMEOUT) -> tuple[str, ...]:
    """The virtual readers, once pcscd lists slot 0 (or whatever it lists at the deadline).

    Never probes the vpcd ports: the driver would take a probe connection for a card."""
    deadline = time.monotonic() + timeout
    while True:
        names = _virtual_readers()
        if READER_SLOT0 in names:
            return names
        if time.monotonic() > deadline:
            return names
        time.sleep(POLL)


_held: list[int] = []  # the lock's file descriptor while this process holds it (re-entrant)


@contextlib.contextmanager
def exclusive_virtual_readers(timeout: float | None = None) -> Iterator[None]:
    """Hold the machine-wide advisory lock on the virtual readers (see the module docstring).
    Re-entrant within one process: a nested holder does not wait for itself."""
    if _held:
        _held.append(_held[0])
        try:
            yield
        finally:
            _held.pop()
        return
    if timeout is None:
        timeout = float(os.environ.get("CARDVEND_VPCD_LOCK_TIMEOUT", "240"))
    fd = os.open(LOCK_PATH, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the virtual readers stayed busy for {timeout:.0f} s: another test "
                        f"session holds {LOCK_PATH}"
                    )
                time.sleep(0.1)
        _held.append(fd)
        try:
            yield
        finally:
            _held.clear()
    finally:
        os.close(fd)  # releases the lock


@pytest.fixture(scope="session")
def pcscd() -> Iterator[Pcscd]:
    binary = _find_pcscd()
    if binary is None:
        pytest.skip("pcscd is not installed (Debian package pcscd)")
    if not VPCD_DRIVER.exists():
        pytest.skip(f"the vpcd driver {VPCD_DRIVER} is missing (Debian package vsmartcard-vpcd)")
    try:
        import smartcard.System  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"pyscard is not importable: {exc}")
    with exclusive_virtual_readers():
        try:
            yield from _pcscd_session(binary)
        except NoVpcdReader as exc:
            pytest.skip(str(exc))


class NoVpcdReader(RuntimeError):
    """A pcscd runs, but not with the vpcd reader (the suite skips its card tests; a benchmark
    stops with this error)."""


@contextlib.contextmanager
def pcscd_session() -> Iterator[Pcscd]:
    """The running pcscd, or one started here for the ``with`` block (benchmarks)."""
    binary = _find_pcscd()
    if binary is None:
        raise RuntimeError("pcscd is not installed (Debian package pcscd)")
    yield from _pcscd_session(binary)


def _pcscd_session(binary: str) -> Iterator[Pcscd]:
    if pcscd_running():
        names = wait_for_readers()
        if READER_SLOT0 not in names:
            raise NoVpcdReader(
                f"a pcscd is running without the vpcd reader {READER_SLOT0!r} "
                f"(readers: {list(names)}); restart it so it reads /etc/reader.conf.d/vpcd"
            )
        yield Pcscd(None, names)
        return
    daemon = Pcscd(binary)
    exported = os.environ.get(VPCD_PORT_ENV)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        if exported is None:
            os.environ.pop(VPCD_PORT_ENV, None)
        else:
            os.environ[VPCD_PORT_ENV] = exported
        if daemon.log_path is not None:
            with contextlib.suppress(OSError):
                daemon.log_path.unlink()
        if daemon.config is not None:
            shutil.rmtree(daemon.config, ignore_errors=True)


def wait_card_absent(reader: str = READER_SLOT0, timeout: float = 10.0) -> None:
    """Wait until pcscd has noticed that the card in ``reader`` is gone.

    pcscd notices a removal only by polling the driver; a new emulated card connecting before
    that poll would be taken for the old one.  Call this after stopping an emulated card."""
    from smartcard.Exceptions import CardConnectionException
    from smartcard.Exceptions import NoCardException
    from smartcard.System import readers

    time.sleep(PCSCD_POLL_MARGIN)  # pcscd must poll once while the card is out
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = [r for r in readers() if str(r) == reader]
        if not match:
            return
        conn = match[0].createConnection()
        try:
            conn.connect()
        except NoCardException:
            return
        except CardConnectionException:
            pass
        finally:
            with contextlib.suppress(Exception):
                conn.disconnect()
        time.sleep(POLL)
    raise AssertionError(f"a card stayed in {reader!r} for {timeout} s")


def pcscd_clients() -> list[str]:
    """The processes connected to pcscd now (``pid command``), to name whoever holds a reader
    when a test finds it taken.  Read from ``ss -x`` (socket pairs) and /proc (socket owners);
    an empty list where either is unavailable."""
    socket = str(PCSCD_RUN_DIR / "pcscd.comm")
    try:
        out = subprocess.run(["ss", "-xan"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    peers: set[str] = set()
    for line in out.splitlines():
        fields = line.split()
        # u_str ESTAB 0 0 <local path> <local inode> * <peer inode>
        if len(fields) >= 8 and fields[4] == socket and fields[1] == "ESTAB":
            peers.add(fields[7])
    owners: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in peers:
                        owners[target[8:-1]] = int(proc.name)
    found = []
    for pid in sorted(set(owners.values())):
        try:
            command = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            command = b"?"
        found.append(f"{pid} {command.decode(errors='replace').strip()[:160]}")
    return found


def card_connections_here() -> list[str]:
    """The card connections this process holds: its channels (cardio.pcsc) and pyscard's own
    connections (the rig's), by reader."""
    import gc

    from cardio.pcsc.channel import connected_channels

    found = [repr(channel) for channel in connected_channels()]
    with contextlib.suppress(ImportError):
        from smartcard.pcsc.PCSCCardConnection import PCSCCardConnection

        found += [
            f"pyscard {obj.reader!s}"
            for obj in gc.get_objects()
            if isinstance(obj, PCSCCardConnection) and getattr(obj, "hcard", None) is not None
        ]
    return found
