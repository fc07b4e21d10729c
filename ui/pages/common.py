"""Widgets more than one page builds the same way."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableWidget

from app.i18n import translate


def list_table(headers: tuple[str, ...], *, tab_navigation: bool = True) -> QTableWidget:
    """A read-only table of rows chosen one at a time, headed by ``headers`` (``N_`` texts,
    translated here), columns sized to their contents and the last one taking the spare width.
    Without ``tab_navigation`` Tab leaves the table instead of moving between its cells."""
    table = QTableWidget(0, len(headers))
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
