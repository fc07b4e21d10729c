"""F5 Unresolved: the sales nobody knows the outcome of yet, and the approval queue.

A sale is *pending* while its card is written and *in doubt* when that was interrupted (a crash,
a pulled card): the card decides.  "Present the card" reads the card in the reader on the card
thread (:func:`app.services.selling.recover_with_card`, as ``cardvend recover`` does): a card
holding the purchase completes the sale, a card without it fails it (the cash goes back).

The approval queue lists the requests waiting for a sign-off; a supervisor approves or rejects
them here (signed in at this counter, or signing in for the one decision).  The teller's
dialog that filed the request goes on by itself once it is approved.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGroupBox
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QTableWidget
from PySide6.QtWidgets import QTableWidgetItem
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.domain.ledger import SaleState
from app.domain.ledger import Situation
from app.domain.operators import Role
from app.domain.permissions import Action
from app.domain.receipt import receipt_no
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.money import format_yuan
from app.services import approvals
from app.services import ledger
from app.services import selling
from app.services.approvals import ApprovalView
from app.services.auth import Principal
from app.settings import TIME_ZONE
from ui import dialogs
from ui.bridge import error_text
from ui.pages.common import list_table
from ui.widgets import button_row
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)

REFRESH_MS = 5000
# what a supervisor's decision that settles a request says, by the request's new state
DECIDED = {
    approvals.APPROVED: N_("{approver} approved the request of {operator} to {action} ({target})."),
    approvals.REJECTED: N_("{approver} rejected the request of {operator} to {action} ({target})."),
}


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    current = table.currentRow()
    table.setRowCount(len(rows))
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            table.setItem(r, c, QTableWidgetItem(value))
    if rows:
        table.setCurrentCell(min(max(current, 0), len(rows) - 1), 0)


class RecoveryPage(QWidget):
    SALE_COLUMNS = (
        N_("Sold at"),
        N_("Customer no."),
        N_("Purchase"),
        N_("Amount"),
        N_("State"),
        N_("Counter"),
        N_("Operator"),
        N_("Receipt"),
    )
    QUEUE_COLUMNS = (
        N_("Asked at"),
        N_("To"),
        N_("For"),
        N_("Asked by"),
        N_("Counter"),
        N_("Waiting for"),
        N_("Expires"),
    )

    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.sales: list[ledger.SaleView] = []
        self.queue: list[ApprovalView] = []
        self.signin: dialogs.SignInDialog | None = None
        self._loading = False
        layout = QVBoxLayout(self)

        sales_box = QGroupBox(_("Unresolved sales"))
        sales_layout = QVBoxLayout(sales_box)
        intro = wrapped_label(
            _(
                "The card decides a sale in doubt. Ask the customer for the card, put it in the "
                "reader and press Enter. Keep the cash until the card has decided."
            )
        )
        sales_layout.addWidget(intro)
        self.sales_table = list_table(self.SALE_COLUMNS, tab_navigation=False, keys=(1, 2, 3, 7))
        sales_layout.addWidget(self.sales_table, 1)
        self.present_button = QPushButton(_("Present the &card (Enter)"))
        self.present_button.setDefault(True)
        self.refresh_button = QPushButton(_("&Refresh"))
        sales_layout.addLayout(
            button_row(
                (self.present_button, self.present_card), (self.refresh_button, self.refresh)
            )
        )
        self.result = wrapped_label(selectable=True)
        sales_layout.addWidget(self.result)
        layout.addWidget(sales_box, 3)

        queue_box = QGroupBox(_("Approval queue"))
        queue_layout = QVBoxLayout(queue_box)
        self.queue_table = list_table(self.QUEUE_COLUMNS, tab_navigation=False)
        queue_layout.addWidget(self.queue_table, 1)
        row = QHBoxLayout()
        self.approve_button = QPushButton(_("&Approve"))
        self.approve_button.clicked.connect(self.approve_selected)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText(_("reason for rejecting"))
        self.reject_button = QPushButton(_("Re&ject"))
        self.reject_button.clicked.connect(self.reject_selected)
        row.addWidget(self.approve_button)
        row.addWidget(self.reason, 1)
        row.addWidget(self.reject_button)
        queue_layout.addLayout(row)
        self.queue_message = wrapped_label()
        queue_layout.addWidget(self.queue_message)
        layout.addWidget(queue_box, 2)

        self.sales_table.activated.connect(lambda _index: self.present_card())
        self.queue_table.activated.connect(lambda _index: self.approve_selected())
        self.reason.returnPressed.connect(self.reject_selected)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)

    # ------------------------------------------------------------------ page

    def activated(self) -> None:
        self.refresh()
        self.timer.start()
        self.sales_table.setFocus()

    def hideEvent(self, event: Any) -> None:
        self.timer.stop()
        super().hideEvent(event)

    def refresh(self) -> None:
        """Re-read the unresolved sales and the queue (off the GUI thread)."""
        if self._loading:
            return
        self._loading = True
        db, clock = self.shell.ctx.db, self.shell.ctx.clock

        def work() -> tuple[list[ledger.SaleView], list[ApprovalView]]:
            return selling.unresolved(db), approvals.pending(db, clock=clock)

        dialogs.run_quietly(self.shell, work, self._show, self._load_failed)

    def _load_failed(self, exc: BaseException) -> None:
        self._loading = False
        self.result.setText(error_text(exc))
        dialogs.tone(self.result, "error")

    def _show(self, data: tuple[list[ledger.SaleView], list[ApprovalView]]) -> None:
        self._loading = False
        self.sales, self.queue = data
        tz = self.shell.ctx.settings.value(TIME_ZONE)
        _fill(
            self.sales_table,
            [
                [
                    dialogs.when_text(s.created_at, tz),
                    s.customer_no,
                    str(s.purchase_count) if s.purchase_count is not None else "—",
                    format_yuan(s.amount_fen),
                    SaleState.text_of(s.state),
                    s.counter_id,
                    s.operator_id,
                    receipt_no(s.sale_id),
                ]
                for s in self.sales
            ],
        )
        _fill(
            self.queue_table,
            [
                [
                    dialogs.when_text(v.requested_at, tz),
                    dialogs.action_text(v.action),
                    v.target,
                    v.requested_by,
                    v.counter_id,
                    Role.text_of(v.next_step.role) if v.next_step is not None else "—",
                    dialogs.when_text(v.expires_at, tz),
                ]
                for v in self.queue
            ],
        )
        self.approve_button.setEnabled(bool(self.queue))
        self.reject_button.setEnabled(bool(self.queue))
        self.present_button.setText(
            _("Present the &card (Enter)")
            if self.sales
            else _("Present a &card (Enter): nothing is unresolved")
        )

    # ------------------------------------------------------------------ card

    def present_card(self) -> None:
        principal = self.shell.principal
        if principal is None:
            self._result(_("Nobody is signed in at this counter. Sign in first."), error=True)
            return
        ctx, terminal = self.shell.ctx, self.shell.terminal

        def work() -> selling.Assessment:
            principal.authorize(Action.SELL, ctx.clock)
            return selling.recover_with_card(
                ctx.db, terminal(), clock=ctx.clock, settings=ctx.settings, actor=principal
            )

        self.present_button.setEnabled(False)
        self._result(_("Reading the card. Do not take it out."))
        self.shell.ops.card(work, self._assessed, self._card_failed)

    def _card_failed(self, exc: BaseException) -> None:
        self.present_button.setEnabled(True)
        self._result(error_text(exc), error=True)
        self.refresh()

    def _assessed(self, a: selling.Assessment) -> None:
        self.present_button.setEnabled(True)
        if a.recovered:
            self.shell.ledger_changed(source=self)
        lines = [
            _(
                "Card {serial} of customer {customer_no}: {situation}.",
                serial=a.contents.serial_hex,
                customer_no=a.customer.customer_no,
                situation=Situation.text_of(a.situation),
            )
        ]
        if not a.recovered:
            lines.append(_("The card had nothing to decide."))
        for s in a.recovered:
            if s.state == SaleState.FAILED.value:
                lines.append(
                    _(
                        "Sale {sale_id} failed: the card never got it; return {amount} yuan to "
                        "the customer.",
                        sale_id=receipt_no(s.sale_id),
                        amount=format_yuan(s.amount_fen),
                    )
                )
            else:
                lines.append(
                    _(
                        "Sale {sale_id} is now {state}.",
                        sale_id=receipt_no(s.sale_id),
                        state=SaleState.text_of(s.state),
                    )
                )
        self._result("\n".join(lines))
        self.shell.notify(lines[-1])
        self.refresh()

    def _result(self, text: str, *, error: bool = False) -> None:
        self.result.setText(text)
        dialogs.tone(self.result, "error" if error else "")

    # ------------------------------------------------------------------ approval queue

    def selected_request(self) -> ApprovalView | None:
        row = self.queue_table.currentRow()
        return self.queue[row] if 0 <= row < len(self.queue) else None

    def approve_selected(self) -> None:
        request = self.selected_request()
        if request is not None:
            self._decide(request, None)

    def reject_selected(self) -> None:
        request = self.selected_request()
        if request is None:
            return
        reason = self.reason.text().strip()
        if not reason:
            self._queue_message(_("Type the reason for rejecting, then press Enter."), error=True)
            self.reason.setFocus()
            return
        self._decide(request, reason)

    def _decide(self, request: ApprovalView, reason: str | None) -> None:
        """Approve (``reason`` None) or reject as the operator signed in here when that is a
        supervisor, else as a supervisor who signs in for this decision."""
        principal = self.shell.principal
        if principal is not None and principal.can(Action.APPROVE):
            self._decide_as(principal, request, reason)
            return
        if reason is None:
            text = _(
                "A supervisor signs in to approve the request of {operator} to {action} "
                "({target}).",
                operator=request.requested_by,
                action=dialogs.action_text(request.action),
                target=request.target,
            )
        else:
            text = _(
                "A supervisor signs in to reject the request of {operator} to {action} ({target}).",
                operator=request.requested_by,
                action=dialogs.action_text(request.action),
                target=request.target,
            )
        dialog = dialogs.SignInDialog(
            self.shell,
            text,
            self,
        )
        self.signin = dialog

        def signed_in() -> None:
            if dialog.principal is not None:
                self._decide_as(dialog.principal, request, reason)

        dialog.accepted.connect(signed_in)
        dialog.open()

    def _decide_as(self, approver: Principal, request: ApprovalView, reason: str | None) -> None:
        ctx = self.shell.ctx

        def work() -> ApprovalView:
            return approvals.decide_as(ctx.db, request.id, approver, clock=ctx.clock, reason=reason)

        def done(view: ApprovalView) -> None:
            decided = DECIDED.get(view.state)
            if decided is not None:
                if view.state == approvals.REJECTED:
                    self.reason.clear()
                text = translate(decided).format(
                    approver=approver.operator_id,
                    operator=view.requested_by,
                    action=dialogs.action_text(view.action),
                    target=view.target,
                )
            else:  # a step signed, more to come
                text = _(
                    "{approver} signed; the request waits for the next approver.",
                    approver=approver.operator_id,
                )
            self._queue_message(text)
            self.shell.ledger_changed(source=self)
            self.refresh()

        def failed(exc: BaseException) -> None:
            self._queue_message(error_text(exc), error=True)
            self.refresh()

        self.shell.ops.run(work, done, failed)

    def _queue_message(self, text: str, *, error: bool = False) -> None:
        self.queue_message.setText(text)
        dialogs.tone(self.queue_message, "error" if error else "")
