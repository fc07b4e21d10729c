"""The sale page's amount entry: the presets and the number pad, what a typed amount pays off
and loads onto the card, the change from the cash received, and the checks of the amounts before a
sale (ui/pages/sale.py holds the flow, ui/pages/sale_layout.py the widgets)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QLineEdit

from app.errors import CardVendError
from app.i18n import _
from app.money import check_cash_received
from app.money import format_yuan
from app.money import parse_yuan
from app.services import selling
from ui.bridge import error_text
from ui.pages.sale_layout import READY
from ui.pages.sale_layout import SaleLayout
from ui.style import set_tone


class AmountEntry(SaleLayout):
    """The amounts of a sale; the page sets the state and the card's assessment."""

    state: str
    assessment: selling.Assessment | None
    _input: QLineEdit | None  # the field the number pad types into
    _error_shown: bool  # the message line holds an error about the amounts

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        set_tone(self.message, "error" if error else None)
        self._error_shown = error and bool(text)

    # ------------------------------------------------------------------ amount input

    def _preset(self, fen: int) -> Callable[[], None]:
        def set_amount() -> None:
            self.amount.setText(format_yuan(fen))
            self.amount.setFocus()

        return set_amount

    def _pad(self, key: str) -> Callable[[], None]:
        def press() -> None:
            field = self._input or self.amount
            if key == "C":
                field.clear()
            elif key == "⌫":
                field.backspace()
            else:
                field.insert(key)
            field.setFocus()

        return press

    def _update_split(self) -> None:
        """Before Enter: what the typed amount pays off and what it loads onto the card."""
        a = self.assessment
        text = self.amount.text().strip()
        if self.state != READY or a is None or not text:
            self.split.clear()
            return
        try:
            quote = a.quote(parse_yuan(text))
        except CardVendError:
            self.split.setText(_("Not a valid amount for this card; see the limits above."))
            return
        split = quote.split
        energy = "—" if quote.energy_wh is None else f"{quote.energy_wh / 1000:.2f}"
        loaded = _(
            "{credit} yuan credit ({energy} kWh) goes onto the card.",
            credit=format_yuan(split.credit),
            energy=energy,
        )
        if split.arrears or split.fees:
            loaded = (
                _(
                    "Deducted first: arrears {arrears} yuan, fees {fees} yuan.",
                    arrears=format_yuan(split.arrears),
                    fees=format_yuan(split.fees),
                )
                + " "
                + loaded
            )
        self.split.setText(loaded)

    def _update_change(self) -> None:
        self._update_split()
        try:
            amount = parse_yuan(self.amount.text())
            cash = parse_yuan(self.cash.text()) if self.cash.text().strip() else None
        except CardVendError:
            self.change.setText("—")
            return
        if cash is None:
            self.change.setText("—")
        elif cash < amount:
            self.change.setText(_("short by {amount} yuan", amount=format_yuan(amount - cash)))
        else:
            self.change.setText(format_yuan(cash - amount))

    def _amounts(self) -> tuple[int, int | None] | None:
        """The amount and cash in fen, or None after saying what is wrong."""
        if not self.amount.text().strip():
            self._say(_("Type the amount first."), error=True)
            self.amount.setFocus()
            return None
        try:
            amount = parse_yuan(self.amount.text())
            cash = parse_yuan(self.cash.text()) if self.cash.text().strip() else None
        except CardVendError as exc:
            self._say(error_text(exc), error=True)
            return None
        try:
            check_cash_received(amount, cash)
        except CardVendError as exc:
            self._say(error_text(exc), error=True)
            return None
        limits = self.assessment.limits if self.assessment is not None else None
        if self.state == READY and limits is not None:
            if amount < limits.minimum:
                self._say(
                    _(
                        "The amount must be at least {minimum} yuan: arrears and fees are "
                        "collected first, and some credit must go onto the card.",
                        minimum=format_yuan(limits.minimum),
                    ),
                    error=True,
                )
                return None
            if amount > limits.maximum:
                self._say(
                    _(
                        "The amount may be at most {maximum} yuan (the credit ceiling).",
                        maximum=format_yuan(limits.maximum),
                    ),
                    error=True,
                )
                return None
        return amount, cash
