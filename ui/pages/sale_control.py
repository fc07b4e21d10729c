"""The remote fee-control customer's charge control on the sale page ("user balance view"):
state, remaining balance, relay, last reading and close permit, asked from the station through
``ctx.station`` off the GUI thread when the customer is chosen (and again after a payment).
When the station cannot be reached the line says so briefly; the sale goes on regardless."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from PySide6.QtWidgets import QLabel

from app.errors import CardVendError
from app.i18n import _
from app.localtime import zone
from app.presenters.control import status_line
from app.settings import TIME_ZONE
from ui.style import set_tone

log = logging.getLogger(__name__)


class ControlLine:
    """Fills ``label`` with a customer's control state; :meth:`clear` hides it (and drops an
    answer still on its way)."""

    def __init__(self, shell: Any, label: QLabel) -> None:
        self.shell = shell
        self.label = label
        self.status: Mapping[str, Any] | None = None
        self._asked = 0
        self.clear()

    def clear(self) -> None:
        self._asked += 1
        self.status = None
        self.label.clear()
        self.label.hide()

    def load(self, customer_no: str) -> None:
        views = self.shell.ctx.station
        self._asked += 1
        asked = self._asked
        self.status = None
        set_tone(self.label, "note")
        self.label.show()
        if views is None:
            self.label.setText(_("Control state: not available in this window."))
            return
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


def local(value: str | None, tz: dt.tzinfo) -> str | None:
    """An ISO time from the station as the office reads it (YYYY-MM-DD HH:MM)."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M")
