"""The approval rule of one action, edited by an administrator: whether the action needs an
approval, its steps in order (each a role that may sign and whether the signer must be another
person) and the time limit of a request.

The dialog checks what it can (a whole number of minutes) and hands the rule to ``save``, which
runs the service off the GUI thread; what the service refuses comes back here and is shown under
the fields, and the dialog stays open until the rule is saved.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QCheckBox
from PySide6.QtWidgets import QComboBox
from PySide6.QtWidgets import QDialog
from PySide6.QtWidgets import QFormLayout
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QSpinBox
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.i18n import _
from app.presenters.approval_rules import RuleRow
from app.presenters.approval_rules import role_label
from app.services import approvals
from app.services.approvals import ApprovalStep
from ui.bridge import error_text
from ui.dialogs.common import _prepare
from ui.dialogs.common import _title
from ui.dialogs.common import tone
from ui.widgets import wrapped_label

# save(steps, ttl_minutes, done, failed): run the service; done() closes, failed(exc) explains
Save = Callable[
    [list[ApprovalStep], int, Callable[[], None], Callable[[BaseException], None]], None
]


class StepRow(QWidget):
    """One step: the role that signs it and whether it must be someone else."""

    def __init__(self, number: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel(_("Step {number}", number=number))
        self.role = QComboBox()
        for role in approvals.approver_roles():
            self.role.addItem(role_label(role.value), role.value)
        self.distinct = QCheckBox(_("must be another person"))
        self.distinct.setToolTip(
            _(
                "Someone other than the person who asked, the people involved (the seller of "
                "a sale to reverse) and those who signed the earlier steps."
            )
        )
        self.distinct.setChecked(True)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label)
        row.addWidget(self.role, 1)
        row.addWidget(self.distinct)

    def set_step(self, step: ApprovalStep) -> None:
        self.role.setCurrentIndex(max(self.role.findData(step.role), 0))
        self.distinct.setChecked(step.distinct)

    def step(self) -> ApprovalStep:
        return ApprovalStep(str(self.role.currentData()), self.distinct.isChecked())


class ApprovalRuleDialog(QDialog):
    def __init__(self, row: RuleRow, save: Save, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _prepare(self)
        self.row = row
        self.save = save
        self.setWindowTitle(_("Approval rule"))
        self.needed = QCheckBox(_("This action needs an approval"))
        self.count = QSpinBox()
        self.count.setRange(1, approvals.MAX_STEPS)
        self.steps = [StepRow(i) for i in range(1, approvals.MAX_STEPS + 1)]
        self.ttl = QLineEdit()
        self.ttl.setMaxLength(6)
        self.ttl.setPlaceholderText(_("1 to {max} minutes", max=approvals.MAX_TTL_MINUTES))
        self.error = wrapped_label()
        self.ok = QPushButton(_("Save (Enter)"))
        self.cancel = QPushButton(_("Cancel (Esc)"))
        self._layout(row)
        self._show(row)
        self.needed.toggled.connect(self._update)
        self.count.valueChanged.connect(self._update)
        self.ttl.returnPressed.connect(self.check_and_save)
        self.ok.clicked.connect(self.check_and_save)
        self.cancel.clicked.connect(self.reject)
        self._update()
        self.setMinimumWidth(560)

    def _layout(self, row: RuleRow) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(_title(row.label))
        if row.always:
            self.needed.setEnabled(False)
            self.needed.setToolTip(_("This action always needs an approval at the counter."))
        if not row.asked_for:
            note = wrapped_label(
                _(
                    "The counter does not ask for an approval for this action yet; the rule is "
                    "kept and applies once it does."
                )
            )
            layout.addWidget(note)
        layout.addWidget(self.needed)
        form = QFormLayout()
        form.addRow(QLabel(_("Number of steps")), self.count)
        layout.addLayout(form)
        for step in self.steps:
            layout.addWidget(step)
        form = QFormLayout()
        form.addRow(QLabel(_("Time limit, minutes")), self.ttl)
        layout.addLayout(form)
        layout.addWidget(self.error)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.ok, self.cancel):
            button.setAutoDefault(False)
            buttons.addWidget(button)
        layout.addLayout(buttons)

    def _show(self, row: RuleRow) -> None:
        self.needed.setChecked(row.needs_approval or row.always)
        self.count.setValue(max(1, len(row.steps)))
        for widget, step in zip(self.steps, row.steps, strict=False):
            widget.set_step(step)
        self.ttl.setText(str(row.ttl_minutes))

    def _update(self) -> None:
        needed = self.needed.isChecked()
        self.count.setEnabled(needed)
        for i, step in enumerate(self.steps):
            step.setVisible(i < self.count.value())
            step.setEnabled(needed)
        self.ttl.setEnabled(needed)
        self.adjustSize()

    def chosen_steps(self) -> list[ApprovalStep]:
        if not self.needed.isChecked():
            return []
        return [step.step() for step in self.steps[: self.count.value()]]

    def problem(self) -> str | None:
        text = self.ttl.text().strip()
        if not text.isascii() or not text.isdigit():
            return _("Type the time limit as a whole number of minutes, like 60.")
        return None

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        tone(self.error, "error" if text else "")

    def check_and_save(self) -> None:
        problem = self.problem()
        if problem:
            self.show_error(problem)
            self.ttl.setFocus()
            return
        self.show_error("")
        self.ok.setEnabled(False)
        self.save(self.chosen_steps(), int(self.ttl.text().strip()), self._saved, self._failed)

    def _saved(self) -> None:
        self.ok.setEnabled(True)
        self.accept()

    def _failed(self, exc: BaseException) -> None:
        self.ok.setEnabled(True)
        self.show_error(error_text(exc))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.check_and_save()
            return
        super().keyPressEvent(event)
