"""The sign-in dialogs: the login (and lock) dialog, the first administrator, the language box."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox
from PySide6.QtWidgets import QDialog
from PySide6.QtWidgets import QFormLayout
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.context import AppContext
from app.domain.ids import OPERATOR_ID
from app.i18n import LANGUAGES
from app.i18n import _
from app.i18n import get_language
from app.i18n import set_language
from app.services import auth
from app.services.auth import Principal
from app.services.auth import SecurityPolicy
from ui.bridge import Ops
from ui.bridge import error_text
from ui.bridge import id_problem
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)

# each language named in itself, so a person finds theirs whatever is shown now
LANGUAGE_NAMES = {"zh_CN": "简体中文", "en": "English"}


def _big(widget: QWidget, points: int = 14) -> None:
    font = widget.font()
    font.setPointSize(max(font.pointSize(), points))
    widget.setFont(font)


class LanguageBox(QComboBox):
    """简体中文 / English; ``chosen`` carries the language code when a person picks one."""

    chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        for code in LANGUAGES:
            self.addItem(LANGUAGE_NAMES.get(code, code), code)
        self.show_language(get_language())
        self.activated.connect(lambda index: self.chosen.emit(str(self.itemData(index))))

    def show_language(self, code: str) -> None:
        index = self.findData(code)
        if index >= 0:
            self.blockSignals(True)
            self.setCurrentIndex(index)
            self.blockSignals(False)

    def choose(self, code: str) -> None:
        """Pick ``code`` as a person would (tests and shortcuts)."""
        index = self.findData(code)
        if index >= 0:
            self.setCurrentIndex(index)
            self.activated.emit(index)


def language_after_login(db: Any, principal: Principal, chosen: str | None) -> str | None:
    """On the worker: a language chosen in the sign-in dialog is remembered for the operator;
    otherwise the operator's remembered one (if any) applies."""
    if chosen is not None:
        auth.remember_language(db, principal, chosen)
        return chosen
    return auth.operator_language(db, principal.operator_id)


def _login(ctx: AppContext, operator_id: str, password: str, policy: SecurityPolicy) -> Principal:
    """On the worker: ``operator_id`` signs in at this counter."""
    return auth.login(
        ctx.db, operator_id, password, counter_id=ctx.counter_id, clock=ctx.clock, policy=policy
    )


