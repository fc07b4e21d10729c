"""The station's exceptions queue (Ctrl+F5, roles that may ``handle_exceptions``): this office's
exceptions filtered by state, one with its history (who took which step, when, from which
counter), and a supervisor's steps on it: assign to an operator, explain, resolve, escalate.

The queue is read from the station through ``ctx.station`` (:class:`app.ports.StationViews`)
off the GUI thread; a step goes through :mod:`app.services.exceptions_queue`, audited at the
counter as ``cardvend exceptions`` audits it.  The station's refusals (an illegal step, an id it
does not hold for this office) and the station away are one clear line; nothing stale stays on
screen after a failed read.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from PySide6.QtWidgets import QComboBox
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QTableWidget
from PySide6.QtWidgets import QTableWidgetItem
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.context import AppContext
from app.errors import CardVendError
from app.i18n import N_
from app.i18n import _
from app.presenters.exceptions import STATES
from app.presenters.exceptions import STEPS
from app.presenters.exceptions import kind_label
from app.presenters.exceptions import label
from app.services import exceptions_queue as queue
from app.settings import TIME_ZONE
from ui.bridge import error_text
from ui.dialogs.common import when_text
from ui.pages.common import list_table
from ui.pages.common import page_title
from ui.style import set_tone
from ui.widgets import wrapped_label

LIST_HEADERS = (N_("Customer"), N_("Kind"), N_("State"), N_("Assigned to"), N_("Raised at"))
HISTORY_HEADERS = (N_("Time"), N_("Step"), N_("State"), N_("By"), N_("Note"))
LIMIT = 200


class ExceptionsPage(QWidget):
    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.ctx: AppContext = shell.ctx
        self.items: list[Mapping[str, Any]] | None = None  # the list shown (None: none asked)
        self.detail: Mapping[str, Any] | None = None  # the exception shown with its history
        self._asked = 0  # the list request now running: older answers are dropped
        self._asked_one = 0  # the same for the exception shown
        self._loaded_once = False
        outer = QVBoxLayout(self)
        outer.addWidget(page_title(_("Exceptions queue")))
        row = QHBoxLayout()
        row.addWidget(QLabel(_("State")))
        self.state = QComboBox()
        self.state.addItem(label("open"), "open")
        self.state.addItem(_("all states"), None)
        for state in STATES[1:]:
            self.state.addItem(label(state), state)
        self.state.currentIndexChanged.connect(lambda: self.refresh())
        row.addWidget(self.state)
        self.refresh_button = QPushButton(_("Refresh"))
        self.refresh_button.clicked.connect(lambda: self.refresh())
        row.addWidget(self.refresh_button)
        self.count = QLabel()  # how many are listed (the status line keeps a step's answer)
        row.addWidget(self.count)
        row.addStretch(1)
        outer.addLayout(row)
        self.status = wrapped_label()
        outer.addWidget(self.status)
        self.table = list_table(LIST_HEADERS)
        self.table.itemSelectionChanged.connect(self._selected)
        outer.addWidget(self.table, 3)  # the list the whole width, the one chosen below it
        outer.addLayout(self._build_detail(), 2)
        self._show_detail(None)

    def _build_detail(self) -> QHBoxLayout:
        side = QVBoxLayout()  # what it is and the step to take, beside its history
        self.info = wrapped_label(selectable=True)  # the id can be copied
        side.addWidget(self.info)
        self.record = wrapped_label()
        side.addWidget(self.record)
        side.addStretch(1)
        form = QHBoxLayout()
        self.step = QComboBox()
        for step in STEPS:
            self.step.addItem(label(step), step)
        self.step.currentIndexChanged.connect(self._step_changed)
        self.assignee = QLineEdit()
        self.assignee.setPlaceholderText(_("operator id"))
        self.assignee.setMaximumWidth(140)
        form.addWidget(QLabel(_("Step")))
        form.addWidget(self.step)
        form.addWidget(QLabel(_("to")))
        form.addWidget(self.assignee)
        form.addStretch(1)
        side.addLayout(form)
        second = QHBoxLayout()
        self.note = QLineEdit()
        self.note.setMaxLength(queue.NOTE_MAX)
        self.note.setPlaceholderText(_("what was found or done"))
        self.apply_button = QPushButton(_("Take this step"))
        self.apply_button.clicked.connect(self.apply)
        second.addWidget(QLabel(_("Note")))
        second.addWidget(self.note, 1)
        second.addWidget(self.apply_button)
        side.addLayout(second)
        below = QHBoxLayout()
        below.addLayout(side, 2)
        self.history = list_table(HISTORY_HEADERS)
        below.addWidget(self.history, 3)
        return below

    def activated(self) -> None:
        if not self._loaded_once:
            self.refresh()

    # ------------------------------------------------------------------ reading the queue

    def _views(self) -> Any:
        views = self.ctx.station
        if views is None:
            self._failed_text(
                _("This window cannot reach the station: start CardVend with main.py.")
            )
        return views

    def refresh(self, *, keep_message: bool = False) -> None:
        """Ask for the list again (``keep_message``: the status line keeps a step's answer)."""
        views = self._views()
        if views is None:
            return
        self._loaded_once = True
        self._asked += 1
        asked = self._asked
        state = self.state.currentData()
        self.count.setText(_("Asking the station…"))
        if not keep_message:
            self._say("")
        self.refresh_button.setEnabled(False)

        def done(found: Mapping[str, Any]) -> None:
            if asked == self._asked:
                self.refresh_button.setEnabled(True)
                self._show_list(list(found["items"]))

        def failed(exc: BaseException) -> None:
            if asked == self._asked:
                self.refresh_button.setEnabled(True)
                self._failed_text(error_text(exc))

        self.shell.ops.run(lambda: views.exceptions(state, LIMIT), done, failed)

    def _show_list(self, items: list[Mapping[str, Any]]) -> None:
        keep = self.detail["id"] if self.detail is not None else None
        self.items = items
        tz = self.ctx.settings.value(TIME_ZONE)
        rows = [
            (
                str(i["customer_no"]),
                kind_label(str(i["kind"])),
                label(i["state"]),
                i.get("assignee") or "-",
                when_text(str(i["created_at"]), tz),
            )
            for i in items
        ]
        self.table.blockSignals(True)
        _fill(self.table, rows)
        self.table.blockSignals(False)
        if not items:
            self.count.setText(_("No exceptions in this office's queue."))
        else:
            self.count.setText(_("{n} exceptions of this office.", n=len(items)))
        ids = [str(i["id"]) for i in items]
        if keep in ids:  # the one shown stays shown (out of the list after a step, too)
            self.table.blockSignals(True)
            self.table.selectRow(ids.index(keep))
            self.table.blockSignals(False)
            self.load(str(keep))  # its history as the station has it now

    def _selected(self) -> None:
        row = self.table.currentRow()
        if self.items is None or not 0 <= row < len(self.items):
            return
        self.load(str(self.items[row]["id"]))

    def load(self, exception_id: str) -> None:
        """Ask the station for one exception and its history."""
        views = self._views()
        if views is None:
            return
        self._asked_one += 1
        asked = self._asked_one

        def done(found: Mapping[str, Any]) -> None:
            if asked == self._asked_one:
                self._show_detail(found)

        def failed(exc: BaseException) -> None:
            if asked == self._asked_one:
                self._show_detail(None)
                self._say(self._refusal_text(exc), "error")

        self.shell.ops.run(lambda: views.exception(exception_id), done, failed)

    # ------------------------------------------------------------------ a step

    def apply(self) -> None:
        views, me, shown = self._views(), self.shell.principal, self.detail
        if views is None or me is None or shown is None:
            return
        step = str(self.step.currentData())
        try:
            request = queue.step_request(
                me, step, assignee=self.assignee.text(), note=self.note.text()
            )
        except CardVendError as exc:
            self._say(exc.localized(), "error")
            return
        exception_id, state = str(shown["id"]), str(shown["state"])
        self.apply_button.setEnabled(False)
        self._say(_("Asking the station…"))

        def work() -> Mapping[str, Any]:
            return queue.take_step(
                self.ctx.db, me, self.ctx.clock, exception_id, request,
                lambda req: views.act_on_exception(exception_id, req),
            )  # fmt: skip

        def still_shown() -> bool:  # not another exception chosen meanwhile
            return self.detail is not None and str(self.detail["id"]) == exception_id

        def done(found: Mapping[str, Any]) -> None:
            self.apply_button.setEnabled(True)
            if still_shown():
                self.note.clear()
                self._asked_one += 1  # a history asked before the step is older than this
                self._show_detail(found)
            self.refresh(keep_message=True)
            self._say(
                _("Exception {id} is now {state}.", id=found["id"], state=label(found["state"])),
                "ok",
            )

        def failed(exc: BaseException) -> None:
            self.apply_button.setEnabled(True)
            self._say(self._refusal_text(exc, step=step, state=state), "error")
            if still_shown() and getattr(exc, "code", "") == "illegal_transition":
                self.load(exception_id)  # the state the station holds now

        self.shell.ops.run(work, done, failed)

    def _refusal_text(self, exc: BaseException, *, step: str = "", state: str = "") -> str:
        code = getattr(exc, "code", "")
        if code == "illegal_transition":
            return _(
                "The station refused the step: an exception that is {state} cannot be given "
                "the step '{step}'. Refresh it and choose another step.",
                state=label(state), step=label(step),
            )  # fmt: skip
        if code == "exception_not_found":
            return _(
                "The station holds no such exception for this office (it may have moved to "
                "another office): refresh the list."
            )
        return error_text(exc)

    # ------------------------------------------------------------------ showing

    def _step_changed(self) -> None:
        self.assignee.setEnabled(self.step.currentData() == "assign")

    def _show_detail(self, found: Mapping[str, Any] | None) -> None:
        self.detail = found
        for w in (self.step, self.note, self.apply_button):
            w.setEnabled(found is not None)
        self._step_changed()
        if found is None:
            self.assignee.setEnabled(False)
            self.info.setText(_("Choose an exception in the list to see its history."))
            self.record.setText("")
            _fill(self.history, [])
            return
        tz = self.ctx.settings.value(TIME_ZONE)
        text = _(
            "Exception {id}\nCustomer {customer}, {kind}: {state}, assigned to {who}.",
            id=found["id"], customer=found["customer_no"], kind=kind_label(str(found["kind"])),
            state=label(found["state"]), who=found.get("assignee") or "-",
        )  # fmt: skip
        self.info.setText(text)
        # the station's own record of what it saw (its words, not the counter's)
        self.record.setText(str(found.get("detail") or ""))
        rows = []
        for e in found.get("history", []):
            who = e.get("operator_id") or _("station")
            if e.get("counter_id"):
                who = f"{who}@{e['counter_id']}"
            moved = f"{label(e.get('from_state'))} → {label(e['to_state'])}"
            rows.append(
                (when_text(str(e["at"]), tz), label(e["action"]), moved, who, e.get("note") or "")
            )
        _fill(self.history, rows)

    def _failed_text(self, text: str) -> None:
        self.items = None
        self.table.blockSignals(True)
        _fill(self.table, [])
        self.table.blockSignals(False)
        self._show_detail(None)
        self.count.setText("")
        self._say(text, "error")

    def _say(self, text: str, tone: str | None = None) -> None:
        self.status.setText(text)
        set_tone(self.status, tone)


def _fill(table: QTableWidget, rows: Sequence[Sequence[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))
