"""Start the counter: the login window at once, the database prepared behind it, then the window.

``run_gui(ctx)``: training mode is decided (no card reader configured: emulated cards, sales
marked as training and never sent), the login dialog shows while :func:`start_up` prepares the
database and starts the sync worker in the background, and after a sign-in the counter window is
built for the operator (ui/login.CounterSession). Nothing heavy is imported before the login
shows: the window, its pages and their services load after it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING

from app.context import AppContext
from app.domain.audit import VerifyResult
from app.ports import BackgroundSync
from app.settings import CARD_READER
from app.settings import DEMO_MODE
from app.settings import TRAINING_MODE

if TYPE_CHECKING:
    from ui.login import CounterSession

log = logging.getLogger(__name__)


def prepare(ctx: AppContext) -> VerifyResult:
    """Create or upgrade the database; with nothing configured, load the demo data; verify the
    audit log's hash chain (the window warns when it was changed)."""
    from app.services import audit as audit_service
    from app.services import customers as customer_service
    from app.services import demo as demo_service
    from app.services import selling

    ctx.db.migrate()
    demo = bool(ctx.settings.get(DEMO_MODE.key))
    if demo and not ctx.settings.is_configured() and customer_service.count_customers(ctx.db) == 0:
        try:
            demo_service.load_demo(ctx.db, ctx.clock)
            log.info("no configuration and no customers: demo data loaded")
        except demo_service.DemoRefused as exc:  # a real administrator exists: no demo here
            log.info("demo data not loaded: %s", exc)
    # sales this counter left pending when it stopped are in doubt until their card is presented
    left = selling.recover_at_start(ctx.db, ctx.counter_id, ctx.clock)
    if left:
        log.warning("%d sales are unresolved; present their cards", len(left))
    result = audit_service.verify(ctx.db)
    if not result.ok:
        log.error(
            "audit log verification failed at row %s: %s", result.first_bad_seq, result.problem
        )
    return result


def start_up(ctx: AppContext) -> tuple[VerifyResult, bool, BackgroundSync | None]:
    """Behind the login window: prepare the database, see whether an administrator exists, and
    start the background sync (None when this counter is not registered)."""
    from app.services import auth

    audit_state = prepare(ctx)
    has_admin = auth.admin_exists(ctx.db)
    worker: BackgroundSync | None = None
    if ctx.sync_factory is not None:
        try:
            worker = ctx.sync_factory()
            if worker is not None:
                worker.start()  # sends and fetches in the background; the window reads the status
        except Exception:
            log.exception("the background sync could not start; the counter works offline")
            worker = None
    return audit_state, has_admin, worker


def decide_training(ctx: AppContext) -> bool:
    """No card reader configured: training mode on emulated cards (kept in memory, not saved)."""
    training = not str(ctx.settings.get(CARD_READER.key) or "").strip()
    ctx.settings.set(TRAINING_MODE.key, training)
    if training:
        log.info("no card reader configured: training mode with emulated cards")
    return training


def start_session(ctx: AppContext, *, idle_ms: int | None = None) -> CounterSession:
    """The login window shown and the start-up under way; the caller runs the event loop.
    ``idle_ms`` replaces the idle time of the settings (tests)."""
    from ui.login import CounterSession

    session = CounterSession(ctx, training=decide_training(ctx), idle_ms=idle_ms)
    session.start(lambda: start_up(ctx))
    return session


def run_gui(ctx: AppContext, argv: list[str] | None = None, *, setup: bool = False) -> int:
    """``setup``: the first-run set-up first (also when nothing is configured and CARDVEND_DEMO
    is 0; see app/services/setup.py ``setup_needed``); cancelling it quits."""
    from PySide6.QtWidgets import QApplication

    from app.services.setup import setup_needed

    qapp = QApplication.instance() or QApplication(argv or sys.argv[:1])
    if setup_needed(ctx.settings, forced=setup):
        from ui.setup_wizard import run_setup

        if not run_setup(ctx):
            return 0
    session = start_session(ctx)
    session.quit_requested.connect(qapp.quit)
    smoke_ms = os.environ.get("CARDVEND_SMOKE_QUIT_MS")
    if smoke_ms:
        smoke_quit(session, int(smoke_ms))
    try:
        return int(qapp.exec())
    finally:
        session.shutdown()


def smoke_quit(session: CounterSession, ms: int) -> None:
    """The installed bundle's smoke test (CARDVEND_SMOKE_QUIT_MS, .ci/dist-smoke): ``ms`` after
    the start, once the start-up behind the login window (database migrations) has finished,
    import every page of the counter window (they load by name, a bundle can miss one), log what
    showed and quit: 0 when all is there, 1 when something failed."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    def check() -> None:
        if not session.ready and session.gate.error is None:
            QTimer.singleShot(50, check)
            return
        missing = []
        from ui.main_window import PAGES

        for spec in PAGES:
            try:
                getattr(importlib.import_module(spec.module), spec.cls)
            except Exception:
                log.exception("smoke: page %s cannot be loaded", spec.key)
                missing.append(spec.key)
        shown = [w.windowTitle() for w in QApplication.topLevelWidgets() if w.isVisible()]
        ok = session.ready and bool(shown) and not missing
        log.info("smoke: start-up %s, windows shown %s, %d pages loaded, %s",
                 "done" if session.ready else "failed", shown, len(PAGES) - len(missing),
                 "ok" if ok else "FAILED")  # fmt: skip
        QApplication.exit(0 if ok else 1)

    QTimer.singleShot(ms, check)
