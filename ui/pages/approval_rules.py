"""The administration page's "Approval rules" tab: every approvable action with its rule
(app/presenters/approval_rules.py) and the dialog that edits one (ui/dialogs/approval_rules.py).

A saved rule applies to the next request at once; requests already in the queue keep the steps
they were filed under.  Service calls run off the GUI thread (``shell.ops.run``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtGui import QShortcut
from PySide6.QtWidgets import QAbstractItemView
from PySide6.QtWidgets import QHeaderView
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QTableWidget
from PySide6.QtWidgets import QTableWidgetItem
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.i18n import _
from app.presenters.approval_rules import RuleRow
from app.presenters.approval_rules import rule_rows
from app.services import approvals
from app.services.approvals import ApprovalStep
from ui.bridge import error_text
from ui.dialogs.approval_rules import ApprovalRuleDialog
from ui.dialogs.approval_rules import Save
from ui.widgets import button_row
from ui.widgets import wrapped_label


class ApprovalRulesTab(QWidget):
    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.rows: list[RuleRow] = []
        self.dialog: ApprovalRuleDialog | None = None  # the dialog open now (tests look at it)
        layout = QVBoxLayout(self)
        note = wrapped_label(
            _(
                "Which actions need an approval, who signs each step and how long a request "
                "waits. A change applies to the next request; requests already waiting keep "
                "their rule."
            )
        )
        layout.addWidget(note)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels([_("Action"), _("Approval"), _("Time limit")])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        self.table.cellDoubleClicked.connect(lambda row, _col: self.edit_rule(row))
        layout.addWidget(self.table, 1)
        self.edit_button = QPushButton(_("Edit rule (Enter)"))
        self.reload_button = QPushButton(_("Refresh"))
        layout.addLayout(
            button_row(
                (self.edit_button, lambda: self.edit_rule()),
                (self.reload_button, lambda: self.load()),
                auto_default=False,
            )
        )
        for key in ("Return", "Enter"):
            shortcut = QShortcut(QKeySequence(key), self.table)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(self.edit_rule)

    def load(self) -> None:
        db = self.shell.ctx.db
        self.shell.ops.run(lambda: rule_rows(db), self.show_rows, self._failed)

    def show_rows(self, rows: list[RuleRow]) -> None:
        current = self.table.currentRow()
        self.rows = rows
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, text in enumerate((row.label, row.steps_text(), row.limit_text())):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(i, j, item)
        self.table.resizeColumnToContents(0)
        if 0 <= current < len(rows):
            self.table.selectRow(current)

    def _failed(self, exc: BaseException) -> None:
        self.shell.notify(error_text(exc), error=True)

    def edit_rule(self, index: int | None = None) -> None:
        index = self.table.currentRow() if index is None else index
        if not 0 <= index < len(self.rows):
            self.shell.notify(_("Choose an action in the list first."), error=True)
            return
        row = self.rows[index]
        dialog = ApprovalRuleDialog(row, self._saver(row), self)
        self.dialog = dialog
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()

    def _saver(self, row: RuleRow) -> Save:
        ctx = self.shell.ctx

        def save(
            steps: list[ApprovalStep],
            ttl: int,
            done: Callable[[], None],
            failed: Callable[[BaseException], None],
        ) -> None:
            principal = self.shell.principal
            if principal is None:
                return

            def saved(rule: approvals.ApprovalRuleView) -> None:
                done()
                self.shell.notify(
                    _("Approval rule saved for: {action}.", action=RuleRow.of(rule).label)
                )
                self.load()

            self.shell.ops.run(
                lambda: approvals.change_rule(ctx.db, principal, row.action, steps, ttl, ctx.clock),
                saved,
                failed,
            )

        return save
