"""The counter window: pages behind F-keys, banners (training, offline limits, audit), and a
status bar with the reader and card, the printer, the central link, the shift and the operator.

Pages live in ``ui/pages/``; each is a ``QWidget`` built as ``Page(shell)`` where ``shell`` is
this window (see :class:`Shell` for what a page may use) and may define ``activated()``, called
whenever it is shown. A page module that cannot be imported is logged and left out, so one
broken page never keeps a teller from selling.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import Protocol

from PySide6.QtCore import QRect
from PySide6.QtCore import Qt
from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtGui import QKeySequence
from PySide6.QtGui import QShortcut
from PySide6.QtWidgets import QFrame
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QListWidget
from PySide6.QtWidgets import QMainWindow
from PySide6.QtWidgets import QScrollArea
from PySide6.QtWidgets import QStackedWidget
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.context import AppContext
from app.domain.audit import VerifyResult
from app.domain.operators import Role
from app.domain.permissions import Action
from app.domain.permissions import allowed
from app.i18n import N_
from app.i18n import _
from app.i18n import get_language
from app.i18n import translate
from app.ports import BackgroundSync
from app.ports import CardTerminal
from app.services.audit import AuditVerifyFailed
from app.services.auth import Principal
from app.services.sync_status import SyncStatus
from app.services.sync_status import sync_status
from app.settings import TIME_ZONE
from ui.bridge import CardEvents
from ui.bridge import Ops
from ui.style import apply_style
from ui.style import set_banner
from ui.style import set_tone
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageSpec:
    key: str
    module: str
    cls: str
    title: str  # msgid
    fkey: str
    admin_only: bool = False
    roles: tuple[str, ...] = ()  # shown only to these roles (empty: to everyone)
    needs: Action | None = None  # shown only to roles that may do this


# the page each role starts on (any other: the first page shown)
LANDING = {"teller": "sale", "supervisor": "sale", "technician": "jobs", "admin": "admin"}


PAGES = (
    PageSpec("sale", "ui.pages.sale", "SalePage", N_("Sell"), "F2", needs=Action.SELL),
    PageSpec("customers", "ui.pages.customers", "CustomersPage", N_("Customers"), "F3"),
    PageSpec("shift", "ui.pages.shift", "ShiftPage", N_("Shift"), "F4", needs=Action.SHIFT),
    PageSpec(
        "recovery", "ui.pages.recovery", "RecoveryPage", N_("Unresolved"), "F5", needs=Action.SELL
    ),
    PageSpec(
        "exceptions",
        "ui.pages.exceptions",
        "ExceptionsPage",
        N_("Exceptions"),
        "Ctrl+F5",
        needs=Action.HANDLE_EXCEPTIONS,
    ),
    PageSpec("sync", "ui.pages.sync", "SyncPage", N_("Central link"), "F6"),
    PageSpec(
        "reports", "ui.pages.reports", "ReportsPage", N_("Reports"), "F7", needs=Action.VIEW_REPORTS
    ),
    PageSpec(
        "control_stats",
        "ui.pages.control_stats",
        "ControlStatsPage",
        N_("Control statistics"),
        "Ctrl+F7",
        roles=("supervisor", "admin", "auditor"),
    ),
    PageSpec("admin", "ui.pages.admin", "AdminPage", N_("Administration"), "F8", admin_only=True),
    PageSpec("jobs", "ui.pages.jobs", "JobsPage", N_("Jobs"), "Ctrl+F9", roles=("technician",)),
    PageSpec(
        "meter",
        "ui.pages.meter",
        "MeterPage",
        N_("Meter"),
        "Ctrl+F10",
        roles=("technician",),
    ),
)


class Shell(Protocol):
    """What a page may use of the window."""

    ctx: AppContext
    ops: Ops
    card_events: CardEvents
    principal: Principal | None
    training: bool
    sync_worker: BackgroundSync | None

    def notify(self, text: str, *, error: bool = False) -> None: ...

    def refresh_status(self) -> None: ...

    def ledger_changed(self, source: object | None = None) -> None: ...

    def show_page(self, key: str) -> None: ...

    def terminal(self) -> CardTerminal:
        """The card now in the reader (or in training, in the tray's reader): for card work on
        the card thread (``ops.card``)."""
        ...


class MainWindow(QMainWindow):
    def __init__(
        self,
        ctx: AppContext,
        audit_state: VerifyResult | None = None,
        *,
        principal: Principal | None = None,
        ops: Ops | None = None,
        training: bool = False,
        sync_worker: BackgroundSync | None = None,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.ops = ops or Ops(card=ctx.card_worker)
        self.card_events = CardEvents()
        self.principal = principal
        self.training = training
        self.sync_worker = sync_worker  # "sync now" wakes it; None when not registered
        self.card_watch: Any = None  # ui/card_watch.CardWatch once built (reader or tray)
        # locks the counter (set by the session; the dialogs' Ctrl+L reach it through here)
        self.request_lock: Callable[[], None] | None = None
        self.pages: dict[str, QWidget] = {}
        self.setWindowTitle(_("CardVend counter"))
        apply_style()  # one font and one stylesheet for the window and every dialog

        central = QWidget(self)
        outer = QVBoxLayout(central)
        self.training_banner = self._banner(
            _("TRAINING MODE — emulated cards; these sales are not real and are never sent."),
            "training",
        )
        self.training_banner.setVisible(training)
        self.audit_warning = self._banner("", "audit")
        if audit_state is not None and not audit_state.ok:
            self.audit_warning.setText(AuditVerifyFailed(audit_state).localized())
        else:
            self.audit_warning.hide()
        self.offline_banner = self._banner("", "offline")
        self.offline_banner.hide()
        self.message = QLabel(central)
        self.message.setWordWrap(True)
        for w in (self.training_banner, self.audit_warning, self.offline_banner):
            outer.addWidget(w)
        body = QHBoxLayout()
        self.nav = QListWidget(central)
        self.nav.setMaximumWidth(240)
        self.nav.setMinimumWidth(180)
        self.stack = QStackedWidget(central)
        body.addWidget(self.nav)
        body.addWidget(self.stack, 1)
        outer.addLayout(body, 1)
        outer.addWidget(self.message)
        self.setCentralWidget(central)

        self.status_reader = QLabel()
        self.status_printer = QLabel()
        self.status_link = QLabel()
        self.status_shift = QLabel()
        self.status_operator = QLabel()
        for label in (
            self.status_reader,
            self.status_printer,
            self.status_link,
            self.status_shift,
            self.status_operator,
        ):
            # a long reader name or link line is cut rather than
            # widening the window past a 1366-pixel screen
            label.setMinimumWidth(40)
            self.statusBar().addPermanentWidget(label)

        from ui.card_watch import CardWatch  # the card source: a reader or the training tray

        self.card_watch = CardWatch(self)
        self._build_pages()
        self.nav.currentRowChanged.connect(self._on_nav)
        if self.nav.count():
            self.nav.setCurrentRow(0)
            self.show_page(self.landing_page())
        self.card_watch.start()  # once the pages listen to card_events
        if self.card_watch.tray is not None:
            from ui.tray import TrayDock

            self.tray_dock = TrayDock(self)
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.tray_dock)
        self.timer = QTimer(self)
        self.timer.setInterval(5000)
        self.timer.timeout.connect(self.refresh_status)
        self.timer.start()
        self.refresh_status()
        from ui.backup_timer import BackupTimer  # scheduled backups (app/services/backup.py)

        self.backup_timer = BackupTimer(ctx, self.ops, self)

    # ------------------------------------------------------------------ building

    def _banner(self, text: str, kind: str) -> QLabel:
        label = wrapped_label(text)
        set_banner(label, kind)
        return label

    def _shown(self, spec: PageSpec) -> bool:
        """Whether the signed-in operator's role has any use for the page."""
        role = self.principal.role.value if self.principal is not None else ""
        if spec.admin_only and role != Role.ADMIN:
            return False
        if spec.roles and role not in spec.roles:
            return False
        return spec.needs is None or not role or allowed(role, spec.needs)

    def landing_page(self) -> str:
        """The page the signed-in operator starts on: selling for tellers and supervisors, jobs
        for technicians, administration for administrators."""
        role = self.principal.role.value if self.principal is not None else ""
        wanted = LANDING.get(role, "sale")
        return wanted if wanted in self.pages else next(iter(self.pages), "sale")

    def _build_pages(self) -> None:
        for spec in PAGES:
            if not self._shown(spec):
                continue
            try:
                module = importlib.import_module(spec.module)
                page = getattr(module, spec.cls)(self)
            except Exception:
                log.exception("page %s left out", spec.key)
                continue
            self.pages[spec.key] = page
            self.stack.addWidget(scrolled(page))
            self.nav.addItem(f"{spec.fkey}  {translate(spec.title)}")
            row = self.nav.count() - 1
            shortcut = QShortcut(QKeySequence(spec.fkey), self)
            shortcut.activated.connect(self._goto(row))

    def _goto(self, row: int) -> Callable[[], None]:
        return lambda: self.nav.setCurrentRow(row)

    def _on_nav(self, row: int) -> None:
        if row < 0:
            return
        self.stack.setCurrentIndex(row)
        page = self.current_page()
        activated = getattr(page, "activated", None)
        if callable(activated):
            activated()

    # ------------------------------------------------------------------ for pages

    def show_page(self, key: str) -> None:
        if key in self.pages:
            self.nav.setCurrentRow(list(self.pages).index(key))

    def current_page(self) -> QWidget | None:
        """The page on show (the stack holds each inside its scroll area)."""
        area = self.stack.currentWidget()
        return area.widget() if isinstance(area, QScrollArea) else area

    def current_key(self) -> str | None:
        page = self.current_page()
        return next((k for k, p in self.pages.items() if p is page), None)

    def place_on_screen(self) -> None:
        """Open over the whole available area of the screen the window is on (a counter PC runs
        nothing else; 1366×768 and 1920×1080 are the usual sizes): the pages scroll inside it,
        so the banners, the F-keys and the status bar always stay on the screen."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            self.resize(1200, 800)
            return
        self.setGeometry(within(screen.availableGeometry(), self.frameGeometry(), self.geometry()))
        self.setWindowState(self.windowState() | Qt.WindowState.WindowMaximized)

    def terminal(self) -> CardTerminal:
        if self.card_watch is not None:
            return self.card_watch.terminal()  # type: ignore[no-any-return]
        return self.ctx.open_terminal()

    def notify(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        set_tone(self.message, "error" if error else None)

    def ledger_changed(self, source: object | None = None) -> None:
        """A card or the ledger changed (a sale, reversal, rewrite, replacement, recovery, an
        approval): the status bar and every page that shows them read them again (a page
        with a ``ledger_changed`` method; ``source``, the page that made the change, knows)."""
        self.refresh_status()
        for page in self.pages.values():
            hook = getattr(page, "ledger_changed", None)
            if page is not source and callable(hook):
                hook()

    def refresh_status(self) -> None:
        """Re-read the link status and shift off the GUI thread; update the bar and banners."""

        def read() -> tuple[SyncStatus, Any, str | None]:
            from app.services.selling import offline_outlook
            from app.services.shifts import current_shift

            ctx = self.ctx
            return (
                sync_status(ctx.db, ctx.clock, ctx.counter_id),
                current_shift(ctx.db, ctx.counter_id),
                # the sale's own limits object: the banner warns whenever a sale would be refused
                offline_outlook(ctx.db, ctx.counter_id, ctx.clock, ctx.settings).warning(),
            )

        self.ops.run(read, self._show_status, lambda exc: log.warning("status: %s", exc))

    def _show_status(self, result: tuple[SyncStatus, Any, str | None]) -> None:
        status, shift, warning = result
        if status.online:
            link = _("Central: online")
        elif status.last_success is None and status.last_attempt is None:
            link = _("Central: not connected")
        else:
            link = _("Central: OFFLINE")
        age = status.oldest_pending_age_s
        link += " · " + _(
            "{count} waiting, oldest {age}",
            count=status.pending,
            age="—" if age is None else f"{age // 60} min",
        )
        self.status_link.setText(link)
        self.status_shift.setText(
            _("Shift open since {when}", when=self._local_hhmm(shift.opened_at))
            if shift is not None
            else _("No shift open")
        )
        self.status_operator.setText(
            _(
                "Operator {id} ({role})",
                id=self.principal.operator_id,
                role=translate(self.principal.role.label),
            )
            if self.principal is not None
            else _("Nobody signed in")
        )
        self.status_operator.setToolTip(get_language())
        self.offline_banner.setVisible(warning is not None)
        if warning is not None:
            self.offline_banner.setText(warning)

    def _local_hhmm(self, iso: str) -> str:
        """An ISO time as HH:MM in the office's time zone."""
        from app.localtime import local_time

        return local_time(iso, self.ctx.settings.value(TIME_ZONE), "%H:%M")

    def set_reader_status(self, text: str) -> None:
        self.status_reader.setText(text)

    def set_printer_status(self, text: str) -> None:
        self.status_printer.setText(text)

    def closeEvent(self, event: Any) -> None:
        self.timer.stop()
        self.backup_timer.stop()
        self.ops.shutdown()
        if self.card_watch is not None:
            self.card_watch.stop()
        super().closeEvent(event)


def scrolled(page: QWidget) -> QScrollArea:
    """A page inside a frameless scroll area: a page taller or wider than the screen scrolls
    instead of pushing the status bar off it."""
    area = QScrollArea()
    area.setWidget(page)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    return area


def within(available: QRect, frame: QRect, inner: QRect) -> QRect:
    """The window's own geometry (without the frame the window manager adds) that makes its
    frame fill ``available``."""
    left = inner.x() - frame.x()
    top = inner.y() - frame.y()
    right = frame.right() - inner.right()
    bottom = frame.bottom() - inner.bottom()
    return available.adjusted(left, top, -right, -bottom)


ALIGN_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
