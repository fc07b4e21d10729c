"""The card operations that are not a plain sale: open account, rewrite, replacement, reversal, and the start_* functions that open them."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QWidget

from app.domain.card import CardContents
from app.domain.permissions import Action
from app.domain.receipt import receipt_no
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import _
from app.money import check_cash_received
from app.money import format_yuan
from app.ports import CardTerminal
from app.presenters.cardwork import CardWork
from app.presenters.cardwork import approver_of
from app.presenters.cardwork import change_lines
from app.presenters.cardwork import erased_line
from app.presenters.cardwork import exchanged_lines
from app.presenters.cardwork import fee_line
from app.presenters.cardwork import opened_line
from app.presenters.cardwork import purchase_line
from app.presenters.cardwork import read_old_card
from app.presenters.cardwork import replaced_lines
from app.presenters.cardwork import reversed_lines
from app.presenters.cardwork import rewritten_line
from app.services import approvals
from app.services import ledger
from app.services import selling
from app.services.auth import Principal
from app.services.customers import CustomerView
from app.services.customers import customer_view
from app.settings import EXCHANGE_FEE
from app.settings import REPLACEMENT_FEE
from app.settings import TIME_ZONE
from ui.bridge import error_text
from ui.dialogs.common import when_text
from ui.dialogs.operation import OperationDialog
from ui.dialogs.operation import _customer_info
from ui.dialogs.operation import _optional_yuan
from ui.dialogs.operation import dialog_parent
from ui.dialogs.operation import open_operation
from ui.dialogs.operation import print_receipt
from ui.widgets import radio_buttons

log = logging.getLogger(__name__)


class OpenAccountDialog(OperationDialog):
    """A blank card becomes the customer's first card; a first purchase may follow."""

    def __init__(self, shell: Any, customer_no: str, parent: QWidget | None = None) -> None:
        super().__init__(shell, _("Open account"), parent)
        self.customer_no = customer_no
        self.opened = False  # the account is open; only the first purchase is left
        self.amount = QLineEdit()
        self.amount.setPlaceholderText(_("yuan, for example 100.00 (empty: no purchase)"))
        self.cash = QLineEdit()
        self.cash.setPlaceholderText(_("yuan (empty: no change shown)"))
        self.form.addRow(_("First purchase"), self.amount)
        self.form.addRow(_("Cash received"), self.cash)
        self.load_customer(customer_no)

    def customer_loaded(self, customer: CustomerView) -> None:
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
        cardwork, customer_no = CardWork.of(self.shell.ctx), self.customer_no
        if self.opened:  # the purchase stopped at an offline limit: retried as a plain sale
            if amount is not None:
                self._sell(actor, amount, cash, None)
            return

        def work(terminal: CardTerminal) -> tuple[CustomerView, selling.SaleOutcome | None]:
            return cardwork.open_account(terminal, actor, customer_no, amount, cash)

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
        cardwork, customer_no = CardWork.of(self.shell.ctx), self.customer_no

        def work(terminal: CardTerminal) -> tuple[CustomerView, selling.SaleOutcome]:
            outcome = cardwork.sell(terminal, actor, amount, cash, customer_no, request)
            return customer_view(cardwork.db, customer_no), outcome

        self.run_card(work, lambda result: self._done(*result))

    def _done(self, customer: CustomerView, outcome: selling.SaleOutcome | None) -> None:
        lines = [opened_line(customer)]
        if outcome is not None:
            sale = outcome.sale
            lines += [purchase_line(sale), *change_lines(outcome.change_fen)]
            print_receipt(self.shell, sale.sale_id)
        lines.append(_("Ask the customer to insert the card into the meter."))
        self.succeed("\n".join(lines), (customer, outcome))


class RewriteDialog(OperationDialog):
    """The last purchase written again onto a card that is behind the ledger; no money."""

    def __init__(self, shell: Any, customer_no: str, parent: QWidget | None = None) -> None:
        super().__init__(shell, _("Rewrite card"), parent)
        self.customer_no = customer_no
        self.load_customer(customer_no)

    def customer_loaded(self, customer: CustomerView) -> None:
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
        cardwork, customer_no = CardWork.of(self.shell.ctx), self.customer_no

        def work(terminal: CardTerminal) -> selling.SaleOutcome:
            return cardwork.rewrite(terminal, actor, customer_no)

        self.run_card(work, self._done)

    def _done(self, outcome: selling.SaleOutcome) -> None:
        self.succeed(rewritten_line(outcome.sale), outcome)


