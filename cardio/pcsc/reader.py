"""PcscReaderPort: the readers, connecting to a card, card events."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from smartcard import scard

from app.domain.card import CardError
from app.domain.card import NoCard
from app.domain.card import NoReader
from cardio.pcsc.channel import PcscChannel
from cardio.pcsc.channel import _connect_error
from cardio.pcsc.codes import _CHANGED
from cardio.pcsc.codes import _CONTEXT_LOST
from cardio.pcsc.codes import _E_CANCELLED
from cardio.pcsc.codes import _E_NO_READERS_AVAILABLE
from cardio.pcsc.codes import _E_TIMEOUT
from cardio.pcsc.codes import _OK
from cardio.pcsc.codes import _PRESENT
from cardio.pcsc.codes import _READER_GONE
from cardio.pcsc.codes import _UNAWARE
from cardio.pcsc.codes import _u32
from cardio.pcsc.codes import hresult_text
from cardio.pcsc.monitor import EventCallback
from cardio.pcsc.monitor import _Monitor
from cardio.pcsc.thread import CardThread
from cardio.pcsc.thread import default_card_thread

log = logging.getLogger(__name__)


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
