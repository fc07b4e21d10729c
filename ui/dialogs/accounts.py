"""Close, pause and resume an account (the customers page's actions): the close shows the
settlement first (the card read, nothing changed), then a supervisor approves and the account is
settled and closed; the settlement statement is saved as a PDF."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtWidgets import QCheckBox
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QWidget

from app.domain import settlement as st
from app.domain.customers import MeterKind
from app.domain.permissions import Action
from app.fileio import private_dir
from app.files import save_output
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.ports import CardTerminal
from app.presenters.accounts import AccountWork
from app.presenters.accounts import CloseRequest
from app.presenters.accounts import closed_line
from app.presenters.accounts import paused_line
from app.presenters.accounts import resumed_line
from app.presenters.accounts import settlement_lines
from app.services import approvals
from app.services.auth import Principal
from app.services.customers import CustomerView
from ui.bridge import error_text
from ui.dialogs.operation import OperationDialog
from ui.dialogs.operation import _customer_info
from ui.dialogs.operation import dialog_parent
from ui.dialogs.operation import open_operation

log = logging.getLogger(__name__)


class _AccountDialog(OperationDialog):
    """An operation on the customer's account that may not need the card."""

    def __init__(self, shell: Any, title: str, customer_no: str, parent: QWidget | None) -> None:
        super().__init__(shell, title, parent)
        self.customer_no = customer_no
        self.load_customer(customer_no)

    def run_status_change(
        self, fn: Callable[[str | None], Any], on_done: Callable[[Any], None]
    ) -> None:
        """Pause or resume: tried as it is; when a ``pause_account`` rule asks for an approval,
        the supervisor approves here and it runs again with the request."""

        def failed(exc: BaseException) -> None:
            if not isinstance(exc, approvals.ApprovalRequired):
                self.fail(exc)
                return
            self.with_approval(
                Action.PAUSE_ACCOUNT,
                self.customer_no,
                lambda request_id: self.run_plain(lambda: fn(request_id), on_done),
                payload={"customer_no": self.customer_no},
                what=_("customer {customer_no}", customer_no=self.customer_no),
            )

        self.run_plain(lambda: fn(None), on_done, failed)


class CloseAccountDialog(_AccountDialog):
    """Enter reads the card and shows the settlement; Enter again (a supervisor approves)
    settles and closes the account."""

    def __init__(self, shell: Any, customer_no: str, parent: QWidget | None = None) -> None:
        self.no_card = QCheckBox(_("The card is lost or cannot be read (it is blacklisted)"))
        self.keep_card = QCheckBox(_("The customer keeps the card (it is blacklisted)"))
        self.reason = QLineEdit()
        self.reason.setPlaceholderText(_("for example: moved away"))
        self.preview: st.Settlement | None = None
        super().__init__(shell, _("Close account"), customer_no, parent)
        self.form.addRow(self.no_card)
        self.form.addRow(self.keep_card)
        self.form.addRow(_("Reason"), self.reason)
        for box in (self.no_card, self.keep_card):
            box.toggled.connect(self._options_changed)

    def _card_meter(self) -> bool:
        return self.customer is not None and self.customer.meter_kind == MeterKind.CARD.value

    def _uses_card(self) -> bool:
        return self._card_meter() and not self.no_card.isChecked()

    def customer_loaded(self, customer: CustomerView) -> None:
        card = customer.meter_kind == MeterKind.CARD.value and bool(customer.card_serial)
        self.no_card.setVisible(card)
        self.keep_card.setVisible(card)
        self._ask_preview()

    def _ask_preview(self) -> None:
        if self.customer is None:
            return
        self.preview = None
        self.ready(
            _customer_info(self.customer),
            _("Put the customer's card in the reader and press Enter to see the settlement.")
            if self._uses_card()
            else _("Press Enter to see the settlement."),
            _("Show settlement (Enter)"),
        )

    def _options_changed(self) -> None:
        self.keep_card.setEnabled(not self.no_card.isChecked())
        if not self.running and not self.completed:
            self.show_message("")
            self._ask_preview()

    def _request(self) -> CloseRequest:
        return CloseRequest(self.customer_no, st.KEEP if self.keep_card.isChecked() else st.ERASE)

    def start(self) -> None:
        actor = self.actor()
        if self.preview is None:
            self._show_preview(actor)
            return
        self.with_approval(
            Action.CLOSE_ACCOUNT,
            self.customer_no,
            lambda request_id: self._close(actor, request_id),
            payload={"customer_no": self.customer_no, "refund": self.preview.refund},
            what=_("customer {customer_no}", customer_no=self.customer_no),
        )

    def _show_preview(self, actor: Principal) -> None:
        work, request = AccountWork.of(self.shell.ctx), self._request()

        def done(preview: st.Settlement) -> None:
            self.preview = preview
            self.show_message("\n".join(settlement_lines(preview)))
            self.instruction.setText(
                _("Check the settlement with the customer; a supervisor approves the close.")
            )
            self.start_button.setText(_("Close account (Enter)"))
            self.start_button.setEnabled(True)
            self.start_button.setFocus()

        self._run_close(lambda terminal: work.preview_close(terminal, actor, request), done)

    def _close(self, actor: Principal, request_id: str) -> None:
        work, request, reason = AccountWork.of(self.shell.ctx), self._request(), self.reason.text()
        self._run_close(
            lambda terminal: work.close_account(
                terminal, actor, request, request_id, reason=reason
            ),
            self._done,
        )

    def _run_close(
        self, fn: Callable[[CardTerminal | None], Any], on_done: Callable[[Any], None]
    ) -> None:
        """``fn`` with the card in the reader, or with None when the close goes without it."""
        if self._uses_card():
            self.run_card(fn, on_done)
        else:
            self.run_plain(lambda: fn(None), on_done)

    def _done(self, done: st.Settlement) -> None:
        self.succeed("\n".join([closed_line(done), *settlement_lines(done)]), done)
        save_statement(self.shell, done)


