"""Start the counter window."""

from __future__ import annotations

import logging
import sys

from app.context import AppContext
from app.services import customers as customer_service
from app.services import demo as demo_service
from app.settings import DEMO_MODE

log = logging.getLogger(__name__)


def prepare(ctx: AppContext) -> None:
    """Create or upgrade the database; with nothing configured, load the demo data."""
    ctx.db.migrate()
    demo = bool(ctx.settings.get(DEMO_MODE.key))
    if demo and not ctx.settings.is_configured() and customer_service.count_customers(ctx.db) == 0:
        log.info("no configuration and an empty database: loading the demo data")
        demo_service.load_demo(ctx.db, ctx.clock)


def run_gui(ctx: AppContext, argv: list[str] | None = None) -> int:
    from PySide6.QtWidgets import QApplication

    from ui.main_window import MainWindow

    prepare(ctx)
    qapp = QApplication.instance() or QApplication(argv or sys.argv[:1])
    window = MainWindow(ctx)
    window.show()
    log.info("counter window shown")
    return int(qapp.exec())
