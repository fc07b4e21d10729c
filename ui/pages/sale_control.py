"""The remote fee-control customer's charge control on the sale page ("user balance view"):
state, remaining balance, relay, last reading and close permit, asked from the station through
``ctx.station`` off the GUI thread when the customer is chosen (and again after a payment).
When the station cannot be reached the line says so briefly; the sale goes on regardless.

"Call the meter" asks the station to call the customer's meter now (condition release, which
may take seconds: the button waits disabled, off the GUI thread) and shows what the meter said
(relay, its clock and the call's time in the office's zone, energy) on a line of its own below;
a refusal (the meter did not answer, no terminals at the station, the station away) is a line
too, never a dialog."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QPushButton

from app.errors import CardVendError
from app.i18n import _
from app.localtime import zone
from app.presenters.control import meter_line
from app.presenters.control import status_line
from app.settings import TIME_ZONE
from ui.style import set_tone

log = logging.getLogger(__name__)


class ControlLine:
    """Fills ``label`` with a customer's control state; :meth:`clear` hides it (and drops an
    answer still on its way)."""

    def __init__(self, shell: Any, label: QLabel, button: QPushButton, condition: QLabel) -> None:
        self.shell = shell
        self.label = label
        self.button = button
        self.condition_label = condition
        self.status: Mapping[str, Any] | None = None
        self.condition: Mapping[str, Any] | None = None  # what the called meter said
        self.customer_no: str | None = None
        self._asked = 0
        self._called = 0
        button.clicked.connect(self.call_meter)
        self.clear()

    def clear(self) -> None:
        self._asked += 1
        self._called += 1
        self.status = None
        self.condition = None
        self.customer_no = None
        self.label.clear()
        self.label.hide()
        self.button.hide()
        self.button.setEnabled(True)
        self.condition_label.clear()
        self.condition_label.hide()

    def load(self, customer_no: str) -> None:
        views = self.shell.ctx.station
        self._asked += 1
        asked = self._asked
        self.status = None
        if customer_no != self.customer_no:  # another customer: the last call's answer goes
            self._called += 1
            self.condition = None
            self.condition_label.hide()
            self.button.setEnabled(True)
        self.customer_no = customer_no
        set_tone(self.label, "note")
        self.label.show()
        if views is None:
            self.label.setText(_("Control state: not available in this window."))
            return
        self.button.show()
        self.label.setText(_("Control state: asking the station…"))

        def done(status: Mapping[str, Any]) -> None:
            if asked == self._asked:
                self._show(status)

        def failed(exc: BaseException) -> None:
            if asked != self._asked:
                return
            log.info("control status of %s: %s", customer_no, exc)
            if isinstance(exc, CardVendError) and exc.params.get("status") == 404:
                self.label.setText(_("Control state: the station does not know this customer."))
            else:
                self.label.setText(
                    _("Control state: the station cannot be reached now; selling goes on.")
                )
            set_tone(self.label, "warn")

        self.shell.ops.run(lambda: views.control_status(customer_no), done, failed)

    def _show(self, status: Mapping[str, Any]) -> None:
        self.status = status
        if status.get("remaining_fen") is None:
            self.label.setText(_("Control state: not under the station's charge control yet."))
            return
        tz = zone(self.shell.ctx.settings.value(TIME_ZONE))
        self.label.setText(
            _("Control state: {line}", line=status_line(
                str(status["customer_no"]), str(status["state"]), int(status["remaining_fen"]),
                status.get("relay"), local(status.get("last_reading_at"), tz),
                local(status.get("close_permit_sent_at"), tz),
            ))
        )  # fmt: skip
        set_tone(self.label, "alarm" if status["state"] == "tripped" else "note")

    def call_meter(self) -> None:
        """The station calls this customer's meter now (off the GUI thread; seconds)."""
        views, customer_no = self.shell.ctx.station, self.customer_no
        if views is None or customer_no is None:
            return
        self._called += 1
        called = self._called
        self.condition = None
        self.button.setEnabled(False)
        self.condition_label.setText(_("Meter: the station is calling the meter…"))
        set_tone(self.condition_label, "note")
        self.condition_label.show()

        def done(cond: Mapping[str, Any]) -> None:
            if called == self._called:
                self.button.setEnabled(True)
                self._show_condition(cond)

        def failed(exc: BaseException) -> None:
            if called != self._called:
                return
            log.info("condition of %s: %s", customer_no, exc)
            self.button.setEnabled(True)
            self.condition_label.setText(refusal(exc))
            set_tone(self.condition_label, "warn")

        self.shell.ops.run(lambda: views.terminal_condition(customer_no), done, failed)

    def _show_condition(self, cond: Mapping[str, Any]) -> None:
        self.condition = cond
        tz = zone(self.shell.ctx.settings.value(TIME_ZONE))
        self.condition_label.setText(
            meter_line(
                str(cond["meter_no"]), cond.get("relay"),
                local(cond.get("meter_time"), tz, seconds=True), cond.get("energy_wh"),
                local(cond.get("fetched_at"), tz, seconds=True) or "—",
            )
        )  # fmt: skip
        set_tone(self.condition_label, "alarm" if cond.get("relay") == "open" else "note")


def refusal(exc: BaseException) -> str:
    """Why the meter's condition could not be called, as one short line."""
    code = getattr(exc, "code", None)
    status = exc.params.get("status") if isinstance(exc, CardVendError) else None
    if code == "terminal_no_answer":
        return _(
            "Meter: it did not answer the station. Check the terminal and the meter's line, "
            "then call it again."
        )
    if code == "no_terminals":
        return _(
            "Meter: the station is not connected to the meters' terminals, so it cannot call it."
        )
    if code == "not_remote":
        return _("Meter: this customer has no remote meter to call.")
    if code == "not_found" or status == 404:
        return _("Meter: the station does not know this customer.")
    return _("Meter: the station cannot be reached now; selling goes on.")


def local(value: str | None, tz: dt.tzinfo, *, seconds: bool = False) -> str | None:
    """An ISO time from the station as the office reads it (YYYY-MM-DD HH:MM[:SS])."""
    if not value:
        return None
    shape = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return dt.datetime.fromisoformat(value).astimezone(tz).strftime(shape)
