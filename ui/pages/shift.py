"""Shift (F4): open a shift with a float, close it with a cash count by denominations, and the
Z-report of the shift on screen, saved as PDF or exported as CSV.

The count is integer fen arithmetic: count × face value of each denomination.  Closing calls
``app.services.shifts.close_shift`` with the counted cash; the service computes expected cash
and the variance (counted − expected), which the page shows.  Closing asks for a second Enter
(or click) to confirm; Esc takes it back.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtGui import QKeyEvent
from PySide6.QtGui import QKeySequence
from PySide6.QtGui import QShortcut
from PySide6.QtWidgets import QBoxLayout
from PySide6.QtWidgets import QGridLayout
from PySide6.QtWidgets import QGroupBox
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QSpinBox
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.context import AppContext
from app.domain.ledger import ReversalState
from app.domain.ledger import SaleState
from app.domain.permissions import Action
from app.domain.receipt import receipt_no
from app.errors import CardVendError
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.money import format_yuan
from app.money import parse_yuan
from app.services import reports as report_service
from app.services import shifts as shift_service
from app.services.shifts import ShiftView
from app.settings import TIME_ZONE
from ui.bridge import error_text
from ui.dialogs.common import when_text
from ui.pages.common import KEY_COLUMNS
from ui.pages.common import page_title
from ui.pages.reports import ask_save_path
from ui.pages.reports import fill_table
from ui.pages.reports import local_time
from ui.pages.reports import make_table
from ui.pages.reports import report_format
from ui.pages.reports import save_report
from ui.pages.reports import yuan
from ui.style import set_tone
from ui.widgets import button_row
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)

# face values in fen, largest first, with their names (RMB notes and coins in use)
DENOMINATIONS: tuple[tuple[int, str], ...] = (
    (10000, N_("100 yuan")),
    (5000, N_("50 yuan")),
    (2000, N_("20 yuan")),
    (1000, N_("10 yuan")),
    (500, N_("5 yuan")),
    (100, N_("1 yuan")),
    (50, N_("5 jiao")),
    (10, N_("1 jiao")),
    (5, N_("5 fen")),
    (2, N_("2 fen")),
    (1, N_("1 fen")),
)
MAX_COUNT = 99_999
STACK_BELOW_PX = 1000  # narrower than this, the Z-report goes below the cash count
ZREPORT_HEADERS = (
    N_("Time"),
    N_("Line"),
    N_("Receipt"),
    N_("Customer"),
    N_("State"),
    N_("Amount"),
)


def counted_fen(counts: dict[int, int]) -> int:
    """The cash counted: the sum of count × face value (fen)."""
    return sum(face * count for face, count in counts.items())


def variance_text(fen: int) -> str:
    if fen > 0:
        return _("+{amount} (over)", amount=format_yuan(fen))
    if fen < 0:
        return _("{amount} (short)", amount=format_yuan(fen))
    return _("{amount} (exact)", amount=format_yuan(0))


def report_rows(report: report_service.ShiftReport) -> list[list[str]]:
    """The Z-report's lines (sales, reversals, fees, close refunds) in time order, as the
    table shows them (``ZREPORT_HEADERS``); a time on a later day than the shift's opening
    carries its date."""
    lines: list[tuple[dt.datetime, list[str]]] = []
    for s in report.sales:
        kind = translate(report_service.KIND_LABELS.get(s.kind, s.kind))
        state = SaleState.text_of(s.state)
        lines.append((s.at, [kind, s.short_id, s.customer_no, state, yuan(s.amount_fen)]))
    for r in report.reversals:
        state = ReversalState.text_of(r.state)
        lines.append((r.at, [_("reversal"), r.short_id, r.customer_no, state, yuan(-r.amount_fen)]))
    for f in report.fee_payments:
        cells = [_("replacement fee"), receipt_no(f.payment_id), f.customer_no, _("completed")]
        lines.append((f.at, [*cells, yuan(f.amount_fen)]))
    for refund in report.refunds:
        cells = [_("account close refund"), receipt_no(refund.event_id), refund.customer_no]
        lines.append((refund.at, [*cells, _("completed"), yuan(-refund.amount_fen)]))
    lines.sort(key=lambda line: line[0])
    first_day = report.opened_at.date()
    return [
        [at.strftime("%H:%M" if at.date() == first_day else "%m-%d %H:%M"), *cells]
        for at, cells in lines
    ]


def report_summary(report: report_service.ShiftReport) -> str:
    """The Z-report's summary above its lines: whose shift, the totals, the cash."""
    if report.is_open:
        head = _(
            "Open shift of {operator} on {counter}, since {opened}.",
            operator=report.operator_id,
            counter=report.counter_id,
            opened=local_time(report.opened_at),
        )
        cash = _(
            "Expected cash so far: {expected} yuan (float {float} + net cash {net}).",
            expected=yuan(report.expected_cash_fen),
            float=yuan(report.float_fen),
            net=yuan(report.net_cash_fen),
        )
    else:
        head = _(
            "Shift of {operator} on {counter}, {opened} to {closed}.",
            operator=report.operator_id,
            counter=report.counter_id,
            opened=local_time(report.opened_at),
            closed=local_time(report.closed_at),
        )
        cash = _(
            "Expected cash {expected} yuan, counted {counted} yuan, variance {variance}.",
            expected=yuan(report.expected_cash_fen),
            counted=yuan(report.counted_cash_fen),
            variance=variance_text(report.variance_fen or 0),
        )
    totals = _(
        "Money taken by sales: {count}, {amount} yuan (reversed sales included); reversals: "
        "{rcount}, {ramount} yuan handed back; fees: {fcount}, {famount} yuan; net cash {net} "
        "yuan.",
        count=report.sales_count,
        amount=yuan(report.sales_fen),
        rcount=report.reversals_count,
        ramount=yuan(report.reversals_fen),
        fcount=report.fee_payments_count,
        famount=yuan(report.fee_payments_fen),
        net=yuan(report.net_cash_fen),
    )
    parts = [head, totals]
    if report.refunds:
        parts.append(
            _(
                "Account close refunds: {count}, {amount} yuan handed back.",
                count=report.refunds_count,
                amount=yuan(report.refunds_fen),
            )
        )
    parts.append(cash)
    return "\n".join(parts)


