"""Central link (F6): the sync status of this counter (online, pending records and their
amount, the oldest's age, last success and error, refused records, sales under review, an audit
history the central system does not recognise), the records still waiting for the central
system, the refused ones with their reason and what to do, and "sync now".

Everything is read from this counter's database (app/services/sync_status.py) off the GUI thread;
"sync now" wakes the background sync worker (``shell.sync_worker``), which exists only when the
counter is registered with the central system.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtCore import QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtGui import QShortcut
from PySide6.QtWidgets import QGridLayout
from PySide6.QtWidgets import QGroupBox
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.context import AppContext
from app.domain.receipt import receipt_no
from app.errors import CardVendError
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.money import format_yuan
from app.services.reports import zone
from app.services.sync_status import PendingRecord
from app.services.sync_status import RefusedRecord
from app.services.sync_status import SyncStatus
from app.services.sync_status import pending_records
from app.services.sync_status import refused_records
from app.services.sync_status import sync_status
from app.settings import TIME_ZONE
from ui.bridge import error_text
from ui.pages.common import page_title
from ui.pages.reports import fill_table
from ui.pages.reports import make_table
from ui.style import set_tone
from ui.widgets import button_row
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)
SHOWN = 200  # pending records listed (the oldest first); the count covers all of them
REFRESH_MS = 5000
PENDING_HEADERS = (
    N_("Waiting since"),
    N_("Record"),
    N_("Reference"),
    N_("Amount"),
    N_("Attempts"),
    N_("Last error"),
)
REFUSED_HEADERS = (
    N_("Refused at"),
    N_("Record"),
    N_("Reference"),
    N_("Amount"),
    N_("Reason"),
)
KIND_LABELS = {  # outbox kinds (app/services/selling.py, ledger.py)
    "sale": N_("sale"),
    "remote": N_("remote payment"),
    "reversal": N_("reversal"),
    "card_bound": N_("card issued"),
    "rewrite": N_("card rewritten"),
    "replacement": N_("replacement card"),
}


def age_text(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    minutes = seconds // 60
    if minutes < 60:
        return _("{minutes} min", minutes=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return _("{hours} h {minutes} min", hours=hours, minutes=minutes)
    return _("{days} days", days=hours // 24)


class SyncPage(QWidget):
    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.status_data: SyncStatus | None = None
        self.records: list[PendingRecord] = []
        self.refused: list[RefusedRecord] = []
        self._reading = False
        outer = QVBoxLayout(self)
        outer.addWidget(page_title(_("Central link")))
        self._build_status(outer)
        self._build_notes(outer)
        self._build_lists(outer)
        self._finish_init()

    def _build_status(self, outer: QVBoxLayout) -> None:
        box = QGroupBox(_("Status"))
        grid = QGridLayout(box)
        self.link_value = QLabel("—")
        self.pending_value = QLabel("—")
        self.oldest_value = QLabel("—")
        self.success_value = QLabel("—")
        self.attempt_value = QLabel("—")
        self.error_value = QLabel("—")
        self.refused_value = QLabel("—")
        self.review_value = QLabel("—")
        self.error_value.setWordWrap(True)
        self.refused_value.setWordWrap(True)
        big = self.link_value.font()
        big.setPointSize(big.pointSize() + 4)
        big.setBold(True)
        self.link_value.setFont(big)
        self.pending_value.setFont(big)
        rows = (
            (_("Central system:"), self.link_value),
            (_("Waiting to be sent:"), self.pending_value),
            (_("Oldest waiting for:"), self.oldest_value),
            (_("Last successful sync:"), self.success_value),
            (_("Last attempt:"), self.attempt_value),
            (_("Last error:"), self.error_value),
            (_("Refused, set aside:"), self.refused_value),
            (_("Sales for a supervisor's review:"), self.review_value),
        )
        for r, (label, value) in enumerate(rows):
            grid.addWidget(QLabel(label), r, 0, Qt.AlignmentFlag.AlignTop)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(value, r, 1)
        grid.setColumnStretch(1, 1)
        outer.addWidget(box)

    def _build_notes(self, outer: QVBoxLayout) -> None:
        """The audit warning, the registration hint, the training note and the buttons."""
        self.audit_note = wrapped_label(selectable=True)
        set_tone(self.audit_note, "alarm")
        self.audit_note.hide()
        outer.addWidget(self.audit_note)

        self.register_note = wrapped_label(selectable=True)
        set_tone(self.register_note, "notice")
        outer.addWidget(self.register_note)
        self.training_note = wrapped_label(
            _("Training mode: training sales are never sent to the central system.")
        )
        self.training_note.setVisible(bool(getattr(self.shell, "training", False)))
        outer.addWidget(self.training_note)

        self.sync_button = QPushButton(_("Sync now (Ctrl+Enter)"))
        self.refresh_button = QPushButton(_("Refresh"))
        outer.addLayout(
            button_row(
                (self.sync_button, self.sync_now),
                (self.refresh_button, self.refresh),
                auto_default=True,
            )
        )

    def _build_lists(self, outer: QVBoxLayout) -> None:
        """The records waiting, the refused ones with advice, the message line."""
        self.list_label = QLabel(_("Records waiting for the central system"))
        outer.addWidget(self.list_label)
        self.table = make_table([translate(h) for h in PENDING_HEADERS], stretch=-1)
        outer.addWidget(self.table, 1)
        self.refused_label = QLabel(
            _("Refused records: set aside, not sent again until someone re-sends them")
        )
        self.refused_table = make_table([translate(h) for h in REFUSED_HEADERS], stretch=-1)
        self.refused_table.currentCellChanged.connect(self._show_advice)
        self.advice = wrapped_label(selectable=True)  # what to do with the selected refused record
        set_tone(self.advice, "note")
        outer.addWidget(self.refused_label)
        outer.addWidget(self.refused_table, 1)
        outer.addWidget(self.advice)
        for w in (self.refused_label, self.refused_table, self.advice):
            w.hide()
        self.message = wrapped_label()
        outer.addWidget(self.message)

    def _finish_init(self) -> None:
        for key in ("Ctrl+Return", "Ctrl+Enter"):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(self.sync_now)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self._show_registration()

    # ------------------------------------------------------------------ helpers

    @property
    def ctx(self) -> AppContext:
        return self.shell.ctx  # type: ignore[no-any-return]

    @property
    def registered(self) -> bool:
        return getattr(self.shell, "sync_worker", None) is not None

    def _show_registration(self) -> None:
        if self.registered:
            self.register_note.hide()
            return
        self.register_note.setText(
            _(
                "This counter is not registered with the central system, so nothing is sent "
                "and sync now does nothing. An administrator registers it once with: "
                "cardvend counter register --central URL --operator ID (the central system's "
                "address and the administrator's id), then restarts CardVend."
            )
        )
        self.register_note.show()

    def _when(self, value: dt.datetime | None) -> str:
        if value is None:
            return _("never")
        try:
            value = value.astimezone(zone(str(self.ctx.settings.get(TIME_ZONE.key))))
        except CardVendError:  # an unknown zone: show the time as stored
            pass
        return value.strftime("%Y-%m-%d %H:%M:%S")

    # ------------------------------------------------------------------ reading

    def activated(self) -> None:
        self._show_registration()
        self.sync_button.setFocus()
        self.refresh()

    def _tick(self) -> None:
        if self.isVisible():
            self.refresh()

    def refresh(self) -> None:
        if self._reading:
            return
        self._reading = True
        ctx = self.ctx

        def read() -> tuple[SyncStatus, list[PendingRecord], list[RefusedRecord]]:
            me = ctx.counter_id
            return (
                sync_status(ctx.db, ctx.clock, me),
                pending_records(ctx.db, me, SHOWN),
                refused_records(ctx.db, me, SHOWN),
            )

        def failed(exc: BaseException) -> None:
            self._reading = False
            self.message.setText(error_text(exc))
            set_tone(self.message, "error")

        self.shell.ops.run(read, self._show, failed)

    def _show(self, result: tuple[SyncStatus, list[PendingRecord], list[RefusedRecord]]) -> None:
        self._reading = False
        status, records, refused = result
        self.status_data, self.records, self.refused = status, records, refused
        if status.online:
            link, tone = _("online"), "ok"
        elif status.last_success is None and status.last_attempt is None:
            link, tone = _("not connected yet"), None
        else:
            link, tone = _("OFFLINE"), "error"
        self.link_value.setText(link)
        set_tone(self.link_value, tone)
        self.pending_value.setText(
            _(
                "{count} records, {amount} yuan",
                count=status.pending,
                amount=format_yuan(status.pending_amount),
            )
        )
        self.oldest_value.setText(age_text(status.oldest_pending_age_s))
        self.success_value.setText(self._when(status.last_success))
        self.attempt_value.setText(self._when(status.last_attempt))
        self.error_value.setText(status.last_error or _("none"))
        self.refused_value.setText(
            _(
                "{count} records, {amount} yuan — set aside; the list below says why and "
                "what to do. The other records keep going.",
                count=status.refused,
                amount=format_yuan(status.refused_amount),
            )
            if status.refused
            else "0"
        )
        set_tone(self.refused_value, "error" if status.refused else None)
        if status.audit_diverged:
            self.audit_note.setText(
                _(
                    "The central system holds another audit history for this counter ({detail})."
                    " The local audit log may have been altered; call the supervisor and do not "
                    "delete anything. Sales are still sent.",
                    detail=status.audit_diverged,
                )
            )
        self.audit_note.setVisible(bool(status.audit_diverged))
        fill_table(
            self.refused_table,
            [
                [
                    self._when(r.refused_at),
                    translate(KIND_LABELS[r.kind]) if r.kind in KIND_LABELS else r.kind,
                    f"{r.id} · {receipt_no(r.ref_id)}",  # the record (sync retry N), the receipt
                    format_yuan(r.amount_fen),
                    f"{r.code}: {r.reason}",
                ]
                for r in refused
            ],
            numeric=(3,),
        )
        for row, r in enumerate(refused):
            cell = self.refused_table.item(row, 4)
            if cell is not None:
                cell.setToolTip(r.reason)
        for w in (self.refused_label, self.refused_table, self.advice):
            w.setVisible(bool(refused))
        if refused:
            current = self.refused_table.currentRow()
            self._show_advice(current if 0 <= current < len(refused) else 0)
        self.review_value.setText(str(status.review))
        fill_table(
            self.table,
            [
                [
                    self._when(r.created_at),
                    translate(KIND_LABELS[r.kind]) if r.kind in KIND_LABELS else r.kind,
                    receipt_no(r.ref_id),
                    format_yuan(r.amount_fen),
                    str(r.attempts),
                    r.last_error,
                ]
                for r in records
            ],
            numeric=(3, 4),
        )
        if status.pending > len(records):
            self.list_label.setText(
                _(
                    "Records waiting for the central system: the oldest {shown} of {count}",
                    shown=len(records),
                    count=status.pending,
                )
            )
        else:
            self.list_label.setText(_("Records waiting for the central system"))
        set_tone(self.message, None)

    def _show_advice(self, row: int, *_args: int) -> None:
        if 0 <= row < len(self.refused):
            r = self.refused[row]
            self.advice.setText(
                _("What to do with record {record}: {advice}", record=r.id, advice=r.advice)
            )

    # ------------------------------------------------------------------ sync now

    def sync_now(self) -> None:
        worker = getattr(self.shell, "sync_worker", None)
        if worker is None:
            self._show_registration()
            text = _(
                "Not sent: this counter is not registered with the central system. An "
                "administrator runs: cardvend counter register --central URL --operator ID"
            )
            self.message.setText(text)
            set_tone(self.message, "error")
            self.shell.notify(text, error=True)
            return
        worker.sync_now()  # wakes the worker's thread; it returns at once
        text = _("Syncing with the central system… the status below updates when it is done.")
        self.message.setText(text)
        set_tone(self.message, None)
        self.shell.notify(text)
        for ms in (1000, 3000, 8000):
            QTimer.singleShot(ms, self, self.refresh)
