"""Control statistics (Ctrl+F7, supervisors, administrators and auditors): the station's
charge-control figures for this office, its city or its province over a period (customers
under fee control, in alarm, tripped, close permits pending, sold, consumed, the balance they
hold, the terminals' condition), with bar charts by state, by day and by area.

The figures come from the station through ``ctx.station`` (:class:`app.ports.StationViews`,
wired by main.py), asked off the GUI thread; when the station cannot be reached or refuses, the
page says so and keeps nothing stale on screen.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QDate
from PySide6.QtWidgets import QComboBox
from PySide6.QtWidgets import QDateEdit
from PySide6.QtWidgets import QGridLayout
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.context import AppContext
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.localtime import zone
from app.money import format_yuan
from app.presenters.control import STATE_TEXT
from app.presenters.stats import CONTROL_STATES
from app.presenters.stats import figures
from app.presenters.stats import heading
from app.settings import TIME_ZONE
from ui.bridge import error_text
from ui.charts import BarChart
from ui.pages.common import page_title
from ui.style import set_tone
from ui.widgets import wrapped_label

REGIONS: tuple[tuple[str | None, str], ...] = (
    (None, N_("This office")),
    ("city", N_("This city")),
    ("province", N_("This province")),
)
COLUMNS = 2  # label/value pairs a row of the figures (the page fits 1366x768)


class ControlStatsPage(QWidget):
    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.ctx: AppContext = shell.ctx
        self.stats: Mapping[str, Any] | None = None
        self._asked = 0  # the request now running: older answers are dropped
        self._loaded_once = False
        outer = QVBoxLayout(self)
        outer.addWidget(page_title(_("Control statistics")))
        outer.addLayout(self._build_filters())
        self.status = wrapped_label()
        outer.addWidget(self.status)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(18)
        self.values: dict[str, QLabel] = {}
        outer.addLayout(self.grid)
        charts = QHBoxLayout()
        self.state_chart = BarChart(_("Customers by control state"))
        self.day_chart = BarChart(_("Sold per day"), lambda fen: format_yuan(fen))
        self.area_chart = BarChart(
            _("Balance by area"), lambda fen: format_yuan(fen), horizontal=True
        )
        for chart in (self.state_chart, self.day_chart, self.area_chart):
            chart.setMinimumSize(220, 170)
            charts.addWidget(chart, 1)
        outer.addLayout(charts, 1)
        self._show(None)

    def _build_filters(self) -> QVBoxLayout:
        row = QHBoxLayout()
        self.region = QComboBox()
        for value, label in REGIONS:
            self.region.addItem(translate(label), value)
        local = self.ctx.clock.now().astimezone(zone(self.ctx.settings.value(TIME_ZONE))).date()
        start = local - dt.timedelta(days=29)
        self.date_from = QDateEdit(QDate(start.year, start.month, start.day))
        self.date_to = QDateEdit(QDate(local.year, local.month, local.day))
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
        self.plan = QLineEdit()
        self.plan.setPlaceholderText(_("all plans"))
        self.plan.setMaximumWidth(140)
        self.state = QComboBox()
        self.state.addItem(_("all states"), None)
        for state in CONTROL_STATES:
            self.state.addItem(translate(STATE_TEXT[state]), state)
        self.refresh_button = QPushButton(_("Refresh"))
        self.refresh_button.clicked.connect(self.refresh)
        self.plan.returnPressed.connect(self.refresh)
        second = QHBoxLayout()
        for line, pairs in (
            (
                row,
                (
                    (_("Region"), self.region),
                    (_("First day"), self.date_from),
                    (_("Last day"), self.date_to),
                ),
            ),
            (second, ((_("Tariff plan"), self.plan), (_("State"), self.state))),
        ):
            for label, widget in pairs:
                line.addWidget(QLabel(label))
                line.addWidget(widget)
        second.addWidget(self.refresh_button)
        second.addStretch(1)
        row.addStretch(1)
        both = QVBoxLayout()
        both.addLayout(row)
        both.addLayout(second)
        return both

    def activated(self) -> None:
        if not self._loaded_once:
            self.refresh()

    # ------------------------------------------------------------------ asking the station

    def refresh(self) -> None:
        start, end = self.date_from.date().toPython(), self.date_to.date().toPython()
        assert isinstance(start, dt.date) and isinstance(end, dt.date)
        if start > end:
            self._failed_text(_("The first day is after the last day: choose the period again."))
            return
        views = self.ctx.station
        if views is None:
            self._failed_text(
                _("This window cannot reach the station: start CardVend with main.py.")
            )
            return
        self._loaded_once = True
        self._asked += 1
        asked = self._asked
        region, state = self.region.currentData(), self.state.currentData()
        plan = self.plan.text().strip() or None
        self.status.setText(_("Asking the station…"))
        set_tone(self.status, None)
        self.refresh_button.setEnabled(False)

        def work() -> Mapping[str, Any]:
            return views.stats(region=region, date_from=start, date_to=end, plan=plan, state=state)

        def done(found: Mapping[str, Any]) -> None:
            if asked == self._asked:
                self.refresh_button.setEnabled(True)
                self._show(found)
                self.status.setText(heading(found))

        def failed(exc: BaseException) -> None:
            if asked == self._asked:
                self.refresh_button.setEnabled(True)
                self._failed_text(error_text(exc))

        self.shell.ops.run(work, done, failed)

    def _failed_text(self, text: str) -> None:
        self._show(None)
        self.status.setText(text)
        set_tone(self.status, "error")

    # ------------------------------------------------------------------ showing

    def _show(self, found: Mapping[str, Any] | None) -> None:
        self.stats = found
        shown = figures(found) if found is not None else figures(_EMPTY)
        if not self.values:
            self._lay_out(len(shown))
        for i, (label, value) in enumerate(shown[: len(self.values) // 2]):
            self.values[f"label{i}"].setText(label)
            self.values[f"value{i}"].setText(value if found is not None else "—")
        empty = _("No figures")
        if found is None:
            for chart in (self.state_chart, self.day_chart, self.area_chart):
                chart.set_bars([], empty_text=empty)
            return
        self.state_chart.set_bars(
            [(translate(STATE_TEXT[s]), int(found[s])) for s in CONTROL_STATES],
            empty_text=empty,
        )
        self.day_chart.set_bars(
            [(str(d["day"])[5:], int(d["sold_fen"])) for d in found["by_day"]], empty_text=empty
        )
        self.area_chart.set_bars(
            [(str(a["name"]), int(a["balance_fen"])) for a in found["by_area"]],
            empty_text=empty,
        )

    def _lay_out(self, n: int) -> None:
        for i in range(n):
            row, col = divmod(i, COLUMNS)
            label, value = QLabel(), QLabel()
            self.grid.addWidget(label, row, col * 2)
            self.grid.addWidget(value, row, col * 2 + 1)
            self.values[f"label{i}"] = label
            self.values[f"value{i}"] = value

    def value_of(self, label: str) -> str:
        """The text shown for the figure labelled ``label`` (for tests)."""
        for i in range(len(self.values) // 2):
            if self.values[f"label{i}"].text() == label:
                return self.values[f"value{i}"].text()
        raise KeyError(label)


# every figure at zero: the labels shown before the first answer
_EMPTY: dict[str, Any] = {
    "controlled": 0, "normal": 0, "alarm1": 0, "alarm2": 0, "tripped": 0,
    "close_permits_pending": 0, "balance_fen": 0, "sales": 0, "sold_fen": 0,
    "sold_by_kind": {"card": 0, "remote": 0}, "consumption_wh": 0, "cost_fen": 0,
    "relay_closed": 0, "relay_open": 0, "relay_unknown": 0, "reading_missing": 0,
    "not_read_recently": 0,
}  # fmt: skip
