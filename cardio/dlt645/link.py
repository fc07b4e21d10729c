"""Meter links (:class:`app.ports.MeterLink`): a serial RS485 bus or a TCP terminal connection.

Both are one class, :class:`FrameLink`, over a byte line (:class:`app.ports.ByteLink`): the
serial line of :mod:`cardio.serial_link` (2400 baud 8E1 by default) or :class:`TcpLine`, a TCP
connection to a terminal (concentrator) that carries frames for many meter addresses.

A transaction (:meth:`FrameLink.transact`):

1. discards bytes already waiting (a late answer to an earlier question is never taken for this
   one) and sends the request;
2. waits up to ``timeout`` for the answer to begin; once bytes arrive it waits while they keep
   coming with pauses of at most ``byte_timeout`` (DL/T 645: 500 ms);
3. takes the first frame that answers the request: from a meter, same function, an address the
   request's address matches, and for reads the same data identifier.  Other frames (our own
   echo on a two-wire bus, a late answer meant for another meter) are ignored;
4. retries (``retries`` times) when nothing came, when only damaged frames came, or when the
   line broke (the line is reopened); never when the meter answered, even with an error reply.

With nothing usable it raises :class:`MeterNoAnswer` after every attempt, or the last damaged
frame's error (:class:`ChecksumError` ...) if the meter answered but never intact.  A line that
cannot be opened raises at once (:class:`~cardio.serial_link.SerialPortError`,
:class:`MeterLinkError`).  One transaction at a time per link (a lock), so threads may share one.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from app.ports import ByteLink
from cardio.dlt645.errors import CLOSED
from cardio.dlt645.errors import REFUSED
from cardio.dlt645.errors import TIMEOUT
from cardio.dlt645.errors import UNREACHABLE
from cardio.dlt645.errors import FrameError
from cardio.dlt645.errors import MeterLinkError
from cardio.dlt645.errors import MeterNoAnswer
from cardio.dlt645.frame import MAX_DATA
from cardio.dlt645.frame import MIN_FRAME
from cardio.dlt645.frame import PREAMBLE
from cardio.dlt645.frame import Frame
from cardio.dlt645.frame import Function
from cardio.dlt645.frame import address_matches as _address_matches
from cardio.dlt645.frame import decode_frame
from cardio.dlt645.parser import FrameParser
from cardio.serial_link import SerialPortError
from cardio.serial_link import open_serial

log = logging.getLogger(__name__)

DISCARD_CHUNK: Final = 4096
MAX_FRAME: Final = len(PREAMBLE) + MIN_FRAME + MAX_DATA
_READS: Final = (Function.READ, Function.READ_FOLLOW_UP)


@dataclass(frozen=True)
class SerialSettings:
    """An RS485 meter bus. DL/T 645 meters default to 2400 baud, 8 data bits, even parity."""

    port: str
    baudrate: int = 2400
    parity: str = "E"  # N, E or O
    bytesize: int = 8
    stopbits: int = 1
    timeout: float = 1.0  # for the answer to begin
    byte_timeout: float = 0.5  # the longest pause inside an answer
    retries: int = 2

    @property
    def bits_per_byte(self) -> int:
        return 1 + self.bytesize + (self.parity != "N") + self.stopbits

    def line_time(self, size: int) -> float:
        """Seconds ``size`` bytes take on the wire."""
        return size * self.bits_per_byte / self.baudrate


@dataclass(frozen=True)
class TcpSettings:
    """A terminal (concentrator) that relays frames to the meters behind it."""

    host: str
    port: int
    connect_timeout: float = 5.0
    timeout: float = 3.0  # a terminal relays to a meter and back: slower than a bus
    byte_timeout: float = 0.5
    retries: int = 1

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


def answers(request: Frame, reply: Frame) -> bool:
    """Whether ``reply`` is the addressed meter's answer to ``request``."""
    if not reply.from_meter or reply.function != request.function:
        return False
    if not _address_matches(request.address, reply.address):
        return False
    if request.function in _READS and not reply.is_error:
        return reply.data[:4] == request.data[:4]
    return True


