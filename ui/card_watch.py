"""The card now at the counter, for the window: which card source is in use, whether a card is
in, the reader line of the status bar, and the card terminal for card work.

Three sources, chosen once when the window is built:

* a reader (setting ``card_reader``): its events come from ``ctx.reader_port_factory()``
  (``app.ports.CardReaderPort``, PC/SC in cardio/), delivered on the reader's own thread; they
  are only re-emitted through a Qt signal there and handled on the GUI thread;
* the training card tray (training mode without a reader, ``ctx.tray_factory``): the tray's
  own events, or, for a tray without ``subscribe``, the end of each insert/remove;
* neither: no events; :meth:`CardWatch.terminal` opens whatever ``ctx.open_terminal`` gives.

Every change becomes ``shell.card_events.changed`` ("inserted"/"removed", reader).

:meth:`CardWatch.terminal` is called on the card thread (``ops.card``). With a reader it keeps
one connection per inserted card (opening one loads the key provider), dropped when the card
leaves or a card operation fails (:meth:`CardWatch.reset`); a connection opened while the card
changed is closed at once and the card now in opened again, so none is left holding the reader.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtCore import Signal
from PySide6.QtCore import Slot

from app.domain.card import CardRemoved
from app.domain.card import NoReader
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.ports import CardEvent
from app.ports import CardEventKind
from app.ports import CardTerminal
from app.ports import CardTray
from app.ports import TrayCard
from app.settings import CARD_READER
from app.settings import TRAINING_MODE

log = logging.getLogger(__name__)

READER, TRAY, NONE = "reader", "tray", "none"
TRAY_READER = N_("training card tray")  # the tray's reader, for a tray without events
OPEN_ATTEMPTS = 3  # opening the card again when it changed while its connection was being opened

Done = Callable[[Any], None]
Failed = Callable[[BaseException], None]


def close_terminal(terminal: CardTerminal | None) -> None:
    """Close a terminal's card connection (quietly)."""
    if terminal is not None:
        try:
            terminal.close()
        except Exception:  # a connection to a card that left may fail to close: nothing lost
            log.debug("closing a card connection failed", exc_info=True)


