"""The card emulator as a virtual card behind pcscd, through the vpcd driver (vsmartcard).

pcscd's vpcd driver listens on TCP ``35963 + slot`` ("Virtual PCD 00 00", "Virtual PCD 00 01"),
or on the port its reader.conf names (``DEVICENAME /dev/null:0xPORT``), given to the emulator as
``CARDVEND_VPCD_PORT``; :class:`VpcdCard` connects to it as the card.  Every message is a 2-byte
big-endian length and a payload: a one-byte payload is a control (``00`` power off, ``01`` power
on, ``02`` reset, ``04`` send the ATR, answered with the ATR), anything longer an APDU, answered
with response data and SW1 SW2.  Closing the socket takes the card out of the reader.

TCP_NODELAY is set once and TCP_QUICKACK before every receive: without them every APDU waits for
delayed ACKs (measured 48 ms a round trip, 0.14 ms with them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

from app.errors import ValidationError
from app.i18n import N_
from cardio.emulator import CardOS
from cardio.emulator import CardVanished

log = logging.getLogger(__name__)

VPCD_HOST = "127.0.0.1"
VPCD_PORT = 35963  # slot N listens on VPCD_PORT + N, unless CARDVEND_VPCD_PORT says otherwise
VPCD_PORT_ENV = "CARDVEND_VPCD_PORT"
VPCD_SLOTS = 2  # the driver's slots: "Virtual PCD 00 00" and "Virtual PCD 00 01"

CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

# when a card was last pulled from each (host, port), by any VpcdCard of this process
_pulled_at: dict[tuple[str, int], float] = {}
_pulled_lock = threading.Lock()


def _mark_pulled(address: tuple[str, int]) -> None:
    with _pulled_lock:
        _pulled_at[address] = time.monotonic()


def _last_pulled(address: tuple[str, int]) -> float:
    with _pulled_lock:
        return _pulled_at.get(address, float("-inf"))


def base_port() -> int:
    """Slot 0's port: ``CARDVEND_VPCD_PORT`` where set (a pcscd configured for another port),
    else the driver's default."""
    text = os.environ.get(VPCD_PORT_ENV, "").strip()
    if not text:
        return VPCD_PORT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65536 - VPCD_SLOTS:
        raise ValidationError(
            N_("{name} must be a TCP port number, not {value}"), name=VPCD_PORT_ENV, value=text
        )
    return int(text)


def port_for_slot(slot: int) -> int:
    return base_port() + slot


