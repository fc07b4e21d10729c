"""OperationDialog: the frame of every card operation (says what it does, works on the card thread, shows the outcome), and printing its receipt."""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog
from PySide6.QtWidgets import QFormLayout
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QProgressBar
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.domain.permissions import Action
from app.errors import CardVendError
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import _
from app.money import parse_yuan
from app.ports import CardTerminal
from app.services import receipts
from app.services.approvals import ApprovalView
from app.services.auth import Principal
from app.services.customers import CustomerView
from app.services.customers import customer_view
from app.settings import RECEIPT_LANGUAGE
from ui.bridge import error_text
from ui.dialogs.approval import ApprovalDialog
from ui.dialogs.common import _prepare
from ui.dialogs.common import _title
from ui.dialogs.common import can_retry
from ui.dialogs.common import is_approval_problem
from ui.dialogs.common import tone
from ui.widgets import button_row
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)


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
        self.customer: CustomerView | None = None  # the customer it is for, once loaded
        self.setWindowTitle(title)
        self.setMinimumWidth(560)
        layout = QVBoxLayout(self)
        layout.addWidget(_title(title, 18))
        self.info = wrapped_label(_("Loading…"))
        self.info.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.info)
        self.form = QFormLayout()
        layout.addLayout(self.form)
        self.instruction = wrapped_label()
        layout.addWidget(self.instruction)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy, no percentage
        self.progress.setTextVisible(False)
        self.progress.hide()
        layout.addWidget(self.progress)
        self.message = wrapped_label(selectable=True)
        layout.addWidget(self.message)
        self.start_button = QPushButton(_("Start (Enter)"))
        self.start_button.setDefault(True)
        self.start_button.setEnabled(False)
        self.close_button = QPushButton(_("Close (Esc)"))
        self.close_button.setAutoDefault(False)
        layout.addLayout(
            button_row(
                (self.start_button, self._start_clicked),
                (self.close_button, self.reject),
                align="right",
            )
        )

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

    def load_customer(self, customer_no: str) -> None:
        """Read the customer the operation is for (off the GUI thread) into ``self.customer``;
        :meth:`customer_loaded` then shows it."""
        db = self.shell.ctx.db

        def loaded(customer: CustomerView) -> None:
            self.customer = customer
            self.customer_loaded(customer)

        self.load(lambda: customer_view(db, customer_no), loaded)

    def customer_loaded(self, customer: CustomerView) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

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

        def cancelled() -> None:
            if dialog.withdrawn is not None:
                text = _(
                    "Request {request} withdrawn from the approval queue: nothing was done.",
                    request=dialog.withdrawn[:8],
                )
            else:
                text = _("Not approved: nothing was done.")
            self.show_message(text, error=True)

        dialog.rejected.connect(cancelled)
        dialog.open()

    def run_card(
        self,
        fn: Callable[[CardTerminal], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """``fn(terminal)`` on the card thread with the card now in the reader."""
        self.show_message(_("Working on the card. Do not take the card out."))
        terminal = self.shell.terminal
        self._run(self.shell.ops.card, lambda: fn(terminal()), on_done, on_error)

    def run_plain(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """``fn()`` off the GUI thread, for an operation that needs no card."""
        self._run(self.shell.ops.run, fn, on_done, on_error)

    def _run(
        self,
        submit: Callable[..., Any],
        fn: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None,
    ) -> None:
        """The operation running (progress shown, Esc held) until ``fn`` is done or failed."""
        self._running(True)

        def done(value: Any) -> None:
            self._running(False)
            on_done(value)

        def failed(exc: BaseException) -> None:
            self._running(False)
            if is_approval_problem(exc):
                self.request = None  # used, expired or refused: the next try asks again
            (on_error or self.fail)(exc)

        submit(fn, done, failed)

    def fail(self, exc: BaseException) -> None:
        """Say what went wrong; offer to try again only where that can help."""
        self.show_message(error_text(exc), error=True)
        if can_retry(exc):
            self.start_button.setText(_("Try again (Enter)"))
            self.start_button.setEnabled(True)
            self.start_button.setFocus()
        elif isinstance(exc, ValidationError):  # something typed here: corrected, it starts
            self.start_button.setEnabled(True)
        else:
            self.start_button.setEnabled(False)
            self.start_button.hide()
            self.close_button.setDefault(True)
            self.close_button.setFocus()

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
        changed = getattr(self.shell, "ledger_changed", None)
        if callable(changed):  # the card or the ledger changed: the pages read them again
            changed()
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


def dialog_parent(shell: Any, parent: QWidget | None) -> QWidget | None:
    """``parent``, or the window itself when none is given."""
    if parent is not None:
        return parent
    return shell if isinstance(shell, QWidget) else None


def open_operation(dialog: OperationDialog) -> OperationDialog:
    """Open an operation's dialog (window-modal, deleted once closed)."""
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog


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
                "from the customer's latest sales (F3) once the printer works.",
                detail=error_text(exc),
            ),
            error=True,
        )

    shell.ops.run(work, None, failed)
