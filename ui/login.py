"""Signing in: the login dialog, the first administrator, the lock screen, and the session that
ties them to the counter window.

:class:`CounterSession` runs the counter's life: the login dialog shows at once while the
database is prepared in the background (a sign-in waits for it); with no administrator yet the
first-administrator dialog replaces it; after a sign-in the operator's remembered language is
applied and the window is built in it. An :class:`IdleWatch` on the application notes activity;
after the idle time the window is covered by the lock dialog, which asks the same operator's
password again or lets another operator sign in (the window is then rebuilt for them). Choosing
a language rebuilds the window so every screen shows it, and is remembered for the operator.

All password checks run off the GUI thread (scrypt is slow by design) through ``ui.bridge.Ops``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.context import AppContext
from app.domain.audit import VerifyResult
from app.domain.ids import OPERATOR_ID
from app.i18n import LANGUAGES, _, get_language, set_language
from app.ports import BackgroundSync
from app.services import auth
from app.services.auth import Principal, SecurityPolicy
from app.settings import IDLE_MINUTES
from ui.bridge import GuiThreadGC, Ops, error_text, id_problem

if TYPE_CHECKING:
    from ui.main_window import MainWindow

log = logging.getLogger(__name__)

# each language named in itself, so a person finds theirs whatever is shown now
LANGUAGE_NAMES = {"zh_CN": "简体中文", "en": "English"}
ERROR_STYLE = "color: #b00020; font-weight: bold;"


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


# --------------------------------------------------------------------------- dialogs
# Widgets die on the GUI thread only. Work handed to a worker captures plain data, never a
# widget; a closed dialog or window is deleted with deleteLater() while the session still holds
# a reference (a worker may hold its callbacks: if the last reference died there, Qt would
# delete the widget on that thread and crash); and Python's cyclic garbage collector, which runs
# in whatever thread happens to allocate, is run on the GUI thread instead (GuiThreadGC).


def language_after_login(db: Any, principal: Principal, chosen: str | None) -> str | None:
    """On the worker: a language chosen in the sign-in dialog is remembered for the operator;
    otherwise the operator's remembered one (if any) applies."""
    if chosen is not None:
        auth.remember_language(db, principal, chosen)
        return chosen
    return auth.operator_language(db, principal.operator_id)


class StartGate:
    """The start-up work behind the login window: a sign-in waits for it (plain Python, so a
    worker may hold it)."""

    def __init__(self) -> None:
        self.future: Any = None
        self.error: BaseException | None = None

    def wait(self) -> None:
        if self.future is not None:
            self.future.result()
        if self.error is not None:
            raise self.error


class _SignInDialog(QDialog):
    """What the login, first-administrator and lock dialogs share: a language box, an error
    line, background work with the fields disabled, Enter to go on and Esc to leave."""

    # (principal, language to apply or None)
    signed_in = Signal(object, object)

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
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.form = QFormLayout()
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.status = QLabel()
        self.status.setWordWrap(True)
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
                        minutes=self.idle_minutes,
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
        operator_id = self.operator.text().strip()
        password = self.password.text()
        if not operator_id:
            self.show_error(_("Type your operator id."))
            self.operator.setFocus()
            return
        problem = id_problem(OPERATOR_ID, operator_id)
        if problem:
            self.show_error(problem)
            self.password.clear()
            self.operator.setFocus()
            self.operator.selectAll()
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
                principal = auth.login(
                    ctx.db,
                    operator_id,
                    password,
                    counter_id=ctx.counter_id,
                    clock=ctx.clock,
                    policy=policy,
                )
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
        operator_id = self.operator.text().strip()
        name = self.name.text().strip()
        password = self.password.text()
        policy = self.policy()
        if not operator_id:
            self.show_error(_("Type your operator id."))
            self.operator.setFocus()
            return
        problem = id_problem(OPERATOR_ID, operator_id)
        if problem:
            self.show_error(problem)
            self.operator.setFocus()
            self.operator.selectAll()
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
            principal = auth.login(
                ctx.db,
                operator_id,
                password,
                counter_id=ctx.counter_id,
                clock=ctx.clock,
                policy=policy,
            )
            return principal, language_after_login(ctx.db, principal, chosen)

        self._run(work)

    def _after_failure(self) -> None:
        self.password.clear()
        self.password2.clear()
        self.password.setFocus()


