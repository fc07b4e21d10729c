"""The one card thread: every PC/SC call that touches a card runs on it."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any
from typing import TypeVar
from typing import TypeVarTuple

T = TypeVar("T")


Ts = TypeVarTuple("Ts")


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
