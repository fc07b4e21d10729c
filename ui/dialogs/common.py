"""What the dialogs share: tones, titles, signing a person in for one decision, action names."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtCore import QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtGui import QShortcut
from PySide6.QtWidgets import QApplication
from PySide6.QtWidgets import QDialog
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QWidget

from app.domain.permissions import Action
from app.errors import CardVendError
from app.i18n import N_
from app.i18n import translate
from app.localtime import local_time
from app.services import approvals
from app.services import auth
from app.services.auth import Principal
from ui.style import set_tone

log = logging.getLogger(__name__)

POLL_MS = 1500  # how often a dialog waiting on the queue asks about its request


TONES = ("error", "ok")  # the tones a dialog message takes


REQUEST_STATES = {
    approvals.PENDING: N_("pending"),
    approvals.APPROVED: N_("approved"),
    approvals.REJECTED: N_("rejected"),
    approvals.EXPIRED: N_("expired"),
    approvals.USED: N_("used"),
    approvals.WITHDRAWN: N_("withdrawn"),
}


def when_text(iso: str, tz: str) -> str:
    """A stored time (ISO text, UTC) in the office's time zone ``tz`` (the ``time_zone``
    setting, never the PC's), to the minute; text that is not a time as it stands."""
    try:
        return local_time(iso, tz)
    except (ValueError, CardVendError):
        return iso[:16].replace("T", " ")


def tone(label: QLabel, kind: str = "") -> None:
    """Colour and weight of a message: "error" (red, bold), "ok" (green, bold) or plain, from
    the one stylesheet (ui/style.py)."""
    set_tone(label, kind or None)


def _title(text: str, size: int = 16) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setPointSize(size)
    font.setBold(True)
    label.setFont(font)
    label.setWordWrap(True)
    return label


def _prepare(dialog: QDialog) -> None:
    """Large type like the window that opened it."""
    dialog.setAttribute(Qt.WidgetAttribute.WA_WindowPropagation)
    parent = dialog.parentWidget()
    font = parent.font() if parent is not None else dialog.font()
    font.setPointSize(max(font.pointSize(), 12))
    dialog.setFont(font)
    # Ctrl+L locks the counter from a dialog too: the window's own shortcut is blocked while
    # a modal dialog is open (a teller waiting for a supervisor must still be able to lock)
    lock = QShortcut(QKeySequence("Ctrl+L"), dialog)
    lock.activated.connect(lambda: request_lock(dialog))
    # when it closes, the focus goes back where the person was (function keys keep working)
    before = QApplication.focusWidget()
    dialog.finished.connect(lambda _result: QTimer.singleShot(0, lambda: _refocus(before)))


def _refocus(widget: QWidget | None) -> None:
    if widget is None or not shiboken6.isValid(widget):
        return
    window = widget.window()
    if widget.isVisible() and widget.isEnabled():
        window.activateWindow()
        widget.setFocus()
    elif window.isVisible():
        window.activateWindow()


def request_lock(widget: QWidget) -> None:
    """Lock the counter of the window ``widget`` belongs to (the session gives the window its
    ``request_lock``); nothing where there is none (a dialog of a test)."""
    w: QWidget | None = widget
    while w is not None:
        lock = getattr(w, "request_lock", None)
        if callable(lock):
            lock()
            return
        w = w.parentWidget()


def sign_in(shell: Any, operator_id: str, password: str) -> Principal:
    """A person signing in at this counter for one decision (runs on a worker thread)."""
    ctx = shell.ctx
    return auth.login(
        ctx.db,
        operator_id,
        password,
        counter_id=ctx.counter_id,
        clock=ctx.clock,
        policy=auth.SecurityPolicy.from_settings(ctx.settings),
    )


def run_quietly(shell: Any, fn: Callable[[], Any], done: Any, failed: Any = None) -> None:
    """``shell.ops.run`` for work a timer starts: once the window has shut its workers down
    (it is closing), there is nothing left to poll."""
    try:
        shell.ops.run(fn, done, failed)
    except RuntimeError:  # cannot schedule new futures after shutdown
        log.debug("not polled: the window is closing")


def action_text(action: str) -> str:
    try:
        return translate(Action(action).label)
    except ValueError:
        return action


def can_retry(exc: BaseException) -> bool:
    """Whether trying the same operation again can help: a card problem or a card that does
    not fit (another card, the card put back or taken to the meter first), the database or printer busy or away, an approval that expired or must be
    asked for again. A refusal (not allowed, not valid, rejected, not found) stays one."""
    from app.domain.card import CardError
    from app.errors import DatabaseError
    from app.errors import PrinterError
    from app.services.selling import CardBehind
    from app.services.selling import CardRefused
    from app.services.selling import InsertIntoMeterFirst
    from app.services.selling import NoRewriteNeeded
    from app.services.selling import OfflineLimitReached
    from app.services.selling import SaleInDoubt

    retryable = (
        CardError  # another card, or the card again (or after the meter) can change it
        | CardRefused
        | CardBehind
        | InsertIntoMeterFirst
        | NoRewriteNeeded
        | DatabaseError
        | PrinterError
        | OSError
        | SaleInDoubt
        | OfflineLimitReached
        | approvals.ApprovalExpired
        | approvals.ApprovalStateError
        | approvals.ApprovalNotFound
        | approvals.ApprovalRequired
    )
    return isinstance(exc, retryable)


def is_approval_problem(exc: BaseException) -> bool:
    return isinstance(
        exc,
        approvals.ApprovalExpired
        | approvals.ApprovalStateError
        | approvals.ApprovalNotFound
        | approvals.ApprovalDenied
        | approvals.ApprovalRequired,
    )
