"""The reports as A4 PDFs and as CSV: the shift Z-report, the daily office report and the
charge-control statistics (app/services/reports.py builds them; this module only renders).

PDF: reportlab platypus tables in the embedded CJK font (:func:`printing.fonts.font_name`), so
Chinese comes back out of ``pdftotext``; every label is an English message id translated into
``language`` (``"zh_CN"`` or ``"en"``).  Tables are drawn by a small flowable of fixed-height
rows (:class:`_Ledger`) that repeats its header on every page, so 5,000 sales lay out quickly.  The statistics
report draws a bar chart of the amounts sold per day and one of the balance buckets.

CSV: UTF-8 with a byte order mark (Excel then shows Chinese), like the audit export.  A report is
a series of sections: a row ``[name]``, a header row of stable English column names, the rows,
and an empty row.  Money appears twice: ``<field>_yuan`` as exact decimal text
(:func:`app.money.format_yuan`) and ``<field>_fen`` as the integer.  Times are local, ISO 8601
with their offset.  Cells that a spreadsheet would run as a formula are escaped with a
leading ``'`` (:mod:`app.csvsafe`; plain numbers such as a variance of ``-5.00`` stay numbers).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Sequence
from typing import Any

from reportlab.graphics.charts.barcharts import HorizontalBarChart, VerticalBarChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from app import csvsafe
from app.i18n import N_, translate
from app.money import format_yuan
from app.services.reports import (
    BUCKET_LABELS,
    KIND_LABELS,
    KIND_ORDER,
    STATE_LABELS,
    STATUS_LABELS,
    STATUS_ORDER,
    DailyReport,
    DailyRow,
    ShiftReport,
    StatsReport,
)
from printing.fonts import SAVE_LOCK, font_name

# --------------------------------------------------------------------------- labels

SHIFT_TITLE = N_("Shift report (Z-report)")
DAILY_TITLE = N_("Daily office report")
STATS_TITLE = N_("Charge-control statistics")
PAGE = N_("Page {page}")
GENERATED = N_("Generated {time}")
PROVISIONAL = N_("The shift is still open: the figures are provisional.")

OFFICE = N_("Office")
COUNTER = N_("Counter")
OPERATOR = N_("Operator")
SHIFT = N_("Shift")
OPENED = N_("Opened")
CLOSED = N_("Closed")
CLOSED_BY = N_("Closed by")
STILL_OPEN = N_("still open")
DAY = N_("Business day")
PERIOD = N_("Period")
TIME_ZONE = N_("Time zone")
PERIOD_VALUE = N_("{first} to {last}")

CASH = N_("Cash")
FLOAT = N_("Float")
SALES_TAKEN = N_("Money taken by sales ({count})")
FEE_PAYMENTS_TAKEN = N_("Fees paid at the counter ({count})")
REVERSALS_BACK = N_("Handed back by reversals ({count})")
NET_CASH = N_("Net cash")
EXPECTED = N_("Expected cash")
COUNTED = N_("Counted cash")
VARIANCE = N_("Variance")
COLLECTED = N_("Collected")
CREDIT_LOADED = N_("Credit loaded")
ARREARS_COLLECTED = N_("Arrears collected")
FEES_COLLECTED = N_("Fees collected")
BY_STATE = N_("Sales by state")
SALES = N_("Sales")
REVERSALS = N_("Reversals")
FEE_PAYMENTS = N_("Fee payments")
NONE = N_("None.")
SIGN_TELLER = N_("Teller's signature")
SIGN_SUPERVISOR = N_("Supervisor's signature")

COL_ITEM = N_("Item")
COL_AMOUNT = N_("Amount")
COL_COUNT = N_("Count")
COL_STATE = N_("State")
COL_TIME = N_("Time")
COL_SALE = N_("Sale no.")
COL_CUSTOMER = N_("Customer no.")
COL_KIND = N_("Kind")
COL_ARREARS = N_("Arrears")
COL_FEES = N_("Fees")
COL_CREDIT = N_("Credit")
COL_CASH = N_("Cash")
COL_APPROVER = N_("Approver")
COL_SALES = N_("Sales")
COL_REVERSALS = N_("Reversals")
COL_REVERSED = N_("Reversed")
COL_FEE_PAYMENTS = N_("Fee payments")
COL_NET = N_("Net cash")
COL_FLOAT = N_("Float")
COL_EXPECTED = N_("Expected")
COL_COUNTED = N_("Counted")
COL_VARIANCE = N_("Variance")
COL_OPENED = N_("Opened")
COL_CLOSED = N_("Closed")
COL_OPERATOR = N_("Operator")
COL_COUNTER = N_("Counter")
COL_PLAN = N_("Tariff plan")
COL_CUSTOMERS = N_("Number of customers")
COL_ENERGY = N_("Energy (kWh)")
COL_METER_KIND = N_("Meter kind")
COL_TOTAL = N_("Total")
COL_BUCKET = N_("Balance")
COL_REMAINING = N_("Remaining")
TOTAL = N_("Total")

BY_OPERATOR = N_("By operator")
BY_COUNTER = N_("By counter")
SHIFTS = N_("Shifts")
UNRESOLVED = N_("Unfinished sales (not counted): {count}")
FAILED = N_("Failed sales (took no money): {count}")
CUSTOMERS = N_("Customers by meter kind and status")
SOLD_PER_DAY = N_("Amount sold per day (yuan)")
SOLD_TOTAL = N_("Sold in the period: {count} sales, {amount} yuan")
PER_PLAN = N_("By tariff plan")
BALANCES = N_("Meter balances from card write-backs (card meters, not closed)")
BALANCES_TOTAL = N_("Customers: {count}; remaining credit with a write-back: {amount} yuan")

FEE_KIND_LABELS = {"replacement": N_("replacement card")}

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SHORT_TIME = "%H:%M:%S"
DAY_TIME = "%Y-%m-%d %H:%M"
MARGIN = 15 * mm
WIDTH = A4[0] - 2 * MARGIN - 12  # the frame's own padding is 6 points a side
BODY_SIZE = 9
TABLE_SIZE = 7.5
ROW_HEIGHT = 11
GRID = colors.HexColor("#9e9e9e")
HEAD_BG = colors.HexColor("#e8eef6")
TOTAL_BG = colors.HexColor("#f3f3f3")
BAR = colors.HexColor("#2f6db5")
BUCKET_COLORS = {
    "normal": colors.HexColor("#3c9a4a"),
    "alarm1": colors.HexColor("#e0a526"),
    "alarm2": colors.HexColor("#e06b26"),
    "tripped": colors.HexColor("#c62828"),
    "no_write_back": colors.HexColor("#7e57c2"),
}


def _t(msgid: str, language: str, /, **params: object) -> str:
    text = translate(msgid, language)
    return text.format(**params) if params else text


def _yuan(fen: int | None) -> str:
    return "" if fen is None else format_yuan(fen)


def _kwh(wh: int) -> str:
    """Wh as kWh with two decimals, rounded half away from zero, by integer arithmetic."""
    sign = "-" if wh < 0 else ""
    whole, part = divmod((abs(wh) + 5) // 10, 100)
    return f"{sign}{whole}.{part:02d}"


def _when(value: dt.datetime | None, fmt: str = TIME_FORMAT) -> str:
    return "" if value is None else value.strftime(fmt)


def _name(name: str, code: str) -> str:
    return code if not name or name == code else f"{name} ({code})"


# --------------------------------------------------------------------------- PDF building blocks


class _Ledger(Flowable):  # type: ignore[misc]  # reportlab has no type hints
    """A table of one-line text cells with fixed row heights, drawn straight onto the canvas.

    platypus' Table measures and styles every cell (about 50 µs a cell); a Z-report of 5,000
    sales has 50,000 cells, so this flowable draws one text object per page part instead and
    splits between any two rows, repeating the header."""

    def __init__(
        self,
        font: str,
        header: list[str],
        rows: list[list[str]],
        widths: list[float],
        numeric_from: int,
        *,
        shaded_last: bool,
    ) -> None:
        super().__init__()
        self.font, self.header, self.rows = font, header, rows
        self.widths, self.numeric_from, self.shaded_last = widths, numeric_from, shaded_last
        self.hAlign = "LEFT"

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        self.width = sum(self.widths)
        self.height = ROW_HEIGHT * (len(self.rows) + 1)
        return self.width, self.height

    def split(self, avail_width: float, avail_height: float) -> list[_Ledger]:
        fit = int(avail_height // ROW_HEIGHT) - 1  # rows that fit below the header
        if fit < 1:
            return []
        if fit >= len(self.rows):
            return [self]
        return [self._part(self.rows[:fit], False), self._part(self.rows[fit:], self.shaded_last)]

    def _part(self, rows: list[list[str]], shaded_last: bool) -> _Ledger:
        return _Ledger(
            self.font,
            self.header,
            rows,
            self.widths,
            self.numeric_from,
            shaded_last=shaded_last,
        )

    def draw(self) -> None:
        canvas = self.canv
        width, height = sum(self.widths), ROW_HEIGHT * (len(self.rows) + 1)
        canvas.saveState()
        canvas.setFillColor(HEAD_BG)
        canvas.rect(0, height - ROW_HEIGHT, width, ROW_HEIGHT, stroke=0, fill=1)
        if self.shaded_last:
            canvas.setFillColor(TOTAL_BG)
            canvas.rect(0, 0, width, ROW_HEIGHT, stroke=0, fill=1)
        xs = [0.0]
        for w in self.widths:
            xs.append(xs[-1] + w)
        canvas.setStrokeColor(GRID)
        canvas.setLineWidth(0.3)
        canvas.grid(xs, [height - i * ROW_HEIGHT for i in range(len(self.rows) + 2)])
        text = canvas.beginText()
        text.setFont(self.font, TABLE_SIZE)
        text.setFillColor(colors.black)
        pad, numeric_from = 2.0, self.numeric_from
        widths: dict[str, float] = {}  # amounts repeat a lot ("0.00")
        for r, row in enumerate([self.header, *self.rows]):
            y = height - (r + 1) * ROW_HEIGHT + 3.2
            for j, cell in enumerate(row):
                if not cell:
                    continue
                if r and j >= numeric_from:
                    if cell not in widths:
                        widths[cell] = pdfmetrics.stringWidth(cell, self.font, TABLE_SIZE)
                    x = xs[j + 1] - pad - widths[cell]
                else:
                    x = xs[j] + pad
                text.setTextOrigin(x, y)
                text.textOut(cell)
        canvas.drawText(text)
        canvas.restoreState()


class _Page:
    """Fonts, styles and the page decoration of one report in one language."""

    def __init__(self, title: str, language: str, generated: dt.datetime) -> None:
        self.font = font_name()
        self.language = language
        self.title = title
        self.generated = _t(GENERATED, language, time=_when(generated))
        self.h1 = ParagraphStyle("h1", fontName=self.font, fontSize=15, leading=19, spaceAfter=4)
        self.h2 = ParagraphStyle(
            "h2", fontName=self.font, fontSize=11, leading=14, spaceBefore=8, spaceAfter=3
        )
        self.body = ParagraphStyle("body", fontName=self.font, fontSize=BODY_SIZE, leading=12)

    def t(self, msgid: str, /, **params: object) -> str:
        return _t(msgid, self.language, **params)

    def decorate(self, canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(self.font, 7)
        canvas.setFillColor(colors.HexColor("#555555"))
        canvas.drawString(MARGIN, 8 * mm, f"CardVend · {self.title} · {self.generated}")
        canvas.drawRightString(A4[0] - MARGIN, 8 * mm, self.t(PAGE, page=doc.page))
        canvas.restoreState()

    def para(self, text: str, style: ParagraphStyle | None = None) -> Paragraph:
        safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return Paragraph(safe, style or self.body)

    def fields(self, pairs: Sequence[tuple[str, str]]) -> Table:
        """Label/value pairs, two pairs a row."""
        cells = [(self.t(label), value) for label, value in pairs]
        if len(cells) % 2:
            cells.append(("", ""))
        rows = [[*cells[i], *cells[i + 1]] for i in range(0, len(cells), 2)]
        table = Table(rows, colWidths=[0.14 * WIDTH, 0.36 * WIDTH] * 2, hAlign="LEFT")
        table.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), self.font, BODY_SIZE),
                    ("TEXTCOLOR", (0, 0), (0, -1), colors.HexColor("#555555")),
                    ("TEXTCOLOR", (2, 0), (2, -1), colors.HexColor("#555555")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LEFTPADDING", (0, 0), (0, -1), 0),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                    ("TOPPADDING", (0, 0), (-1, -1), 2),
                ]
            )
        )
        return table

    def grid(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[str]],
        widths: Sequence[float],
        *,
        numeric_from: int,
        total: Sequence[str] | None = None,
    ) -> list[Any]:
        """A ruled table with the header repeated on every page; columns from ``numeric_from``
        on are right-aligned; ``total`` is a last, shaded row."""
        body = [list(r) for r in rows]
        if total is not None:
            body.append(list(total))
        if not body:
            return [self.para(self.t(NONE))]
        return [
            _Ledger(
                self.font,
                [self.t(h) for h in header],
                body,
                [w * WIDTH for w in widths],
                numeric_from,
                shaded_last=total is not None,
            )
        ]

    def build(self, story: list[Any]) -> bytes:
        out = io.BytesIO()
        doc = SimpleDocTemplate(
            out,
            pagesize=A4,
            leftMargin=MARGIN,
            rightMargin=MARGIN,
            topMargin=MARGIN,
            bottomMargin=MARGIN,
            title=self.title,
            author="CardVend",
            creator="CardVend",
        )
        with SAVE_LOCK:  # reportlab's font subsetting is not thread-safe
            doc.build(story, onFirstPage=self.decorate, onLaterPages=self.decorate)
        return out.getvalue()


def _money_table(page: _Page, items: Sequence[tuple[str, int | None]]) -> list[Any]:
    return page.grid(
        (COL_ITEM, COL_AMOUNT),
        [(label, _yuan(fen)) for label, fen in items],
        (0.45, 0.2),
        numeric_from=1,
    )


# --------------------------------------------------------------------------- shift report PDF


def shift_report_pdf(report: ShiftReport, *, language: str) -> bytes:
    page = _Page(_t(SHIFT_TITLE, language), language, report.generated_at)
    t = page.t
    story: list[Any] = [page.para(page.title, page.h1)]
    pairs: list[tuple[str, str]] = []
    if report.office_code is not None:
        pairs.append((OFFICE, _name(report.office_name or "", report.office_code)))
    pairs += [
        (COUNTER, report.counter_id),
        (OPERATOR, _name(report.operator_name, report.operator_id)),
        (SHIFT, report.shift_id),
        (OPENED, _when(report.opened_at)),
        (CLOSED, _when(report.closed_at) if report.closed_at else t(STILL_OPEN)),
        (CLOSED_BY, report.closed_by or ""),
        (TIME_ZONE, report.time_zone),
    ]
    story.append(page.fields(pairs))
    if report.is_open:
        story.append(page.para(t(PROVISIONAL)))
    story.append(page.para(t(CASH), page.h2))
    story += _money_table(
        page,
        [
            (t(FLOAT), report.float_fen),
            (t(SALES_TAKEN, count=report.sales_count), report.sales_fen),
            (t(FEE_PAYMENTS_TAKEN, count=report.fee_payments_count), report.fee_payments_fen),
            (t(REVERSALS_BACK, count=report.reversals_count), -report.reversals_fen),
            (t(NET_CASH), report.net_cash_fen),
            (t(EXPECTED), report.expected_cash_fen),
            (t(COUNTED), report.counted_cash_fen),
            (t(VARIANCE), report.variance_fen),
        ],
    )
    story.append(page.para(t(COLLECTED), page.h2))
    story += _money_table(
        page,
        [
            (t(CREDIT_LOADED), report.credit_fen),
            (t(ARREARS_COLLECTED), report.arrears_fen),
            (t(FEES_COLLECTED), report.fees_fen),
        ],
    )
    story.append(page.para(t(BY_STATE), page.h2))
    story += page.grid(
        (COL_STATE, COL_COUNT, COL_AMOUNT),
        [(t(STATE_LABELS[s.state]), str(s.count), _yuan(s.amount_fen)) for s in report.by_state],
        (0.3, 0.12, 0.2),
        numeric_from=1,
    )
    story.append(page.para(t(SALES), page.h2))
    story += page.grid(
        (
            COL_TIME,
            COL_SALE,
            COL_CUSTOMER,
            COL_KIND,
            COL_STATE,
            COL_AMOUNT,
            COL_ARREARS,
            COL_FEES,
            COL_CREDIT,
            COL_CASH,
        ),
        [
            (
                _when(s.at, SHORT_TIME),
                s.short_id,
                s.customer_no,
                t(KIND_LABELS.get(s.kind, s.kind)),
                t(STATE_LABELS.get(s.state, s.state)),
                _yuan(s.amount_fen),
                _yuan(s.arrears_fen),
                _yuan(s.fees_fen),
                _yuan(s.credit_fen),
                _yuan(s.cash_fen),
            )
            for s in report.sales
        ],
        (0.08, 0.1, 0.13, 0.1, 0.08, 0.11, 0.1, 0.09, 0.11, 0.1),
        numeric_from=5,
        total=(
            t(TOTAL),
            "",
            "",
            "",
            "",
            _yuan(sum(s.amount_fen for s in report.sales)),
            _yuan(sum(s.arrears_fen for s in report.sales)),
            _yuan(sum(s.fees_fen for s in report.sales)),
            _yuan(sum(s.credit_fen for s in report.sales)),
            _yuan(sum(s.cash_fen for s in report.sales)),
        )
        if report.sales
        else None,
    )
    story.append(page.para(t(REVERSALS), page.h2))
    story += page.grid(
        (COL_TIME, COL_SALE, COL_CUSTOMER, COL_STATE, COL_AMOUNT, COL_OPERATOR, COL_APPROVER),
        [
            (
                _when(r.at, SHORT_TIME),
                r.short_id,
                r.customer_no,
                t(STATE_LABELS.get(r.state, r.state)),
                _yuan(r.amount_fen),
                r.operator_id,
                r.approver_id,
            )
            for r in report.reversals
        ],
        (0.1, 0.12, 0.16, 0.12, 0.14, 0.13, 0.13),
        numeric_from=4,
    )
    story.append(page.para(t(FEE_PAYMENTS), page.h2))
    story += page.grid(
        (COL_TIME, COL_CUSTOMER, COL_KIND, COL_AMOUNT, COL_OPERATOR),
        [
            (
                _when(p.at, SHORT_TIME),
                p.customer_no,
                t(FEE_KIND_LABELS.get(p.kind, p.kind)),
                _yuan(p.amount_fen),
                p.operator_id,
            )
            for p in report.fee_payments
        ],
        (0.1, 0.18, 0.16, 0.14, 0.13),
        numeric_from=3,
    )
    story.append(Spacer(1, 14 * mm))
    signatures = Table(
        [[t(SIGN_TELLER) + ": ________________", t(SIGN_SUPERVISOR) + ": ________________"]],
        colWidths=[WIDTH / 2, WIDTH / 2],
        hAlign="LEFT",
    )
    signatures.setStyle(TableStyle([("FONT", (0, 0), (-1, -1), page.font, BODY_SIZE)]))
    story.append(KeepTogether([signatures]))
    return page.build(story)


# --------------------------------------------------------------------------- daily report PDF

_DAILY_COLUMNS = (
    COL_SALES,
    COL_AMOUNT,
    COL_CREDIT,
    COL_ARREARS,
    COL_FEES,
    COL_REVERSALS,
    COL_REVERSED,
    COL_FEE_PAYMENTS,
    COL_NET,
)
_DAILY_WIDTHS = (0.18, 0.06, 0.1, 0.1, 0.09, 0.08, 0.07, 0.1, 0.1, 0.12)


def _daily_cells(row: DailyRow) -> list[str]:
    return [
        str(row.sales_count),
        _yuan(row.sales_fen),
        _yuan(row.credit_fen),
        _yuan(row.arrears_fen),
        _yuan(row.fees_fen),
        str(row.reversals_count),
        _yuan(row.reversals_fen),
        _yuan(row.fee_payments_fen),
        _yuan(row.net_cash_fen),
    ]


def daily_report_pdf(report: DailyReport, *, language: str) -> bytes:
    page = _Page(_t(DAILY_TITLE, language), language, report.generated_at)
    t = page.t
    story: list[Any] = [page.para(page.title, page.h1)]
    story.append(
        page.fields(
            [
                (OFFICE, _name(report.office_name, report.office_code)),
                (DAY, report.day.isoformat()),
                (TIME_ZONE, report.time_zone),
                (PERIOD, f"{_when(report.start, DAY_TIME)} – {_when(report.end, DAY_TIME)}"),
            ]
        )
    )
    total = [t(TOTAL), *_daily_cells(report.totals)]
    story.append(page.para(t(BY_OPERATOR), page.h2))
    story += page.grid(
        (COL_OPERATOR, *_DAILY_COLUMNS),
        [[_name(r.name, r.key), *_daily_cells(r)] for r in report.by_operator],
        _DAILY_WIDTHS,
        numeric_from=1,
        total=total,
    )
    story.append(page.para(t(BY_COUNTER), page.h2))
    story += page.grid(
        (COL_COUNTER, *_DAILY_COLUMNS),
        [[r.key, *_daily_cells(r)] for r in report.by_counter],
        _DAILY_WIDTHS,
        numeric_from=1,
        total=total,
    )
    story.append(page.para(t(UNRESOLVED, count=report.unresolved_count)))
    story.append(page.para(t(FAILED, count=report.failed_count)))
    story.append(page.para(t(SHIFTS), page.h2))
    story += page.grid(
        (
            COL_COUNTER,
            COL_OPERATOR,
            COL_OPENED,
            COL_CLOSED,
            COL_FLOAT,
            COL_EXPECTED,
            COL_COUNTED,
            COL_VARIANCE,
        ),
        [
            (
                s.counter_id,
                s.operator_id,
                _when(s.opened_at, "%m-%d %H:%M"),
                _when(s.closed_at, "%m-%d %H:%M") if s.closed_at else t(STILL_OPEN),
                _yuan(s.float_fen),
                _yuan(s.expected_cash_fen),
                _yuan(s.counted_cash_fen),
                _yuan(s.variance_fen),
            )
            for s in report.shifts
        ],
        (0.09, 0.1, 0.13, 0.13, 0.12, 0.14, 0.14, 0.12),
        numeric_from=4,
    )
    return page.build(story)


# --------------------------------------------------------------------------- statistics PDF


def _day_chart(page: _Page, report: StatsReport) -> Drawing:
    width, height = WIDTH, 70 * mm
    drawing = Drawing(width, height)
    chart = VerticalBarChart()
    chart.x, chart.y = 22 * mm, 14 * mm
    chart.width, chart.height = width - 26 * mm, height - 22 * mm
    values = [d.amount_fen for d in report.daily]
    chart.data = [values]
    chart.bars[0].fillColor = BAR
    chart.bars[0].strokeColor = None
    chart.barSpacing = 1
    chart.valueAxis.valueMin = 0
    if max(values, default=0) == 0:
        chart.valueAxis.valueMax = 100  # an empty period still draws its axis
    chart.valueAxis.labelTextFormat = _axis_yuan
    chart.valueAxis.labels.fontName = page.font
    chart.valueAxis.labels.fontSize = 6
    chart.valueAxis.gridStrokeColor = colors.HexColor("#dddddd")
    chart.valueAxis.visibleGrid = True
    chart.categoryAxis.categoryNames = [d.day.strftime("%m-%d") for d in report.daily]
    chart.categoryAxis.labels.fontName = page.font
    chart.categoryAxis.labels.fontSize = 5.5
    chart.categoryAxis.labels.angle = 90
    chart.categoryAxis.labels.boxAnchor = "e"
    chart.categoryAxis.labels.dy = -2
    drawing.add(chart)
    drawing.add(
        String(
            0, height - 6, page.t(SOLD_PER_DAY), fontName=page.font, fontSize=8, textAnchor="start"
        )
    )
    return drawing


def _axis_yuan(value: float) -> str:
    return format_yuan(round(value))  # axis ticks are whole fen


def _bucket_chart(page: _Page, report: StatsReport) -> Drawing:
    width, height = WIDTH, 45 * mm
    drawing = Drawing(width, height)
    chart = HorizontalBarChart()
    chart.x, chart.y = 40 * mm, 4 * mm
    chart.width, chart.height = width - 50 * mm, height - 8 * mm
    counts = [b.count for b in report.balances]
    chart.data = [counts]
    chart.bars[0].strokeColor = None
    for i, b in enumerate(report.balances):
        chart.bars[(0, i)].fillColor = BUCKET_COLORS[b.bucket]
    chart.valueAxis.valueMin = 0
    if max(counts, default=0) == 0:
        chart.valueAxis.valueMax = 10
    chart.valueAxis.labels.fontName = page.font
    chart.valueAxis.labels.fontSize = 6
    chart.valueAxis.labelTextFormat = "%d"
    chart.categoryAxis.categoryNames = [page.t(BUCKET_LABELS[b.bucket]) for b in report.balances]
    chart.categoryAxis.labels.fontName = page.font
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.reverseDirection = True  # normal at the top
    chart.barLabelFormat = "%d"
    chart.barLabels.fontName = page.font
    chart.barLabels.fontSize = 6
    chart.barLabels.boxAnchor = "w"
    chart.barLabels.dx = 3
    drawing.add(chart)
    return drawing


def stats_report_pdf(report: StatsReport, *, language: str) -> bytes:
    page = _Page(_t(STATS_TITLE, language), language, report.generated_at)
    t = page.t
    story: list[Any] = [page.para(page.title, page.h1)]
    story.append(
        page.fields(
            [
                (OFFICE, _name(report.office_name, report.office_code)),
                (
                    PERIOD,
                    t(
                        PERIOD_VALUE,
                        first=report.first_day.isoformat(),
                        last=report.last_day.isoformat(),
                    ),
                ),
                (TIME_ZONE, report.time_zone),
            ]
        )
    )
    story.append(page.para(t(CUSTOMERS), page.h2))
    counts = {(c.meter_kind, c.status): c.count for c in report.customers}
    story += page.grid(
        (COL_METER_KIND, *(STATUS_LABELS[s] for s in STATUS_ORDER), COL_TOTAL),
        [
            (
                t(KIND_LABELS[k]),
                *(str(counts.get((k, s), 0)) for s in STATUS_ORDER),
                str(sum(counts.get((k, s), 0) for s in STATUS_ORDER)),
            )
            for k in KIND_ORDER
        ],
        (0.2, 0.13, 0.13, 0.13, 0.13),
        numeric_from=1,
        total=(
            t(TOTAL),
            *(str(sum(counts.get((k, s), 0) for k in KIND_ORDER)) for s in STATUS_ORDER),
            str(report.customers_total),
        ),
    )
    story.append(Spacer(1, 4 * mm))
    story.append(_day_chart(page, report))
    story.append(
        page.para(t(SOLD_TOTAL, count=report.sold_count, amount=format_yuan(report.sold_fen)))
    )
    story.append(page.para(t(PER_PLAN), page.h2))
    story += page.grid(
        (COL_PLAN, COL_CUSTOMERS, COL_SALES, COL_AMOUNT, COL_CREDIT, COL_ENERGY),
        [
            (
                _name(p.plan_name, p.plan_code),
                str(p.customers),
                str(p.sales_count),
                _yuan(p.amount_fen),
                _yuan(p.credit_fen),
                _kwh(p.energy_wh),
            )
            for p in report.plans
        ],
        (0.4, 0.1, 0.09, 0.13, 0.13, 0.13),
        numeric_from=1,
    )
    story.append(page.para(t(BALANCES), page.h2))
    story.append(_bucket_chart(page, report))
    story += page.grid(
        (COL_BUCKET, COL_CUSTOMERS, COL_REMAINING),
        [
            (t(BUCKET_LABELS[b.bucket]), str(b.count), _yuan(b.remaining_fen))
            for b in report.balances
        ],
        (0.3, 0.13, 0.18),
        numeric_from=1,
    )
    story.append(
        page.para(
            t(
                BALANCES_TOTAL,
                count=report.balance_customers,
                amount=format_yuan(report.remaining_fen),
            )
        )
    )
    return page.build(story)


# --------------------------------------------------------------------------- CSV


def _money(name: str, fen: int | None) -> dict[str, str]:
    return {f"{name}_yuan": _yuan(fen), f"{name}_fen": "" if fen is None else str(fen)}


def _iso(value: dt.datetime | dt.date | None) -> str:
    return "" if value is None else value.isoformat()


class _Sections:
    def __init__(self) -> None:
        self.out = io.StringIO()
        self.out.write("\ufeff")  # the BOM: Excel reads the file as UTF-8
        self.writer = csvsafe.writer(self.out, lineterminator="\r\n")

    def section(self, name: str, rows: Iterable[dict[str, str]], header: Sequence[str]) -> None:
        self.writer.writerow([f"[{name}]"])
        self.writer.writerow(header)
        for row in rows:
            self.writer.writerow([row.get(h, "") for h in header])
        self.writer.writerow([])

    def summary(self, items: Sequence[tuple[str, str | int | None, bool]]) -> None:
        """``(field, value, is_money)``: money as yuan text plus fen."""
        rows = []
        for field, value, is_money in items:
            if is_money:
                fen = value if isinstance(value, int) else None
                rows.append({"field": field, "value": _yuan(fen), "fen": _opt(fen)})
            else:
                rows.append({"field": field, "value": "" if value is None else str(value)})
        self.section("summary", rows, ("field", "value", "fen"))

    def text(self) -> str:
        return self.out.getvalue()


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


def _headers(*groups: Sequence[str]) -> list[str]:
    out: list[str] = []
    for group in groups:
        out += group
    return out


def _money_cols(*names: str) -> list[str]:
    return [c for n in names for c in (f"{n}_yuan", f"{n}_fen")]


def shift_report_csv(report: ShiftReport) -> str:
    s = _Sections()
    s.summary(
        [
            ("report", "shift", False),
            ("shift_id", report.shift_id, False),
            ("office_code", report.office_code, False),
            ("counter_id", report.counter_id, False),
            ("operator_id", report.operator_id, False),
            ("operator_name", report.operator_name, False),
            ("time_zone", report.time_zone, False),
            ("opened_at", _iso(report.opened_at), False),
            ("closed_at", _iso(report.closed_at), False),
            ("closed_by", report.closed_by, False),
            ("generated_at", _iso(report.generated_at), False),
            ("float", report.float_fen, True),
            ("sales_count", report.sales_count, False),
            ("sales", report.sales_fen, True),
            ("credit", report.credit_fen, True),
            ("arrears", report.arrears_fen, True),
            ("fees", report.fees_fen, True),
            ("reversals_count", report.reversals_count, False),
            ("reversals", report.reversals_fen, True),
            ("fee_payments_count", report.fee_payments_count, False),
            ("fee_payments", report.fee_payments_fen, True),
            ("net_cash", report.net_cash_fen, True),
            ("expected_cash", report.expected_cash_fen, True),
            ("counted_cash", report.counted_cash_fen, True),
            ("variance", report.variance_fen, True),
        ]
    )
    s.section(
        "by_state",
        (
            {"state": b.state, "count": str(b.count), **_money("amount", b.amount_fen)}
            for b in report.by_state
        ),
        _headers(("state", "count"), _money_cols("amount")),
    )
    s.section(
        "sales",
        (
            {
                "at": _iso(x.at),
                "sale_id": x.sale_id,
                "short_id": x.short_id,
                "customer_no": x.customer_no,
                "kind": x.kind,
                "state": x.state,
                "purchase_count": _opt(x.purchase_count),
                **_money("amount", x.amount_fen),
                **_money("arrears", x.arrears_fen),
                **_money("fees", x.fees_fen),
                **_money("credit", x.credit_fen),
                **_money("cash", x.cash_fen),
                **_money("tendered", x.tendered_fen),
            }
            for x in report.sales
        ),
        _headers(
            ("at", "sale_id", "short_id", "customer_no", "kind", "state", "purchase_count"),
            _money_cols("amount", "arrears", "fees", "credit", "cash", "tendered"),
        ),
    )
    s.section(
        "reversals",
        (
            {
                "at": _iso(r.at),
                "reversal_id": r.reversal_id,
                "sale_id": r.sale_id,
                "customer_no": r.customer_no,
                "state": r.state,
                **_money("amount", r.amount_fen),
                "operator_id": r.operator_id,
                "approver_id": r.approver_id,
            }
            for r in report.reversals
        ),
        _headers(
            ("at", "reversal_id", "sale_id", "customer_no", "state"),
            _money_cols("amount"),
            ("operator_id", "approver_id"),
        ),
    )
    s.section(
        "fee_payments",
        (
            {
                "at": _iso(p.at),
                "payment_id": p.payment_id,
                "customer_no": p.customer_no,
                "kind": p.kind,
                **_money("amount", p.amount_fen),
                "operator_id": p.operator_id,
            }
            for p in report.fee_payments
        ),
        _headers(
            ("at", "payment_id", "customer_no", "kind"), _money_cols("amount"), ("operator_id",)
        ),
    )
    return s.text()


_DAILY_CSV = _headers(
    ("key", "name", "sales_count"),
    _money_cols("sales", "credit", "arrears", "fees"),
    ("reversals_count",),
    _money_cols("reversals"),
    ("fee_payments_count",),
    _money_cols("fee_payments", "net_cash"),
)


def _daily_csv_row(row: DailyRow) -> dict[str, str]:
    return {
        "key": row.key,
        "name": row.name,
        "sales_count": str(row.sales_count),
        **_money("sales", row.sales_fen),
        **_money("credit", row.credit_fen),
        **_money("arrears", row.arrears_fen),
        **_money("fees", row.fees_fen),
        "reversals_count": str(row.reversals_count),
        **_money("reversals", row.reversals_fen),
        "fee_payments_count": str(row.fee_payments_count),
        **_money("fee_payments", row.fee_payments_fen),
        **_money("net_cash", row.net_cash_fen),
    }


def daily_report_csv(report: DailyReport) -> str:
    s = _Sections()
    s.summary(
        [
            ("report", "daily", False),
            ("office_code", report.office_code, False),
            ("office_name", report.office_name, False),
            ("day", report.day.isoformat(), False),
            ("time_zone", report.time_zone, False),
            ("start", _iso(report.start), False),
            ("end", _iso(report.end), False),
            ("generated_at", _iso(report.generated_at), False),
            ("unresolved_count", report.unresolved_count, False),
            ("failed_count", report.failed_count, False),
        ]
    )
    s.section("by_operator", map(_daily_csv_row, report.by_operator), _DAILY_CSV)
    s.section("by_counter", map(_daily_csv_row, report.by_counter), _DAILY_CSV)
    s.section("totals", [_daily_csv_row(report.totals)], _DAILY_CSV)
    s.section(
        "shifts",
        (
            {
                "shift_id": x.shift_id,
                "counter_id": x.counter_id,
                "operator_id": x.operator_id,
                "opened_at": _iso(x.opened_at),
                "closed_at": _iso(x.closed_at),
                **_money("float", x.float_fen),
                **_money("expected_cash", x.expected_cash_fen),
                **_money("counted_cash", x.counted_cash_fen),
                **_money("variance", x.variance_fen),
            }
            for x in report.shifts
        ),
        _headers(
            ("shift_id", "counter_id", "operator_id", "opened_at", "closed_at"),
            _money_cols("float", "expected_cash", "counted_cash", "variance"),
        ),
    )
    return s.text()


def stats_report_csv(report: StatsReport) -> str:
    s = _Sections()
    s.summary(
        [
            ("report", "stats", False),
            ("office_code", report.office_code, False),
            ("office_name", report.office_name, False),
            ("time_zone", report.time_zone, False),
            ("first_day", report.first_day.isoformat(), False),
            ("last_day", report.last_day.isoformat(), False),
            ("generated_at", _iso(report.generated_at), False),
            ("customers_total", report.customers_total, False),
            ("sold_count", report.sold_count, False),
            ("sold", report.sold_fen, True),
            ("balance_customers", report.balance_customers, False),
            ("remaining", report.remaining_fen, True),
        ]
    )
    s.section(
        "customers",
        (
            {"meter_kind": c.meter_kind, "status": c.status, "count": str(c.count)}
            for c in report.customers
        ),
        ("meter_kind", "status", "count"),
    )
    s.section(
        "daily",
        (
            {
                "day": d.day.isoformat(),
                "sales_count": str(d.sales_count),
                **_money("amount", d.amount_fen),
                **_money("credit", d.credit_fen),
            }
            for d in report.daily
        ),
        _headers(("day", "sales_count"), _money_cols("amount", "credit")),
    )
    s.section(
        "plans",
        (
            {
                "plan_code": p.plan_code,
                "plan_name": p.plan_name,
                "customers": str(p.customers),
                "sales_count": str(p.sales_count),
                **_money("amount", p.amount_fen),
                **_money("credit", p.credit_fen),
                "energy_wh": str(p.energy_wh),
                "energy_kwh": _kwh(p.energy_wh),
            }
            for p in report.plans
        ),
        _headers(
            ("plan_code", "plan_name", "customers", "sales_count"),
            _money_cols("amount", "credit"),
            ("energy_wh", "energy_kwh"),
        ),
    )
    s.section(
        "balances",
        (
            {"bucket": b.bucket, "count": str(b.count), **_money("remaining", b.remaining_fen)}
            for b in report.balances
        ),
        _headers(("bucket", "count"), _money_cols("remaining")),
    )
    return s.text()