# --------------------------------------------------------------------------- idle


ACTIVITY = frozenset(
    {
        QEvent.Type.KeyPress,
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseButtonDblClick,
        QEvent.Type.MouseMove,
        QEvent.Type.Wheel,
        QEvent.Type.TouchBegin,
    }
)


class IdleWatch(QObject):
    """An event filter on the application: keys, clicks and mouse moves are activity; ``idle``
    is emitted once after ``timeout_ms`` without any. The filter only notes the time; one
    timer checks it, so a moving mouse costs nothing."""

    idle = Signal()

    def __init__(self, timeout_ms: int, on_activity: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.timeout_ms = max(1, int(timeout_ms))
        self.on_activity = on_activity
        self.active = False
        self._last = time.monotonic()
        self._last_reported = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._check)
        self._installed = False

    def start(self) -> None:
        app = QApplication.instance()
        if app is not None and not self._installed:
            app.installEventFilter(self)
            self._installed = True
        self.active = True
        self._last = time.monotonic()
        self._timer.start(self.timeout_ms)

    def stop(self) -> None:
        self.active = False
        self._timer.stop()

    def uninstall(self) -> None:
        self.stop()
        app = QApplication.instance()
        if app is not None and self._installed:
            app.removeEventFilter(self)
            self._installed = False

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if self.active and event.type() in ACTIVITY:
            now = time.monotonic()
            self._last = now
            if self.on_activity is not None and now - self._last_reported >= 1.0:
                self._last_reported = now
                self.on_activity()
        return False

    def _check(self) -> None:
        if not self.active:
            return
        remaining = self.timeout_ms - (time.monotonic() - self._last) * 1000
        if remaining > 0:
            self._timer.start(int(remaining) + 1)
            return
        self.stop()
        self.idle.emit()


# --------------------------------------------------------------------------- garbage


# --------------------------------------------------------------------------- the session


