"""The training card tray, docked beside the counter window in training mode: emulated cards a
person puts into the (virtual) reader, takes out, and carries to the customer's simulated meter
(with some hours of use first), so the whole counter flow can be tried without hardware.

The tray itself is ``ctx.tray_factory()`` (``app.ports.CardTray``, cardio/tray.py), reached
through ``shell.card_watch``; every tray call runs on the card thread.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QDockWidget
from PySide6.QtWidgets import QDoubleSpinBox
from PySide6.QtWidgets import QFormLayout
from PySide6.QtWidgets import QGroupBox
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QListWidget
from PySide6.QtWidgets import QListWidgetItem
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.i18n import _
from app.ports import CardTray
from app.ports import TrayCard
from ui.bridge import error_text
from ui.style import set_tone
from ui.widgets import button_row
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)

CARD_ID = Qt.ItemDataRole.UserRole


class TrayDock(QDockWidget):
    def __init__(self, shell: Any) -> None:
        super().__init__(_("Training card tray"), shell if isinstance(shell, QWidget) else None)
        self.setObjectName("training_tray")
        self.shell = shell
        self.watch = shell.card_watch
        self.cards: list[TrayCard] = []
        self.inserted: TrayCard | None = None
        self._select_next: str | None = None

        body = QWidget()
        layout = QVBoxLayout(body)
        note = wrapped_label(
            _(
                "Training: these cards are emulated. Pick a card and insert it into the "
                "reader; take it out; carry it to the customer's meter."
            )
        )
        layout.addWidget(note)
        self.in_reader = QLabel()
        font = QFont()
        font.setBold(True)
        self.in_reader.setFont(font)
        self.in_reader.setWordWrap(True)
        layout.addWidget(self.in_reader)
        self.list = QListWidget()
        self.list.itemActivated.connect(lambda _item: self.insert_selected())
        layout.addWidget(self.list, 1)

        self.insert_button = QPushButton(_("Insert"))
        self.remove_button = QPushButton(_("Take out"))
        layout.addLayout(
            button_row(
                (self.insert_button, self.insert_selected),
                (self.remove_button, self.remove_card),
                align="fill",
            )
        )
        self.blank_button = QPushButton(_("New blank card"))
        self.blank_button.clicked.connect(self.new_blank)
        layout.addWidget(self.blank_button)

        meter = QGroupBox(_("The customer's meter"))
        form = QFormLayout(meter)
        self.hours = QDoubleSpinBox()
        self.hours.setRange(0, 24 * 365)
        self.hours.setDecimals(1)
        self.hours.setValue(24)
        self.hours.setSuffix(" h")
        form.addRow(_("Use first, hours"), self.hours)
        self.load_kw = QDoubleSpinBox()
        self.load_kw.setRange(0, 100)
        self.load_kw.setDecimals(2)
        self.load_kw.setValue(1.0)
        self.load_kw.setSuffix(" kW")
        form.addRow(_("Load"), self.load_kw)
        self.meter_button = QPushButton(_("Take the card to the meter"))
        self.meter_button.clicked.connect(self.to_meter)
        form.addRow(self.meter_button)
        layout.addWidget(meter)

        self.summary = wrapped_label()
        layout.addWidget(self.summary)
        self.setWidget(body)
        self.setMinimumWidth(280)
        self.watch.tray_changed.connect(self.refresh)
        self.in_reader.setText(_("Preparing the training cards…"))
        self.refresh()

    # ------------------------------------------------------------------ showing

    def refresh(self) -> None:
        def read(tray: CardTray) -> tuple[list[TrayCard], TrayCard | None]:
            return tray.cards(), tray.inserted()

        self.watch.tray_call(read, self._show, self._fail)

    def _show(self, result: tuple[list[TrayCard], TrayCard | None]) -> None:
        self.cards, self.inserted = result
        selected = self._select_next or self.selected_id()
        self._select_next = None
        self.list.clear()
        for card in self.cards:
            text = card.label
            if self.inserted is not None and card.card_id == self.inserted.card_id:
                text = _("{card} — in the reader", card=card.label)
            item = QListWidgetItem(text)
            item.setData(CARD_ID, card.card_id)
            self.list.addItem(item)
            if card.card_id == selected:
                self.list.setCurrentItem(item)
        if self.list.currentRow() < 0 and self.list.count():
            self.list.setCurrentRow(0)
        self.in_reader.setText(
            _("In the reader: {card}", card=self.inserted.label)
            if self.inserted is not None
            else _("In the reader: no card")
        )

    def _fail(self, exc: BaseException) -> None:
        self.summary.setText(error_text(exc))
        set_tone(self.summary, "error")

    def _say(self, text: str) -> None:
        self.summary.setText(text)
        set_tone(self.summary, None)

    # ------------------------------------------------------------------ actions

    def selected_id(self) -> str | None:
        item = self.list.currentItem()
        return None if item is None else str(item.data(CARD_ID))

    def select(self, card_id: str) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(CARD_ID) == card_id:
                self.list.setCurrentRow(row)
                return

    def insert_selected(self) -> None:
        card_id = self.selected_id()
        if card_id is not None:
            self._say("")
            self.watch.tray_insert(card_id, self._fail)

    def remove_card(self) -> None:
        self._say("")
        self.watch.tray_remove(self._fail)

    def new_blank(self) -> None:
        def done(card: TrayCard) -> None:
            self._say(_("{card} is in the tray.", card=card.label))
            self._select_next = card.card_id
            self.refresh()

        self.watch.tray_call(lambda tray: tray.new_blank(), done, self._fail)

    def to_meter(self) -> None:
        card_id = self.selected_id()
        if card_id is None:
            return
        hours, load = self.hours.value(), self.load_kw.value()
        self._say(_("At the meter…"))

        def done(summary: str) -> None:
            self._say(summary)
            self.refresh()

        self.watch.tray_call(
            lambda tray: tray.to_meter(card_id, hours=hours, load_kw=load), done, self._fail
        )
