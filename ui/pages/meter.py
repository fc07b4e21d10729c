"""Ctrl+F10 Meter: read a meter over DL/T 645 (an RS485 port, or a terminal's HOST:PORT), its
values in large type, and relay commands (trip, close permit, alarm, alarm release).

Reading needs ``read_meter``; a relay command is confirmed first and audited
(app/services/meter_reading.py). The link is opened for one reading or command and closed
after it, on a worker thread: a meter that does not answer takes seconds, never the window.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtWidgets import QComboBox
from PySide6.QtWidgets import QGridLayout
from PySide6.QtWidgets import QGroupBox
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QMessageBox
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.domain import ids
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.localtime import local_time
from app.money import format_yuan
from app.services import meter_reading
from app.services.meter_reading import MeterReading
from app.settings import METER_PORT
from app.settings import TIME_ZONE
from ui.bridge import error_text
from ui.bridge import id_problem
from ui.style import set_tone
from ui.widgets import sized_font
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)

VALUES = (
    ("remaining_fen", N_("Remaining credit")),
    ("overdraft_fen", N_("Overdraft used")),
    ("purchase_count", N_("Purchases")),
    ("energy_wh", N_("Energy")),
    ("alarm1_fen", N_("Alarm amount 1")),
    ("alarm2_fen", N_("Alarm amount 2")),
    ("relay", N_("Relay")),
    ("meter_time", N_("Meter time")),
)
COMMANDS = (
    ("trip", N_("Trip")),
    ("close", N_("Close permit")),
    ("alarm", N_("Alarm")),
    ("release", N_("Release alarm")),
)
RELAY_TEXT = {
    meter_reading.RELAY_CLOSED: N_("closed (power on)"),
    meter_reading.RELAY_OPEN: N_("open (power off)"),
}


class MeterPage(QWidget):
    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.ctx = shell.ctx
        self.reading: MeterReading | None = None
        layout = QVBoxLayout(self)
        title = QLabel(_("Read a meter"))
        title.setFont(sized_font(18, bold=True))
        layout.addWidget(title)

        where = QHBoxLayout()
        where.addWidget(QLabel(_("Port or terminal (HOST:PORT)")))
        self.where = QLineEdit(str(self.ctx.settings.value(METER_PORT)))
        self.where.setPlaceholderText(_("for example /dev/ttyUSB0, COM3 or 10.0.0.5:8899"))
        where.addWidget(self.where, 2)
        where.addWidget(QLabel(_("Meter address")))
        self.addr = QLineEdit()
        self.addr.setPlaceholderText("000000000000")
        self.addr.setMaxLength(12)
        where.addWidget(self.addr, 1)
        self.read_button = QPushButton(_("&Read"))
        self.read_button.setDefault(True)
        self.read_button.clicked.connect(self.read)
        self.addr.returnPressed.connect(self.read)
        where.addWidget(self.read_button)
        layout.addLayout(where)

        box = QGroupBox(_("What the meter answers"))
        grid = QGridLayout(box)
        self.values: dict[str, QLabel] = {}
        for row, (key, name) in enumerate(VALUES):
            grid.addWidget(QLabel(translate(name)), row, 0)
            value = QLabel("—")
            value.setFont(sized_font(20, bold=key in ("remaining_fen", "relay")))
            grid.addWidget(value, row, 1)
            self.values[key] = value
        grid.setColumnStretch(1, 1)
        layout.addWidget(box, 1)

        relay = QHBoxLayout()
        relay.addWidget(QLabel(_("Relay command")))
        self.command = QComboBox()
        for key, name in COMMANDS:
            self.command.addItem(translate(name), key)
        relay.addWidget(self.command)
        self.send_button = QPushButton(_("&Send to the meter…"))
        self.send_button.clicked.connect(self.send)
        relay.addWidget(self.send_button)
        relay.addStretch(1)
        layout.addLayout(relay)

        self.message = wrapped_label()
        layout.addWidget(self.message)

    # ------------------------------------------------------------------ helpers

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        set_tone(self.message, "error" if error else None)

    def _target(self) -> tuple[str, str] | None:
        where, addr = self.where.text().strip(), self.addr.text().strip()
        if not where:
            self._say(_("Enter the meter bus's port or the terminal's HOST:PORT."), error=True)
            self.where.setFocus()
            return None
        problem = id_problem(ids.METER_NO, addr)
        if problem:
            self._say(problem, error=True)
            self.addr.setFocus()
            return None
        return where, addr

    def _busy(self, busy: bool) -> None:
        self.read_button.setEnabled(not busy)
        self.send_button.setEnabled(not busy)

    def _failed(self, exc: BaseException) -> None:
        self._busy(False)
        self._say(error_text(exc), error=True)

    # ------------------------------------------------------------------ reading

    def read(self) -> None:
        target, actor, ctx = self._target(), self.shell.principal, self.ctx
        if target is None or actor is None or ctx.meter_reader is None:
            return
        where, addr = target
        reader = ctx.meter_reader

        def work() -> MeterReading:
            return meter_reading.read_for(ctx.db, actor, ctx.clock, reader, where, addr)

        self._busy(True)
        self._say(_("Asking meter {addr}…", addr=addr))
        self.shell.ops.run(work, self._show, self._failed)

    def _show(self, r: MeterReading) -> None:
        self._busy(False)
        self.reading = r
        tz = self.ctx.settings.value(TIME_ZONE)

        def yuan(fen: int | None) -> str:
            return _("{amount} yuan", amount=format_yuan(fen)) if fen is not None else ""

        shown = {
            "remaining_fen": yuan(r.remaining_fen),
            "overdraft_fen": yuan(r.overdraft_fen),
            "purchase_count": "" if r.purchase_count is None else str(r.purchase_count),
            "energy_wh": "" if r.energy_wh is None else f"{r.energy_wh / 1000:.2f} kWh",
            "alarm1_fen": yuan(r.alarm1_fen),
            "alarm2_fen": yuan(r.alarm2_fen),
            "relay": translate(RELAY_TEXT[r.relay]) if r.relay in RELAY_TEXT else "",
            "meter_time": local_time(r.meter_time, tz, "%Y-%m-%d %H:%M:%S") if r.meter_time else "",
        }
        unanswered = translate(N_("not answered"))
        for key, label in self.values.items():
            label.setText(shown[key] or unanswered)
        self._say(_("Meter {addr} answered.", addr=r.addr))

    # ------------------------------------------------------------------ relay

    def send(self) -> None:
        target, actor, ctx = self._target(), self.shell.principal, self.ctx
        if target is None or actor is None or ctx.meter_commander is None:
            return
        where, addr = target
        command, label = str(self.command.currentData()), self.command.currentText()
        answer = QMessageBox.question(
            self,
            _("Relay command"),
            _(
                "Send “{command}” to meter {addr}? A trip cuts the customer's power.",
                command=label,
                addr=addr,
            ),
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        commander = ctx.meter_commander

        def work() -> None:
            meter_reading.relay_for(ctx.db, actor, ctx.clock, commander, where, addr, command)

        def done(_result: None) -> None:
            self._say(_("Meter {addr}: {command} done.", addr=addr, command=label))
            self.read()

        self._busy(True)
        self.shell.ops.run(work, done, self._failed)