class VpcdCard:
    """Serves ``card_os`` to pcscd as the card in one vpcd slot.

    ``start()`` runs :meth:`serve_forever` on a daemon thread; ``remove()`` pulls the card (closes
    the socket) and ``insert()`` puts it back (reconnects).  While pcscd is not listening the card
    retries with a growing delay (``retry_initial`` up to ``retry_max`` seconds).

    A pulled card stays out at least ``min_out_time`` seconds, however soon ``insert()`` comes:
    pcscd notices a removal only by polling the driver (every 0.4 s).  A card back before that
    poll is never seen leaving, and pcscd then keeps answering "no smart card" for a card that is
    there (measured with pcscd 1.9.9 and vpcd 0.8); a person cannot swap a card that fast.  The
    rule holds per reader slot across all VpcdCards of the process, so a new virtual card put into
    a slot just after another one was pulled or stopped waits too; a card served by another
    process is not covered (wait until pcscd has seen it leave before serving the next one)."""

    def __init__(
        self,
        card_os: CardOS,
        host: str = VPCD_HOST,
        port: int | None = None,
        *,
        slot: int | None = None,
        retry_initial: float = 0.02,
        retry_max: float = 1.0,
        min_out_time: float = 1.0,
    ) -> None:
        self.card_os = card_os
        if slot is not None:
            port = port_for_slot(slot)
        self.address = (host, base_port() if port is None else port)
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self.min_out_time = min_out_time
        self._cond = threading.Condition()
        self._inserted = True
        self._stopping = False
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # ---- state

    @property
    def inserted(self) -> bool:
        with self._cond:
            return self._inserted

    @property
    def connected(self) -> bool:
        """True while a TCP connection to the vpcd driver is open."""
        with self._cond:
            return self._sock is not None

    def wait_connected(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._sock is not None, timeout)

    # ---- control

    def start(self) -> VpcdCard:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stopping = False
            self._thread = threading.Thread(
                target=self.serve_forever, name=f"vpcd-card-{self.address[1]}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            sock = self._sock
            if sock is not None:  # a card that was in leaves: the next one in the slot waits
                _mark_pulled(self.address)
            self._cond.notify_all()
        self._shutdown(sock)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def remove(self, timeout: float = 5.0) -> None:
        """Pull the card: close the connection and stay out until :meth:`insert`."""
        with self._cond:
            if self._inserted:
                _mark_pulled(self.address)
            self._inserted = False
            sock = self._sock
            self._cond.notify_all()
        self._shutdown(sock)
        if sock is not None and threading.current_thread() is not self._thread:
            with self._cond:
                self._cond.wait_for(lambda: self._sock is not sock, timeout)

    def insert(self) -> None:
        """Put the card back: connect to the driver again."""
        with self._cond:
            self._inserted = True
            self._cond.notify_all()

    def __enter__(self) -> VpcdCard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- serving

    def serve_forever(self) -> None:
        """Connect, serve, reconnect, until :meth:`stop`.  Blocks."""
        delay = self._retry_initial
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._inserted)
                if self._stopping:
                    return
                out_for = _last_pulled(self.address) + self.min_out_time - time.monotonic()
                if out_for > 0:  # let pcscd see the card gone first
                    self._cond.wait_for(lambda: self._stopping or not self._inserted, out_for)
                    continue
            sock = self._connect()
            if sock is None:
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping or not self._inserted, delay)
                delay = min(delay * 2, self._retry_max)
                continue
            delay = self._retry_initial
            try:
                self._serve(sock)
            finally:
                with contextlib.suppress(OSError):
                    sock.close()
                self.card_os.power_off()  # out of the reader: no power, no session
                with self._cond:
                    self._sock = None
                    self._cond.notify_all()

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(self.address, timeout=2.0)
        except OSError:
            return None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._cond:
            if self._stopping or not self._inserted:
                sock.close()
                return None
            self._sock = sock
            self._cond.notify_all()
        log.debug("virtual card connected to vpcd at %s:%d", *self.address)
        return sock

    def _serve(self, sock: socket.socket) -> None:
        while True:
            header = _recv_exact(sock, 2)
            if header is None:
                return
            length = int.from_bytes(header, "big")
            payload = _recv_exact(sock, length) if length else b""
            if payload is None:
                return
            if length == 0:
                continue
            if length == 1:
                answer = self._control(payload[0])
                if answer is None:
                    continue
            else:
                try:
                    answer = self.card_os.process(payload)
                except CardVanished:
                    with self._cond:
                        self._inserted = False
                        _mark_pulled(self.address)
                    log.debug("virtual card vanished during a command")
                    return  # the caller closes the socket without answering
                except Exception:
                    log.exception("the emulated card failed on a command")
                    answer = b"\x6f\x00"  # no precise diagnosis
            try:
                sock.sendall(len(answer).to_bytes(2, "big") + answer)
            except OSError:
                return

    def _control(self, code: int) -> bytes | None:
        if code == CTRL_POWER_OFF:
            self.card_os.power_off()
        elif code == CTRL_POWER_ON:
            self.card_os.power_on()
        elif code == CTRL_RESET:
            self.card_os.reset()
        elif code == CTRL_ATR:
            return self.card_os.atr
        else:
            log.warning("vpcd sent an unknown control byte %02X", code)
        return None

    @staticmethod
    def _shutdown(sock: socket.socket | None) -> None:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """Exactly ``n`` bytes, or None when the connection closed or failed."""
    chunks = bytearray()
    while len(chunks) < n:
        try:
            if _QUICKACK is not None:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            chunk = sock.recv(n - len(chunks))
        except OSError:
            return None
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)
