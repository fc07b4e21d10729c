"""Reports (F7): the office's daily report for a chosen day and the charge-control statistics,
in tables and bar charts, saved as PDF (anyone who may view reports) or exported as CSV (only
who may export them: ``Action.EXPORT_REPORTS``).

The reports come from app/services/reports.py, read off the GUI thread; the PDF and CSV from
``ctx.report_renderer`` (printing/, wired by main.py).  ``save_report`` and ``fill_table`` are
shared with the shift page (its Z-report).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDate
from PySide6.QtCore import Qt
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QAbstractItemView
from PySide6.QtWidgets import QDateEdit
from PySide6.QtWidgets import QFileDialog
from PySide6.QtWidgets import QGridLayout
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QHeaderView
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QTableWidget
from PySide6.QtWidgets import QTableWidgetItem
from PySide6.QtWidgets import QTabWidget
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.context import AppContext
from app.domain.permissions import Action
from app.errors import CardVendError
from app.fileio import write_atomically
from app.i18n import N_
from app.i18n import _
from app.i18n import get_language
from app.i18n import translate
from app.money import format_yuan
from app.services import reports as report_service
from app.services.auth import Principal
from app.settings import TIME_ZONE
from ui.bridge import error_text
from ui.charts import BarChart
from ui.pages.common import KEY_COLUMNS
from ui.pages.common import page_title
from ui.style import set_tone
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)
RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


# --------------------------------------------------------------------------- shared helpers


class ReportNotSaved(CardVendError):
    code = "report_not_saved"
    template = N_(
        "The report was not saved to {path}: {reason}. Choose a folder you may write to, "
        "with free space, and save again."
    )


class ReportsUnavailable(CardVendError):
    code = "reports_unavailable"
    template = N_(
        "Reports cannot be saved here: this window was started without the report printer. "
        "Start CardVend with main.py (make run), or ask the office's IT."
    )


def report_format(path: str) -> str:
    """ "csv" for a path ending in .csv, else "pdf"."""
    return "csv" if Path(path).suffix.lower() == ".csv" else "pdf"


def save_report(ctx: AppContext, actor: Principal, report: object, path: str) -> Path:
    """Render ``report`` (a ShiftReport, DailyReport or StatsReport) as PDF or CSV by the
    path's suffix and write it atomically.  Runs on a worker thread.  A CSV is an export: it
    needs ``Action.EXPORT_REPORTS`` (checked here as in ``cardvend report``)."""
    renderer = ctx.report_renderer
    if renderer is None:
        raise ReportsUnavailable()
    target = Path(path)
    if report_format(path) == "csv":
        actor.authorize(Action.EXPORT_REPORTS, ctx.clock)
        data = renderer.report_csv(report).encode("utf-8")
    else:
        actor.authorize(Action.VIEW_REPORTS, ctx.clock)
        if target.suffix.lower() != ".pdf":
            target = target.with_name(target.name + ".pdf")
        data = renderer.report_pdf(report, language=get_language())
    try:
        write_atomically(target, data)
    except OSError as exc:
        raise ReportNotSaved(path=str(target), reason=exc.strerror or str(exc)) from exc
    log.info("report %s saved to %s", type(report).__name__, target)
    return target


def ask_save_path(parent: QWidget, suggested: str, fmt: str) -> str | None:
    """The file dialog; None when the person cancels."""
    if fmt == "csv":
        title, filters = _("Export the report as CSV"), _("CSV files (*.csv)")
    else:
        title, filters = _("Save the report as PDF"), _("PDF files (*.pdf)")
    path, _filter = QFileDialog.getSaveFileName(
        parent, title, str(Path.home() / suggested), filters
    )
    if not path:
        return None
    if Path(path).suffix.lower() != f".{fmt}":
        path += f".{fmt}"
    return path


def make_table(
    headers: Sequence[str], parent: QWidget | None = None, *, stretch: int | None = None
) -> QTableWidget:
    """A read-only table, every column as wide as its contents (a key column is never elided);
    column ``stretch``, a secondary one such as an error text, takes the spare width."""
    table = QTableWidget(0, len(headers), parent)
    table.setHorizontalHeaderLabels(list(headers))
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setAlternatingRowColors(True)
    table.verticalHeader().setVisible(False)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    if stretch is not None:
        header.setSectionResizeMode(stretch % len(headers), QHeaderView.ResizeMode.Stretch)
    return table


def fill_table(
    table: QTableWidget, rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()
) -> None:
    """Put ``rows`` of text into ``table``; the ``numeric`` columns are right-aligned and, with
    the first (what identifies a row), the key columns (never elided: ui/pages/common.py)."""
    if not table.property(KEY_COLUMNS):
        table.setProperty(KEY_COLUMNS, [0, *numeric])
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if c in numeric:
                item.setTextAlignment(RIGHT)
            table.setItem(r, c, item)


def table_text(table: QTableWidget) -> list[list[str]]:
    """Every cell's text, row by row (for tests and checks)."""
    out = []
    for r in range(table.rowCount()):
        row = []
        for c in range(table.columnCount()):
            item = table.item(r, c)
            row.append(item.text() if item is not None else "")
        out.append(row)
    return out