class _SignInDialog(QDialog):
    """What the login, first-administrator and lock dialogs share: a language box, an error
    line, background work with the fields disabled, Enter to go on and Esc to leave."""

    # (principal, language to apply or None)
    signed_in = Signal(object, object)
    operator: QLineEdit  # each dialog makes its own operator id and password fields
    password: QLineEdit

    def __init__(
        self,
        ctx: AppContext,
        ops: Ops,
        *,
        before: Callable[[], object] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.ops = ops
        self.before = before  # runs on the worker first (waits for the database to be ready)
        self.language_chosen: str | None = None
        self.busy = False
        _big(self)
        self.title = QLabel()
        title_font = self.title.font()
        title_font.setPointSize(20)
        title_font.setBold(True)
        self.title.setFont(title_font)
        self.info = wrapped_label()
        self.form = QFormLayout()
        self.error = wrapped_label(tone="error")
        self.status = wrapped_label()
        self.language = LanguageBox(self)
        self.language.chosen.connect(self._language_chosen)
        self.language_label = QLabel()
        self.ok_button = QPushButton()
        self.ok_button.clicked.connect(self.submit)
        self.cancel_button = QPushButton()
        self.cancel_button.clicked.connect(self.reject)
        for button in (self.ok_button, self.cancel_button):
            button.setAutoDefault(False)  # Enter is handled by the fields, not a default button
            button.setDefault(False)

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.info)
        layout.addLayout(self.form)
        layout.addWidget(self.error)
        layout.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addWidget(self.language_label)
        buttons.addWidget(self.language)
        buttons.addStretch(1)
        buttons.addWidget(self.ok_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.setMinimumWidth(520)

    def _field(self, *, password: bool = False) -> QLineEdit:
        edit = QLineEdit(self)
        if password:
            edit.setEchoMode(QLineEdit.EchoMode.Password)
        edit.setMaxLength(128)
        return edit

    def _language_chosen(self, code: str) -> None:
        self.language_chosen = code
        set_language(code)
        self.retranslate()

    def retranslate(self) -> None:
        self.language_label.setText(_("Language"))

    def show_error(self, text: str) -> None:
        self.error.setText(text)

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for w in self.findChildren(QLineEdit):
            w.setEnabled(not busy)
        self.ok_button.setEnabled(not busy)
        self.language.setEnabled(not busy)

    def submit(self) -> None:  # pragma: no cover - each dialog has its own
        raise NotImplementedError

    def _run(self, work: Callable[[], tuple[Principal, str | None]]) -> None:
        before = self.before

        def job() -> tuple[Principal, str | None]:
            if before is not None:
                before()
            return work()

        self._set_busy(True)
        self.error.setText("")
        self.ops.run(job, self._done, self._failed)

    def _done(self, result: tuple[Principal, str | None]) -> None:
        self._set_busy(False)
        principal, language = result
        self.signed_in.emit(principal, language)

    def _failed(self, exc: BaseException) -> None:
        log.info("sign-in refused: %s", exc)
        self._set_busy(False)
        self.show_error(error_text(exc))
        self._after_failure()

    def _after_failure(self) -> None:
        pass

    def policy(self) -> SecurityPolicy:
        return SecurityPolicy.from_settings(self.ctx.settings)

    def _operator_id(self, *, clear_password: bool) -> str | None:
        """The operator id as typed, or None once the error says what is wrong with it (the
        password cleared too if ``clear_password``)."""
        operator_id = self.operator.text().strip()
        if not operator_id:
            self.show_error(_("Type your operator id."))
            self.operator.setFocus()
            return None
        problem = id_problem(OPERATOR_ID, operator_id)
        if problem:
            self.show_error(problem)
            if clear_password:
                self.password.clear()
            self.operator.setFocus()
            self.operator.selectAll()
            return None
        return operator_id


class LoginDialog(_SignInDialog):
    """Operator id and password. With ``locked`` it is the lock screen: the same operator's
    password unlocks (re-authentication), another operator's id and password sign them in
    instead, and Esc does not leave."""

    def __init__(
        self,
        ctx: AppContext,
        ops: Ops,
        *,
        locked: Principal | None = None,
        idle_minutes: float | None = None,
        before: Callable[[], object] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(ctx, ops, before=before, parent=parent)
        self.locked = locked
        self.idle_minutes = idle_minutes
        self.operator = self._field()
        self.password = self._field(password=True)
        self.operator_label = QLabel()
        self.password_label = QLabel()
        self.form.addRow(self.operator_label, self.operator)
        self.form.addRow(self.password_label, self.password)
        self.operator.returnPressed.connect(self._enter_on_operator)
        self.password.returnPressed.connect(self.submit)
        if locked is not None:
            self.operator.setText(locked.operator_id)
            self.cancel_button.hide()
            self.password.setFocus()
        else:
            self.operator.setFocus()
        self.retranslate()

    def retranslate(self) -> None:
        super().retranslate()
        self.operator_label.setText(_("Operator id"))
        self.password_label.setText(_("Password"))
        self.ok_button.setText(_("Sign in (Enter)"))
        self.cancel_button.setText(_("Quit (Esc)"))
        if self.locked is None:
            self.setWindowTitle(_("CardVend counter"))
            self.title.setText(_("CardVend counter"))
            self.info.setText(_("Sign in with your operator id and password."))
        else:
            self.setWindowTitle(_("Counter locked"))
            self.title.setText(_("Counter locked"))
            if self.idle_minutes is None:
                self.info.setText(
                    _(
                        "{name} ({id}): enter your password to continue, or another operator "
                        "signs in with their own id and password.",
                        name=self.locked.name,
                        id=self.locked.operator_id,
                    )
                )
            else:
                self.info.setText(
                    _(
                        "The counter was locked after {minutes} minutes without activity. "
                        "{name} ({id}): enter your password to continue, or another operator "
                        "signs in with their own id and password.",
                        minutes=f"{self.idle_minutes:g}",
                        name=self.locked.name,
                        id=self.locked.operator_id,
                    )
                )

    def _enter_on_operator(self) -> None:
        if self.operator.text().strip() and not self.password.text():
            self.password.setFocus()
        else:
            self.submit()

    def submit(self) -> None:
        if self.busy:
            return
        operator_id = self._operator_id(clear_password=True)
        password = self.password.text()
        if operator_id is None:
            return
        if not password:
            self.show_error(_("Type your password."))
            self.password.setFocus()
            return
        locked = self.locked
        ctx = self.ctx
        policy = self.policy()
        chosen = self.language_chosen

        def work() -> tuple[Principal, str | None]:
            if locked is not None and operator_id == locked.operator_id:
                auth.reauthenticate(ctx.db, locked, password, ctx.clock)
                principal = locked
            else:
                principal = _login(ctx, operator_id, password, policy)
            return principal, language_after_login(ctx.db, principal, chosen)

        self._run(work)

    def _after_failure(self) -> None:
        self.password.clear()
        self.password.setFocus()

    def reject(self) -> None:
        if self.locked is None:  # the lock screen cannot be put away without a password
            super().reject()


class FirstAdminDialog(_SignInDialog):
    """At the first start, with no administrator: create one, then they are signed in."""

    def __init__(
        self,
        ctx: AppContext,
        ops: Ops,
        *,
        before: Callable[[], object] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(ctx, ops, before=before, parent=parent)
        self.operator = self._field()
        self.operator.setText("admin")
        self.name = self._field()
        self.password = self._field(password=True)
        self.password2 = self._field(password=True)
        self.labels = [QLabel() for _i in range(4)]
        for label, field in zip(
            self.labels, (self.operator, self.name, self.password, self.password2), strict=True
        ):
            self.form.addRow(label, field)
        self.operator.returnPressed.connect(self.name.setFocus)
        self.name.returnPressed.connect(self.password.setFocus)
        self.password.returnPressed.connect(self.password2.setFocus)
        self.password2.returnPressed.connect(self.submit)
        self.operator.selectAll()
        self.operator.setFocus()
        self.retranslate()

    def retranslate(self) -> None:
        super().retranslate()
        self.setWindowTitle(_("First administrator"))
        self.title.setText(_("First administrator"))
        self.info.setText(
            _(
                "No administrator exists yet. Create the first administrator of this counter; "
                "they sign in now and add the other operators (F8). The password needs at "
                "least {length} characters.",
                length=self.policy().min_password_length,
            )
        )
        for label, text in zip(
            self.labels,
            (_("Operator id"), _("Name"), _("Password"), _("Password again")),
            strict=True,
        ):
            label.setText(text)
        self.ok_button.setText(_("Create and sign in (Enter)"))
        self.cancel_button.setText(_("Quit (Esc)"))

    def submit(self) -> None:
        if self.busy:
            return
        operator_id = self._operator_id(clear_password=False)
        name = self.name.text().strip()
        password = self.password.text()
        policy = self.policy()
        if operator_id is None:
            return
        if password != self.password2.text():
            self.show_error(_("The two passwords differ. Type them again."))
            self._after_failure()
            return
        if len(password) < policy.min_password_length:
            self.show_error(
                _(
                    "A password needs at least {length} characters.",
                    length=policy.min_password_length,
                )
            )
            self._after_failure()
            return
        ctx = self.ctx
        chosen = self.language_chosen

        def work() -> tuple[Principal, str | None]:
            auth.create_first_admin(
                ctx.db,
                operator_id,
                name,
                password,
                counter_id=ctx.counter_id,
                clock=ctx.clock,
                policy=policy,
            )
            principal = _login(ctx, operator_id, password, policy)
            return principal, language_after_login(ctx.db, principal, chosen)

        self._run(work)

    def _after_failure(self) -> None:
        self.password.clear()
        self.password2.clear()
        self.password.setFocus()