class ReplacementDialog(OperationDialog):
    """A blank card replaces the customer's card, in one of two modes.

    Lost (补卡): approval, the fee, the old card blacklisted.  Damaged (换卡), one reader, in
    the order a teller holds the cards: the damaged card first (read; "does not read" skips
    it), then the blank card (exchanged), then, if the teller wishes, the damaged card again
    (erased for reuse; otherwise it stays blacklisted)."""

    def __init__(self, shell: Any, customer_no: str, parent: QWidget | None = None) -> None:
        super().__init__(shell, _("Replacement card"), parent)
        self.customer_no = customer_no
        self.fee = int(shell.ctx.settings.get(REPLACEMENT_FEE.key))
        self.exchange_fee = int(shell.ctx.settings.get(EXCHANGE_FEE.key))
        self.lost, self.damaged = radio_buttons(
            self,
            _("Lost card: the old card is blacklisted"),
            _("Damaged card brought in: the old card is read"),
        )
        for button in (self.lost, self.damaged):
            button.toggled.connect(self._mode_changed)
        self.form.addRow(_("Mode"), self.lost)
        self.form.addRow("", self.damaged)
        self.unreadable_button = QPushButton(_("The old card does not read"))
        self.unreadable_button.setAutoDefault(False)
        self.unreadable_button.clicked.connect(lambda: self._old_read(None))
        self.unreadable_button.hide()
        self.form.addRow("", self.unreadable_button)
        self.step = "choose"  # damaged mode: "old", "new", then "erase"
        self.old_card: CardContents | None = None
        self.exchanged: selling.ExchangeOutcome | None = None
        self.load_customer(customer_no)

    def customer_loaded(self, customer: CustomerView) -> None:
        self._mode_changed()

    def _mode_changed(self, *_args: object) -> None:
        if self.customer is None or self.step not in ("choose", "old"):
            return
        info = _customer_info(self.customer)
        if self.lost.isChecked():
            self.step = "choose"
            self.unreadable_button.hide()
            self.ready(
                info + "\n" + fee_line(self.fee),
                _(
                    "Take the fee, put a blank card in the reader and press Enter; a supervisor "
                    "approves. The old card stops working."
                ),
                _("Issue replacement card (Enter)"),
            )
            return
        self.step = "old"
        self.unreadable_button.show()
        self.ready(
            info + "\n" + _("Exchange fee: {fee} yuan.", fee=format_yuan(self.exchange_fee)),
            _(
                "Put the customer's damaged card in the reader and press Enter. If it does "
                "not read, press \u201cThe old card does not read\u201d."
            ),
            _("Read the old card (Enter)"),
        )

    def start(self) -> None:
        actor = self.actor()
        if self.step == "old":
            self.run_card(read_old_card, self._old_read)
        elif self.step == "new":
            self._exchange(actor, None)
        elif self.step == "erase":
            cardwork, customer_no = CardWork.of(self.shell.ctx), self.customer_no
            self.run_card(
                lambda terminal: cardwork.erase_old_card(terminal, actor, customer_no),
                self._erased,
                lambda _exc: self._erased(None),
            )
        else:
            self.with_approval(
                Action.REPLACE_CARD,
                self.customer_no,
                lambda request_id: self._write(actor, request_id),
                payload={"customer_no": self.customer_no},
                what=_("customer {customer_no}", customer_no=self.customer_no),
            )

    # ------------------------------------------------------------------ damaged card

    def _old_read(self, contents: CardContents | None) -> None:
        self.old_card = contents
        self.step = "new"
        self.unreadable_button.hide()
        self.lost.setEnabled(False)
        self.damaged.setEnabled(False)
        read = (
            _("The old card was read.")
            if contents is not None
            else _("The old card is taken as unreadable; the purchase comes from the ledger.")
        )
        self.show_message(read, ok=True)
        self.ready(
            self.info.text(),
            _("Take the old card out, put a blank card in the reader and press Enter."),
            _("Exchange the card (Enter)"),
        )

    def _exchange(self, actor: Principal, request_id: str | None) -> None:
        cardwork, customer_no, old_card = (
            CardWork.of(self.shell.ctx),
            self.customer_no,
            self.old_card,
        )

        def work(terminal: CardTerminal) -> selling.ExchangeOutcome:
            return cardwork.exchange_card(terminal, actor, customer_no, old_card, request_id)

        def failed(exc: BaseException) -> None:
            if isinstance(exc, approvals.ApprovalRequired) and request_id is None:
                self.with_approval(
                    Action.EXCHANGE_CARD,
                    customer_no,
                    lambda rid: self._exchange(actor, rid),
                    payload={"customer_no": customer_no},
                    what=_("customer {customer_no}", customer_no=customer_no),
                )
                return
            self.fail(exc)

        self.run_card(work, self._exchange_done, failed)

    def _exchange_done(self, outcome: selling.ExchangeOutcome) -> None:
        self.exchanged = outcome
        approver = approver_of(self.request) if self.request is not None else None
        self.request = None
        text = "\n".join(exchanged_lines(outcome, approver))
        if outcome.old_serial is None:  # an interrupted exchange finished: nothing to erase
            self.succeed(text, outcome)
            return
        self.finished_ok.emit(outcome)  # the customer's card has changed: the page refreshes
        self.step = "erase"
        self.show_message(text, ok=True)
        self.ready(
            self.info.text(),
            _(
                "Put the old card back in the reader and press Enter to erase it for reuse, "
                "or close: it stays blacklisted. Then the customer takes the new card to the "
                "meter."
            ),
            _("Erase the old card (Enter)"),
        )

    def _erased(self, serial: str | None) -> None:
        assert self.exchanged is not None
        lines = [*exchanged_lines(self.exchanged, None), erased_line(serial)]
        self.succeed(
            "\n".join(lines) + "\n" + _("Ask the customer to insert the card into the meter."),
            self.exchanged,
        )

    # ------------------------------------------------------------------ lost card

    def _write(self, actor: Principal, request_id: str) -> None:
        cardwork, customer_no = CardWork.of(self.shell.ctx), self.customer_no

        def work(terminal: CardTerminal) -> tuple[CustomerView, int]:
            return cardwork.replace_card(terminal, actor, customer_no, request_id)

        self.run_card(work, lambda result: self._done(*result))

    def _done(self, customer: CustomerView, fee: int) -> None:
        approver = approver_of(self.request) if self.request is not None else "?"
        if fee:
            text = "\n".join(replaced_lines(customer, fee, approver))
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