def save_statement(shell: Any, done: st.Settlement) -> None:
    """The settlement statement as a PDF in the data folder's ``statements`` (off the GUI
    thread); the close stands whatever happens here."""
    ctx = shell.ctx
    renderer = ctx.report_renderer
    if renderer is None:
        return
    language = AccountWork.of(ctx).statement_language()

    def work() -> str:
        folder = private_dir(ctx.paths.data_dir / "statements")
        name = f"close-{done.customer_no}-{(done.event_id or '')[:8]}.pdf"
        path = save_output(folder / name, renderer.report_pdf(done, language=language), force=True)
        return str(path)

    def saved(path: str) -> None:
        shell.notify(_("Settlement statement saved to {path}.", path=path))

    def failed(exc: BaseException) -> None:
        shell.notify(
            _(
                "The account is closed, but its settlement statement was not saved ({detail}).",
                detail=error_text(exc),
            ),
            error=True,
        )

    shell.ops.run(work, saved, failed)


@dataclass(frozen=True)
class StatusChange:
    """What the pause or the resume dialog says (msgids, translated when shown) and does."""

    title: str
    placeholder: str
    instruction: str
    button: str
    run: Callable[[AccountWork, Principal, str, str, str | None], CustomerView]
    line: Callable[[CustomerView], str]
    show_reason: bool = False  # the customer's present reason (why it is paused) is shown
    focus_reason: bool = False


PAUSE = StatusChange(
    title=N_("Pause account"),
    placeholder=N_("for example: vacant house, dispute over a bill"),
    instruction=N_("Type why the account is paused; sales are refused with this reason."),
    button=N_("Pause (Enter)"),
    run=AccountWork.pause,
    line=paused_line,
    focus_reason=True,
)
RESUME = StatusChange(
    title=N_("Resume account"),
    placeholder=N_("optional"),
    instruction=N_("Press Enter to allow sales again."),
    button=N_("Resume (Enter)"),
    run=AccountWork.resume,
    line=resumed_line,
    show_reason=True,
)


class StatusChangeDialog(_AccountDialog):
    """Pause an active account with a reason (no sales until it is resumed), or resume a
    paused one: :data:`PAUSE` or :data:`RESUME`."""

    def __init__(
        self, shell: Any, change: StatusChange, customer_no: str, parent: QWidget | None = None
    ) -> None:
        self.change = change
        self.reason = QLineEdit()
        self.reason.setPlaceholderText(translate(change.placeholder))
        super().__init__(shell, translate(change.title), customer_no, parent)
        self.form.addRow(_("Reason"), self.reason)

    def customer_loaded(self, customer: CustomerView) -> None:
        info = _customer_info(customer)
        if self.change.show_reason:
            info += "\n" + _("Paused: {reason}", reason=customer.status_reason or "—")
        self.ready(info, translate(self.change.instruction), translate(self.change.button))
        if self.change.focus_reason:
            self.reason.setFocus()

    def start(self) -> None:
        actor = self.actor()
        work, change, customer_no, reason = (
            AccountWork.of(self.shell.ctx),
            self.change,
            self.customer_no,
            self.reason.text(),
        )
        self.run_status_change(
            lambda request: change.run(work, actor, customer_no, reason, request),
            lambda view: self.succeed(change.line(view), view),
        )


def start_close_account(
    shell: Any, customer_no: str, parent: QWidget | None = None
) -> OperationDialog:
    return open_operation(CloseAccountDialog(shell, customer_no, dialog_parent(shell, parent)))


def start_pause_account(
    shell: Any, customer_no: str, parent: QWidget | None = None
) -> OperationDialog:
    return open_operation(
        StatusChangeDialog(shell, PAUSE, customer_no, dialog_parent(shell, parent))
    )


def start_resume_account(
    shell: Any, customer_no: str, parent: QWidget | None = None
) -> OperationDialog:
    return open_operation(
        StatusChangeDialog(shell, RESUME, customer_no, dialog_parent(shell, parent))
    )