class CardWatch(QObject):
    """See the module docstring. ``shell`` is the window (ui/main_window.Shell)."""

    _event = Signal(str, str)  # kind, reader: emitted from any thread, handled on the GUI thread
    tray_changed = Signal()  # the tray's cards or inserted card changed (training)

    def __init__(self, shell: Any) -> None:
        super().__init__(shell if isinstance(shell, QObject) else None)
        self.shell = shell
        ctx = shell.ctx
        self.reader_name = str(ctx.settings.get(CARD_READER.key) or "")
        self.tray: CardTray | None = None
        self.present = False
        self.reader_connected = False
        self._lock = threading.Lock()
        self._terminal: CardTerminal | None = None
        self._generation = 0  # bumped whenever the card changes
        self._stopped = False
        self._closing: list[CardTerminal] = []  # dropped connections not closed yet
        self._stop: Callable[[], None] | None = None
        self._port: Any = None
        self._tray_events = False
        if self.reader_name:
            self.mode = READER
        elif shell.training and ctx.tray_factory is not None:
            self.mode = TRAY
            self.tray = ctx.tray_factory()
        else:
            self.mode = NONE
        if shell.training and not ctx.settings.get(TRAINING_MODE.key):
            # training sales are marked so and never sent (in memory only, never saved here)
            ctx.settings.set(TRAINING_MODE.key, True)
        self._event.connect(self._on_event)

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Start following the card source (call once the pages listen)."""
        if self.mode == READER:
            factory = getattr(self.shell.ctx, "reader_port_factory", None)
            if factory is None:
                self._status(_("Reader {reader}: card events unavailable", reader=self.reader_name))
                return
            try:
                self._port = factory()
                self._stop = self._port.subscribe(self._from_source)
            except Exception as exc:
                log.warning("card reader events: %s", exc)
                self._status(_("Reader {reader}: not available", reader=self.reader_name))
                return
            self._status(_("Reader {reader}: waiting", reader=self.reader_name))
        elif self.mode == TRAY:
            assert self.tray is not None
            subscribe = getattr(self.tray, "subscribe", None)
            if callable(subscribe):
                self._stop = subscribe(self._from_source)
                self._tray_events = True
            self._status(_("Training card tray: no card"))
        else:
            self._status(_("No card reader configured"))

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        stop, self._stop = self._stop, None
        if stop is not None:
            try:
                stop()
            except Exception:
                log.debug("stopping card events failed", exc_info=True)
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:
                log.debug("closing the reader port failed", exc_info=True)
        with self._lock:
            old, self._terminal = self._terminal, None
            # closes that reset() queued and the window cancelled as it closed
            pending, self._closing = self._closing, []
        for terminal in [*pending, old]:
            close_terminal(terminal)

    # ------------------------------------------------------------------ events

    def _from_source(self, event: CardEvent) -> None:
        """On the reader's (or tray's) thread: hand the event to the GUI thread, nothing else."""
        self._event.emit(event.kind.value, event.reader)

    @Slot(str, str)
    def _on_event(self, kind: str, reader: str) -> None:
        if self.mode == READER and reader != self.reader_name:
            return
        shown = self._reader_label(reader)
        if kind == CardEventKind.READER_ADDED.value:
            self.reader_connected = True
            if not self.present:
                self._status(_("{reader}: no card", reader=shown))
        elif kind == CardEventKind.READER_REMOVED.value:
            self.reader_connected = False
            if self.present:
                self._card_changed(False, reader)
            self._status(_("{reader}: not connected", reader=shown))
        elif kind == CardEventKind.CARD_INSERTED.value:
            self._status(_("{reader}: card in", reader=shown))
            self._card_changed(True, reader)
        elif kind == CardEventKind.CARD_REMOVED.value:
            self._status(_("{reader}: no card", reader=shown))
            self._card_changed(False, reader)

    def _card_changed(self, present: bool, reader: str) -> None:
        self.present = present
        self.reset()
        if self.mode == TRAY:
            self.tray_changed.emit()
        self.shell.card_events.changed.emit("inserted" if present else "removed", reader)

    def _reader_label(self, reader: str) -> str:
        if self.mode == TRAY:
            shown = translate(reader)  # the tray's reader name is a marked message
            return shown[:1].upper() + shown[1:]
        return reader

    def _status(self, text: str) -> None:
        setter = getattr(self.shell, "set_reader_status", None)
        if callable(setter):
            setter(text)

    # ------------------------------------------------------------------ card work

    def terminal(self) -> CardTerminal:
        """The card now in (call on the card thread)."""
        if self.mode == TRAY:
            assert self.tray is not None
            return self.tray.terminal()
        if self.mode == NONE:
            return self.shell.ctx.open_terminal()  # type: ignore[no-any-return]
        for _attempt in range(OPEN_ATTEMPTS):
            with self._lock:
                if self._terminal is not None:
                    return self._terminal
                if self._stopped:
                    raise NoReader()
                generation = self._generation
            terminal: CardTerminal = self.shell.ctx.open_terminal(self.reader_name, None)
            with self._lock:
                kept = (
                    not self._stopped and generation == self._generation and self._terminal is None
                )
                if kept:
                    self._terminal = terminal
            if kept:
                return terminal
            # the card changed (or the window stopped watching) while this connection was being
            # opened: it is closed here, since a connection nobody keeps would hold the reader
            # (in use for every other program) until the counter program ends; the card now in
            # is opened again
            close_terminal(terminal)
        raise CardRemoved()

    def reset(self) -> None:
        """Forget the open card connection (the card left, or an operation on it failed); it
        is closed on the card thread, or by :meth:`stop` if the window cancelled that work as
        it closed."""
        with self._lock:
            self._generation += 1
            old, self._terminal = self._terminal, None
            if old is not None:
                self._closing.append(old)
        if old is not None:
            try:
                self.shell.ops.card(lambda: self._close_pending(old))
            except RuntimeError:  # the window is closing: no card thread any more
                self._close_pending(old)

    def _close_pending(self, terminal: CardTerminal) -> None:
        with self._lock:
            if not any(t is terminal for t in self._closing):
                return  # closed already (by stop())
            self._closing = [t for t in self._closing if t is not terminal]
        close_terminal(terminal)

    # ------------------------------------------------------------------ the training tray

    def tray_call(
        self, fn: Callable[[CardTray], Any], on_done: Done | None, on_error: Failed | None
    ) -> None:
        """``fn(tray)`` on the card thread (the tray's card images are card I/O)."""
        if self.tray is None:
            return
        tray = self.tray
        self.shell.ops.card(lambda: fn(tray), on_done, on_error)

    def tray_insert(self, card_id: str, on_error: Failed | None = None) -> None:
        def done(card: TrayCard | None) -> None:
            if not self._tray_events:
                self._status(_("{reader}: card in", reader=self._reader_label(TRAY_READER)))
                self._card_changed(True, TRAY_READER)
            self.tray_changed.emit()

        def insert(tray: CardTray) -> TrayCard | None:
            tray.insert(card_id)
            return tray.inserted()

        self.tray_call(insert, done, on_error)

    def tray_remove(self, on_error: Failed | None = None) -> None:
        def done(_value: object) -> None:
            if not self._tray_events:
                self._status(_("{reader}: no card", reader=self._reader_label(TRAY_READER)))
                self._card_changed(False, TRAY_READER)
            self.tray_changed.emit()

        self.tray_call(lambda t: t.remove(), done, on_error)
