"""ApprovalDialog: a supervisor's sign-off, on the spot (one service call under the lockout policy) or from the queue."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog
from PySide6.QtWidgets import QGroupBox
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.domain.permissions import Action
from app.i18n import _
from app.i18n import translate
from app.presenters.cardwork import CardWork
from app.services import approvals
from app.services.approvals import ApprovalView
from app.settings import TIME_ZONE
from ui.bridge import error_text
from ui.dialogs.common import POLL_MS
from ui.dialogs.common import REQUEST_STATES
from ui.dialogs.common import _prepare
from ui.dialogs.common import _title
from ui.dialogs.common import action_text
from ui.dialogs.common import run_quietly
from ui.dialogs.common import tone
from ui.dialogs.common import when_text
from ui.dialogs.signin import SignInForm
from ui.widgets import button_row
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)

# requests filed from the queue and not used yet: (database, operator, action, target) -> ids
_remembered: dict[tuple[str, str, str, str], list[str]] = {}


class ApprovalDialog(QDialog):
    """A supervisor's sign-off for ``action`` on ``target``: on the spot or from the queue.
    ``approved`` carries the approved request (``view``); the operation uses it."""

    approved = Signal(object)  # ApprovalView

    def __init__(
        self,
        shell: Any,
        action: Action,
        target: str,
        *,
        payload: dict[str, Any] | None = None,
        distinct_from: Iterable[str] = (),
        what: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        _prepare(self)
        self.shell = shell
        self.action = action
        self.target = target
        self.payload = dict(payload or {})
        self.distinct_from = tuple(distinct_from)
        self.view: ApprovalView | None = None
        self.waiting_id: str | None = None  # the queue request being waited for
        self.withdrawn: str | None = None  # the request Cancel withdrew
        self._polling = False
        self.setWindowTitle(_("Approval needed"))
        self.setMinimumWidth(520)
        layout = QVBoxLayout(self)
        layout.addWidget(_title(_("A supervisor's approval is needed")))
        intro = wrapped_label(
            _(
                "To {action} ({what}) a supervisor other than you and the people involved must "
                "approve. The supervisor signs in here, or approves your request from the "
                "approval queue (page F5).",
                action=action_text(action.value),
                what=what or target,
            )
        )
        layout.addWidget(intro)

        spot = QGroupBox(_("A supervisor signs in here"))
        spot_layout = QVBoxLayout(spot)
        self.form = SignInForm(spot)
        spot_layout.addWidget(self.form)
        self.approve_button = QPushButton(_("&Approve here"))
        self.approve_button.setDefault(True)
        self.approve_button.clicked.connect(self.approve_here)
        spot_layout.addWidget(self.approve_button)
        layout.addWidget(spot)

        queue = QGroupBox(_("Or from the approval queue"))
        queue_layout = QVBoxLayout(queue)
        self.queue_button = QPushButton(_("Ask for approval in the &queue"))
        self.queue_button.clicked.connect(self.ask_queue)
        self.queue_status = wrapped_label(
            _("A supervisor approves it on page F5 at any counter; this window goes on by itself.")
        )
        queue_layout.addWidget(self.queue_button)
        queue_layout.addWidget(self.queue_status)
        layout.addWidget(queue)

        self.message = wrapped_label(tone="error")
        layout.addWidget(self.message)
        cancel = QPushButton(_("Cancel (Esc)"))
        layout.addLayout(button_row((cancel, self.reject), auto_default=False, align="right"))

        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(POLL_MS)
        self.poll_timer.timeout.connect(self.poll)
        self.closed = False
        self.finished.connect(self._closed)
        self.form.operator.setFocus()
        self._look_for_earlier()

    # ------------------------------------------------------------------ identity

    @property
    def operator_id(self) -> str:
        principal = self.shell.principal
        return str(principal.operator_id) if principal is not None else ""

    @property
    def counter_id(self) -> str:
        principal = self.shell.principal
        return str(principal.counter_id if principal is not None else self.shell.ctx.counter_id)

    def _key(self) -> tuple[str, str, str, str]:
        return (str(self.shell.ctx.db_url), self.operator_id, self.action.value, self.target)

    # ------------------------------------------------------------------ on the spot

    def approve_here(self) -> None:
        if not self.form.ready(self.message):
            return
        if self.shell.principal is None:
            self.message.setText(_("Nobody is signed in at this counter. Sign in first."))
            return
        supervisor, password = self.form.values()
        cardwork, actor = CardWork.of(self.shell.ctx), self.shell.principal
        action, target = self.action, self.target
        payload, distinct = self.payload, self.distinct_from

        def work() -> ApprovalView:
            return cardwork.approve_on_the_spot(
                supervisor, password, actor, action, target, payload=payload, distinct_from=distinct
            )

        self._busy(True, _("Checking the supervisor…"))
        self.shell.ops.run(work, self._done, self._spot_failed)

    def _spot_failed(self, exc: BaseException) -> None:
        self._busy(False, error_text(exc))
        self.form.retry()

    # ------------------------------------------------------------------ the queue

    def ask_queue(self) -> None:
        if self.shell.principal is None:
            self.message.setText(_("Nobody is signed in at this counter. Sign in first."))
            return
        shell, action, target = self.shell, self.action, self.target
        payload, distinct = self.payload, self.distinct_from
        operator_id, counter_id = self.operator_id, self.counter_id

        def work() -> ApprovalView:
            return approvals.request(
                shell.ctx.db,
                action=action,
                target=target,
                payload=payload,
                operator_id=operator_id,
                counter_id=counter_id,
                clock=shell.ctx.clock,
                distinct_from=distinct,
            )

        self._busy(True, "")
        self.shell.ops.run(work, self._filed, lambda exc: self._busy(False, error_text(exc)))

    def _filed(self, view: ApprovalView) -> None:
        self._busy(False, "")
        _remembered.setdefault(self._key(), []).append(view.id)
        self._wait_for(view)

    def _wait_for(self, view: ApprovalView) -> None:
        self.waiting_id = view.id
        self.queue_button.setEnabled(False)
        self.queue_status.setText(
            _(
                "Request {request} waits in the queue for a supervisor (until {until}). "
                "This window goes on by itself once it is approved.",
                request=view.id[:8],
                until=when_text(view.expires_at, self.shell.ctx.settings.value(TIME_ZONE)),
            )
        )
        self.poll_timer.start()

    def _look_for_earlier(self) -> None:
        """A request filed before for the same thing: use it once approved."""
        if self.shell.principal is None:
            return
        key = self._key()
        db, clock = self.shell.ctx.db, self.shell.ctx.clock
        operator_id, action, target = self.operator_id, self.action.value, self.target
        known = list(_remembered.get(key, []))

        def work() -> list[ApprovalView]:
            views: dict[str, ApprovalView] = {}
            for request_id in known:
                try:
                    views[request_id] = approvals.get_request(db, request_id)
                except approvals.ApprovalNotFound:
                    continue
            for v in approvals.pending(db, clock=clock):
                if (v.requested_by, v.action, v.target) == (operator_id, action, target):
                    views.setdefault(v.id, v)
            return list(views.values())

        self.shell.ops.run(work, self._earlier, lambda exc: log.warning("approvals: %s", exc))

    def _earlier(self, views: list[ApprovalView]) -> None:
        if self.view is not None or self.closed:
            return
        alive = [v for v in views if v.state in (approvals.PENDING, approvals.APPROVED)]
        _remembered[self._key()] = [v.id for v in alive]
        for v in alive:
            if v.state == approvals.APPROVED:
                self._done(v)
                return
        if alive and self.waiting_id is None:
            self._wait_for(alive[-1])

    def poll(self) -> None:
        if self._polling or self.waiting_id is None:
            return
        self._polling = True
        db, request_id = self.shell.ctx.db, self.waiting_id
        run_quietly(
            self.shell,
            lambda: approvals.get_request(db, request_id),
            self._polled,
            self._poll_failed,
        )

    def _poll_failed(self, exc: BaseException) -> None:
        self._polling = False
        self.queue_status.setText(error_text(exc))

    def _polled(self, view: ApprovalView) -> None:
        self._polling = False
        if view.id != self.waiting_id or self.view is not None or self.closed:
            return
        if view.state == approvals.APPROVED:
            self._done(view)
        elif view.state == approvals.PENDING:
            return
        else:  # rejected, expired, used: ask again
            self._forget(view.id)
            self.poll_timer.stop()
            self.waiting_id = None
            self.queue_button.setEnabled(True)
            if view.state == approvals.REJECTED:
                text = _(
                    "Request {request} was rejected: {reason}",
                    request=view.id[:8],
                    reason=view.reason,
                )
            else:
                text = _(
                    "Request {request} is {state}; ask again.",
                    request=view.id[:8],
                    state=translate(REQUEST_STATES.get(view.state, view.state)),
                )
            self.queue_status.setText(text)

    def _forget(self, request_id: str) -> None:
        ids = _remembered.get(self._key(), [])
        if request_id in ids:
            ids.remove(request_id)

    # ------------------------------------------------------------------ outcome

    def _done(self, view: ApprovalView) -> None:
        self._busy(False, "")
        self.poll_timer.stop()
        if self.closed:  # cancelled meanwhile: withdrawn, it starts nothing
            return
        self._forget(view.id)
        self.view = view
        self.approved.emit(view)
        self.accept()

    def reject(self) -> None:
        """Cancel: a request waiting in the queue is withdrawn (it leaves the queue, and an
        approval given later starts nothing); then the dialog closes."""
        request_id = self.waiting_id
        if request_id is not None and self.view is None and self.shell.principal is not None:
            self._forget(request_id)
            self.withdrawn = request_id
            self.waiting_id = None
            db, clock = self.shell.ctx.db, self.shell.ctx.clock
            operator_id, counter_id = self.operator_id, self.counter_id
            self.shell.ops.run(
                lambda: approvals.withdraw(
                    db, request_id, operator_id=operator_id, counter_id=counter_id, clock=clock
                ),
                None,
                lambda exc: log.warning("request %s not withdrawn: %s", request_id, exc),
            )
        super().reject()

    def _closed(self, _result: int) -> None:
        self.closed = True
        self.poll_timer.stop()

    def _busy(self, busy: bool, text: str) -> None:
        self.approve_button.setEnabled(not busy)
        self.queue_button.setEnabled(not busy and self.waiting_id is None)
        tone(self.message, "" if busy else "error")
        self.message.setText(text)
        self.adjustSize()
