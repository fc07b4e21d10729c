"""The sale screen, card first.

The flow, all of it by keyboard (F-keys, Enter, Esc) or by mouse:

1. *waiting*: "insert the customer's card" (or search a remote fee-control customer, F11);
2. a card comes in (``shell.card_events``): it is read and assessed on the card thread
   (``selling.assess``: who it is, an unfinished sale the card decides, whether a sale may
   follow); the customer, tariff, arrears and fees, the meter's balance and status from the
   write-back and the minimum and maximum amount are shown. A card the meter has not loaded
   ("insert it into the meter first"), a card behind the ledger (rewrite, F10) and a refused
   card (foreign, blacklisted, not this customer's) are said plainly;
3. the amount by keyboard, by the number pad or by a preset; the cash received and the change;
4. Enter or F12 sells (``selling.sell`` on the card thread, the window stays live while the card
   is written); an offline limit can be overridden by a supervisor signing in on the spot;
5. the receipt is printed on the configured printer (a printer fault is shown; the sale stands
   and the receipt can be reprinted); "take the card out", and the next card is awaited once it
   is out.

In training mode the screen says that the sale is a training sale (it is marked so and never
sent to the central system).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtWidgets import QLineEdit

from app.domain.card import CardError
from app.domain.card import WriteBackStatus
from app.domain.customers import MeterKind
from app.domain.ledger import PurchaseLimits
from app.domain.ledger import SaleState
from app.domain.ledger import Situation
from app.domain.permissions import Action
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.money import format_yuan
from app.presenters.cardwork import CardWork
from app.presenters.cardwork import change_lines
from app.presenters.cardwork import collected_lines
from app.presenters.cardwork import purchase_line
from app.services import approvals
from app.services import ledger
from app.services import receipts
from app.services import selling
from app.services.customers import CustomerView
from app.services.customers import find_customers
from app.settings import RECEIPT_LANGUAGE
from app.settings import TRAINING_MODE
from ui.bridge import error_text
from ui.dialogs import ApprovalDialog
from ui.pages.sale_amounts import AmountEntry
from ui.pages.sale_control import ControlLine
from ui.pages.sale_layout import BLOCKED
from ui.pages.sale_layout import DONE
from ui.pages.sale_layout import FAILED
from ui.pages.sale_layout import READING
from ui.pages.sale_layout import READY
from ui.pages.sale_layout import REMOTE
from ui.pages.sale_layout import REMOTE_DONE
from ui.pages.sale_layout import WAITING
from ui.pages.sale_layout import WRITING
from ui.style import set_tone

log = logging.getLogger(__name__)

_STATUS_NAMES = (
    (WriteBackStatus.TRIPPED, N_("power off (relay tripped)")),
    (WriteBackStatus.OVERDRAFT, N_("in overdraft")),
    (WriteBackStatus.ALARM2, N_("alarm 2: credit very low")),
    (WriteBackStatus.ALARM1, N_("alarm 1: credit low")),
    (WriteBackStatus.PURCHASE_REFUSED, N_("the meter refused the last purchase")),
    (WriteBackStatus.MISMATCH, N_("the meter refused the card")),
)


def meter_status_text(status: WriteBackStatus) -> str:
    names = [translate(name) for flag, name in _STATUS_NAMES if flag & status]
    return ", ".join(names) if names else _("normal, power on")


def yuan(fen: int | None) -> str:
    return "—" if fen is None else _("{amount} yuan", amount=format_yuan(fen))


class SalePage(AmountEntry):
    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.ctx = shell.ctx
        self.state = WAITING
        self.assessment: selling.Assessment | None = None
        self.readiness: selling.Readiness | None = None
        self._error_shown = False  # the message line holds an error about the amounts
        self.remote_customer: CustomerView | None = None
        self.outcome: Any = None  # SaleOutcome (card) or SaleView (remote) of the last sale
        self.override_request: str | None = None
        self.offline_detail = ""
        self.override_dialog: ApprovalDialog | None = None
        self._seq = 0  # bumped by every card event: late results of an old card are dropped
        self._read_token = 0  # the read now running (older reads' results are dropped)
        self._pending_read = False
        self._input: QLineEdit | None = None  # the field the number pad types into
        if shell.training and not self.ctx.settings.get(TRAINING_MODE.key):
            self.ctx.settings.set(TRAINING_MODE.key, True)  # in memory: training sales
        self._build()
        self.control = ControlLine(shell, self.control_line, self.call_meter, self.condition_line)
        shell.card_events.changed.connect(self._on_card)
        self._show_state(WAITING)

    def eventFilter(self, watched: Any, event: Any) -> bool:
        from PySide6.QtCore import QEvent

        if event.type() == QEvent.Type.FocusIn and watched in (self.amount, self.cash):
            self._input = watched
        return super().eventFilter(watched, event)

    # ------------------------------------------------------------------ helpers

    def _training(self) -> bool:
        return bool(self.shell.training or selling.is_training(self.ctx.settings))

    def _settings(self) -> Any:
        return self.ctx.settings

    def _cardwork(self) -> CardWork:
        return CardWork(self.ctx.db, self.ctx.clock, self._settings())

    def _principal(self) -> Any:
        return self.shell.principal

    def _card_present(self) -> bool:
        watch = getattr(self.shell, "card_watch", None)
        return bool(watch is not None and watch.present)

    def _reset_card(self) -> None:
        watch = getattr(self.shell, "card_watch", None)
        if watch is not None:
            watch.reset()

    def _edited(self) -> None:
        """An error about the amounts goes once the person changes them."""
        if self._error_shown and self.state in (READY, REMOTE):
            self._say("")

    def _show_state(self, state: str) -> None:
        self.state = state
        prompts = {
            WAITING: _("Insert the customer's card."),
            READING: _("Reading the card…"),
            READY: _("Type the amount and press Enter."),
            BLOCKED: _("No sale on this card now; see below."),
            WRITING: _("Writing the card — do not take it out…"),
            DONE: _("Sale completed. Take the card out."),
            FAILED: _("Take the card out (or press F9 to read it again)."),
            REMOTE: _("Remote payment: type the amount and press Enter."),
            REMOTE_DONE: _("Payment recorded. Press Esc for the next customer."),
        }
        if state == WAITING and self.shell.training:
            prompts[WAITING] = _("Insert the customer's card (training: use the card tray).")
        self.prompt.setText(prompts[state])
        self.progress.setVisible(state in (READING, WRITING))
        can_pay = state in (READY, REMOTE)
        for widget in (self.amount, self.cash, self.sell_button, *self.preset_buttons):
            widget.setEnabled(can_pay)
        for button in self.pad_buttons:
            button.setEnabled(can_pay)
        self.search.setEnabled(state not in (READING, WRITING))
        self.read_again.setEnabled(state in (READY, BLOCKED, FAILED, DONE, WAITING))
        behind = self.assessment is not None and self.assessment.situation == Situation.BEHIND
        self.rewrite_button.setVisible(state == BLOCKED and behind)
        if state not in (READY, REMOTE) and self.override_dialog is not None:
            self.override_dialog.reject()
        self.training_mark.setVisible(self._training())
        if can_pay:
            self.amount.setFocus()

    def _clear_customer(self) -> None:
        self.assessment = None
        self.readiness = None
        self.remote_customer = None
        self.control.clear()
        self.override_request = None
        for value in self.values.values():
            value.setText("—")
        self.situation.setText("")
        self.amount.clear()
        self.cash.clear()
        self.change.setText("—")
        self.split.clear()

    # ------------------------------------------------------------------ card events

    def _on_card(self, kind: str, reader: str) -> None:
        self._seq += 1
        if kind == "inserted":
            if self.state == WRITING:
                return
            self.receipt_label.clear()
            if self.isVisible():
                self.read_card()
            else:
                self._pending_read = True
        else:
            self._pending_read = False
            if self.state == WRITING:
                return  # the sale's own outcome says what happened
            if self.state in (REMOTE, REMOTE_DONE):
                return
            if self.state not in (DONE,):
                self._say("")
            self._clear_customer()
            self._show_state(WAITING)

    def ledger_changed(self) -> None:
        """Another page changed a card or the ledger (a reversal, replacement, rewrite,
        approval): the card in the reader is read again, now or when the page is shown, so
        the page never shows it as it was."""
        if self.state in (READING, WRITING, REMOTE, REMOTE_DONE) or not self._card_present():
            return
        if self.isVisible():
            self.read_card()
        else:
            self._pending_read = True

    def activated(self) -> None:
        if self._pending_read or (self.state == WAITING and self._card_present()):
            self._pending_read = False
            self.read_card()
        elif self.state in (READY, REMOTE):
            self.amount.setFocus()

    # ------------------------------------------------------------------ reading

    def read_card(self) -> None:
        if self.state in (READING, WRITING):
            return
        principal = self._principal()
        self._clear_customer()
        self.receipt_label.clear()
        self._say("")
        self._show_state(READING)
        self._read_token += 1
        token, seq = self._read_token, self._seq
        db, clock, settings = self.ctx.db, self.ctx.clock, self._settings()

        def work() -> tuple[selling.Assessment, selling.Readiness]:
            contents = self.shell.terminal().read()
            assessment = selling.assess(db, contents, clock, settings=settings, actor=principal)
            return assessment, selling.sale_readiness(db, principal, clock, settings)

        self.shell.ops.card(
            work,
            lambda a: self._read_done(token, seq, a),
            lambda exc: self._read_failed(token, seq, exc),
        )

    def _stale(self, token: int, seq: int) -> bool:
        """Whether a read's result no longer counts; a card that came in meanwhile is read."""
        if token != self._read_token or self.state != READING:
            return True
        if seq != self._seq:
            self._show_state(WAITING)
            if self._card_present():
                self.read_card()
            return True
        return False

    def _read_done(
        self, token: int, seq: int, result: tuple[selling.Assessment, selling.Readiness]
    ) -> None:
        if self._stale(token, seq):
            return
        a, readiness = result
        self.assessment = a
        self.readiness = readiness
        self._show_customer(a.customer)
        wb = a.contents.write_back
        v = self.values
        v["purchases"].setText(
            _("card {card}, ledger {ledger}", card=a.card_count, ledger=a.ledger_count)
        )
        v["arrears"].setText(yuan(a.arrears_due))
        v["fees"].setText(yuan(a.fees_due))
        if wb is not None:
            v["balance"].setText(yuan(wb.remaining))
            v["meter_status"].setText(meter_status_text(wb.status))
        else:
            v["balance"].setText(_("not read by the meter yet"))
            v["meter_status"].setText("—")
        self._show_limits(a.limits)
        notes = [
            _(
                "An unfinished sale of {amount} yuan (purchase {count}) was decided by this "
                "card: {state}.",
                amount=format_yuan(s.amount_fen),
                count=s.purchase_count,
                state=SaleState.text_of(s.state),
            )
            for s in a.recovered
        ]
        self._say(" ".join(notes))
        self._decide(a, readiness)

    def _show_limits(self, limits: PurchaseLimits | None) -> None:
        """The least and the most a sale may be; the most only where the customer has a
        credit ceiling (otherwise it is the largest a card holds, of no use to anyone)."""
        v = self.values
        if limits is None or limits.at_ceiling:
            v["minimum"].setText("—")
            v["maximum"].setText("—")
            return
        v["minimum"].setText(yuan(limits.minimum))
        v["maximum"].setText(
            yuan(limits.maximum) if limits.ceiling_set else _("no limit (no credit ceiling)")
        )

    def _decide(self, a: selling.Assessment, readiness: selling.Readiness) -> None:
        """Ready for a sale, or blocked, and why: said as soon as the card is read."""
        if readiness.blocked is not None:
            self.situation.setText(readiness.blocked)
            self._situation_style(error=True)
            self._show_state(BLOCKED)
        elif a.customer.status != "active":
            self.situation.setText(
                ledger.not_active(
                    a.customer.customer_no, a.customer.status, a.customer.status_reason
                ).localized()
            )
            self._situation_style(error=True)
            self._show_state(BLOCKED)
        elif a.situation == Situation.UNLOADED:
            self.situation.setText(selling.InsertIntoMeterFirst(count=a.card_count).localized())
            self._situation_style(error=True)
            self._show_state(BLOCKED)
        elif a.situation == Situation.BEHIND:
            self.situation.setText(
                selling.CardBehind(card=a.card_count, ledger=a.ledger_count).localized()
                + " "
                + _("Press F10 to rewrite it.")
            )
            self._situation_style(error=True)
            self._show_state(BLOCKED)
        elif a.limits is not None and a.limits.at_ceiling:
            self.situation.setText(
                _(
                    "The meter already holds the most credit the customer's credit ceiling "
                    "allows: no sale until some of it is used."
                )
            )
            self._situation_style(error=True)
            self._show_state(BLOCKED)
        elif readiness.needs_override is not None:
            self.situation.setText(readiness.needs_override)
            self._situation_style(error=True)
            self._show_state(READY)
        else:
            self.situation.setText(_("Ready for a sale."))
            self._situation_style(error=False)
            self._show_state(READY)

    def _situation_style(self, *, error: bool) -> None:
        set_tone(self.situation, "error" if error else "ok")

    def _read_failed(self, token: int, seq: int, exc: BaseException) -> None:
        if isinstance(exc, CardError):
            self._reset_card()
        if self._stale(token, seq):
            return
        self.situation.setText(error_text(exc))
        self._situation_style(error=True)
        self._show_state(FAILED if self._card_present() else WAITING)

    def _show_customer(self, c: CustomerView) -> None:
        v = self.values
        v["customer_no"].setText(c.customer_no)
        v["name"].setText(c.name)
        v["address"].setText(c.address)
        v["meter_no"].setText(c.meter_no)
        v["tariff"].setText(c.tariff_plan)

    # ------------------------------------------------------------------ selling

    def confirm(self) -> None:
        if self.state == READY:
            self._sell()
        elif self.state == REMOTE:
            self._pay_remote()

    def _sell(self) -> None:
        a = self.assessment
        principal = self._principal()
        if a is None or principal is None:
            return
        amounts = self._amounts()
        if amounts is None:
            return
        amount, cash = amounts
        self._say("")
        self._show_state(WRITING)
        cardwork = self._cardwork()
        customer_no, override = a.customer.customer_no, self.override_request

        def work() -> selling.SaleOutcome:
            terminal = self.shell.terminal()
            return cardwork.sell(terminal, principal, amount, cash, customer_no, override)

        self.shell.ops.card(work, self._sold, self._sale_failed)

    def _sold(self, outcome: selling.SaleOutcome) -> None:
        self.outcome = outcome
        self.override_request = None
        sale = outcome.sale
        self.assessment = outcome.assessment
        v = self.values
        v["purchases"].setText(
            _("card {card}, ledger {ledger}", card=sale.purchase_count, ledger=sale.purchase_count)
        )
        # what the sale settled is no longer owed; the next sale waits for the meter
        v["arrears"].setText(yuan(max(0, outcome.assessment.arrears_due - sale.arrears_fen)))
        v["fees"].setText(yuan(max(0, outcome.assessment.fees_due - sale.fees_fen)))
        v["minimum"].setText("—")
        v["maximum"].setText("—")
        parts = [
            _(
                "Sold {amount} yuan to {name}: purchase {count}, {credit} yuan credit "
                "({energy} kWh).",
                amount=format_yuan(sale.amount_fen),
                name=outcome.assessment.customer.name,
                count=sale.purchase_count,
                credit=format_yuan(sale.credit_fen),
                energy=f"{sale.energy_wh / 1000:.2f}",
            )
        ]
        parts += collected_lines(sale) + change_lines(outcome.change_fen)
        if self._training():
            parts.append(_("Training sale: not real, never sent."))
        self._say(" ".join(parts))
        self.situation.setText("")
        if self._card_present():
            self._show_state(DONE)
        else:
            self._clear_customer()
            self._show_state(WAITING)
        self._print_receipt(sale.sale_id)
        self.shell.ledger_changed(source=self)

    def _sale_failed(self, exc: BaseException) -> None:
        if isinstance(exc, selling.OfflineLimitReached):
            self.offline_detail = str(exc.params.get("detail", ""))
            self._say(error_text(exc), error=True)
            self._show_state(READY)
            self._ask_override()
            return
        if isinstance(exc, CardError | selling.SaleInDoubt):
            self._reset_card()
        self._say(error_text(exc), error=True)
        if isinstance(
            exc, CardError | selling.SaleInDoubt | selling.CardRefused | selling.CardAnomaly
        ):
            self._show_state(FAILED if self._card_present() else WAITING)
        elif isinstance(exc, selling.InsertIntoMeterFirst | selling.CardBehind):
            self._show_state(BLOCKED)
        else:
            self._show_state(READY if self._card_present() else WAITING)

    # ------------------------------------------------------------------ rewrite

    def rewrite_card(self) -> None:
        a = self.assessment
        principal = self._principal()
        if (
            self.state != BLOCKED
            or a is None
            or a.situation != Situation.BEHIND
            or principal is None
        ):
            return
        self._show_state(WRITING)
        cardwork, customer_no = self._cardwork(), a.customer.customer_no

        def work() -> selling.SaleOutcome:
            return cardwork.rewrite(self.shell.terminal(), principal, customer_no)

        def done(outcome: selling.SaleOutcome) -> None:
            self._say(
                _(
                    "Purchase {count} was written onto the card again (no new money).",
                    count=outcome.sale.purchase_count,
                )
            )
            count = outcome.sale.purchase_count
            self.values["purchases"].setText(
                _("card {card}, ledger {ledger}", card=count, ledger=count)
            )
            self.situation.setText("")
            self._show_state(DONE if self._card_present() else WAITING)
            self.shell.ledger_changed(source=self)

        def failed(exc: BaseException) -> None:
            if isinstance(exc, CardError):
                self._reset_card()
            self._say(error_text(exc), error=True)
            self._show_state(FAILED if self._card_present() else WAITING)

        self.shell.ops.card(work, done, failed)

    # ------------------------------------------------------------------ offline override

    def _ask_override(self) -> None:
        """A supervisor signs the override in the one approval dialog (on the spot under the
        configured lockout policy, or from the queue); the sale then goes on by itself."""
        principal = self._principal()
        if principal is None:
            return
        dialog = ApprovalDialog(
            self.shell,
            Action.OVERRIDE_OFFLINE_LIMIT,
            principal.counter_id,
            payload={"problem": self.offline_detail},
            parent=self,
        )
        self.override_dialog = dialog

        def approved(view: approvals.ApprovalView) -> None:
            self.override_dialog = None
            if self.state not in (READY, REMOTE):
                return
            self.override_request = view.id
            approver = view.approver or ""
            self._say(_("Offline limit overridden by {approver}.", approver=approver))
            self.confirm()

        def closed(_result: int) -> None:
            if self.override_dialog is dialog:
                self.override_dialog = None
                self.amount.setFocus()

        dialog.approved.connect(approved)
        dialog.finished.connect(closed)
        dialog.open()

    # ------------------------------------------------------------------ remote customers

    def _focus_search(self) -> None:
        if self.search.isEnabled():
            self.search.setFocus()
            self.search.selectAll()

    def find_remote(self) -> None:
        text = self.search.text().strip()
        if not text or self.state in (READING, WRITING):
            return
        db = self.ctx.db

        def done(found: list[CustomerView]) -> None:
            exact = [c for c in found if text in (c.customer_no, c.meter_no)]
            matches = exact or found
            if not matches:
                self._say(_("No customer matches {text}.", text=text), error=True)
                return
            c = matches[0]
            if c.meter_kind != MeterKind.REMOTE.value:
                self._say(
                    _(
                        "Customer {customer_no} has a card meter: insert the card to sell.",
                        customer_no=c.customer_no,
                    ),
                    error=True,
                )
                return
            self._clear_customer()
            self.remote_customer = c
            self._show_customer(c)
            self.situation.setText(
                _("Remote fee-control meter: the central system issues the payment to it.")
            )
            self._situation_style(error=False)
            self._say("")
            self.receipt_label.clear()
            self._show_state(REMOTE)
            self.control.load(c.customer_no)

        self.shell.ops.run(
            lambda: find_customers(db, text, limit=20),
            done,
            lambda exc: self._say(error_text(exc), error=True),
        )

    def _pay_remote(self) -> None:
        c = self.remote_customer
        principal = self._principal()
        if c is None:
            return
        if principal is None:
            self._say(_("Sign in to sell."), error=True)
            return
        amounts = self._amounts()
        if amounts is None:
            return
        amount, cash = amounts
        self._show_state(WRITING)
        self.prompt.setText(_("Recording the payment…"))
        cardwork, override = self._cardwork(), self.override_request

        def work() -> Any:
            return cardwork.remote_payment(principal, c.customer_no, amount, cash, override)

        def done(sale: Any) -> None:
            self.outcome = sale
            self.override_request = None
            parts = [purchase_line(sale), _("The central system will issue it to the meter.")]
            parts += change_lines(None if cash is None else cash - amount)
            if self._training():
                parts.append(_("Training sale: not real, never sent."))
            self._say(" ".join(parts))
            self._show_state(REMOTE_DONE)
            self.control.load(c.customer_no)
            self._print_receipt(sale.sale_id)

        def failed(exc: BaseException) -> None:
            self._say(error_text(exc), error=True)
            self._show_state(REMOTE)
            if isinstance(exc, selling.OfflineLimitReached):
                self.offline_detail = str(exc.params.get("detail", ""))
                self._ask_override()

        self.shell.ops.run(work, done, failed)

    # ------------------------------------------------------------------ cancel

    def cancel(self) -> None:
        if self.override_dialog is not None:
            self.override_dialog.reject()
        elif self.state in (REMOTE, REMOTE_DONE):
            self._clear_customer()
            self.search.clear()
            self._say("")
            self._show_state(WAITING)
            if self._card_present():
                self.read_card()
        elif self.state == READY:
            self.amount.clear()
            self.cash.clear()
            self._say("")

    # ------------------------------------------------------------------ the receipt

    def _print_receipt(self, sale_id: str) -> None:
        ctx = self.ctx
        settings = self._settings()
        self.receipt_label.setText(_("Printing the receipt…"))

        def work() -> str | None:
            data = receipts.original_receipt(
                ctx.db, sale_id, settings=settings, key=ctx.receipt_key()
            )
            printer = ctx.printer_factory() if ctx.printer_factory is not None else None
            if printer is None:
                return None
            printer.print_receipt(data, language=str(settings.get(RECEIPT_LANGUAGE.key)))
            return str(printer.name)

        def done(name: str | None) -> None:
            if name is None:
                self.receipt_label.setText(
                    _("No receipt printer is configured; reprint the receipt from the sales list.")
                )
            else:
                self.receipt_label.setText(_("Receipt printed on {printer}.", printer=name))
            set_tone(self.receipt_label, None)

        def failed(exc: BaseException) -> None:
            self.receipt_label.setText(
                error_text(exc)
                + " "
                + _("The sale stands; reprint the receipt from the sales list once it is fixed.")
            )
            set_tone(self.receipt_label, "error")
            setter = getattr(self.shell, "set_printer_status", None)
            if callable(setter):
                setter(_("Printer: fault"))

        self.shell.ops.run(work, done, failed)
