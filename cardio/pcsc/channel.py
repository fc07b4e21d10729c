"""PcscChannel: one card session on a reader (transmit with GET RESPONSE, reconnect, typed errors)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from smartcard import scard

from app.domain.card import CardCommandError
from app.domain.card import CardError
from app.domain.card import CardRemoved
from app.domain.card import NoCard
from app.domain.card import NoReader
from cardio.pcsc.codes import _CARD_GONE
from cardio.pcsc.codes import _CHANGED
from cardio.pcsc.codes import _CONTEXT_LOST
from cardio.pcsc.codes import _E_NO_SMARTCARD
from cardio.pcsc.codes import _E_SHARING_VIOLATION
from cardio.pcsc.codes import _E_TIMEOUT
from cardio.pcsc.codes import _MAX_GET_RESPONSE
from cardio.pcsc.codes import _OK
from cardio.pcsc.codes import _PRESENT
from cardio.pcsc.codes import _READER_GONE
from cardio.pcsc.codes import _REMOVAL_GRACE_MS
from cardio.pcsc.codes import _SERVICE_GONE
from cardio.pcsc.codes import _UNAWARE
from cardio.pcsc.codes import _W_REMOVED_CARD
from cardio.pcsc.codes import _W_UNPOWERED_CARD
from cardio.pcsc.codes import _W_UNRESPONSIVE_CARD
from cardio.pcsc.codes import _u32
from cardio.pcsc.codes import hresult_text
from cardio.pcsc.thread import CardThread
from cardio.pcsc.trace import _get_response_cla
from cardio.pcsc.trace import _with_le
from cardio.pcsc.trace import command_name
from cardio.pcsc.trace import trace_command
from cardio.pcsc.trace import trace_response

log = logging.getLogger(__name__)

# the channels of this process that are connected: one that is dropped without close() keeps
# its reader "in use" for every other program until the process ends
_connected: weakref.WeakSet[PcscChannel] = weakref.WeakSet()
_connected_lock = threading.RLock()  # re-entrant: a collection may close a channel while held


# how many channels were dropped while connected (closed when they were collected, see __del__)
dropped_connected = 0


def connected_channels() -> list[PcscChannel]:
    """The channels of this process that are connected now (not yet closed)."""
    with _connected_lock:
        channels = list(_connected)
    return [channel for channel in channels if not channel.closed]


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
        with _connected_lock:
            _connected.add(self)

    def __del__(self) -> None:
        # a channel dropped without close() would keep its PC/SC context and card handle, so the
        # reader stays "in use" for every other program until this one ends: closed here instead
        if getattr(self, "_hcard", None) is None and getattr(self, "_context", None) is None:
            return
        global dropped_connected
        dropped_connected += 1
        with contextlib.suppress(Exception):
            log.warning("%s: a card connection was dropped without close(); closed now", self)
            self._close()

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
        with _connected_lock:
            _connected.discard(self)
        context, self._context = self._context, None
        if hcard is not None:
            hr = _u32(scard.SCardDisconnect(hcard, scard.SCARD_RESET_CARD))
            if hr != _OK and hr not in _CARD_GONE and hr not in _CONTEXT_LOST:
                log.warning("%s: disconnect failed: %s", self._reader, hresult_text(hr))
        if context is not None:
            scard.SCardReleaseContext(context)
        log.debug("%s: channel closed", self._reader)


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
