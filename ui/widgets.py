"""Small widgets that pages, dialogs and the window build the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from PySide6.QtCore import QObject
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QButtonGroup
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QRadioButton

from ui.style import set_tone


def sized_font(size: int, *, bold: bool = False) -> QFont:
    """The application's font at ``size`` points, bold or not."""
    font = QFont()
    font.setPointSize(size)
    font.setBold(bold)
    return font


def wrapped_label(text: str = "", *, tone: str | None = None, selectable: bool = False) -> QLabel:
    """A label whose text wraps to the width it is given, drawn in ``tone`` (one of
    :data:`ui.style.TONES`, None: plainly) and, when ``selectable``, selectable with the mouse."""
    label = QLabel(text)
    label.setWordWrap(True)
    if tone is not None:
        set_tone(label, tone)
    if selectable:
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def button_row(
    *buttons: tuple[QPushButton, Callable[[], object]],
    auto_default: bool | None = None,
    align: Literal["left", "right", "fill"] = "left",
) -> QHBoxLayout:
    """A row of ``(button, slot)``, left to right, each button's click running its slot. The
    spare width goes after the buttons (``align="left"``), before them (``"right"``, a dialog's
    OK and Cancel) or to the buttons themselves (``"fill"``); ``auto_default`` sets each one's
    ``autoDefault`` (None: left as Qt has it)."""
    row = QHBoxLayout()
    if align == "right":
        row.addStretch(1)
    for button, slot in buttons:
        if auto_default is not None:
            button.setAutoDefault(auto_default)
        button.clicked.connect(slot)
        row.addWidget(button)
    if align == "left":
        row.addStretch(1)
    return row


def radio_buttons(owner: QObject, *texts: str) -> list[QRadioButton]:
    """Radio buttons labelled ``texts``, one exclusive choice (a button group ``owner`` keeps),
    the first one chosen."""
    group = QButtonGroup(owner)
    buttons = [QRadioButton(text) for text in texts]
    buttons[0].setChecked(True)
    for button in buttons:
        group.addButton(button)
    return buttons
