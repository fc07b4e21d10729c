"""Our own SCardGetStatusChange monitor thread: survives pcscd restarts, reports removals."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from smartcard import scard

from app.ports import CardEvent
from app.ports import CardEventKind
from cardio.pcsc.codes import _CHANGED
from cardio.pcsc.codes import _CONTEXT_LOST
from cardio.pcsc.codes import _E_CANCELLED
from cardio.pcsc.codes import _E_NO_READERS_AVAILABLE
from cardio.pcsc.codes import _E_TIMEOUT
from cardio.pcsc.codes import _E_UNKNOWN_READER
from cardio.pcsc.codes import _GONE_STATES
from cardio.pcsc.codes import _OK
from cardio.pcsc.codes import _PNP
from cardio.pcsc.codes import _PRESENT
from cardio.pcsc.codes import _UNAWARE
from cardio.pcsc.codes import _u32
from cardio.pcsc.codes import hresult_text

log = logging.getLogger(__name__)

EventCallback = Callable[[CardEvent], None]


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

    def _failed(self, hr: int, doing: str) -> bool:
        """Whether the PC/SC call that answered ``hr`` failed, which ends this round: a lost
        context is dropped (the next round makes a new one), any other failure is logged and
        waited out."""
        if hr in _CONTEXT_LOST:
            self._set_context(None)
            return True
        if hr != _OK:
            log.warning("card monitor: %s failed: %s", doing, hresult_text(hr))
            self._stopping.wait(self.RETRY_SECONDS)
            return True
        return False

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
        elif self._failed(hr, "listing readers"):
            return
        readers = [str(name) for name in names]
        self._sync_readers(readers)
        states = [(name, self._seen[name].state) for name in readers]
        states.append((_PNP, self._pnp_state))
        hr, new_states = scard.SCardGetStatusChange(context, self._poll_ms, states)
        hr = _u32(hr)
        if hr in (_E_TIMEOUT, _E_CANCELLED, _E_UNKNOWN_READER):
            return  # nothing new, woken up, or a reader went away: list again
        if self._failed(hr, "waiting for changes"):
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
