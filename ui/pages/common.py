"""Widgets more than one page builds the same way."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView
from PySide6.QtWidgets import QHeaderView
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QTableWidget

from app.i18n import translate

# a table's property: the columns that identify a row or hold money, which must show whole and
# in view at counter screen sizes (tests/screenshots.py --check); the others may scroll
KEY_COLUMNS = "keyColumns"


def list_table(
    headers: tuple[str, ...], *, tab_navigation: bool = True, keys: tuple[int, ...] = (0,)
) -> QTableWidget:
    """A read-only table of rows chosen one at a time, headed by ``headers`` (``N_`` texts,
    translated here), columns sized to their contents and the last one taking the spare width.
    Without ``tab_navigation`` Tab leaves the table instead of moving between its cells;
    ``keys`` are its key columns (:data:`KEY_COLUMNS`)."""
    table = QTableWidget(0, len(headers))
    table.setProperty(KEY_COLUMNS, list(keys))
    table.setHorizontalHeaderLabels([translate(h) for h in headers])
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().hide()
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    if not tab_navigation:
        table.setTabKeyNavigation(False)
    return table


def page_title(text: str) -> QLabel:
    """The page's heading: ``text`` bold, six points above the page's font."""
    title = QLabel(text)
    font = title.font()
    font.setPointSize(font.pointSize() + 6)
    font.setBold(True)
    title.setFont(font)
    return title
