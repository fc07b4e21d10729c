"""IdleWatch: notes a person's activity on the application and says when the counter has been idle too long."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEvent
from PySide6.QtCore import QObject
from PySide6.QtCore import QTimer
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QApplication

ACTIVITY = frozenset(
    {
        QEvent.Type.KeyPress,
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseButtonDblClick,
        QEvent.Type.MouseMove,
        QEvent.Type.Wheel,
        QEvent.Type.TouchBegin,
    }
)


class IdleWatch(QObject):
    """An event filter on the application: keys, clicks and mouse moves are activity; ``idle``
    is emitted once after ``timeout_ms`` without any. The filter only notes the time; one
    timer checks it, so a moving mouse costs nothing."""

    idle = Signal()

    def __init__(self, timeout_ms: int, on_activity: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.timeout_ms = max(1, int(timeout_ms))
        self.on_activity = on_activity
        self.active = False
        self._last = time.monotonic()
        self._last_reported = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._check)
        self._installed = False

    def start(self) -> None:
        app = QApplication.instance()
        if app is not None and not self._installed:
            app.installEventFilter(self)
            self._installed = True
        self.active = True
        self._last = time.monotonic()
        self._timer.start(self.timeout_ms)

    def stop(self) -> None:
        self.active = False
        self._timer.stop()

    def uninstall(self) -> None:
        self.stop()
        app = QApplication.instance()
        if app is not None and self._installed:
            app.removeEventFilter(self)
            self._installed = False

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if self.active and event.type() in ACTIVITY:
            now = time.monotonic()
            self._last = now
            if self.on_activity is not None and now - self._last_reported >= 1.0:
                self._last_reported = now
                self.on_activity()
        return False

    def _check(self) -> None:
        if not self.active:
            return
        remaining = self.timeout_ms - (time.monotonic() - self._last) * 1000
        if remaining > 0:
            self._timer.start(int(remaining) + 1)
            return
        self.stop()
        self.idle.emit()