def yuan(fen: int | None) -> str:
    return "—" if fen is None else format_yuan(fen)


def local_time(value: dt.datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M")


# --------------------------------------------------------------------------- the page

DAILY_HEADERS = (
    N_("Operator / counter"),
    N_("Sales"),
    N_("Amount"),
    N_("Credit"),
    N_("Arrears"),
    N_("Fees"),
    N_("Reversals"),
    N_("Handed back"),
    N_("Fee payments"),
    N_("Refunds"),
    N_("Net cash"),
)
SHIFT_HEADERS = (
    N_("Counter"),
    N_("Operator"),
    N_("Opened"),
    N_("Closed"),
    N_("Float"),
    N_("Expected"),
    N_("Counted"),
    N_("Variance"),
)
PLAN_HEADERS = (
    N_("Tariff plan"),
    N_("Number of customers"),
    N_("Sales"),
    N_("Amount"),
    N_("Credit"),
    N_("Energy (kWh)"),
)


def _daily_row(label: str, row: report_service.DailyRow) -> list[str]:
    return [
        label,
        str(row.sales_count),
        yuan(row.sales_fen),
        yuan(row.credit_fen),
        yuan(row.arrears_fen),
        yuan(row.fees_fen),
        str(row.reversals_count),
        yuan(row.reversals_fen),
        yuan(row.fee_payments_fen),
        yuan(row.refunds_fen),
        yuan(row.net_cash_fen),
    ]


def _kwh(wh: int) -> str:
    whole, part = divmod(abs(wh) // 10, 100)  # 0.01 kWh
    return f"{'-' if wh < 0 else ''}{whole}.{part:02d}"


def _yuan_axis(fen: int) -> str:
    """Whole yuan, for the chart's axis and bar labels."""
    return str(fen // 100) if fen >= 0 else "-" + str(-fen // 100)


class ReportsPage(QWidget):
    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.daily: report_service.DailyReport | None = None
        self.stats: report_service.StatsReport | None = None
        outer = QVBoxLayout(self)
        outer.addWidget(page_title(_("Reports")))
        self.denied = wrapped_label(tone="error")
        self.denied.hide()
        outer.addWidget(self.denied)
        self.tabs = QTabWidget()
        outer.addWidget(self.tabs, 1)
        self.status = wrapped_label()
        outer.addWidget(self.status)

        # ---- the day
        day_tab = QWidget()
        day_box = QVBoxLayout(day_tab)
        bar = QHBoxLayout()
        bar.addWidget(QLabel(_("Day:")))
        self.day = QDateEdit()
        self.day.setCalendarPopup(True)
        self.day.setDisplayFormat("yyyy-MM-dd")
        bar.addWidget(self.day)
        self.show_day = QPushButton(_("Show"))
        self.show_day.clicked.connect(self.load_daily)
        bar.addWidget(self.show_day)
        bar.addStretch(1)
        self.day_pdf = QPushButton(_("Save PDF…"))
        self.day_csv = QPushButton(_("Export CSV…"))
        self.day_pdf.clicked.connect(lambda: self.export("daily", "pdf"))
        self.day_csv.clicked.connect(lambda: self.export("daily", "csv"))
        bar.addWidget(self.day_pdf)
        bar.addWidget(self.day_csv)
        day_box.addLayout(bar)
        self.day_summary = wrapped_label()
        day_box.addWidget(self.day_summary)
        self.day_table = make_table([translate(h) for h in DAILY_HEADERS])
        # the identifying column and the money a supervisor reads first stay in view: net cash
        # moves beside the amount; the counts and the rest scroll on a narrow screen
        self.day_table.setProperty(KEY_COLUMNS, [0, 2, len(DAILY_HEADERS) - 1])
        header = self.day_table.horizontalHeader()
        header.moveSection(len(DAILY_HEADERS) - 1, 3)
        day_box.addWidget(self.day_table, 2)
        day_box.addWidget(QLabel(_("Shifts of the day")))
        self.shift_table = make_table([translate(h) for h in SHIFT_HEADERS])
        day_box.addWidget(self.shift_table, 1)
        self.tabs.addTab(day_tab, _("Daily report"))
        # a changed day (typed or picked) is shown after a short pause
        self.day_timer = QTimer(self)
        self.day_timer.setSingleShot(True)
        self.day_timer.setInterval(400)
        self.day_timer.timeout.connect(self.load_daily)
        self.day.dateChanged.connect(lambda _d: self.day_timer.start())

        # ---- the statistics
        stats_tab = QWidget()
        stats_box = QVBoxLayout(stats_tab)
        bar = QHBoxLayout()
        self.stats_summary = wrapped_label()
        bar.addWidget(self.stats_summary, 1)
        self.stats_refresh = QPushButton(_("Refresh"))
        self.stats_refresh.clicked.connect(self.load_stats)
        self.stats_pdf = QPushButton(_("Save PDF…"))
        self.stats_csv = QPushButton(_("Export CSV…"))
        self.stats_pdf.clicked.connect(lambda: self.export("stats", "pdf"))
        self.stats_csv.clicked.connect(lambda: self.export("stats", "csv"))
        for b in (self.stats_refresh, self.stats_pdf, self.stats_csv):
            bar.addWidget(b)
        stats_box.addLayout(bar)
        charts = QGridLayout()
        self.amount_chart = BarChart(_("Amount sold per day (yuan)"), _yuan_axis)
        self.balance_chart = BarChart(_("Card meters by balance"), horizontal=True)
        charts.addWidget(self.amount_chart, 0, 0)
        charts.addWidget(self.balance_chart, 0, 1)
        charts.setColumnStretch(0, 1)
        charts.setColumnStretch(1, 1)
        stats_box.addLayout(charts, 3)
        self.plan_table = make_table([translate(h) for h in PLAN_HEADERS])
        self.plan_table.setProperty(KEY_COLUMNS, [0, 3, 4])  # the plan, amount and credit
        plan_header = self.plan_table.horizontalHeader()
        plan_header.moveSection(3, 1)
        plan_header.moveSection(4, 2)
        stats_box.addWidget(self.plan_table, 1)
        self.tabs.addTab(stats_tab, _("Charge-control statistics"))
        self.tabs.currentChanged.connect(lambda _i: self.activated())

        can_export = self._can(Action.EXPORT_REPORTS)
        for b in (self.day_csv, self.stats_csv):
            b.setEnabled(can_export)
            if not can_export:
                b.setToolTip(_("Exporting reports needs a supervisor, an auditor or an admin."))
        self._set_today()
        self._check_access()

    # ------------------------------------------------------------------ helpers

    @property
    def ctx(self) -> AppContext:
        return self.shell.ctx  # type: ignore[no-any-return]

    @property
    def tz(self) -> str:
        return str(self.ctx.settings.get(TIME_ZONE.key))

    def _can(self, action: Action) -> bool:
        principal = self.shell.principal
        return principal is not None and principal.can(action)

    def _set_today(self) -> None:
        try:
            today = self.ctx.clock.now().astimezone(report_service.zone(self.tz)).date()
        except CardVendError:
            today = dt.date.today()
        self.day.blockSignals(True)  # not a change to load: activated() loads
        self.day.setDate(QDate(today.year, today.month, today.day))
        self.day.setMaximumDate(QDate(today.year, today.month, today.day))
        self.day.blockSignals(False)

    def _check_access(self) -> bool:
        if self.shell.principal is None:
            text = _("Sign in to see the reports.")
        elif not self._can(Action.VIEW_REPORTS):
            text = _(
                "Operator {id} may not view reports. Ask a teller, supervisor or auditor.",
                id=self.shell.principal.operator_id,
            )
        else:
            self.denied.hide()
            self.tabs.setEnabled(True)
            return True
        self.denied.setText(text)
        self.denied.show()
        self.tabs.setEnabled(False)
        return False

    def _failed(self, exc: BaseException) -> None:
        text = error_text(exc)
        self.status.setText(text)
        set_tone(self.status, "error")
        self.shell.notify(text, error=True)

    def _say(self, text: str) -> None:
        self.status.setText(text)
        set_tone(self.status, None)

    def selected_day(self) -> dt.date:
        d = self.day.date()
        return dt.date(d.year(), d.month(), d.day())

    # ------------------------------------------------------------------ loading

    def activated(self) -> None:
        if not self._check_access():
            return
        if self.tabs.currentIndex() == 0:
            self.day.setFocus()
            self.load_daily()
        else:
            self.stats_refresh.setFocus()
            self.load_stats()

    def load_daily(self) -> None:
        if not self._check_access():
            return
        ctx, actor, day, tz = self.ctx, self.shell.principal, self.selected_day(), self.tz

        def read() -> report_service.DailyReport:
            return report_service.daily_report(
                ctx.db, ctx.office_code, day, tz, actor=actor, clock=ctx.clock
            )

        self._say(_("Reading the report…"))
        self.shell.ops.run(read, self._show_daily, self._failed)

    def load_stats(self) -> None:
        if not self._check_access():
            return
        ctx, actor, tz = self.ctx, self.shell.principal, self.tz

        def read() -> report_service.StatsReport:
            return report_service.stats_report(ctx.db, ctx.office_code, ctx.clock, tz, actor=actor)

        self._say(_("Reading the statistics…"))
        self.shell.ops.run(read, self._show_stats, self._failed)

    def _show_daily(self, report: report_service.DailyReport) -> None:
        self.daily = report
        rows = [_daily_row(f"{r.key} {r.name}".strip(), r) for r in report.by_operator]
        rows += [_daily_row(_("Counter {id}", id=r.key), r) for r in report.by_counter]
        rows.append(_daily_row(_("Total"), report.totals))
        fill_table(self.day_table, rows, numeric=range(1, len(DAILY_HEADERS)))
        bold = self.day_table.font()
        bold.setBold(True)
        for c in range(self.day_table.columnCount()):
            item = self.day_table.item(len(rows) - 1, c)
            if item is not None:
                item.setFont(bold)
        fill_table(
            self.shift_table,
            [
                [
                    s.counter_id,
                    s.operator_id,
                    local_time(s.opened_at),
                    local_time(s.closed_at),
                    yuan(s.float_fen),
                    yuan(s.expected_cash_fen),
                    yuan(s.counted_cash_fen),
                    yuan(s.variance_fen),
                ]
                for s in report.shifts
            ],
            numeric=range(4, 8),
        )
        self.day_summary.setText(
            _(
                "{office} — {day}: {count} sales, {amount} yuan taken, net cash {net} yuan; "
                "{unresolved} unresolved, {failed} failed.",
                office=report.office_name,
                day=report.day.isoformat(),
                count=report.totals.sales_count,
                amount=yuan(report.totals.sales_fen),
                net=yuan(report.totals.net_cash_fen),
                unresolved=report.unresolved_count,
                failed=report.failed_count,
            )
        )
        self._say(
            _(
                "Report of {day} as of {time}.",
                day=report.day.isoformat(),
                time=local_time(report.generated_at),
            )
        )

    def _show_stats(self, report: report_service.StatsReport) -> None:
        self.stats = report
        self.amount_chart.set_bars(
            [(d.day.strftime("%m-%d"), d.amount_fen) for d in report.daily],
            empty_text=_("No sales in these days."),
        )
        self.balance_chart.set_bars(
            [(translate(report_service.BUCKET_LABELS[b.bucket]), b.count) for b in report.balances],
            empty_text=_("No card meters."),
        )
        fill_table(
            self.plan_table,
            [
                [
                    f"{p.plan_code} {p.plan_name}",
                    str(p.customers),
                    str(p.sales_count),
                    yuan(p.amount_fen),
                    yuan(p.credit_fen),
                    _kwh(p.energy_wh),
                ]
                for p in report.plans
            ],
            numeric=range(1, len(PLAN_HEADERS)),
        )
        self.stats_summary.setText(
            _(
                "{office}, {first} to {last}: {customers} customers; {count} sales, {amount} "
                "yuan; card meters' remaining credit {remaining} yuan.",
                office=report.office_name,
                first=report.first_day.isoformat(),
                last=report.last_day.isoformat(),
                customers=report.customers_total,
                count=report.sold_count,
                amount=yuan(report.sold_fen),
                remaining=yuan(report.remaining_fen),
            )
        )
        self._say(_("Statistics as of {time}.", time=local_time(report.generated_at)))

    # ------------------------------------------------------------------ saving

    def export(self, which: str, fmt: str, path: str | None = None) -> None:
        """Save the shown daily report or statistics as ``fmt`` ("pdf"/"csv") to ``path``
        (asked with a file dialog when None)."""
        report: object | None = self.daily if which == "daily" else self.stats
        if report is None:
            self._failed(
                CardVendError(N_("Nothing to save yet: show the report first, then save it."))
            )
            return
        if fmt == "csv" and not self._can(Action.EXPORT_REPORTS):
            self._failed(
                CardVendError(N_("Exporting reports needs a supervisor, an auditor or an admin."))
            )
            return
        if path is None:
            if which == "daily" and self.daily is not None:
                name = f"daily-{self.daily.office_code}-{self.daily.day.isoformat()}.{fmt}"
            else:
                name = f"statistics-{self.ctx.office_code}-{self.ctx.clock.now():%Y%m%d}.{fmt}"
            path = ask_save_path(self, name, fmt)
            if path is None:
                return
        elif report_format(path) != fmt:
            path += f".{fmt}"
        self.save(report, path)

    def save(
        self, report: object, path: str, on_saved: Callable[[Path], None] | None = None
    ) -> None:
        ctx, actor = self.ctx, self.shell.principal

        def done(saved: Path) -> None:
            text = _("Report saved to {path}.", path=str(saved))
            self._say(text)
            self.shell.notify(text)
            if on_saved is not None:
                on_saved(saved)

        self._say(_("Saving the report…"))
        self.shell.ops.run(lambda: save_report(ctx, actor, report, path), done, self._failed)
