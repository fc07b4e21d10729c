"""Ctrl+F9 Jobs (F9 reads the card again on the sale page): the technician's management-card jobs (app/services/jobs.py, as ``cardvend jobs``).

Two lists: my jobs (taken by me, until returned or released) and the office's open jobs. A job's
card is programmed from the job and the archive, never typed: "Program card" shows what will be
written and writes only after the technician confirms. Back from the meter, "Return card" reads
the card in the reader, records the meter's result (applied, refused, wrong meter), closes the job
and queues the result for the central system. A card out longer than the set number of days is
flagged. Card work runs on the card thread; everything else on a worker.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGroupBox
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QMessageBox
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QTableWidget
from PySide6.QtWidgets import QTableWidgetItem
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.localtime import local_time
from app.services import jobs
from app.services.jobs import JobView
from app.settings import JOB_CARD_OVERDUE_DAYS
from app.settings import TIME_ZONE
from app.settings import UTILITY_CODE
from ui.bridge import error_text
from ui.pages.common import list_table
from ui.style import set_tone
from ui.widgets import button_row
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)

COLUMNS = (
    N_("Job"),
    N_("Kind"),
    N_("Customer"),
    N_("Meter"),
    N_("What to set"),
    N_("Taken by"),
    N_("Card"),
    N_("Since"),
)
RETURNED_COLUMNS = (
    N_("Job"),
    N_("Kind"),
    N_("Customer"),
    N_("Meter"),
    N_("Result"),
    N_("Returned"),
    N_("Taken by"),
)
RETURNED_SHOWN = 50  # the latest returned cards
OVERDUE = QColor("#ffd6d6")


class JobsPage(QWidget):
    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.ctx = shell.ctx
        self.views: list[JobView] = []
        self.shown: dict[int, list[JobView]] = {}
        layout = QVBoxLayout(self)
        title = QLabel(_("Management-card jobs"))
        set_tone(title, "title")
        layout.addWidget(title)

        self.mine = list_table(COLUMNS, keys=(0, 2, 3))
        self.open = list_table(COLUMNS, keys=(0, 2, 3))
        for caption, table in (
            (_("My jobs"), self.mine),
            (_("Open jobs of the office"), self.open),
        ):
            box = QGroupBox(caption)
            QVBoxLayout(box).addWidget(table)
            layout.addWidget(box, 1)
            table.itemSelectionChanged.connect(self._selection_changed)
        self.returned = list_table(RETURNED_COLUMNS, keys=(0, 2, 3))
        box = QGroupBox(_("Returned cards and the meters' results"))
        QVBoxLayout(box).addWidget(self.returned)
        layout.addWidget(box, 1)

        self.take_button = QPushButton(_("&Take"))
        self.release_button = QPushButton(_("Re&lease"))
        self.program_button = QPushButton(_("&Program card…"))
        self.return_button = QPushButton(_("Re&turn card"))
        self.refresh_button = QPushButton(_("&Refresh"))
        layout.addLayout(
            button_row(
                (self.take_button, self.take),
                (self.release_button, self.release),
                (self.program_button, self.program),
                (self.return_button, self.return_card),
                (self.refresh_button, self.refresh),
            )
        )

        self.message = wrapped_label(selectable=True)
        layout.addWidget(self.message)
        self._selection_changed()

    # ------------------------------------------------------------------ lists

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh()

    def _principal(self) -> Any:
        return self.shell.principal

    def _overdue_days(self) -> int:
        return int(self.ctx.settings.value(JOB_CARD_OVERDUE_DAYS))

    def refresh(self) -> None:
        actor = self._principal()
        if actor is None:
            return
        ctx, days = self.ctx, self._overdue_days()

        def work() -> list[JobView]:
            return jobs.list_jobs(
                ctx.db,
                actor,
                ctx.clock,
                office_code=ctx.office_code,
                overdue_days=days,
                include_closed=True,
            )

        self.shell.ops.run(work, self._show, self._failed)

    def _show(self, views: list[JobView]) -> None:
        actor = self._principal()
        self.views = views
        active = [v for v in views if v.result is None and v.status == "open"]
        mine = jobs.my_jobs(active, actor.operator_id) if actor is not None else []
        others = [v for v in active if v not in mine and v.taken_by is None]
        self._fill_returned([v for v in views if v.result is not None])
        self.shown = {id(self.mine): mine, id(self.open): others}
        for table, rows in ((self.mine, mine), (self.open, others)):
            self._fill(table, rows)
        overdue = [v for v in mine if v.overdue]
        if overdue:
            self._say(
                _(
                    "{count} job cards are out for more than {days} days: bring them back.",
                    count=len(overdue),
                    days=self._overdue_days(),
                ),
                error=True,
            )
        self._selection_changed()

    def _fill(self, table: QTableWidget, rows: list[JobView]) -> None:
        tz = self.ctx.settings.value(TIME_ZONE)
        table.setRowCount(len(rows))
        for r, v in enumerate(rows):
            since = v.issued_at or v.taken_at or v.created_at
            state = jobs.state_text(v)
            if v.overdue:
                state += " · " + _("OVERDUE")
            cells = (
                v.id[:8],
                translate(jobs.KIND_NAMES.get(v.kind, v.kind)),
                f"{v.customer_no} {v.customer_name or ''}".strip(),
                v.meter_no,
                jobs.what_to_set(v),
                v.taken_by or "",
                state,
                local_time(since, tz),
            )
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if v.overdue:
                    item.setBackground(OVERDUE)
                table.setItem(r, c, item)

    def _fill_returned(self, rows: list[JobView]) -> None:
        tz = self.ctx.settings.value(TIME_ZONE)
        rows = sorted(rows, key=lambda v: v.closed_at or v.created_at, reverse=True)
        rows = rows[:RETURNED_SHOWN]
        self.returned.setRowCount(len(rows))
        for r, v in enumerate(rows):
            result = translate(jobs.RESULT_NAMES.get(v.result or "", v.result or ""))
            if v.result_reason:
                result += f" ({v.result_reason})"
            returned = v.returned_at or v.closed_at
            cells = (
                v.id[:8],
                translate(jobs.KIND_NAMES.get(v.kind, v.kind)),
                f"{v.customer_no} {v.customer_name or ''}".strip(),
                v.meter_no,
                result,
                local_time(returned, tz) if returned else "",
                v.taken_by or "",
            )
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if v.result != jobs.RESULT_APPLIED:
                    item.setBackground(OVERDUE)
                self.returned.setItem(r, c, item)

    def selected(self) -> JobView | None:
        """The selected job (selecting in one list clears the other)."""
        for table in (self.mine, self.open):
            rows = table.selectionModel().selectedRows()
            if rows:
                return self.shown.get(id(table), [])[rows[0].row()]
        return None

    def _other(self, table: QTableWidget) -> QTableWidget:
        return self.open if table is self.mine else self.mine

    def _selection_changed(self) -> None:
        sender = self.sender()
        if isinstance(sender, QTableWidget) and sender.selectionModel().selectedRows():
            self._other(sender).clearSelection()
        view = self.selected()
        actor = self._principal()
        me = actor.operator_id if actor is not None else None
        mine = view is not None and view.taken_by == me
        self.take_button.setEnabled(view is not None and view.taken_by is None)
        self.release_button.setEnabled(mine and view is not None and view.card_state != "issued")
        self.program_button.setEnabled(mine and view is not None and view.card_state is None)
        self.return_button.setEnabled(True)  # the card tells which job it is

    # ------------------------------------------------------------------ actions

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        set_tone(self.message, "error" if error else None)

    def _failed(self, exc: BaseException) -> None:
        self._say(error_text(exc), error=True)

    def _job_step(self, step: Any, done_text: str) -> None:
        view, actor = self.selected(), self._principal()
        if view is None or actor is None:
            return
        ctx, job_id = self.ctx, view.id

        def work() -> JobView:
            result: JobView = step(ctx.db, actor, ctx.clock, job_id, office_code=ctx.office_code)
            return result

        def done(v: JobView) -> None:
            self._say(done_text.format(job=v.id[:8], meter=v.meter_no))
            self.refresh()

        self.shell.ops.run(work, done, self._failed)

    def take(self) -> None:
        self._job_step(jobs.take, _("Job {job} is yours until you return or release it."))

    def release(self) -> None:
        self._job_step(jobs.release, _("Job {job} is open again for the office."))

    def program(self) -> None:
        view, actor = self.selected(), self._principal()
        if view is None or actor is None:
            return
        ctx, job_id = self.ctx, view.id
        utility = str(ctx.settings.value(UTILITY_CODE))

        def plan() -> jobs.CardPlan:
            return jobs.preview(
                ctx.db, actor, ctx.clock, job_id, office_code=ctx.office_code, utility_code=utility
            )

        self.shell.ops.run(plan, lambda p: self._confirm_program(view, p), self._failed)

    def _confirm_program(self, view: JobView, plan: jobs.CardPlan) -> None:
        lines = [f"{key}: {value}" for key, value in plan.to_json().items()]
        answer = QMessageBox.question(
            self,
            _("Program the job's card"),
            _(
                "Put a management card of this kind into the reader. This will be written:\n\n"
                "{content}\n\nWrite it now?",
                content="\n".join(lines),
            ),
        )
        if answer != QMessageBox.StandardButton.Yes:
            self._say(_("Nothing was written."))
            return
        actor, ctx = self._principal(), self.ctx
        utility = str(ctx.settings.value(UTILITY_CODE))
        shell = self.shell

        def work() -> JobView:
            return jobs.program(
                ctx.db,
                actor,
                ctx.clock,
                view.id,
                shell.terminal(),
                office_code=ctx.office_code,
                utility_code=utility,
            )

        def done(v: JobView) -> None:
            self._say(
                _(
                    "The card for job {job} is written: take it to meter {meter}, then bring it "
                    "back and return it here.",
                    job=v.id[:8],
                    meter=v.meter_no,
                )
            )
            self.refresh()

        self._say(_("Working on the card. Do not take the card out."))
        shell.ops.card(work, done, self._failed)

    def return_card(self) -> None:
        actor, ctx, shell = self._principal(), self.ctx, self.shell
        if actor is None:
            return

        def work() -> JobView:
            return jobs.return_card(
                ctx.db, actor, ctx.clock, shell.terminal(), office_code=ctx.office_code
            )

        def done(v: JobView) -> None:
            result = translate(jobs.RESULT_NAMES.get(v.result or "", v.result or ""))
            self._say(
                _(
                    "Job {job} at meter {meter}: {result}. The job is closed; the result goes to "
                    "the central system with the next sync.",
                    job=v.id[:8],
                    meter=v.meter_no,
                    result=result,
                ),
                error=v.result != jobs.RESULT_APPLIED,
            )
            self.refresh()

        self._say(_("Reading the returned card. Do not take the card out."))
        shell.ops.card(work, done, self._failed)
