"""PC/SC card readers through pyscard: the real :class:`app.ports.CardReaderPort`.

Threads
    * :class:`CardThread` (thread name ``card``): every PC/SC call that touches a card runs on this
      one worker.  :meth:`PcscChannel.transmit` and the other calls submit their work to it and
      wait; a call made on the card thread itself runs inline, so a whole card session may be
      submitted as one function.  The composition root (main.py) builds the one card thread and
      hands it to the ports and to the GUI (``ctx.card_worker``, an :class:`app.ports.CardWorker`),
      so the GUI's card operations and their APDUs run on the same thread; a port built without
      one shares :func:`default_card_thread`.  The thread starts on first use (and again in a
      forked child, where a thread started before ``fork`` does not exist).
    * the monitor thread (``pcsc-monitor``) waits in ``SCardGetStatusChange`` and calls the
      :meth:`PcscReaderPort.subscribe` callbacks.  **Callbacks run on that thread**: they must only
      hand the event on (a queue, a Qt signal) and return quickly; never touch the UI or a card
      there.

    The monitor is ours, not pyscard's ``CardMonitor``/``ReaderMonitor``: measured with pyscard
    2.3.1, both of their threads end for good at the first ``SCARD_E_NO_SERVICE`` when pcscd
    stops (so no event ever arrives again), and constructing a second ``ReaderMonitor()`` anywhere
    in the process drops every observer already registered.  Ours re-establishes its context
    after pcscd restarts and reports the readers as removed while pcscd is away.

Errors
    PC/SC failures become the typed card errors of :mod:`app.domain.card`: ``NoReader`` (pcscd not
    running, no or unknown reader), ``NoCard`` (nothing in the reader at connect), ``CardRemoved``
    (card taken out or reset by another program during a session), ``CardCommandError`` (the card
    gave no usable answer).  Status words are *not* errors here: ``transmit`` returns them as an int
    (``SW1 << 8 | SW2``) and the profile layer decides what they mean.

Recovery
    The port keeps one PC/SC context for :meth:`~PcscReaderPort.readers` and card waits; when pcscd
    has restarted, the next call finds the context dead and establishes a new one.  Every channel
    has a context of its own, so a new :meth:`~PcscReaderPort.connect` works once pcscd is back.

Tracing
    Each APDU exchange is logged at DEBUG on the card thread: header and length always; the data of
    EXTERNAL AUTHENTICATE (INS 82), the MAC (last 4 data bytes) of secure-messaging commands
    (CLA 04), the last 4 bytes of challenges (answers to GET CHALLENGE, INS 84, and to secure
    commands) and the PSAM's cryptograms and MACs (CLA 80 INS FA, cardio/PROFILE.md) are shown as
    ``**``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Container, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar, TypeVarTuple

from smartcard import scard

from app.domain.card import CardCommandError, CardError, CardRemoved, NoCard, NoReader
from app.ports import CardEvent, CardEventKind

log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
EventCallback = Callable[[CardEvent], None]


# --------------------------------------------------------------------------- hresults


def _u32(value: Any) -> int:
    return int(value) & 0xFFFFFFFF


_OK = 0
_W_REMOVED_CARD = _u32(scard.SCARD_W_REMOVED_CARD)
_W_RESET_CARD = _u32(scard.SCARD_W_RESET_CARD)
_W_UNPOWERED_CARD = _u32(scard.SCARD_W_UNPOWERED_CARD)
_W_UNRESPONSIVE_CARD = _u32(scard.SCARD_W_UNRESPONSIVE_CARD)
_E_NO_SMARTCARD = _u32(scard.SCARD_E_NO_SMARTCARD)
_E_INVALID_HANDLE = _u32(scard.SCARD_E_INVALID_HANDLE)
_E_UNKNOWN_READER = _u32(scard.SCARD_E_UNKNOWN_READER)
_E_READER_UNAVAILABLE = _u32(scard.SCARD_E_READER_UNAVAILABLE)
_E_NO_READERS_AVAILABLE = _u32(scard.SCARD_E_NO_READERS_AVAILABLE)
_E_NO_SERVICE = _u32(scard.SCARD_E_NO_SERVICE)
_E_SERVICE_STOPPED = _u32(scard.SCARD_E_SERVICE_STOPPED)
_F_COMM_ERROR = _u32(scard.SCARD_F_COMM_ERROR)
_E_TIMEOUT = _u32(scard.SCARD_E_TIMEOUT)
_E_CANCELLED = _u32(scard.SCARD_E_CANCELLED)
_E_SHARING_VIOLATION = _u32(scard.SCARD_E_SHARING_VIOLATION)

_CARD_GONE = {_W_REMOVED_CARD, _W_RESET_CARD, _W_UNPOWERED_CARD, _E_NO_SMARTCARD, _E_INVALID_HANDLE}
_READER_GONE = {_E_UNKNOWN_READER, _E_READER_UNAVAILABLE, _E_NO_READERS_AVAILABLE}
_SERVICE_GONE = {_E_NO_SERVICE, _E_SERVICE_STOPPED, _F_COMM_ERROR}
# the context itself is dead (pcscd stopped or restarted): establish a new one
_CONTEXT_LOST = _SERVICE_GONE | {_E_INVALID_HANDLE}

_HRESULT_NAMES = {
    _u32(getattr(scard, name)): name
    for name in dir(scard)
    if name.startswith(("SCARD_E_", "SCARD_W_", "SCARD_F_"))
    and isinstance(getattr(scard, name), int)
}

_PRESENT = int(scard.SCARD_STATE_PRESENT)
_CHANGED = int(scard.SCARD_STATE_CHANGED)
_GONE_STATES = int(scard.SCARD_STATE_UNKNOWN) | int(scard.SCARD_STATE_IGNORE)
_UNAWARE = int(scard.SCARD_STATE_UNAWARE)
_PNP = "\\\\?PnP?\\Notification"

# after an unclear transmit failure: how long to wait for pcscd to notice a removal
_REMOVAL_GRACE_MS = 1500
_MAX_GET_RESPONSE = 64


def hresult_text(hresult: int) -> str:
    """``SCARD_W_REMOVED_CARD 0x80100069`` — for logs and error details."""
    hr = _u32(hresult)
    name = _HRESULT_NAMES.get(hr)
    return f"{name} 0x{hr:08X}" if name else f"0x{hr:08X}"


# --------------------------------------------------------------------------- the card thread


_Job = tuple[Future[Any], Callable[[], Any]]


class CardThread:
    """One worker thread that runs all card traffic, in submission order.

    The thread starts on first use, not when the object is built. A daemon thread, so a card call
    stuck in PC/SC (``SCardBeginTransaction`` waits for as long as another program holds the
    card) cannot keep the application from exiting."""

    def __init__(self, name: str = "card") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._closed = False
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _started(self) -> queue.SimpleQueue[_Job | None]:
        """The queue of a running thread: started on first use, and again in a forked child
        (a thread started before ``fork`` does not exist in the child). Called under the lock."""
        if self._thread is None or self._pid != os.getpid():
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(
                target=self._work, args=(self._queue,), name=self.name, daemon=True
            )
            self._pid = os.getpid()
            self._thread.start()
        return self._queue

    def is_current(self) -> bool:
        """Whether the caller is running on this card thread."""
        return threading.current_thread() is self._thread

    def submit(self, fn: Callable[[*Ts], T], /, *args: *Ts) -> Future[T]:
        """Queue ``fn(*args)`` on the card thread; its Future gives the result or the exception."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"card thread {self.name!r} is shut down")
            self._started().put((future, lambda: fn(*args)))
        return future

    def run(self, fn: Callable[[*Ts], T], /, *args: *Ts, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` on the card thread and return its result or raise its exception.

        Runs inline when called on the card thread.  ``timeout`` (seconds) raises ``TimeoutError``
        in the caller; the call itself keeps running on the card thread."""
        if self.is_current():
            return fn(*args)
        return self.submit(fn, *args).result(timeout)

    def shutdown(self, wait: bool = True) -> None:
        """Finish the work already queued, then stop.  Later ``submit`` calls raise RuntimeError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread if self._pid == os.getpid() else None
            if thread is None:
                return
            self._queue.put(None)
        if wait and not self.is_current():
            thread.join()

    def _work(self, jobs: queue.SimpleQueue[_Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            future, call = job
            del job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            del future, call


_default_lock = threading.Lock()
_default_thread: CardThread | None = None


def default_card_thread() -> CardThread:
    """The process-wide card thread (named ``card``), started on first use."""
    global _default_thread
    with _default_lock:
        if _default_thread is None:
            _default_thread = CardThread("card")
        return _default_thread


# --------------------------------------------------------------------------- APDU tracing

_INS_NAMES = {
    0xA4: "SELECT",
    0xB0: "READ BINARY",
    0xD6: "UPDATE BINARY",
    0x84: "GET CHALLENGE",
    0x82: "EXTERNAL AUTHENTICATE",
    0xC0: "GET RESPONSE",
    0xE0: "ISSUE",
    0x0E: "ERASE",
    0xFA: "PSAM",
}


@dataclass(frozen=True)
class _Parsed:
    header: bytes
    data: bytes
    le: int | None
    well_formed: bool  # False: extended length or malformed; the whole body is masked


def _parse(apdu: bytes) -> _Parsed:
    header = apdu[:4]
    if len(apdu) <= 4:
        return _Parsed(header, b"", None, len(apdu) == 4)
    if len(apdu) == 5:
        return _Parsed(header, b"", apdu[4], True)
    lc = apdu[4]
    if lc and len(apdu) == 5 + lc:
        return _Parsed(header, apdu[5:], None, True)
    if lc and len(apdu) == 6 + lc:
        return _Parsed(header, apdu[5:-1], apdu[-1], True)
    return _Parsed(header, apdu[4:], None, False)


def _secure_messaging(cla: int) -> bool:
    return bool(cla & 0x0C)


def _masked_command_bytes(apdu: bytes, parsed: _Parsed) -> set[int]:
    n = len(parsed.data)
    if not parsed.well_formed or len(apdu) < 4:
        return set(range(n))
    cla, ins, p1 = apdu[0], apdu[1], apdu[2]
    if ins == 0x82:  # EXTERNAL AUTHENTICATE: the cryptogram
        return set(range(n))
    if cla == 0x80 and ins == 0xFA:  # PSAM (cardio/PROFILE.md)
        if p1 in (0x00, 0x02):  # challenge tail / write-back MAC at the end
            return set(range(max(0, n - 4), n))
        if p1 == 0x01:  # serial 8 || IV (challenge 8 || 00*8) || data: the challenge tail
            return set(range(12, min(16, n)))
        return set()
    if _secure_messaging(cla):  # the MAC
        return set(range(max(0, n - 4), n))
    return set()


def _masked_response_bytes(apdu: bytes, data: bytes) -> set[int]:
    n = len(data)
    if len(apdu) < 4:
        return set(range(n))
    cla, ins, p1 = apdu[0], apdu[1], apdu[2]
    if cla == 0x80 and ins == 0xFA and p1 in (0x00, 0x01, 0x03):  # cryptogram or MAC
        return set(range(n))
    if ins == 0x84 or _secure_messaging(cla):  # a challenge (secure commands answer the next one)
        return set(range(max(0, n - 4), n))
    return set()


def _hex(data: bytes, masked: Container[int] = ()) -> str:
    return " ".join("**" if i in masked else f"{b:02X}" for i, b in enumerate(data))


def trace_command(apdu: bytes) -> str:
    """A command APDU for the log, secrets masked: ``00 A4 04 00 Lc=07 A0 00 … Le=00 (13 B)``."""
    parsed = _parse(apdu)
    parts = [_hex(parsed.header)]
    if parsed.data:
        label = f"Lc={len(parsed.data):02X}" if parsed.well_formed else "body"
        parts += [label, _hex(parsed.data, _masked_command_bytes(apdu, parsed))]
    if parsed.le is not None:
        parts.append(f"Le={parsed.le:02X}")
    parts.append(f"({len(apdu)} B)")
    return " ".join(parts)


def trace_response(apdu: bytes, data: bytes, sw: int) -> str:
    """A response for the log, secrets masked: ``9000 (8 B) 01 02 03 04 ** ** ** **``."""
    text = f"{sw:04X} ({len(data)} B)"
    if data:
        text += " " + _hex(data, _masked_response_bytes(apdu, data))
    return text


def command_name(apdu: bytes) -> str:
    """``SELECT (00 A4 04 00)`` — names a command in an error message, never its data."""
    header = _hex(apdu[:4])
    name = _INS_NAMES.get(apdu[1]) if len(apdu) > 1 else None
    return f"{name} ({header})" if name else header


def _get_response_cla(cla: int) -> int:
    return cla & 0x03 if not cla & 0x80 else 0x00  # keep the logical channel, drop SM bits


def _with_le(apdu: bytes, le: int) -> bytes | None:
    """The same command with Le replaced (or added), for a 6Cxx answer."""
    parsed = _parse(apdu)
    if not parsed.well_formed:
        return None
    body = apdu if parsed.le is None else apdu[:-1]
    return body + bytes([le])


# --------------------------------------------------------------------------- channel


def _pci_for(protocol: int) -> Any:
    if protocol == scard.SCARD_PROTOCOL_T0:
        return scard.SCARD_PCI_T0
    if protocol == scard.SCARD_PROTOCOL_T1:
        return scard.SCARD_PCI_T1
    return scard.SCARD_PCI_RAW


class PcscChannel:
    """A connection to the card in one reader (:class:`app.ports.ApduChannel`).

    Made by :meth:`PcscReaderPort.connect`.  Every PC/SC call runs on the card thread.

    :meth:`transaction` locks the card against other programs and other connections
    (``SCardBeginTransaction``) and, inside this process, against other threads using this
    channel: they wait until the owning thread leaves its outermost transaction.  Nested
    transactions on the same thread are counted; only the outermost one locks and unlocks.  Code
    running *on* the card thread never waits (it acts for whoever submitted it).

    :meth:`close` disconnects with a card reset, so no other program inherits an authenticated
    state."""

    def __init__(
        self,
        card_thread: CardThread,
        reader: str,
        context: int,
        hcard: int,
        protocol: int,
        atr: bytes,
        event_count: int,
    ) -> None:
        self._thread = card_thread
        self._reader = reader
        self._context: int | None = context
        self._hcard: int | None = hcard
        self._protocol = protocol
        self._pci = _pci_for(protocol)
        self._atr = atr
        self._event_count = event_count
        self._cond = threading.Condition()
        self._owner: int | None = None
        self._claims = 0
        self._locks = 0

    def __repr__(self) -> str:
        state = "closed" if self._hcard is None else f"T={self._protocol - 1}"
        return f"<PcscChannel {self._reader!r} {state} atr={self._atr.hex().upper()}>"

    def __enter__(self) -> PcscChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def reader(self) -> str:
        return self._reader

    @property
    def atr(self) -> bytes:
        return self._atr

    @property
    def closed(self) -> bool:
        return self._hcard is None

    # -- public calls (any thread)

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one command APDU; returns the response data and the status word as an int.

        61xx (more data: GET RESPONSE) and 6Cxx (wrong Le: send again with the right one) are
        handled here, so the caller sees the final answer."""
        command = bytes(apdu)
        if len(command) < 4:
            raise ValueError(f"an APDU has at least 4 bytes, got {len(command)}")
        with self._claimed():
            return self._thread.run(self._transmit, command)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Exclusive use of the card for a multi-APDU sequence."""
        with self._claimed():
            with self._cond:
                outermost = self._locks == 0
            if outermost:
                self._thread.run(self._begin)
            with self._cond:
                self._locks += 1
            try:
                yield
            finally:
                with self._cond:
                    self._locks -= 1
                    last = self._locks == 0
                if last:
                    self._end_quietly()

    def close(self) -> None:
        """Disconnect (resetting the card) and release the context.  Safe to call twice."""
        if self._hcard is None and self._context is None:
            return
        try:
            self._thread.run(self._close)
        except RuntimeError:  # the card thread is gone: release from here
            self._close()

    # -- ownership between threads of this process

    @contextlib.contextmanager
    def _claimed(self) -> Iterator[None]:
        if self._thread.is_current():
            yield
            return
        me = threading.get_ident()
        with self._cond:
            while self._owner is not None and self._owner != me:
                self._cond.wait()
            self._owner = me
            self._claims += 1
        try:
            yield
        finally:
            with self._cond:
                self._claims -= 1
                if self._claims == 0:
                    self._owner = None
                    self._cond.notify_all()

    # -- on the card thread

    def _handle(self) -> int:
        if self._hcard is None:
            raise CardError(detail="the connection to the card is closed")
        return self._hcard

    def _transmit(self, command: bytes) -> tuple[bytes, int]:
        hcard = self._handle()
        debug = log.isEnabledFor(logging.DEBUG)
        if debug:
            log.debug("APDU %s > %s", self._reader, trace_command(command))
        started = time.perf_counter()
        data, sw = self._exchange(hcard, command)
        if sw >> 8 == 0x6C:
            again = _with_le(command, sw & 0xFF)
            if again is not None:
                if debug:
                    log.debug(
                        "APDU %s   %04X: sent again with Le=%02X", self._reader, sw, sw & 0xFF
                    )
                data, sw = self._exchange(hcard, again)
        if sw >> 8 == 0x61:
            collected = bytearray(data)
            cla = _get_response_cla(command[0])
            for _ in range(_MAX_GET_RESPONSE):
                if sw >> 8 != 0x61:
                    break
                get = bytes([cla, 0xC0, 0x00, 0x00, sw & 0xFF])
                if debug:
                    log.debug("APDU %s   %04X: GET RESPONSE Le=%02X", self._reader, sw, sw & 0xFF)
                data, sw = self._exchange(hcard, get)
                if sw >> 8 == 0x6C:
                    data, sw = self._exchange(hcard, get[:4] + bytes([sw & 0xFF]))
                collected += data
            data = bytes(collected)
        if debug:
            elapsed = (time.perf_counter() - started) * 1000
            log.debug(
                "APDU %s < %s %.2f ms", self._reader, trace_response(command, data, sw), elapsed
            )
        return data, sw

    def _exchange(self, hcard: int, apdu: bytes) -> tuple[bytes, int]:
        hr, response = scard.SCardTransmit(hcard, self._pci, list(apdu))
        hr = _u32(hr)
        if hr != _OK:
            raise self._failure(hr, command_name(apdu))
        if len(response) < 2:
            raise self._failure(None, command_name(apdu))
        raw = bytes(b & 0xFF for b in response)
        return raw[:-2], (raw[-2] << 8) | raw[-1]

    def _failure(self, hr: int | None, what: str) -> CardError:
        detail = hresult_text(hr) if hr is not None else "no status word"
        if hr in _CARD_GONE:
            log.info("%s: card gone during %s (%s)", self._reader, what, detail)
            return CardRemoved()
        if hr in _READER_GONE or hr in _SERVICE_GONE:
            log.warning(
                "%s: reader or PC/SC service gone during %s (%s)", self._reader, what, detail
            )
            return NoReader()
        if self._card_gone():
            log.info("%s: card pulled during %s (%s)", self._reader, what, detail)
            return CardRemoved()
        log.warning("%s: %s failed: %s", self._reader, what, detail)
        return CardCommandError(sw=f"no answer ({detail})", command=what)

    def _gone(self, state: int) -> bool:
        return not state & _PRESENT or (state >> 16) != self._event_count

    def _card_gone(self) -> bool:
        """After an unclear failure: is the card out (or a different card in)?  Waits a little for
        pcscd, which notices a removal only at its next poll of the reader."""
        if self._context is None:
            return True
        hr, states = scard.SCardGetStatusChange(self._context, 0, [(self._reader, _UNAWARE)])
        if _u32(hr) != _OK:
            return True
        state = int(states[0][1])
        if self._gone(state):
            return True
        hr, states = scard.SCardGetStatusChange(
            self._context, _REMOVAL_GRACE_MS, [(self._reader, state & ~_CHANGED)]
        )
        hr = _u32(hr)
        if hr == _E_TIMEOUT:
            return False
        return hr != _OK or self._gone(int(states[0][1]))

    def _begin(self) -> None:
        hr = _u32(scard.SCardBeginTransaction(self._handle()))
        if hr != _OK:
            raise self._failure(hr, "BEGIN TRANSACTION")

    def _end(self) -> None:
        if self._hcard is None:
            return
        hr = _u32(scard.SCardEndTransaction(self._hcard, scard.SCARD_LEAVE_CARD))
        if hr in _CARD_GONE:
            log.debug(
                "%s: end of transaction: card already gone (%s)", self._reader, hresult_text(hr)
            )
        elif hr != _OK:
            log.warning("%s: end of transaction failed: %s", self._reader, hresult_text(hr))

    def _end_quietly(self) -> None:
        # never raises: it runs in a finally block and must not hide the caller's own error
        try:
            self._thread.run(self._end)
        except Exception:
            log.warning("%s: could not end the transaction", self._reader, exc_info=True)

    def _close(self) -> None:
        hcard, self._hcard = self._hcard, None
        context, self._context = self._context, None
        if hcard is not None:
            hr = _u32(scard.SCardDisconnect(hcard, scard.SCARD_RESET_CARD))
            if hr != _OK and hr not in _CARD_GONE and hr not in _CONTEXT_LOST:
                log.warning("%s: disconnect failed: %s", self._reader, hresult_text(hr))
        if context is not None:
            scard.SCardReleaseContext(context)
        log.debug("%s: channel closed", self._reader)


# --------------------------------------------------------------------------- the port


def _connect_error(hr: int, reader: str) -> CardError:
    detail = hresult_text(hr)
    log.info("%s: connect failed: %s", reader, detail)
    if hr in (_E_NO_SMARTCARD, _W_REMOVED_CARD):
        return NoCard(reader=reader)
    if hr in _READER_GONE or hr in _SERVICE_GONE:
        return NoReader()
    if hr in (_W_UNRESPONSIVE_CARD, _W_UNPOWERED_CARD):
        return CardError(detail="the card does not answer; check that it is inserted the right way")
    if hr == _E_SHARING_VIOLATION:
        return CardError(detail="another program is using the card")
    return CardError(detail=detail)


class PcscReaderPort:
    """PC/SC readers (:class:`app.ports.CardReaderPort`).

    ``card_thread``: where card traffic runs (default: the process-wide one).  ``card_wait``:
    seconds :meth:`connect` waits for a card by default.  ``poll_interval``: how long the monitor
    blocks in one ``SCardGetStatusChange`` (an upper bound on how late a stop is noticed)."""

    def __init__(
        self,
        card_thread: CardThread | None = None,
        *,
        card_wait: float = 0.0,
        poll_interval: float = 0.5,
    ) -> None:
        self._thread = card_thread or default_card_thread()
        self._card_wait = card_wait
        self._poll_interval = poll_interval
        self._context: int | None = None  # touched on the card thread only
        self._lock = threading.Lock()
        self._monitor: _Monitor | None = None

    @property
    def card_thread(self) -> CardThread:
        return self._thread

    def readers(self) -> list[str]:
        """Reader names.  ``NoReader`` when pcscd is not running or no reader is connected."""
        return self._thread.run(self._readers)

    def connect(self, reader: str, *, timeout: float | None = None) -> PcscChannel:
        """Connect to the card in ``reader``, waiting up to ``timeout`` seconds (default:
        ``card_wait``) for one.  ``NoCard`` when none came, ``NoReader`` for an unknown reader."""
        wait = self._card_wait if timeout is None else timeout
        if wait > 0:
            deadline = time.monotonic() + wait
            while not self._thread.run(
                self._card_present, reader, min(0.25, max(0.0, deadline - time.monotonic()))
            ):
                if time.monotonic() >= deadline:
                    raise NoCard(reader=reader)
        return self._thread.run(self._open, reader)

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Deliver reader and card events to ``callback``; returns the function that stops them.

        A new subscriber first gets the current state (READER_ADDED for each reader, CARD_INSERTED
        for each card in one), then the changes.  While pcscd is not running its readers count as
        removed.  The callback runs on the ``pcsc-monitor`` thread: hand the event on and return.
        After the returned function returns, the callback is not called again."""
        with self._lock:
            if self._monitor is None:
                self._monitor = _Monitor(self._poll_interval)
            monitor = self._monitor
            key = monitor.add(callback)
        done = False

        def unsubscribe() -> None:
            nonlocal done
            with self._lock:
                if done:
                    return
                done = True
            monitor.remove(key)
            with self._lock:
                last = self._monitor is monitor and monitor.idle()
                if last:
                    self._monitor = None
            if last:
                monitor.stop()

        return unsubscribe

    def close(self) -> None:
        """Stop the monitor and release the port's context (channels stay open)."""
        with self._lock:
            monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.stop()
        with contextlib.suppress(RuntimeError):
            self._thread.run(self._release_context)

    # -- on the card thread

    def _release_context(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            scard.SCardReleaseContext(context)

    def _call(self, op: Callable[[int], Any]) -> tuple[int, Any]:
        """``op(context)`` with the port's context, made anew when pcscd has restarted."""
        for _attempt in range(2):
            if self._context is None:
                hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
                if _u32(hr) != _OK:
                    log.info("PC/SC not available: %s", hresult_text(_u32(hr)))
                    raise NoReader()
                self._context = context
            result = op(self._context)
            hr = _u32(result[0])
            if hr in _CONTEXT_LOST:
                log.info("PC/SC context lost (%s); establishing a new one", hresult_text(hr))
                self._release_context()
                continue
            return hr, result[1] if len(result) > 1 else None
        raise NoReader()

    def _readers(self) -> list[str]:
        hr, names = self._call(lambda ctx: scard.SCardListReaders(ctx, []))
        if hr == _E_NO_READERS_AVAILABLE or (hr == _OK and not names):
            raise NoReader()
        if hr != _OK:
            raise CardError(detail=hresult_text(hr))
        return [str(name) for name in names]

    def _card_present(self, reader: str, wait: float) -> bool:
        hr, states = self._call(
            lambda ctx: scard.SCardGetStatusChange(ctx, 0, [(reader, _UNAWARE)])
        )
        if hr in _READER_GONE:
            raise NoReader()
        if hr != _OK:
            raise CardError(detail=hresult_text(hr))
        state = int(states[0][1])
        if state & _PRESENT or wait <= 0:
            return bool(state & _PRESENT)
        current = [(reader, state & ~_CHANGED)]
        hr, states = self._call(
            lambda ctx: scard.SCardGetStatusChange(ctx, max(1, int(wait * 1000)), current)
        )
        if hr in (_E_TIMEOUT, _E_CANCELLED):
            return False
        if hr in _READER_GONE:
            raise NoReader()
        if hr != _OK:
            raise CardError(detail=hresult_text(hr))
        return bool(int(states[0][1]) & _PRESENT)

    def _open(self, reader: str) -> PcscChannel:
        hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if _u32(hr) != _OK:
            log.info("PC/SC not available: %s", hresult_text(_u32(hr)))
            raise NoReader()
        hcard = None
        try:
            hr, hcard, protocol = scard.SCardConnect(
                context,
                reader,
                scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            if _u32(hr) != _OK:
                hcard = None
                raise _connect_error(_u32(hr), reader)
            hr, _name, _state, _protocol, atr = scard.SCardStatus(hcard)
            if _u32(hr) != _OK:
                raise _connect_error(_u32(hr), reader)
            hr, states = scard.SCardGetStatusChange(context, 0, [(reader, _UNAWARE)])
            event_count = int(states[0][1]) >> 16 if _u32(hr) == _OK else 0
            channel = PcscChannel(
                self._thread, reader, context, hcard, int(protocol), bytes(atr), event_count
            )
        except BaseException:
            if hcard is not None:
                scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
            scard.SCardReleaseContext(context)
            raise
        log.debug("%s: connected, ATR %s", reader, bytes(atr).hex(" ").upper())
        return channel


# --------------------------------------------------------------------------- the monitor


@dataclass
class _Seen:
    state: int = _UNAWARE  # the last event state, handed back as the current state
    present: bool = False
    atr: bytes = b""
    count: int = -1  # pcsc-lite's card event counter (upper 16 bits of the state)


class _Monitor:
    """Watches readers and cards on its own thread and calls the subscribers there."""

    RETRY_SECONDS = 0.5

    def __init__(self, poll_interval: float) -> None:
        self._poll_ms = max(1, int(poll_interval * 1000))
        self._stopping = threading.Event()
        self._context_lock = threading.Lock()  # SCardCancel from other threads vs. release
        self._context: int | None = None
        self._subs_lock = threading.Lock()
        # held while calling subscribers; lock order: delivery, then subs
        self._delivery = threading.RLock()
        self._keys = itertools.count()
        self._pending: dict[int, EventCallback] = {}
        self._callbacks: dict[int, EventCallback] = {}
        self._seen: dict[str, _Seen] = {}
        self._pnp_state = _UNAWARE
        self._thread = threading.Thread(target=self._run, name="pcsc-monitor", daemon=True)
        self._thread.start()

    # -- any thread

    def add(self, callback: EventCallback) -> int:
        with self._subs_lock:
            key = next(self._keys)
            self._pending[key] = callback
        self._wake()
        return key

    def remove(self, key: int) -> None:
        with self._delivery, self._subs_lock:
            self._pending.pop(key, None)
            self._callbacks.pop(key, None)

    def idle(self) -> bool:
        with self._subs_lock:
            return not self._pending and not self._callbacks

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(self._poll_ms / 1000 + 2)

    def _wake(self) -> None:
        with self._context_lock:
            if self._context is not None:
                scard.SCardCancel(self._context)

    # -- the monitor thread

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._step()
                except Exception:
                    log.exception("card monitor: unexpected error")
                    self._stopping.wait(self.RETRY_SECONDS)
        finally:
            self._set_context(None)

    def _set_context(self, context: int | None) -> None:
        with self._context_lock:
            old, self._context = self._context, context
            if old is not None and old != context:
                scard.SCardReleaseContext(old)

    def _step(self) -> None:
        self._deliver_snapshots()
        context = self._context
        if context is None:
            hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if _u32(hr) != _OK:
                if self._seen:
                    log.info("card monitor: PC/SC not available (%s)", hresult_text(_u32(hr)))
                self._forget_all()
                self._stopping.wait(self.RETRY_SECONDS)
                return
            self._set_context(context)
        hr, names = scard.SCardListReaders(context, [])
        hr = _u32(hr)
        if hr == _E_NO_READERS_AVAILABLE:
            names = []
        elif hr in _CONTEXT_LOST:
            self._set_context(None)
            return
        elif hr != _OK:
            log.warning("card monitor: listing readers failed: %s", hresult_text(hr))
            self._stopping.wait(self.RETRY_SECONDS)
            return
        readers = [str(name) for name in names]
        self._sync_readers(readers)
        states = [(name, self._seen[name].state) for name in readers]
        states.append((_PNP, self._pnp_state))
        hr, new_states = scard.SCardGetStatusChange(context, self._poll_ms, states)
        hr = _u32(hr)
        if hr in (_E_TIMEOUT, _E_CANCELLED, _E_UNKNOWN_READER):
            return  # nothing new, woken up, or a reader went away: list again
        if hr in _CONTEXT_LOST:
            self._set_context(None)
            return
        if hr != _OK:
            log.warning("card monitor: waiting for changes failed: %s", hresult_text(hr))
            self._stopping.wait(self.RETRY_SECONDS)
            return
        for name, state, atr in new_states:
            if name == _PNP:
                self._pnp_state = int(state) & ~_CHANGED
            else:
                self._update(str(name), int(state), bytes(b & 0xFF for b in atr))

    def _sync_readers(self, readers: list[str]) -> None:
        for name in [n for n in self._seen if n not in readers]:
            self._drop(name)
        for name in readers:
            if name not in self._seen:
                self._seen[name] = _Seen()
                self._emit(CardEvent(CardEventKind.READER_ADDED, name))

    def _drop(self, name: str) -> None:
        seen = self._seen.pop(name)
        if seen.present:
            self._emit(CardEvent(CardEventKind.CARD_REMOVED, name, seen.atr))
        self._emit(CardEvent(CardEventKind.READER_REMOVED, name))

    def _forget_all(self) -> None:
        for name in list(self._seen):
            self._drop(name)
        self._pnp_state = _UNAWARE

    def _update(self, name: str, state: int, atr: bytes) -> None:
        seen = self._seen.get(name)
        if seen is None or state & _GONE_STATES:
            return  # the reader went away: the next listing reports it
        seen.state = state & ~_CHANGED
        present = bool(state & _PRESENT)
        count = state >> 16
        if seen.present and (not present or count != seen.count):
            seen.present = False
            self._emit(CardEvent(CardEventKind.CARD_REMOVED, name, seen.atr))
        if present and not seen.present:
            seen.present, seen.atr = True, atr
            self._emit(CardEvent(CardEventKind.CARD_INSERTED, name, atr))
        seen.count = count

    def _deliver_snapshots(self) -> None:
        with self._delivery:
            with self._subs_lock:
                fresh, self._pending = self._pending, {}
            for key, callback in fresh.items():
                for name, seen in self._seen.items():
                    self._call(callback, CardEvent(CardEventKind.READER_ADDED, name))
                    if seen.present:
                        self._call(callback, CardEvent(CardEventKind.CARD_INSERTED, name, seen.atr))
                with self._subs_lock:
                    self._callbacks[key] = callback

    def _emit(self, event: CardEvent) -> None:
        log.debug("card event %s %s", event.kind.value, event.reader)
        with self._delivery:
            for callback in list(self._callbacks.values()):
                self._call(callback, event)

    @staticmethod
    def _call(callback: EventCallback, event: CardEvent) -> None:
        try:
            callback(event)
        except Exception:
            log.exception("card event callback failed on %s", event)
