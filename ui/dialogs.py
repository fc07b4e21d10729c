"""Dialogs of the card operations that are not a plain sale, and the approval they may need.

Start them from any page with the ``start_*`` functions; each opens its dialog window-modal
(``open()``, never a nested event loop) and returns it::

    start_open_account(shell, customer_no)      # a blank card becomes the customer's card
    start_rewrite(shell, customer_no)           # the last purchase written again
    start_replacement(shell, customer_no)       # a blank card replaces a lost one (approval)
    start_reversal(shell, sale_id=..., customer_no=...)  # take a sale back (approval)

Every dialog says what it will do, starts on Enter, shows a progress state while the card is
worked on (on the card thread, ``shell.ops.card``, with ``shell.terminal()``), then the outcome or
the error (through :func:`ui.bridge.error_text`); Esc closes it, except while the card is
being written.  ``finished_ok`` is emitted with the outcome when the operation succeeded.

:class:`ApprovalDialog` gets a supervisor's sign-off: a supervisor signs in on the spot (id and
password; :func:`app.services.approvals.approve_on_spot`, as ``cardvend reverse --approver``
does), or the operator files a request in the approval queue (:func:`approvals.request`) that a
supervisor approves from the queue on the Unresolved page; the dialog polls the request and goes
on by itself once it is approved.  A request filed and left (Esc) is remembered for the same
operator, action and target, so opening the operation again picks up its approval.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.domain.ids import OPERATOR_ID
from app.domain.ledger import SaleKind, SaleState
from app.domain.permissions import Action
from app.errors import CardVendError, ValidationError
from app.i18n import N_, _, translate
from app.money import check_cash_received, format_yuan, parse_yuan
from app.ports import CardTerminal
from app.services import approvals, auth, ledger, receipts, selling
from app.services.approvals import ApprovalView
from app.services.auth import Principal
from app.services.customers import CustomerView, customer_view
from app.settings import RECEIPT_LANGUAGE, REPLACEMENT_FEE
from ui.bridge import error_text, id_problem

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

# requests filed from the queue and not used yet: (database, operator, action, target) -> ids
_remembered: dict[tuple[str, str, str, str], list[str]] = {}


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


# --------------------------------------------------------------------------- sign-in form


class SignInForm(QWidget):
    """Operator id and password."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.operator = QLineEdit()
        self.operator.setPlaceholderText(_("for example s01"))
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow(_("Operator id"), self.operator)
        form.addRow(_("Password"), self.password)

    def values(self) -> tuple[str, str]:
        return self.operator.text().strip(), self.password.text()

    def missing(self) -> QLineEdit | None:
        """The field still to fill, if any (Enter moves there instead of failing)."""
        operator, password = self.values()
        if not operator:
            return self.operator
        if not password:
            return self.password
        return None

    def problem(self) -> str | None:
        """What is wrong with the operator id as typed (focused then), or None."""
        problem = id_problem(OPERATOR_ID, self.values()[0])
        if problem:
            self.operator.setFocus()
            self.operator.selectAll()
        return problem

    def retry(self) -> None:
        self.password.clear()
        self.operator.setFocus()
        self.operator.selectAll()