class CountBox(QSpinBox):
    """A count of notes or coins; Enter moves on to the next field."""

    def __init__(self, on_enter: Callable[[], None]) -> None:
        super().__init__()
        self.on_enter = on_enter
        self.setRange(0, MAX_COUNT)
        self.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.setButtonSymbols(QSpinBox.ButtonSymbols.NoButtons)
        self.setMinimumWidth(80)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.interpretText()
            self.on_enter()
            return
        super().keyPressEvent(event)

    def focusInEvent(self, event: Any) -> None:
        super().focusInEvent(event)
        self.selectAll()


class ShiftPage(QWidget):
    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.shift: ShiftView | None = None  # the open shift, None when none is open
        self.report: report_service.ShiftReport | None = None  # of the open or last shift
        self.closed: ShiftView | None = None  # the shift this page closed last
        self.confirming = False
        outer = QVBoxLayout(self)
        outer.addWidget(page_title(_("Shift")))
        self.state_label = wrapped_label()
        outer.addWidget(self.state_label)
        # the count beside the Z-report; on a narrow page (1366×768 with the training tray) the
        # Z-report goes below the count, whole, and the page scrolls
        self.body = body = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        outer.addLayout(body, 1)
        left = QVBoxLayout()
        body.addLayout(left, 0)
        self._build_open(left)
        bigger = self._build_count(left)
        self._build_result(left, bigger)
        left.addStretch(1)
        right = QVBoxLayout()
        body.addLayout(right, 1)
        self._build_zreport(right)
        self._finish_init(outer)

    def resizeEvent(self, event: Any) -> None:
        stacked = self.width() < STACK_BELOW_PX
        self.body.setDirection(
            QBoxLayout.Direction.TopToBottom if stacked else QBoxLayout.Direction.LeftToRight
        )
        super().resizeEvent(event)

    def _build_open(self, left: QVBoxLayout) -> None:
        self.open_box = QGroupBox(_("Open a shift"))
        row = QGridLayout(self.open_box)
        row.addWidget(QLabel(_("Float (yuan):")), 0, 0)
        self.float_edit = QLineEdit()
        self.float_edit.setPlaceholderText("0.00")
        self.float_edit.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.float_edit.returnPressed.connect(self.open_shift)
        row.addWidget(self.float_edit, 0, 1)
        self.open_button = QPushButton(_("Open shift (Enter)"))
        self.open_button.clicked.connect(self.open_shift)
        row.addWidget(self.open_button, 1, 0, 1, 2)
        left.addWidget(self.open_box)

    def _build_count(self, left: QVBoxLayout) -> QFont:
        """The cash count by denominations; returns the font of the totals."""
        self.close_box = QGroupBox(_("Close the shift: count the cash"))
        grid = QGridLayout(self.close_box)
        self.counts: dict[int, CountBox] = {}
        self.line_labels: dict[int, QLabel] = {}
        rows = len(DENOMINATIONS)
        for i, (face, name) in enumerate(DENOMINATIONS):
            r, c = i, 0
            box = CountBox(self._next_field(i))
            box.valueChanged.connect(self._recount)
            grid.addWidget(QLabel(translate(name) + " ×"), r, c)
            grid.addWidget(box, r, c + 1)
            line = QLabel(format_yuan(0))
            line.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            line.setMinimumWidth(80)
            grid.addWidget(line, r, c + 2)
            self.counts[face] = box
            self.line_labels[face] = line
        self.total_label = QLabel()
        bigger = self.total_label.font()
        bigger.setPointSize(bigger.pointSize() + 4)
        bigger.setBold(True)
        self.total_label.setFont(bigger)
        grid.addWidget(self.total_label, rows, 0, 1, 3)
        # counted - expected while counting; a difference needs a reason to close
        self.difference_label = wrapped_label()
        grid.addWidget(self.difference_label, rows + 3, 0, 1, 3)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText(_("Why does the count differ? (needed to close)"))
        self.reason_edit.returnPressed.connect(self.request_close)
        self.reason_edit.hide()
        grid.addWidget(self.reason_edit, rows + 4, 0, 1, 3)
        buttons = QHBoxLayout()
        self.clear_button = QPushButton(_("Clear count"))
        self.clear_button.clicked.connect(self.clear_count)
        self.close_button = QPushButton(_("Close shift"))
        self.close_button.clicked.connect(self.request_close)
        buttons.addWidget(self.clear_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        grid.addLayout(buttons, rows + 1, 0, 1, 3)
        self.confirm_label = wrapped_label(tone="warn")
        grid.addWidget(self.confirm_label, rows + 2, 0, 1, 3)
        left.addWidget(self.close_box)
        return bigger

    def _build_result(self, left: QVBoxLayout, bigger: QFont) -> None:
        """The outcome of the close: expected, counted, variance."""
        self.result_box = QGroupBox(_("Cash at the close"))
        res = QGridLayout(self.result_box)
        self.expected_value = QLabel("—")
        self.counted_value = QLabel("—")
        self.variance_value = QLabel("—")
        for r, (label, value) in enumerate(
            (
                (_("Expected cash:"), self.expected_value),
                (_("Counted cash:"), self.counted_value),
                (_("Variance:"), self.variance_value),
            )
        ):
            res.addWidget(QLabel(label), r, 0)
            value.setFont(bigger)
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            res.addWidget(value, r, 1)
        self.result_box.hide()
        left.addWidget(self.result_box)

    def _build_zreport(self, right: QVBoxLayout) -> None:
        self.report_box = QGroupBox(_("Z-report"))
        zr = QVBoxLayout(self.report_box)
        self.report_summary = wrapped_label(_("No shift yet."))
        zr.addWidget(self.report_summary)
        self.report_table = make_table([translate(h) for h in ZREPORT_HEADERS])
        self.report_table.setMinimumHeight(220)
        self.report_table.setProperty(KEY_COLUMNS, [0, 1, 2, 4, 5])  # all but the customer
        zr.addWidget(self.report_table, 1)
        self.pdf_button = QPushButton(_("Save PDF…"))
        self.pdf_button.setToolTip("Ctrl+S")
        self.csv_button = QPushButton(_("Export CSV…"))
        zr.addLayout(
            button_row(
                (self.pdf_button, lambda: self.save_zreport(fmt="pdf")),
                (self.csv_button, lambda: self.save_zreport(fmt="csv")),
                align="right",
            )
        )
        for button in (self.open_button, self.close_button, self.clear_button, self.pdf_button):
            button.setAutoDefault(True)  # Enter presses the focused button
        right.addWidget(self.report_box, 1)

    def _finish_init(self, outer: QVBoxLayout) -> None:
        """The status line, the shortcuts, what the operator may not do."""
        self.status = wrapped_label()
        outer.addWidget(self.status)

        for key, slot in (
            (QKeySequence(Qt.Key.Key_Escape), self.cancel_close),
            (QKeySequence("Ctrl+S"), lambda: self.save_zreport(fmt="pdf")),
        ):
            shortcut = QShortcut(key, self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
        if not self._can(Action.EXPORT_REPORTS):
            self.csv_button.setEnabled(False)
            self.csv_button.setToolTip(
                _("Exporting reports needs a supervisor, an auditor or an admin.")
            )
        self._recount()
        self._show_state()

    # ------------------------------------------------------------------ helpers

    @property
    def ctx(self) -> AppContext:
        return self.shell.ctx  # type: ignore[no-any-return]

    def _can(self, action: Action) -> bool:
        principal = self.shell.principal
        return principal is not None and principal.can(action)

    def _local(self, iso: str) -> str:
        """A stored time (ISO text) in the office's time zone, to the minute."""
        return when_text(iso, self.ctx.settings.value(TIME_ZONE))

    def _next_field(self, i: int) -> Callable[[], None]:
        def go() -> None:
            if i + 1 < len(DENOMINATIONS):
                self.counts[DENOMINATIONS[i + 1][0]].setFocus()
            else:
                self.close_button.setFocus()

        return go

    def _say(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        set_tone(self.status, "error" if error else None)
        self.shell.notify(text, error=error)

    def _failed(self, exc: BaseException) -> None:
        self._busy(False)
        self._say(error_text(exc), error=True)

    def _busy(self, busy: bool) -> None:
        self.open_button.setEnabled(not busy and self.shift is None)
        self.close_button.setEnabled(not busy and self.shift is not None)

    def count_values(self) -> dict[int, int]:
        return {face: box.value() for face, box in self.counts.items()}

    def counted(self) -> int:
        return counted_fen(self.count_values())

    def _recount(self) -> None:
        for face, box in self.counts.items():
            self.line_labels[face].setText(format_yuan(face * box.value()))
        self.total_label.setText(
            _("Counted cash: {amount} yuan", amount=format_yuan(self.counted()))
        )
        self._show_difference()
        self.cancel_close()

    def difference(self) -> int | None:
        """Counted minus expected cash of the open shift (None: not known yet)."""
        report = self.report
        if self.shift is None or report is None or not report.is_open:
            return None
        return self.counted() - report.expected_cash_fen

    def _show_difference(self) -> None:
        diff = self.difference()
        if diff is None:
            self.difference_label.clear()
            self.reason_edit.hide()
            return
        expected = self.counted() - diff
        if diff == 0:
            text = _("Expected {expected} yuan: the count matches.", expected=yuan(expected))
        else:
            text = _(
                "Expected {expected} yuan: counted − expected = {variance}. Say why below.",
                expected=yuan(expected),
                variance=variance_text(diff),
            )
        self.difference_label.setText(text)
        set_tone(self.difference_label, None if diff == 0 else "error")
        self.reason_edit.setVisible(diff != 0)

    def clear_count(self) -> None:
        for box in self.counts.values():
            box.blockSignals(True)
            box.setValue(0)
            box.blockSignals(False)
        self._recount()

    def _show_state(self) -> None:
        allowed = self._can(Action.SHIFT)
        shift = self.shift
        if self.shell.principal is None:
            text = _("Sign in to open or close a shift.")
        elif not allowed:
            text = _(
                "Operator {id} may not open or close shifts; a teller or supervisor does.",
                id=self.shell.principal.operator_id,
            )
        elif shift is None:
            text = _(
                "No shift is open on counter {counter}. Enter the float (the cash in the "
                "drawer now) and press Enter to open one.",
                counter=self.ctx.counter_id,
            )
        else:
            text = _(
                "Shift of {operator} open on counter {counter} since {when}, float {amount} "
                "yuan. Count the cash by denominations (Enter moves to the next), then close.",
                operator=shift.operator_id,
                counter=shift.counter_id,
                when=self._local(shift.opened_at),
                amount=format_yuan(shift.float_fen),
            )
        self.state_label.setText(text)
        self.open_box.setEnabled(allowed and shift is None)
        self.close_box.setEnabled(allowed and shift is not None)
        self._busy(False)

    # ------------------------------------------------------------------ reading

    def activated(self) -> None:
        self.refresh()
        if self.open_box.isEnabled():
            self.float_edit.setFocus()
        elif self.close_box.isEnabled():
            self.counts[DENOMINATIONS[0][0]].setFocus()

    def refresh(self) -> None:
        ctx, actor = self.ctx, self.shell.principal
        tz = str(ctx.settings.get(TIME_ZONE.key))

        def read() -> tuple[ShiftView | None, report_service.ShiftReport | None]:
            shift = shift_service.current_shift(ctx.db, ctx.counter_id)
            report = None
            if actor is not None and actor.can(Action.VIEW_REPORTS):
                shift_id = report_service.current_shift_id(ctx.db, ctx.counter_id)
                if shift_id is not None:
                    report = report_service.shift_report(
                        ctx.db, shift_id, actor=actor, clock=ctx.clock, tz=tz,
                        office_code=ctx.office_code,
                    )  # fmt: skip
            return shift, report

        self.shell.ops.run(read, self._show_read, self._failed)

    def _show_read(
        self, result: tuple[ShiftView | None, report_service.ShiftReport | None]
    ) -> None:
        self.shift, report = result
        self._show_state()
        self.show_report(report)

    def show_report(self, report: report_service.ShiftReport | None) -> None:
        self.report = report
        self._show_difference()
        self.pdf_button.setEnabled(report is not None)
        self.csv_button.setEnabled(report is not None and self._can(Action.EXPORT_REPORTS))
        if report is None:
            self.report_summary.setText(_("No shift yet."))
            fill_table(self.report_table, [])
            return
        fill_table(self.report_table, report_rows(report), numeric=(5,))
        self.report_summary.setText(report_summary(report))

    # ------------------------------------------------------------------ open and close

    def open_shift(self) -> None:
        if self.shift is not None or not self.open_box.isEnabled():
            return
        text = self.float_edit.text().strip() or "0"
        try:
            float_fen = parse_yuan(text, allow_zero=True)
        except CardVendError as exc:
            self._failed(exc)
            self.float_edit.selectAll()
            return
        ctx, actor = self.ctx, self.shell.principal

        def work() -> ShiftView:
            return shift_service.open_shift(
                ctx.db, actor=actor, float_fen=float_fen, clock=ctx.clock
            )

        def done(view: ShiftView) -> None:
            self.shift = view
            self.closed = None
            self.result_box.hide()
            self.float_edit.clear()
            self.clear_count()
            self._show_state()
            self._say(
                _("Shift opened with a float of {amount} yuan.", amount=format_yuan(float_fen))
            )
            self.shell.ledger_changed(source=self)
            self.refresh()
            self.counts[DENOMINATIONS[0][0]].setFocus()

        self._busy(True)
        self.shell.ops.run(work, done, self._failed)

    def request_close(self) -> None:
        """First press: ask to confirm with the counted total; second press: close."""
        if self.shift is None or not self.close_box.isEnabled():
            return
        if (self.difference() or 0) != 0 and not self.reason_edit.text().strip():
            self._say(_("The count differs from the expected cash: say why first."), error=True)
            self.reason_edit.show()
            self.reason_edit.setFocus()
            return
        if not self.confirming:
            self.confirming = True
            self.confirm_label.setText(
                _(
                    "Close the shift with {amount} yuan counted? Press Enter (or Close shift) "
                    "again to close, Esc to correct the count.",
                    amount=format_yuan(self.counted()),
                )
            )
            self.close_button.setText(_("Confirm close"))
            self.close_button.setFocus()
            return
        self.close_shift()

    def cancel_close(self) -> None:
        if self.confirming:
            self.confirming = False
            self.confirm_label.clear()
            self.close_button.setText(_("Close shift"))

    def close_shift(self) -> None:
        """Close the open shift with the counted cash (no confirmation)."""
        counted, reason = self.counted(), self.reason_edit.text()
        self.cancel_close()
        ctx, actor = self.ctx, self.shell.principal

        def work() -> ShiftView:
            return shift_service.close_shift(
                ctx.db, actor=actor, counted_fen=counted, clock=ctx.clock, reason=reason
            )

        def done(view: ShiftView) -> None:
            self.closed = view
            self.shift = None
            self.reason_edit.clear()
            self.show_close(view)
            self._show_state()
            self._say(
                _(
                    "Shift closed. Variance {variance}. Save or print the Z-report.",
                    variance=variance_text(view.variance_fen or 0),
                )
            )
            self.shell.ledger_changed(source=self)
            self.refresh()
            self.pdf_button.setFocus()

        self._busy(True)
        self.shell.ops.run(work, done, self._failed)

    def show_close(self, view: ShiftView) -> None:
        self.expected_value.setText(yuan(view.expected_fen))
        self.counted_value.setText(yuan(view.counted_fen))
        variance = view.variance_fen or 0
        self.variance_value.setText(variance_text(variance))
        set_tone(self.variance_value, None if variance == 0 else "error")
        self.result_box.show()

    # ------------------------------------------------------------------ saving

    def save_zreport(
        self,
        path: str | None = None,
        *,
        fmt: str | None = None,
        on_saved: Callable[[Path], None] | None = None,
    ) -> None:
        """Save the shown Z-report; the format follows ``path``'s suffix (or ``fmt``); with no
        path a file dialog asks for one."""
        report = self.report
        if report is None:
            self._say(_("There is no shift report to save yet."), error=True)
            return
        fmt = fmt or (report_format(path) if path else "pdf")
        if fmt == "csv" and not self._can(Action.EXPORT_REPORTS):
            self._say(
                _("Exporting reports needs a supervisor, an auditor or an admin."), error=True
            )
            return
        if path is None:
            day = report.opened_at.strftime("%Y%m%d")
            path = ask_save_path(self, f"z-report-{report.counter_id}-{day}.{fmt}", fmt)
            if path is None:
                return
        ctx, actor = self.ctx, self.shell.principal

        def done(saved: Path) -> None:
            self._say(_("Report saved to {path}.", path=str(saved)))
            if on_saved is not None:
                on_saved(saved)

        self._say(_("Saving the report…"))
        self.shell.ops.run(lambda: save_report(ctx, actor, report, path), done, self._failed)