class TcpLine:
    """A TCP connection as a byte line (:class:`app.ports.ByteLink`)."""

    def __init__(self, sock: socket.socket, endpoint: str) -> None:
        self._sock = sock
        self.endpoint = endpoint

    @classmethod
    def connect(cls, host: str, port: int, timeout: float) -> TcpLine:
        endpoint = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except ConnectionRefusedError as exc:
            raise MeterLinkError(endpoint, REFUSED, str(exc)) from exc
        except TimeoutError as exc:
            raise MeterLinkError(endpoint, TIMEOUT, str(exc)) from exc
        except OSError as exc:  # no route, unknown host, network down
            raise MeterLinkError(endpoint, UNREACHABLE, str(exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.debug("connected to meter terminal %s", endpoint)
        return cls(sock, endpoint)

    def write(self, data: bytes) -> None:
        try:
            self._sock.settimeout(None)
            self._sock.sendall(data)
        except OSError as exc:
            raise MeterLinkError(self.endpoint, CLOSED, str(exc)) from exc

    def read(self, size: int, timeout: float) -> bytes:
        try:
            self._sock.settimeout(max(timeout, 0.0))
            data = self._sock.recv(max(size, 1))
        except (TimeoutError, BlockingIOError):
            return b""
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return b""
            raise MeterLinkError(self.endpoint, CLOSED, str(exc)) from exc
        if not data:
            raise MeterLinkError(self.endpoint, CLOSED, "closed by the terminal")
        return data

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError as exc:
            log.warning("%s: closing failed: %s", self.endpoint, exc)


LineError = (SerialPortError, MeterLinkError)


class FrameLink:
    """:class:`app.ports.MeterLink` over a byte line that ``opener`` opens (and reopens after
    the line broke). See the module for the rules."""

    def __init__(
        self,
        opener: Callable[[], ByteLink],
        *,
        name: str,
        timeout: float,
        byte_timeout: float,
        retries: int,
        byte_time: float = 0.0,
    ) -> None:
        self._opener = opener
        self.name = name
        self.timeout = timeout
        self.byte_timeout = byte_timeout
        self.retries = retries
        self.byte_time = byte_time  # seconds per byte on the wire (0 for TCP)
        self._line: ByteLink | None = opener()  # a line that cannot be opened raises now
        self._parser = FrameParser()
        self._lock = threading.Lock()

    def transact(self, request: bytes) -> bytes:
        question = decode_frame(request)
        with self._lock:
            started = time.monotonic()
            damage: FrameError | None = None
            broken: Exception | None = None
            for attempt in range(1 + self.retries):
                try:
                    reply, damaged = self._attempt(request, question)
                except LineError as exc:
                    log.info("%s: attempt %d: %s", self.name, attempt + 1, exc)
                    self._drop()
                    broken = exc
                    continue
                if reply is not None:
                    return reply.encode(preamble=False)
                damage = damaged or damage
                log.info(
                    "%s: no usable answer from %s (attempt %d)",
                    self.name,
                    question.address,
                    attempt + 1,
                )
            if damage is not None:
                raise damage
            if broken is not None:
                raise broken
            raise MeterNoAnswer(question.address, time.monotonic() - started, 1 + self.retries)

    def send(self, request: bytes) -> None:
        with self._lock:
            try:
                self._open().write(request)
            except LineError:
                self._drop()  # one reopen, then the error stands
                self._open().write(request)
            log.debug("%s: sent %s", self.name, decode_frame(request).describe())

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _open(self) -> ByteLink:
        if self._line is None:
            self._line = self._opener()
        return self._line

    def _drop(self) -> None:
        if self._line is not None:
            self._line.close()
            self._line = None
        self._parser.reset()

    def _attempt(self, request: bytes, question: Frame) -> tuple[Frame | None, FrameError | None]:
        line = self._open()
        self._parser.reset()
        for _ in range(64):  # bytes left over from before: never an answer to this question
            if not line.read(DISCARD_CHUNK, 0.0):
                break
        line.write(request)
        log.debug("%s: sent %s", self.name, question.describe())
        return self._await(line, question)

    def _await(self, line: ByteLink, question: Frame) -> tuple[Frame | None, FrameError | None]:
        parser = self._parser
        now = time.monotonic()
        deadline = now + self.timeout
        limit = deadline + self.byte_timeout + MAX_FRAME * self.byte_time * 2
        damaged: FrameError | None = None
        while (left := deadline - now) > 0:
            chunk = line.read(parser.needed(), left)
            now = time.monotonic()
            if not chunk:
                continue
            deadline = min(max(deadline, now + self.byte_timeout), limit)
            for item in parser.feed(chunk):
                if isinstance(item, FrameError):
                    log.info("%s: %s (%s)", self.name, item, item.detail)
                    damaged = item
                elif answers(question, item):
                    log.debug("%s: received %s", self.name, item.describe())
                    return item, damaged
                else:
                    log.debug("%s: ignored %s", self.name, item.describe())
        cut = parser.end()
        return None, cut or damaged


def open_serial_link(settings: SerialSettings) -> FrameLink:
    """A meter bus on a serial port, opened now (a typed error names the port if it cannot)."""

    def opener() -> ByteLink:
        return open_serial(
            settings.port,
            settings.baudrate,
            parity=settings.parity,
            bytesize=settings.bytesize,
            stopbits=settings.stopbits,
        )

    return _frame_link(opener, settings.port, settings, byte_time=settings.line_time(1))


def connect_tcp_link(settings: TcpSettings) -> FrameLink:
    """A terminal connection, made now; it is made again after it broke."""

    def opener() -> ByteLink:
        return TcpLine.connect(settings.host, settings.port, settings.connect_timeout)

    return _frame_link(opener, settings.endpoint, settings)


def _frame_link(
    opener: Callable[[], ByteLink],
    name: str,
    settings: SerialSettings | TcpSettings,
    byte_time: float = 0.0,
) -> FrameLink:
    """A :class:`FrameLink` with the timeouts and retries of ``settings``."""
    return FrameLink(
        opener,
        name=name,
        timeout=settings.timeout,
        byte_timeout=settings.byte_timeout,
        retries=settings.retries,
        byte_time=byte_time,
    )
