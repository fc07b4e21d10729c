"""Start the counter window."""

from __future__ import annotations

import logging
import sys

from app.context import AppContext
from app.domain.audit import VerifyResult
from app.services import audit as audit_service
from app.services import customers as customer_service
from app.services import demo as demo_service
from app.services import selling
from app.settings import DEMO_MODE

log = logging.getLogger(__name__)


def prepare(ctx: AppContext) -> VerifyResult:
    """Create or upgrade the database; with nothing configured, load the demo data; verify the
    audit log's hash chain (the window warns when it was changed)."""
    ctx.db.migrate()
    demo = bool(ctx.settings.get(DEMO_MODE.key))
    if demo and not ctx.settings.is_configured() and customer_service.count_customers(ctx.db) == 0:
        log.info("no configuration and an empty database: loading the demo data")
        demo_service.load_demo(ctx.db, ctx.clock)
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


def run_gui(ctx: AppContext, argv: list[str] | None = None) -> int:
    from PySide6.QtWidgets import QApplication

    from ui.main_window import MainWindow

    audit_state = prepare(ctx)
    qapp = QApplication.instance() or QApplication(argv or sys.argv[:1])
    window = MainWindow(ctx, audit_state)
    window.show()
    log.info("counter window shown")
    worker = ctx.sync_factory() if ctx.sync_factory is not None else None
    if worker is not None:
        worker.start()  # sends and fetches in the background; the window reads the status
    try:
        return int(qapp.exec())
    finally:
        if worker is not None:
            worker.stop()