def last_reversible(db: Any, customer_no: str) -> ledger.SaleView | None:
    """The customer's latest completed card sale (the only one a reversal may take back)."""
    return ledger.last_reversible(ledger.list_sales(db, customer_no=customer_no, limit=20))


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
                sale_id=receipt_no(sale.sale_id),
                customer_no=sale.customer_no,
                count=sale.purchase_count if sale.purchase_count is not None else "—",
                amount=format_yuan(sale.amount_fen),
                seller=sale.operator_id,
                when=when_text(sale.created_at, self.shell.ctx.settings.value(TIME_ZONE)),
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
        cardwork = CardWork.of(self.shell.ctx)

        def work(terminal: CardTerminal) -> ledger.SaleView:
            return cardwork.reverse_sale(terminal, actor, sale.sale_id, request_id)

        self.run_card(work, self._done)

    def _done(self, sale: ledger.SaleView) -> None:
        approver = approver_of(self.request) if self.request is not None else "?"
        self.succeed("\n".join(reversed_lines(sale, approver)), sale)


def start_open_account(
    shell: Any, customer_no: str, parent: QWidget | None = None
) -> OperationDialog:
    return open_operation(OpenAccountDialog(shell, customer_no, dialog_parent(shell, parent)))


def start_rewrite(shell: Any, customer_no: str, parent: QWidget | None = None) -> OperationDialog:
    return open_operation(RewriteDialog(shell, customer_no, dialog_parent(shell, parent)))


def start_replacement(
    shell: Any, customer_no: str, parent: QWidget | None = None
) -> OperationDialog:
    return open_operation(ReplacementDialog(shell, customer_no, dialog_parent(shell, parent)))


def start_reversal(
    shell: Any,
    *,
    sale_id: str | None = None,
    customer_no: str | None = None,
    parent: QWidget | None = None,
) -> OperationDialog:
    return open_operation(
        ReversalDialog(
            shell, sale_id=sale_id, customer_no=customer_no, parent=dialog_parent(shell, parent)
        )
    )
