"""``stop_on_signals``: how every long-running command (``central serve``, ``sms-gateway``,
``sync --watch``, ``card emulate``, ``fleet simulate``) learns it must stop."""

from __future__ import annotations

import os
import signal
import threading

from app.cli import stop_on_signals


def test_sigterm_and_sigint_set_the_event_and_the_old_handlers_come_back() -> None:
    seen: list[int] = []

    def before(signum: int, _frame: object) -> None:
        seen.append(signum)

    old = signal.signal(signal.SIGTERM, before)
    int_before = signal.getsignal(signal.SIGINT)
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with stop_on_signals("test") as stop:
                assert not stop.is_set()
                os.kill(os.getpid(), sig)
                assert stop.wait(5)
        assert seen == []  # the command's handler took them, not the one before
        assert signal.getsignal(signal.SIGTERM) is before
        assert signal.getsignal(signal.SIGINT) is int_before
    finally:
        signal.signal(signal.SIGTERM, old)


def test_off_the_main_thread_no_handler_is_installed_and_the_caller_stops_it() -> None:
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    result: list[object] = []

    def run() -> None:
        with stop_on_signals("test") as stop:
            result.append((signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)))
            stop.set()
            result.append(stop.is_set())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)
    assert result == [handlers, True]
