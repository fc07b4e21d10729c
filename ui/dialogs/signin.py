"""A person signs in for one decision: the form and the dialog around it."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QDialog
from PySide6.QtWidgets import QFormLayout
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.domain.ids import OPERATOR_ID
from app.i18n import _
from app.services.auth import Principal
from ui.bridge import error_text
from ui.bridge import id_problem
from ui.dialogs.common import _prepare
from ui.dialogs.common import sign_in
from ui.widgets import button_row
from ui.widgets import wrapped_label


class SignInForm(QWidget):
    """Operator id and password."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.operator = QLineEdit()
        self.operator.setPlaceholderText(_("for example s01"))
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow(_("Operator id"), self.operator)
        form.addRow(_("Password"), self.password)

    def values(self) -> tuple[str, str]:
        return self.operator.text().strip(), self.password.text()

    def missing(self) -> QLineEdit | None:
        """The field still to fill, if any (Enter moves there instead of failing)."""
        operator, password = self.values()
        if not operator:
            return self.operator
        if not password:
            return self.password
        return None

    def problem(self) -> str | None:
        """What is wrong with the operator id as typed (focused then), or None."""
        problem = id_problem(OPERATOR_ID, self.values()[0])
        if problem:
            self.operator.setFocus()
            self.operator.selectAll()
        return problem

    def ready(self, message: QLabel) -> bool:
        """Whether the form can go on; if not, the missing field is focused or what is wrong
        with the operator id is shown in ``message``."""
        field = self.missing()
        if field is not None:
            field.setFocus()
            return False
        problem = self.problem()
        if problem:
            message.setText(problem)
            return False
        return True

    def retry(self) -> None:
        self.password.clear()
        self.operator.setFocus()
        self.operator.selectAll()


class SignInDialog(QDialog):
    """A supervisor signs in for one decision (approving from the queue at a teller's
    counter). ``principal`` holds who signed in once it is accepted."""

    def __init__(self, shell: Any, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _prepare(self)
        self.shell = shell
        self.principal: Principal | None = None
        self.setWindowTitle(_("Supervisor sign-in"))
        layout = QVBoxLayout(self)
        intro = wrapped_label(text)
        layout.addWidget(intro)
        self.form = SignInForm(self)
        layout.addWidget(self.form)
        self.message = wrapped_label(tone="error")
        layout.addWidget(self.message)
        self.ok_button = QPushButton(_("Sign in"))
        self.ok_button.setDefault(True)
        cancel = QPushButton(_("Cancel"))
        layout.addLayout(
            button_row((self.ok_button, self.submit), (cancel, self.reject), align="right")
        )
        self.form.operator.setFocus()

    def submit(self) -> None:
        if not self.form.ready(self.message):
            return
        operator, password = self.form.values()
        self.ok_button.setEnabled(False)
        self.message.setText(_("Checking…"))
        self.shell.ops.run(lambda: sign_in(self.shell, operator, password), self._ok, self._failed)

    def _ok(self, principal: Principal) -> None:
        self.ok_button.setEnabled(True)
        self.principal = principal
        self.accept()

    def _failed(self, exc: BaseException) -> None:
        self.ok_button.setEnabled(True)
        self.message.setText(error_text(exc))
        self.form.retry()
