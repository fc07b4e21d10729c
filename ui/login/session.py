"""CounterSession: the counter's life from start to lock: login while the database is prepared, the window built for the operator, the lock after idle time, the rebuild on a language change."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

import shiboken6
from PySide6.QtCore import QObject
from PySide6.QtCore import Qt
from PySide6.QtCore import QTimer
from PySide6.QtCore import Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtGui import QShortcut
from PySide6.QtWidgets import QApplication
from PySide6.QtWidgets import QDialog
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QWidget

from app.context import AppContext
from app.domain.audit import VerifyResult
from app.i18n import LANGUAGES
from app.i18n import _
from app.i18n import get_language
from app.i18n import set_language
from app.ports import BackgroundSync
from app.services import auth
from app.services.auth import Principal
from app.settings import IDLE_MINUTES
from ui.bridge import GuiThreadGC
from ui.bridge import Ops
from ui.bridge import error_text
from ui.login.dialogs import FirstAdminDialog
from ui.login.dialogs import LanguageBox
from ui.login.dialogs import LoginDialog
from ui.login.dialogs import _SignInDialog
from ui.login.idle import IdleWatch

if TYPE_CHECKING:
    from ui.main_window import MainWindow

log = logging.getLogger(__name__)


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
        self._idle_ms_override = idle_ms
        self.idle = IdleWatch(self._idle_ms(), self._active)
        self.idle.idle.connect(lambda: self.lock(idle=True))
        self._language_box: LanguageBox | None = None
        self._rebuild_pending = False
        self._closed = False
        self._retired: list[QWidget] = []  # deleted widgets whose wrappers we still hold
        self._hidden: list[QWidget] = []  # dialogs hidden behind the lock
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
        self._watch_idle()

    def _unlocked(
        self, dialog: LoginDialog, previous: Principal | None, principal: Principal
    ) -> None:
        self.dialog = None
        self._retire(dialog)
        if self.window is not None:
            self._hide_for_lock(self.window, False)
        if principal is not previous and previous is not None:
            log.info("operator %s signed in at the lock screen", principal.operator_id)
            ctx = self.ctx
            self.ops.run(lambda: auth.logout(ctx.db, previous, ctx.clock))
        if principal is not previous or get_language() != self.window_language:
            self._rebuild_when_idle()
        self._watch_idle()

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
        # the same operator keeps the page (a language change); another lands on their own
        same = (
            old is not None
            and old.principal is not None
            and self.principal is not None
            and old.principal.operator_id == self.principal.operator_id
        )
        page = self._current_page(old) if same else None
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
        else:
            window.place_on_screen()
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
        return window.current_key()

    def _add_controls(self, window: MainWindow) -> None:
        """The language box and the lock button in the window's status bar; Ctrl+L locks."""
        box = LanguageBox(window)
        box.setToolTip(_("Language of the screens, remembered for you"))
        box.chosen.connect(self.switch_language)
        lock = QPushButton(_("Lock (Ctrl+L)"), window)
        lock.setAutoDefault(False)
        lock.clicked.connect(lambda: self.lock())
        window.statusBar().addPermanentWidget(box)
        window.statusBar().addPermanentWidget(lock)
        shortcut = QShortcut(QKeySequence("Ctrl+L"), window)
        shortcut.activated.connect(lambda: self.lock())
        window.request_lock = lambda: self.lock()  # Ctrl+L of the dialogs open on it
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

    @property
    def idle_minutes(self) -> float:
        """The configured idle time, read when it is used (the administrator may change it)."""
        if self._idle_ms_override is not None:
            return self._idle_ms_override / 60_000
        return float(self.ctx.settings.value(IDLE_MINUTES))

    def _idle_ms(self) -> int:
        return int(self.idle_minutes * 60_000)

    def _watch_idle(self) -> None:
        """Start the idle watch with the idle time configured now."""
        self.idle.timeout_ms = max(1, self._idle_ms())
        self.idle.start()

    def lock(self, *, idle: bool = False) -> None:
        """Cover the window and its training card tray; the same operator's password (or
        another operator) opens it. ``idle``: the idle time locked it (the screen says so);
        otherwise the operator locked it (Ctrl+L or the button)."""
        window = self.window
        if window is None or self.principal is None or self.dialog is not None:
            return
        self.idle.stop()
        self._hide_for_lock(window, True)
        log.info("counter locked for %s", self.principal.operator_id)
        dialog = LoginDialog(
            self.ctx,
            self.ops,
            locked=self.principal,
            idle_minutes=self.idle_minutes if idle else None,
            parent=window,
        )
        dialog.setWindowModality(Qt.WindowModality.ApplicationModal)
        self.dialog = dialog
        dialog.signed_in.connect(self._signed_in)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        dialog.password.setFocus()

    def _hide_for_lock(self, window: MainWindow, hidden: bool) -> None:
        """Behind the lock nothing of the window can be seen or used: its pages, the
        training card tray (a dock of its own) and the dialogs open on it (an approval being
        waited for goes on waiting, and shows again once the counter is unlocked)."""
        for part in (window.centralWidget(), getattr(window, "tray_dock", None)):
            if part is not None:
                part.setVisible(not hidden)
        if hidden:
            self._hidden = [
                w
                for w in QApplication.topLevelWidgets()
                if isinstance(w, QDialog) and w.isVisible() and w is not self.dialog
            ]
            for w in self._hidden:
                w.hide()
        else:
            for w in self._hidden:
                with contextlib.suppress(RuntimeError):  # deleted meanwhile
                    w.show()
            self._hidden = []

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