class SignInDialog(QDialog):
    """A supervisor signs in for one decision (approving from the queue at a teller's
    counter). ``principal`` holds who signed in once it is accepted."""

    def __init__(self, shell: Any, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _prepare(self)
        self.shell = shell
        self.principal: Principal | None = None
        self.setWindowTitle(_("Supervisor sign-in"))
        layout = QVBoxLayout(self)
        intro = QLabel(text)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.form = SignInForm(self)
        layout.addWidget(self.form)
        self.message = QLabel()
        self.message.setWordWrap(True)
        tone(self.message, "error")
        layout.addWidget(self.message)
        buttons = QHBoxLayout()
        self.ok_button = QPushButton(_("Sign in"))
        self.ok_button.setDefault(True)
        self.ok_button.clicked.connect(self.submit)
        cancel = QPushButton(_("Cancel"))
        cancel.clicked.connect(self.reject)
        buttons.addStretch(1)
        buttons.addWidget(self.ok_button)
        buttons.addWidget(cancel)
        layout.addLayout(buttons)
        self.form.operator.setFocus()

    def submit(self) -> None:
        field = self.form.missing()
        if field is not None:
            field.setFocus()
            return
        problem = self.form.problem()
        if problem:
            self.message.setText(problem)
            return
        operator, password = self.form.values()
        self.ok_button.setEnabled(False)
        self.message.setText(_("Checking…"))
        self.shell.ops.run(lambda: sign_in(self.shell, operator, password), self._ok, self._failed)

    def _ok(self, principal: Principal) -> None:
        self.ok_button.setEnabled(True)
        self.principal = principal
        self.accept()

    def _failed(self, exc: BaseException) -> None:
        self.ok_button.setEnabled(True)
        self.message.setText(error_text(exc))
        self.form.retry()


# --------------------------------------------------------------------------- approval


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
        self._polling = False
        self.setWindowTitle(_("Approval needed"))
        self.setMinimumWidth(520)
        layout = QVBoxLayout(self)
        layout.addWidget(_title(_("A supervisor's approval is needed")))
        intro = QLabel(
            _(
                "To {action} ({what}) a supervisor other than you and the people involved must "
                "approve. The supervisor signs in here, or approves your request from the "
                "approval queue (page F5).",
                action=action_text(action.value),
                what=what or target,
            )
        )
        intro.setWordWrap(True)
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
        self.queue_status = QLabel(
            _("A supervisor approves it on page F5 at any counter; this window goes on by itself.")
        )
        self.queue_status.setWordWrap(True)
        queue_layout.addWidget(self.queue_button)
        queue_layout.addWidget(self.queue_status)
        layout.addWidget(queue)

        self.message = QLabel()
        self.message.setWordWrap(True)
        tone(self.message, "error")
        layout.addWidget(self.message)
        buttons = QHBoxLayout()
        cancel = QPushButton(_("Cancel (Esc)"))
        cancel.setAutoDefault(False)
        cancel.clicked.connect(self.reject)
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        layout.addLayout(buttons)

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
        field = self.form.missing()
        if field is not None:
            field.setFocus()
            return
        problem = self.form.problem()
        if problem:
            self.message.setText(problem)
            return
        if self.shell.principal is None:
            self.message.setText(_("Nobody is signed in at this counter. Sign in first."))
            return
        supervisor, password = self.form.values()
        ctx, actor = self.shell.ctx, self.shell.principal
        action, target = self.action, self.target
        payload, distinct = self.payload, self.distinct_from

        def work() -> ApprovalView:
            return approvals.sign_in_and_approve(
                ctx.db,
                approver_id=supervisor,
                password=password,
                actor=actor,
                action=action,
                target=target,
                clock=ctx.clock,
                settings=ctx.settings,
                payload=payload,
                distinct_from=distinct,
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
                until=when_text(view.expires_at),
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
        if self.closed:  # cancelled meanwhile: the approval waits for the next try
            key = self._key()
            if view.id not in _remembered.get(key, []):
                _remembered.setdefault(key, []).append(view.id)
            return
        self._forget(view.id)
        self.view = view
        self.approved.emit(view)
        self.accept()

    def _closed(self, _result: int) -> None:
        self.closed = True
        self.poll_timer.stop()

    def _busy(self, busy: bool, text: str) -> None:
        self.approve_button.setEnabled(not busy)
        self.queue_button.setEnabled(not busy and self.waiting_id is None)
        tone(self.message, "" if busy else "error")
        self.message.setText(text)
        self.adjustSize()


def approver_of(view: ApprovalView) -> str:
    return view.approvals[-1].operator if view.approvals else "?"


# --------------------------------------------------------------------------- operations


class OperationDialog(QDialog):
    """What the operation does, Enter starts it, a progress state while the card is worked
    on, then the outcome; Esc closes (not while the card is being written)."""

    finished_ok = Signal(object)  # the operation's outcome

    def __init__(self, shell: Any, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _prepare(self)
        self.shell = shell
        self.running = False
        self.completed = False
        self.outcome: Any = None
        self.approval: ApprovalDialog | None = None
        self.request: ApprovalView | None = None  # an approval not used yet
        self.setWindowTitle(title)
        self.setMinimumWidth(560)
        layout = QVBoxLayout(self)
        layout.addWidget(_title(title, 18))
        self.info = QLabel(_("Loading…"))
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.info)
        self.form = QFormLayout()
        layout.addLayout(self.form)
        self.instruction = QLabel()
        self.instruction.setWordWrap(True)
        layout.addWidget(self.instruction)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy, no percentage
        self.progress.setTextVisible(False)
        self.progress.hide()
        layout.addWidget(self.progress)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.message)
        buttons = QHBoxLayout()
        self.start_button = QPushButton(_("Start (Enter)"))
        self.start_button.setDefault(True)
        self.start_button.setEnabled(False)
        self.start_button.clicked.connect(self._start_clicked)
        self.close_button = QPushButton(_("Close (Esc)"))
        self.close_button.setAutoDefault(False)
        self.close_button.clicked.connect(self.reject)
        buttons.addStretch(1)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)

    # ------------------------------------------------------------------ for subclasses

    def ready(self, info: str, instruction: str, start_label: str) -> None:
        self.info.setText(info)
        self.instruction.setText(instruction)
        self.start_button.setText(start_label)
        self.start_button.setEnabled(True)
        self.start_button.setFocus()
        self.adjustSize()  # the text arrived after the window was laid out

    def start(self) -> None:  # pragma: no cover - every operation defines it
        raise NotImplementedError

    def load(self, fn: Callable[[], Any], on_done: Callable[[Any], None]) -> None:
        """Read what the dialog shows (off the GUI thread)."""
        self.shell.ops.run(fn, on_done, self.cannot_start)

    def cannot_start(self, exc: BaseException) -> None:
        self.info.setText(error_text(exc))
        tone(self.info, "error")
        self.adjustSize()
        self.start_button.setEnabled(False)
        self.close_button.setDefault(True)
        self.close_button.setFocus()

    def with_approval(
        self,
        action: Action,
        target: str,
        then: Callable[[str], None],
        *,
        payload: dict[str, Any] | None = None,
        distinct_from: Iterable[str] = (),
        what: str = "",
    ) -> None:
        """Run ``then(request_id)`` once a supervisor approved (an approval obtained for an
        earlier try that failed before using it is used again)."""
        if self.request is not None:
            then(self.request.id)
            return
        dialog = ApprovalDialog(
            self.shell,
            action,
            target,
            payload=payload,
            distinct_from=distinct_from,
            what=what,
            parent=self,
        )
        self.approval = dialog

        def approved(view: ApprovalView) -> None:
            self.request = view
            then(view.id)

        dialog.approved.connect(approved)
        dialog.rejected.connect(
            lambda: self.show_message(_("Not approved: nothing was done."), error=True)
        )
        dialog.open()

    def run_card(
        self,
        fn: Callable[[CardTerminal], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """``fn(terminal)`` on the card thread with the card now in the reader."""
        self._running(True)
        self.show_message(_("Working on the card. Do not take the card out."))
        terminal = self.shell.terminal

        def done(value: Any) -> None:
            self._running(False)
            on_done(value)

        def failed(exc: BaseException) -> None:
            self._running(False)
            if is_approval_problem(exc):
                self.request = None  # used, expired or refused: the next try asks again
            (on_error or self.fail)(exc)

        self.shell.ops.card(lambda: fn(terminal()), done, failed)

    def fail(self, exc: BaseException) -> None:
        self.show_message(error_text(exc), error=True)
        self.start_button.setText(_("Try again (Enter)"))
        self.start_button.setEnabled(True)
        self.start_button.setFocus()

    def succeed(self, text: str, outcome: Any) -> None:
        self.completed = True
        self.outcome = outcome
        self.request = None
        self.show_message(text, ok=True)
        self.start_button.setEnabled(False)
        self.start_button.hide()
        self.close_button.setDefault(True)
        self.close_button.setFocus()
        self.shell.notify(text.splitlines()[0])
        self.finished_ok.emit(outcome)

    def show_message(self, text: str, *, error: bool = False, ok: bool = False) -> None:
        self.message.setText(text)
        tone(self.message, "error" if error else "ok" if ok else "")
        self.adjustSize()

    def actor(self) -> Principal:
        principal = self.shell.principal
        if principal is None:
            raise ValidationError(N_("Nobody is signed in at this counter. Sign in first."))
        return principal  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ internals

    def _start_clicked(self) -> None:
        if self.running or self.completed:
            return
        try:
            self.start()
        except CardVendError as exc:
            self.show_message(error_text(exc), error=True)

    def _running(self, running: bool) -> None:
        self.running = running
        self.progress.setVisible(running)
        self.start_button.setEnabled(not running)
        self.close_button.setEnabled(not running)

    def reject(self) -> None:
        if self.running:
            self.show_message(_("Wait: the card is being written. Do not take it out."))
            return
        super().reject()


def _customer_info(c: CustomerView) -> str:
    return _(
        "Customer {customer_no}: {name}\n{address}\nMeter {meter_no}",
        customer_no=c.customer_no,
        name=c.name,
        address=c.address or "—",
        meter_no=c.meter_no,
    )


def _optional_yuan(field: QLineEdit) -> int | None:
    text = field.text().strip()
    return parse_yuan(text) if text else None


def print_receipt(shell: Any, sale_id: str) -> None:
    """Print the sale's receipt on the configured printer, off the GUI thread. The sale stands
    whatever happens here; a failure says so and how to reprint."""
    ctx = shell.ctx
    if ctx.printer_factory is None:
        return

    def work() -> str | None:
        printer = ctx.printer_factory()
        if printer is None:
            return None
        data = receipts.original_receipt(
            ctx.db, sale_id, settings=ctx.settings, key=ctx.receipt_key()
        )
        printer.print_receipt(data, language=str(ctx.settings.get(RECEIPT_LANGUAGE.key)))
        return str(printer.name)

    def failed(exc: BaseException) -> None:
        shell.notify(
            _(
                "The sale is recorded, but its receipt was not printed ({detail}). Reprint it "
                "with 'cardvend receipt {sale_id}'.",
                detail=error_text(exc),
                sale_id=sale_id,
            ),
            error=True,
        )

    shell.ops.run(work, None, failed)


# --------------------------------------------------------------------------- open account


class OpenAccountDialog(OperationDialog):
    """A blank card becomes the customer's first card; a first purchase may follow."""

    def __init__(self, shell: Any, customer_no: str, parent: QWidget | None = None) -> None:
        super().__init__(shell, _("Open account"), parent)
        self.customer_no = customer_no
        self.customer: CustomerView | None = None
        self.opened = False  # the account is open; only the first purchase is left
        self.amount = QLineEdit()
        self.amount.setPlaceholderText(_("yuan, for example 100.00 (empty: no purchase)"))
        self.cash = QLineEdit()
        self.cash.setPlaceholderText(_("yuan (empty: no change shown)"))
        self.form.addRow(_("First purchase"), self.amount)
        self.form.addRow(_("Cash received"), self.cash)
        db = shell.ctx.db
        self.load(lambda: customer_view(db, customer_no), self._loaded)

    def _loaded(self, customer: CustomerView) -> None:
        self.customer = customer
        self.ready(
            _customer_info(customer),
            _("Put a blank card in the reader, type the first purchase if any, press Enter."),
            _("Open account (Enter)"),
        )
        self.amount.setFocus()

    def start(self) -> None:
        actor = self.actor()
        amount = _optional_yuan(self.amount)
        cash = _optional_yuan(self.cash)
        if cash is not None and amount is None:
            raise ValidationError(N_("Type the first purchase before the cash received."))
        check_cash_received(amount, cash)
        ctx, customer_no = self.shell.ctx, self.customer_no
        if self.opened:  # the purchase stopped at an offline limit: retried as a plain sale
            if amount is not None:
                self._sell(actor, amount, cash, None)
            return

        def work(terminal: CardTerminal) -> tuple[CustomerView, selling.SaleOutcome | None]:
            return selling.open_account(
                ctx.db,
                terminal,
                actor=actor,
                customer_no=customer_no,
                clock=ctx.clock,
                settings=ctx.settings,
                amount=amount,
                cash_received=cash,
            )

        def failed(exc: BaseException) -> None:
            if isinstance(exc, selling.OfflineLimitReached) and amount is not None:
                self.opened = True
                self._offer_override(exc, actor, amount, cash)
            else:
                self.fail(exc)

        self.run_card(work, lambda result: self._done(*result), failed)

    def _offer_override(
        self, exc: selling.OfflineLimitReached, actor: Principal, amount: int, cash: int | None
    ) -> None:
        self.show_message(
            _("The account is open; the first purchase stopped:")
            + "\n"
            + error_text(exc)
            + "\n"
            + _("A supervisor may override the limit."),
            error=True,
        )
        self.start_button.setText(_("Sell the first purchase (Enter)"))
        self.start_button.setEnabled(True)
        self.with_approval(
            Action.OVERRIDE_OFFLINE_LIMIT,
            actor.counter_id,
            lambda request_id: self._sell(actor, amount, cash, request_id),
            payload={"problem": str(exc.params.get("detail", ""))},
            what=_("counter {counter}", counter=actor.counter_id),
        )

    def _sell(self, actor: Principal, amount: int, cash: int | None, request: str | None) -> None:
        ctx, customer_no = self.shell.ctx, self.customer_no

        def work(terminal: CardTerminal) -> tuple[CustomerView, selling.SaleOutcome]:
            outcome = selling.sell(
                ctx.db,
                terminal,
                actor=actor,
                amount=amount,
                clock=ctx.clock,
                settings=ctx.settings,
                cash_received=cash,
                expect_customer=customer_no,
                override_request=request,
            )
            return customer_view(ctx.db, customer_no), outcome

        self.run_card(work, lambda result: self._done(*result))

    def _done(self, customer: CustomerView, outcome: selling.SaleOutcome | None) -> None:
        lines = [
            _(
                "Account of customer {customer_no} opened on card {serial}.",
                customer_no=customer.customer_no,
                serial=customer.card_serial,
            )
        ]
        if outcome is not None:
            sale = outcome.sale
            lines.append(
                _(
                    "Customer {customer_no}, purchase {count}: {amount} yuan paid, {credit} yuan "
                    "credit.",
                    customer_no=sale.customer_no,
                    count=sale.purchase_count,
                    amount=format_yuan(sale.amount_fen),
                    credit=format_yuan(sale.credit_fen),
                )
            )
            if outcome.change_fen is not None:
                lines.append(_("Change: {change} yuan.", change=format_yuan(outcome.change_fen)))
            print_receipt(self.shell, sale.sale_id)
        lines.append(_("Ask the customer to insert the card into the meter."))
        self.succeed("\n".join(lines), (customer, outcome))


# --------------------------------------------------------------------------- rewrite


class RewriteDialog(OperationDialog):
    """The last purchase written again onto a card that is behind the ledger; no money."""

    def __init__(self, shell: Any, customer_no: str, parent: QWidget | None = None) -> None:
        super().__init__(shell, _("Rewrite card"), parent)
        self.customer_no = customer_no
        db = shell.ctx.db
        self.load(lambda: customer_view(db, customer_no), self._loaded)

    def _loaded(self, customer: CustomerView) -> None:
        self.ready(
            _customer_info(customer),
            _(
                "Put the customer's card in the reader. Its last purchase is written again; "
                "no money is taken."
            ),
            _("Rewrite (Enter)"),
        )

    def start(self) -> None:
        actor = self.actor()
        ctx, customer_no = self.shell.ctx, self.customer_no

        def work(terminal: CardTerminal) -> selling.SaleOutcome:
            return selling.rewrite(
                ctx.db,
                terminal,
                actor=actor,
                clock=ctx.clock,
                settings=ctx.settings,
                expect_customer=customer_no,
            )

        self.run_card(work, self._done)

    def _done(self, outcome: selling.SaleOutcome) -> None:
        self.succeed(
            _(
                "Card of customer {customer_no} rewritten with purchase {count} (sale "
                "{sale_id}); no money taken.",
                customer_no=outcome.sale.customer_no,
                count=outcome.sale.purchase_count,
                sale_id=outcome.sale.sale_id,
            ),
            outcome,
        )


# --------------------------------------------------------------------------- replacement


class ReplacementDialog(OperationDialog):
    """A blank card replaces a lost or damaged one: approval, the fee, the old card
    blacklisted."""

    def __init__(self, shell: Any, customer_no: str, parent: QWidget | None = None) -> None:
        super().__init__(shell, _("Replacement card"), parent)
        self.customer_no = customer_no
        self.fee = int(shell.ctx.settings.get(REPLACEMENT_FEE.key))
        db = shell.ctx.db
        self.load(lambda: customer_view(db, customer_no), self._loaded)

    def _loaded(self, customer: CustomerView) -> None:
        self.ready(
            _customer_info(customer)
            + "\n"
            + _("Replacement fee: {fee} yuan.", fee=format_yuan(self.fee)),
            _(
                "Take the fee, put a blank card in the reader and press Enter; a supervisor "
                "approves. The old card stops working."
            ),
            _("Issue replacement card (Enter)"),
        )

    def start(self) -> None:
        actor = self.actor()
        self.with_approval(
            Action.REPLACE_CARD,
            self.customer_no,
            lambda request_id: self._write(actor, request_id),
            payload={"customer_no": self.customer_no},
            what=_("customer {customer_no}", customer_no=self.customer_no),
        )

    def _write(self, actor: Principal, request_id: str) -> None:
        ctx, customer_no = self.shell.ctx, self.customer_no

        def work(terminal: CardTerminal) -> tuple[CustomerView, int]:
            return selling.replace_card(
                ctx.db,
                terminal,
                actor=actor,
                customer_no=customer_no,
                clock=ctx.clock,
                settings=ctx.settings,
                approval_request=request_id,
            )

        self.run_card(work, lambda result: self._done(*result))

    def _done(self, customer: CustomerView, fee: int) -> None:
        approver = approver_of(self.request) if self.request is not None else "?"
        if fee:
            text = (
                _(
                    "Replacement card {serial} issued to customer {customer_no}, approved by "
                    "{approver}; the old card is blacklisted.",
                    serial=customer.card_serial,
                    customer_no=customer.customer_no,
                    approver=approver,
                )
                + "\n"
                + _("Replacement fee: {fee} yuan.", fee=format_yuan(fee))
            )
        else:
            text = _(
                "The replacement card {serial} that was interrupted earlier is finished; no "
                "fee is taken again.",
                serial=customer.card_serial,
            )
        self.succeed(
            text + "\n" + _("Ask the customer to insert the card into the meter."),
            (customer, fee),
        )


# --------------------------------------------------------------------------- reversal


def last_reversible(db: Any, customer_no: str) -> ledger.SaleView | None:
    """The customer's latest completed card sale (the only one a reversal may take back)."""
    for sale in ledger.list_sales(db, customer_no=customer_no, limit=20):
        if sale.kind == SaleKind.CARD.value and sale.state in (
            SaleState.COMPLETED.value,
            SaleState.REVERSED.value,
        ):
            return sale if sale.state == SaleState.COMPLETED.value else None
    return None


class ReversalDialog(OperationDialog):
    """Take a completed sale back from its card (card present, the meter has not loaded it),
    approved by a supervisor other than the seller."""

    def __init__(
        self,
        shell: Any,
        *,
        sale_id: str | None = None,
        customer_no: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(shell, _("Reverse a sale"), parent)
        self.sale: ledger.SaleView | None = None
        db = shell.ctx.db

        def find() -> ledger.SaleView:
            if sale_id is not None:
                return ledger.get_sale(db, sale_id)
            if customer_no is None:
                raise ValidationError(N_("Choose a sale or a customer first."))
            sale = last_reversible(db, customer_no)
            if sale is None:
                raise selling.ReversalRefused(
                    reason=N_("only a completed card sale can be reversed")
                )
            return sale

        self.load(find, self._loaded)

    def _loaded(self, sale: ledger.SaleView) -> None:
        self.sale = sale
        self.ready(
            _(
                "Sale {sale_id}: customer {customer_no}, purchase {count}, {amount} yuan, "
                "sold by {seller} at {when}.",
                sale_id=sale.sale_id,
                customer_no=sale.customer_no,
                count=sale.purchase_count if sale.purchase_count is not None else "—",
                amount=format_yuan(sale.amount_fen),
                seller=sale.operator_id,
                when=when_text(sale.created_at),
            ),
            _(
                "Put the customer's card in the reader and press Enter; a supervisor other "
                "than the seller approves. The card is set back to the purchase before this one."
            ),
            _("Reverse (Enter)"),
        )

    def start(self) -> None:
        actor = self.actor()
        sale = self.sale
        if sale is None:
            return
        self.with_approval(
            Action.REVERSE,
            sale.sale_id,
            lambda request_id: self._write(actor, sale, request_id),
            payload={"sale_id": sale.sale_id},
            distinct_from=(sale.operator_id,),
            what=_(
                "sale of {amount} yuan to customer {customer_no}",
                amount=format_yuan(sale.amount_fen),
                customer_no=sale.customer_no,
            ),
        )

    def _write(self, actor: Principal, sale: ledger.SaleView, request_id: str) -> None:
        ctx = self.shell.ctx

        def work(terminal: CardTerminal) -> ledger.SaleView:
            return selling.reverse_sale(
                ctx.db,
                terminal,
                actor=actor,
                sale_id=sale.sale_id,
                clock=ctx.clock,
                settings=ctx.settings,
                approval_request=request_id,
            )

        self.run_card(work, self._done)

    def _done(self, sale: ledger.SaleView) -> None:
        approver = approver_of(self.request) if self.request is not None else "?"
        self.succeed(
            _(
                "Sale {sale_id} reversed, approved by {approver}; the card holds purchase "
                "{count} again.",
                sale_id=sale.sale_id,
                approver=approver,
                count=(sale.purchase_count or 1) - 1,
            )
            + "\n"
            + _("Hand back {amount} yuan to the customer.", amount=format_yuan(sale.amount_fen)),
            sale,
        )


# --------------------------------------------------------------------------- entry points


def _parent(shell: Any, parent: QWidget | None) -> QWidget | None:
    if parent is not None:
        return parent
    return shell if isinstance(shell, QWidget) else None


def _show(dialog: OperationDialog) -> OperationDialog:
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog


def start_open_account(
    shell: Any, customer_no: str, parent: QWidget | None = None
) -> OperationDialog:
    return _show(OpenAccountDialog(shell, customer_no, _parent(shell, parent)))


def start_rewrite(shell: Any, customer_no: str, parent: QWidget | None = None) -> OperationDialog:
    return _show(RewriteDialog(shell, customer_no, _parent(shell, parent)))


def start_replacement(
    shell: Any, customer_no: str, parent: QWidget | None = None
) -> OperationDialog:
    return _show(ReplacementDialog(shell, customer_no, _parent(shell, parent)))


def start_reversal(
    shell: Any,
    *,
    sale_id: str | None = None,
    customer_no: str | None = None,
    parent: QWidget | None = None,
) -> OperationDialog:
    return _show(
        ReversalDialog(
            shell, sale_id=sale_id, customer_no=customer_no, parent=_parent(shell, parent)
        )
    )
