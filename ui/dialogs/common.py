"""What the dialogs share: tones, titles, signing a person in for one decision, action names."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QLabel,
)

from app.domain.permissions import Action
from app.i18n import N_, translate
from app.services import approvals, auth
from app.services.auth import Principal

log = logging.getLogger(__name__)

POLL_MS = 1500  # how often a dialog waiting on the queue asks about its request


TONES = {"error": "#b00020", "ok": "#1b5e20"}


REQUEST_STATES = {
    approvals.PENDING: N_("pending"),
    approvals.APPROVED: N_("approved"),
    approvals.REJECTED: N_("rejected"),
    approvals.EXPIRED: N_("expired"),
    approvals.USED: N_("used"),
}


def when_text(iso: str) -> str:
    """An ISO time as this computer's local time, to the minute."""
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso[:16]


def tone(label: QLabel, kind: str = "") -> None:
    """Colour and weight of a message: "error" (red, bold), "ok" (green, bold) or plain.
    A palette and a font rather than a style sheet, which would drop the large type."""
    palette = label.palette()
    color = TONES.get(kind)
    parent = label.parentWidget()
    base = parent.palette() if parent is not None else QApplication.palette()
    palette.setColor(
        QPalette.ColorRole.WindowText,
        QColor(color) if color else base.color(QPalette.ColorRole.WindowText),
    )
    label.setPalette(palette)
    font = label.font()
    font.setBold(color is not None)
    label.setFont(font)


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


def is_approval_problem(exc: BaseException) -> bool:
    return isinstance(
        exc,
        approvals.ApprovalExpired
        | approvals.ApprovalStateError
        | approvals.ApprovalNotFound
        | approvals.ApprovalDenied
        | approvals.ApprovalRequired,
    )
