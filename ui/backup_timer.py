"""The window's scheduled backups: a Qt timer asks app/services/backup.py now and then whether a
backup is due; the backup itself runs off the GUI thread (the counter keeps selling)."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtCore import QTimer

from app.context import AppContext
from app.services import backup as backup_service
from ui.bridge import Ops

log = logging.getLogger(__name__)

CHECK_MS = 10 * 60 * 1000  # how often the schedule is looked at
FIRST_CHECK_MS = 2 * 60 * 1000  # the first look, once the counter has started


class BackupTimer(QObject):
    def __init__(self, ctx: AppContext, ops: Ops, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx, self.ops = ctx, ops
        self.running = self.stopped = False
        self.timer = QTimer(self)
        self.timer.setInterval(CHECK_MS)
        self.timer.timeout.connect(self.check)
        QTimer.singleShot(FIRST_CHECK_MS, self, self.check)
        self.timer.start()

    def check(self) -> None:
        ctx = self.ctx
        schedule = backup_service.schedule_of(ctx.settings, ctx.paths.data_dir)
        if self.running or self.stopped or schedule.interval_hours <= 0:
            return
        self.running = True
        self.ops.run(
            lambda: backup_service.run_scheduled(
                ctx.db, schedule, office=ctx.office_code, counter_id=ctx.counter_id, clock=ctx.clock
            ),
            self._done,
            self._failed,
        )

    def _done(self, result: Any) -> None:
        self.running = False
        if result is not None and result.taken is not None:
            log.info("scheduled backup %s taken", result.taken)

    def _failed(self, exc: BaseException) -> None:
        self.running = False
        log.warning("the scheduled backup failed: %s", exc)

    def stop(self) -> None:
        self.stopped = True
        self.timer.stop()