class CounterSession(QObject):
    """The counter from the login to the end: dialogs, the window, the lock, the language."""

    quit_requested = Signal()
    window_built = Signal(object)  # the new MainWindow

    def __init__(
        self,
        ctx: AppContext,
        *,
        training: bool = False,
        idle_ms: int | None = None,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.training = training
        self.ops = Ops(workers=2, card=ctx.card_worker)
        self.audit_state: VerifyResult | None = None
        self.sync_worker: BackgroundSync | None = None
        self.principal: Principal | None = None
        self.window: MainWindow | None = None
        self.window_language: str | None = None
        self.dialog: _SignInDialog | None = None
        self.ready = False
        self.gate = StartGate()
        minutes = int(ctx.settings.get(IDLE_MINUTES.key))
        self.idle_minutes = minutes
        self.idle = IdleWatch(idle_ms if idle_ms is not None else minutes * 60_000, self._active)
        self.idle.idle.connect(self.lock)
        self._language_box: LanguageBox | None = None
        self._rebuild_pending = False
        self._closed = False
        self._retired: list[QWidget] = []  # deleted widgets whose wrappers we still hold
        self.gc = GuiThreadGC(self)
        self.gc.start()

    # ------------------------------------------------------------------ start

    def start(
        self, start_up: Callable[[], tuple[VerifyResult, bool, BackgroundSync | None]]
    ) -> None:
        """Show the login dialog now; ``start_up`` (prepare the database, is there an
        administrator, the started sync worker) runs in the background meanwhile."""
        dialog = self._show_login()
        dialog.set_status(_("Preparing the database…"))

        gate = self.gate

        def job() -> tuple[VerifyResult, bool, BackgroundSync | None]:
            try:
                return start_up()
            except BaseException as exc:
                gate.error = exc
                raise

        gate.future = self.ops.run(job, self._started, self._start_failed)

    def _started(self, result: tuple[VerifyResult, bool, BackgroundSync | None]) -> None:
        self.audit_state, has_admin, self.sync_worker = result
        self.ready = True
        if self.window is not None or self.dialog is None:
            return
        if has_admin:
            self.dialog.set_status("")
            return
        first = FirstAdminDialog(self.ctx, self.ops, before=self.gate.wait)
        self._replace_dialog(first)
        log.info("no administrator yet: first-administrator dialog shown")

    def _start_failed(self, exc: BaseException) -> None:
        log.error("start-up failed: %s", exc, exc_info=exc)
        if self.dialog is not None:
            self.dialog.set_status("")
            self.dialog.show_error(error_text(exc))

    def _show_login(self) -> LoginDialog:
        dialog = LoginDialog(self.ctx, self.ops, before=self.gate.wait)
        self._replace_dialog(dialog)
        log.info("login window shown")
        return dialog

    def _replace_dialog(self, dialog: _SignInDialog) -> None:
        old = self.dialog
        self.dialog = dialog
        dialog.signed_in.connect(self._signed_in)
        dialog.rejected.connect(self._dialog_rejected)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        if old is not None:
            old.signed_in.disconnect(self._signed_in)
            old.rejected.disconnect(self._dialog_rejected)
            self._retire(old)

    def _dialog_rejected(self) -> None:
        if self.window is None:
            log.info("sign-in left: quitting")
            self.quit_requested.emit()

    # ------------------------------------------------------------------ signed in

    def _signed_in(self, principal: Principal, language: str | None) -> None:
        dialog = self.dialog
        if language:
            set_language(language)
        previous = self.principal
        self.principal = principal
        if dialog is not None and isinstance(dialog, LoginDialog) and dialog.locked is not None:
            self._unlocked(dialog, previous, principal)
            return
        self.dialog = None
        self._build_window()
        if dialog is not None:
            self._retire(dialog)
        self.idle.start()

    def _unlocked(
        self, dialog: LoginDialog, previous: Principal | None, principal: Principal
    ) -> None:
        self.dialog = None
        self._retire(dialog)
        window = self.window
        body = window.centralWidget() if window is not None else None
        if body is not None:
            body.show()
        if principal is not previous and previous is not None:
            log.info("operator %s signed in at the lock screen", principal.operator_id)
            ctx = self.ctx
            self.ops.run(lambda: auth.logout(ctx.db, previous, ctx.clock))
        if principal is not previous or get_language() != self.window_language:
            self._rebuild_when_idle()
        self.idle.start()

    def _rebuild_when_idle(self) -> None:
        """Rebuild once the window's running operations are done (a card write is never cut)."""
        if not self._rebuild_pending:
            self._rebuild_pending = True
            self._rebuild_check()

    def _rebuild_check(self) -> None:
        if self._closed:
            return
        window = self.window
        if window is not None and window.ops.busy > 0:
            QTimer.singleShot(100, self._rebuild_check)
            return
        self._rebuild_pending = False
        self._build_window()

    def _build_window(self) -> None:
        from ui.main_window import MainWindow  # the pages and services load after the login

        old = self.window
        page = self._current_page(old)
        window = MainWindow(
            self.ctx,
            self.audit_state,
            principal=self.principal,
            training=self.training,
            sync_worker=self.sync_worker,
        )
        self._add_controls(window)
        if old is not None:
            window.setGeometry(old.geometry())
        self.window = window
        self.window_language = get_language()
        window.show()
        if page is not None:
            window.show_page(page)
        if old is not None:
            self._retire(old)
        log.info(
            "counter window shown for %s in %s",
            self.principal.operator_id if self.principal else "-",
            self.window_language,
        )
        self.window_built.emit(window)

    @staticmethod
    def _current_page(window: MainWindow | None) -> str | None:
        if window is None:
            return None
        current = window.stack.currentWidget()
        for key, page in window.pages.items():
            if page is current:
                return key
        return None

    def _add_controls(self, window: MainWindow) -> None:
        """The language box and the lock button in the window's status bar; Ctrl+L locks."""
        box = LanguageBox(window)
        box.setToolTip(_("Language of the screens, remembered for you"))
        box.chosen.connect(self.switch_language)
        lock = QPushButton(_("Lock (Ctrl+L)"), window)
        lock.setAutoDefault(False)
        lock.clicked.connect(self.lock)
        window.statusBar().addPermanentWidget(box)
        window.statusBar().addPermanentWidget(lock)
        shortcut = QShortcut(QKeySequence("Ctrl+L"), window)
        shortcut.activated.connect(self.lock)
        self._language_box = box

    # ------------------------------------------------------------------ language

    def switch_language(self, code: str) -> None:
        """The signed-in operator chose a language: remember it and rebuild the window."""
        if code not in LANGUAGES or (code == self.window_language and code == get_language()):
            return
        set_language(code)
        principal = self.principal
        if principal is not None:
            ctx = self.ctx
            self.ops.run(
                lambda: auth.remember_language(ctx.db, principal, code),
                None,
                lambda exc: log.warning("language not remembered: %s", exc),
            )
        window = self.window
        if window is not None and window.ops.busy > 0:
            window.notify(_("The language changes when the current operation is finished."))
        self._rebuild_when_idle()

    # ------------------------------------------------------------------ lock

    def _active(self) -> None:
        """Activity in the window counts as the operator's activity for the services' idle
        check too (Principal.last_activity)."""
        if self.principal is not None and self.dialog is None:
            self.principal.last_activity = self.ctx.clock.now()

    def lock(self) -> None:
        """Cover the window; the same operator's password (or another operator) opens it."""
        window = self.window
        if window is None or self.principal is None or self.dialog is not None:
            return
        self.idle.stop()
        log.info("counter locked for %s", self.principal.operator_id)
        body = window.centralWidget()
        if body is not None:
            body.hide()
        dialog = LoginDialog(
            self.ctx,
            self.ops,
            locked=self.principal,
            idle_minutes=self.idle_minutes,
            parent=window,
        )
        dialog.setWindowModality(Qt.WindowModality.ApplicationModal)
        self.dialog = dialog
        dialog.signed_in.connect(self._signed_in)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        dialog.password.setFocus()

    @property
    def locked(self) -> bool:
        return isinstance(self.dialog, LoginDialog) and self.dialog.locked is not None

    @staticmethod
    def _close(widget: QWidget) -> None:
        """A dialog is hidden (closing one means "rejected", and the lock screen refuses
        that); a window is closed, which stops its timers and threads."""
        if isinstance(widget, QDialog):
            widget.hide()
        else:
            widget.close()

    def _retire(self, widget: QWidget) -> None:
        """Close and delete on the GUI thread, keeping the wrapper (see the note above)."""
        self._close(widget)
        widget.deleteLater()
        self._retired.append(widget)
        del self._retired[:-20]  # long deleted by now

    # ------------------------------------------------------------------ end

    def shutdown(self) -> None:
        """At exit: the sign-out is audited, the sync worker stops, the threads end."""
        if self._closed:
            return
        self._closed = True
        self.idle.uninstall()
        principal = self.principal
        if principal is not None:
            try:
                auth.logout(self.ctx.db, principal, self.ctx.clock)
            except Exception:
                log.exception("logout not recorded")
        if self.gate.future is not None and self.sync_worker is None:
            try:  # the start-up may still be running: its worker must stop too
                result = self.gate.future.result(timeout=30)
                if result is not None:
                    self.sync_worker = result[2]
            except Exception:
                pass
        if self.sync_worker is not None:
            try:
                self.sync_worker.stop()
            except Exception:
                log.exception("sync worker did not stop")
            self.sync_worker = None
        for widget in (self.dialog, self.window):
            if widget is not None:
                self._close(widget)
                shiboken6.delete(widget)  # here, on the GUI thread
        self.dialog = self.window = None
        self.ops.shutdown()
        self._retired.clear()
        self.gc.stop()
