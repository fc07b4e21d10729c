"""The bridge between the GUI thread and everything that waits: database, card, printer,
central system.

``Ops.run(fn, on_done, on_error)`` runs ``fn()`` on a worker thread and calls ``on_done(result)``
or ``on_error(exc)`` back on the GUI thread. Card work goes to the one card thread the composition
root built (``ctx.card_worker``, an :class:`app.ports.CardWorker`), where the PC/SC calls of that
work run inline, without a hop (DESIGN.md); other work to a small pool. Nothing in ``ui/``
calls a service that touches I/O on the GUI thread except short reads at start-up.

``CardEvents`` turns card reader events (delivered on the reader's own thread) into a Qt signal.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QCoreApplication
from PySide6.QtCore import QObject
from PySide6.QtCore import QTimer
from PySide6.QtCore import Signal
from PySide6.QtCore import Slot

from app.domain.ids import IdFormat
from app.errors import CardVendError
from app.i18n import _
from app.ports import CardWorker

log = logging.getLogger(__name__)

Done = Callable[[Any], None]
Failed = Callable[[BaseException], None]


class _Relay(QObject):
    """Lives on the GUI thread; a queued signal carries results back to it."""

    finished = Signal(object, object, object, object)  # callback, value, errback, error

    def __init__(self) -> None:
        super().__init__()
        self.finished.connect(self._deliver)

    @Slot(object, object, object, object)
    def _deliver(self, done: Done | None, value: Any, failed: Failed | None, error: Any) -> None:
        try:
            if error is not None:
                if failed is not None:
                    failed(error)
                else:
                    log.error("background operation failed: %r", error)
            elif done is not None:
                done(value)
        except Exception:  # a slot must never take the window down
            log.exception("error in a GUI callback")


class Ops:
    """``card``: the card thread (``ctx.card_worker``); without one (a window built without the
    composition root, in tests) card work gets a card thread of its own."""

    def __init__(self, workers: int = 3, card: CardWorker | None = None) -> None:
        guard_gc()
        self._relay = _Relay()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ui-op")
        self._card: CardWorker | ThreadPoolExecutor = card or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="card"
        )
        self._card_worker = card
        self._card_jobs: set[Future[Any]] = set()
        self.busy = 0
        self._shut = False  # after shutdown() work asked for is not run (the window is closing)

    def _submit(
        self,
        pool: CardWorker | ThreadPoolExecutor,
        fn: Callable[[], Any],
        done: Done | None,
        failed: Failed | None,
    ) -> Future[Any]:
        if self._shut and pool is not self._card_worker:
            # a timer or a late signal of a closing window: nothing runs, nothing is reported
            # (the composition root's card thread still takes card work: a close, say)
            skipped: Future[Any] = Future()
            skipped.cancel()
            return skipped
        self.busy += 1

        def work() -> Any:
            try:
                value = fn()
            except BaseException as exc:
                self._relay.finished.emit(self._finish(None), None, self._finish(failed), exc)
                return None
            self._relay.finished.emit(self._finish(done), value, None, None)
            return value

        return pool.submit(work)

    def _finish(self, callback: Callable[[Any], None] | None) -> Callable[[Any], None]:
        def wrapped(value: Any) -> None:
            self.busy -= 1
            if callback is not None:
                callback(value)

        return wrapped

    def run(
        self, fn: Callable[[], Any], on_done: Done | None = None, on_error: Failed | None = None
    ) -> Future[Any]:
        return self._submit(self._pool, fn, on_done, on_error)

    def card(
        self, fn: Callable[[], Any], on_done: Done | None = None, on_error: Failed | None = None
    ) -> Future[Any]:
        """Card work: one at a time, on the card thread."""
        future = self._submit(self._card, fn, on_done, on_error)
        self._card_jobs.add(future)
        future.add_done_callback(self._card_jobs.discard)
        return future

    def shutdown(self) -> None:
        """Cancel the work not started; wait for the card work under way (a card is never left
        half-written). The shared card thread itself belongs to the composition root.  Work asked
        for afterwards is not run, other than on that shared card thread."""
        self._shut = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(self._card, ThreadPoolExecutor):
            self._card.shutdown(wait=True, cancel_futures=True)
            return
        for job in list(self._card_jobs):
            job.cancel()
        if not self._card.is_current():
            self._card.submit(lambda: None).result()


def error_text(exc: BaseException) -> str:
    """What a person reads about a failure: what happened and what to do."""
    if isinstance(exc, CardVendError):
        return exc.localized()
    return _(
        "Unexpected error: {detail}. Details are in the log file.",
        detail=f"{type(exc).__name__}: {exc}",
    )


def id_problem(fmt: IdFormat, text: str) -> str | None:
    """What is wrong with an id typed into a field (full-width letters or digits from an input
    method, a character ids do not have), or None when it is well formed."""
    try:
        fmt.check(text)
    except CardVendError as exc:
        return exc.localized()
    return None


class GuiThreadGC(QObject):
    """Python's cyclic garbage collector, run on the GUI thread only.

    Left automatic, a collection runs in whichever thread allocates -- a card or sync worker --
    and may destroy garbage Qt widgets there, which crashes. While started, automatic
    collection is off and a timer collects the generations that are due, on this thread."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 500) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect)
        self._was_enabled = False

    def start(self) -> None:
        if self._timer.isActive():
            return
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer.start()

    def collect(self) -> None:
        counts = gc.get_count()
        thresholds = gc.get_threshold()
        due = -1
        for generation in range(3):
            if counts[generation] > thresholds[generation]:
                due = generation
        if due >= 0:
            gc.collect(due)

    def stop(self) -> None:
        self._timer.stop()
        if self._was_enabled:
            gc.enable()


_GC: GuiThreadGC | None = None


def guard_gc() -> None:
    """Collect garbage on the GUI thread only, from the first Ops on (see GuiThreadGC)."""
    global _GC
    if _GC is None and QCoreApplication.instance() is not None:
        _GC = GuiThreadGC()
        _GC.start()


class CardEvents(QObject):
    """Card inserted / removed, re-emitted on the GUI thread."""

    changed = Signal(str, str)  # kind ("inserted"/"removed"), reader
