"""The shift, daily and statistics reports as A4 PDFs (reportlab platypus, the embedded CJK font)."""

from __future__ import annotations

from typing import Any

from reportlab.graphics.charts.barcharts import HorizontalBarChart
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing
from reportlab.graphics.shapes import String
from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether
from reportlab.platypus import Spacer
from reportlab.platypus import Table
from reportlab.platypus import TableStyle

from app.money import format_yuan
from app.services.reports import BUCKET_LABELS
from app.services.reports import KIND_LABELS
from app.services.reports import KIND_ORDER
from app.services.reports import STATE_LABELS
from app.services.reports import STATUS_LABELS
from app.services.reports import STATUS_ORDER
from app.services.reports import DailyReport
from app.services.reports import DailyRow
from app.services.reports import ShiftReport
from app.services.reports import StatsReport
from printing.reports.labels import ARREARS_COLLECTED
from printing.reports.labels import BALANCES
from printing.reports.labels import BALANCES_TOTAL
from printing.reports.labels import BAR
from printing.reports.labels import BODY_SIZE
from printing.reports.labels import BUCKET_COLORS
from printing.reports.labels import BY_COUNTER
from printing.reports.labels import BY_OPERATOR
from printing.reports.labels import BY_STATE
from printing.reports.labels import CASH
from printing.reports.labels import CLOSED
from printing.reports.labels import CLOSED_BY
from printing.reports.labels import COL_AMOUNT
from printing.reports.labels import COL_APPROVER
from printing.reports.labels import COL_ARREARS
from printing.reports.labels import COL_BUCKET
from printing.reports.labels import COL_CASH
from printing.reports.labels import COL_CLOSED
from printing.reports.labels import COL_COUNT
from printing.reports.labels import COL_COUNTED
from printing.reports.labels import COL_COUNTER
from printing.reports.labels import COL_CREDIT
from printing.reports.labels import COL_CUSTOMER
from printing.reports.labels import COL_CUSTOMERS
from printing.reports.labels import COL_ENERGY
from printing.reports.labels import COL_EXPECTED
from printing.reports.labels import COL_FEE_PAYMENTS
from printing.reports.labels import COL_FEES
from printing.reports.labels import COL_FLOAT
from printing.reports.labels import COL_KIND
from printing.reports.labels import COL_METER_KIND
from printing.reports.labels import COL_NET
from printing.reports.labels import COL_OPENED
from printing.reports.labels import COL_OPERATOR
from printing.reports.labels import COL_PLAN
from printing.reports.labels import COL_REFUNDS
from printing.reports.labels import COL_REMAINING
from printing.reports.labels import COL_REVERSALS
from printing.reports.labels import COL_REVERSED
from printing.reports.labels import COL_SALE
from printing.reports.labels import COL_SALES
from printing.reports.labels import COL_STATE
from printing.reports.labels import COL_TIME
from printing.reports.labels import COL_TOTAL
from printing.reports.labels import COL_VARIANCE
from printing.reports.labels import COLLECTED
from printing.reports.labels import COUNTED
from printing.reports.labels import COUNTER
from printing.reports.labels import CREDIT_LOADED
from printing.reports.labels import CUSTOMERS
from printing.reports.labels import DAILY_TITLE
from printing.reports.labels import DAY
from printing.reports.labels import DAY_TIME
from printing.reports.labels import EXPECTED
from printing.reports.labels import FAILED
from printing.reports.labels import FEE_KIND_LABELS
from printing.reports.labels import FEE_PAYMENTS
from printing.reports.labels import FEE_PAYMENTS_TAKEN
from printing.reports.labels import FEES_COLLECTED
from printing.reports.labels import FLOAT
from printing.reports.labels import NET_CASH
from printing.reports.labels import OFFICE
from printing.reports.labels import OPENED
from printing.reports.labels import OPERATOR
from printing.reports.labels import PER_PLAN
from printing.reports.labels import PERIOD
from printing.reports.labels import PERIOD_VALUE
from printing.reports.labels import PROVISIONAL
from printing.reports.labels import REFUNDS
from printing.reports.labels import REFUNDS_BACK
from printing.reports.labels import REVERSALS
from printing.reports.labels import REVERSALS_BACK
from printing.reports.labels import SALES
from printing.reports.labels import SALES_TAKEN
from printing.reports.labels import SHIFT
from printing.reports.labels import SHIFT_TITLE
from printing.reports.labels import SHIFTS
from printing.reports.labels import SHORT_TIME
from printing.reports.labels import SIGN_SUPERVISOR
from printing.reports.labels import SIGN_TELLER
from printing.reports.labels import SOLD_PER_DAY
from printing.reports.labels import SOLD_TOTAL
from printing.reports.labels import STATS_TITLE
from printing.reports.labels import STILL_OPEN
from printing.reports.labels import TIME_ZONE
from printing.reports.labels import TOTAL
from printing.reports.labels import TOTAL_WITH_REVERSED
from printing.reports.labels import UNRESOLVED
from printing.reports.labels import VARIANCE
from printing.reports.labels import WIDTH
from printing.reports.labels import _kwh
from printing.reports.labels import _name
from printing.reports.labels import _t
from printing.reports.labels import _when
from printing.reports.labels import _yuan
from printing.reports.layout import _money_table
from printing.reports.layout import _Page

# --------------------------------------------------------------------------- shift report PDF


def shift_report_pdf(report: ShiftReport, *, language: str) -> bytes:
    page = _Page(_t(SHIFT_TITLE, language), language, report.generated_at)
    story = _shift_head(page, report)
    story += _shift_money(page, report)
    story += _shift_sales(page, report)
    story += _shift_reversals_and_fees(page, report)
    story += _signatures(page)
    return page.build(story)


def _shift_head(page: _Page, report: ShiftReport) -> list[Any]:
    t = page.t
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
    story = page.heading(pairs)
    if report.is_open:
        story.append(page.para(t(PROVISIONAL)))
    return story


def _shift_money(page: _Page, report: ShiftReport) -> list[Any]:
    t = page.t
    story: list[Any] = [page.para(t(CASH), page.h2)]
    story += _money_table(
        page,
        [
            (t(FLOAT), report.float_fen),
            (t(SALES_TAKEN, count=report.sales_count), report.sales_fen),
            (t(FEE_PAYMENTS_TAKEN, count=report.fee_payments_count), report.fee_payments_fen),
            (t(REVERSALS_BACK, count=report.reversals_count), -report.reversals_fen),
            (t(REFUNDS_BACK, count=report.refunds_count), -report.refunds_fen),
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
    return story


def _shift_sales(page: _Page, report: ShiftReport) -> list[Any]:
    t = page.t
    story: list[Any] = [page.para(t(SALES), page.h2)]
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
            t(TOTAL_WITH_REVERSED),
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
    return story


def _shift_reversals_and_fees(page: _Page, report: ShiftReport) -> list[Any]:
    t = page.t
    story: list[Any] = [page.para(t(REVERSALS), page.h2)]
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
    if report.refunds:
        story.append(page.para(t(REFUNDS), page.h2))
        story += page.grid(
            (COL_TIME, COL_CUSTOMER, COL_AMOUNT, COL_OPERATOR, COL_APPROVER),
            [
                (
                    _when(r.at, SHORT_TIME),
                    r.customer_no,
                    _yuan(r.amount_fen),
                    r.operator_id,
                    r.approver_id,
                )
                for r in report.refunds
            ],
            (0.1, 0.18, 0.14, 0.13, 0.13),
            numeric_from=2,
        )
    return story


def _signatures(page: _Page) -> list[Any]:
    t = page.t
    signatures = Table(
        [[t(SIGN_TELLER) + ": ________________", t(SIGN_SUPERVISOR) + ": ________________"]],
        colWidths=[WIDTH / 2, WIDTH / 2],
        hAlign="LEFT",
    )
    signatures.setStyle(TableStyle([("FONT", (0, 0), (-1, -1), page.font, BODY_SIZE)]))
    return [Spacer(1, 14 * mm), KeepTogether([signatures])]


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
    COL_REFUNDS,
    COL_NET,
)
_DAILY_WIDTHS = (0.16, 0.06, 0.09, 0.09, 0.08, 0.07, 0.07, 0.09, 0.09, 0.09, 0.11)


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
        _yuan(row.refunds_fen),
        _yuan(row.net_cash_fen),
    ]


def daily_report_pdf(report: DailyReport, *, language: str) -> bytes:
    page = _Page(_t(DAILY_TITLE, language), language, report.generated_at)
    t = page.t
    story = page.heading(
        [
            (OFFICE, _name(report.office_name, report.office_code)),
            (DAY, report.day.isoformat()),
            (TIME_ZONE, report.time_zone),
            (PERIOD, f"{_when(report.start, DAY_TIME)} – {_when(report.end, DAY_TIME)}"),
        ]
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


def _placed(chart: Any, height: float, margins: tuple[float, float, float, float]) -> Drawing:
    """A drawing the page's width and ``height`` high holding ``chart``, inset by ``margins``
    (left, bottom, right, top)."""
    left, bottom, right, top = margins
    drawing = Drawing(WIDTH, height)
    chart.x, chart.y = left, bottom
    chart.width, chart.height = WIDTH - left - right, height - bottom - top
    drawing.add(chart)
    return drawing


def _bars(page: _Page, chart: Any, values: list[int], *, empty_max: int) -> None:
    """One series of bars without outlines on a value axis from 0, labelled in the page's font;
    an empty period still draws its axis (up to ``empty_max``)."""
    chart.data = [values]
    chart.bars[0].strokeColor = None
    chart.valueAxis.valueMin = 0
    if max(values, default=0) == 0:
        chart.valueAxis.valueMax = empty_max
    chart.valueAxis.labels.fontName = page.font
    chart.valueAxis.labels.fontSize = 6


def _day_chart(page: _Page, report: StatsReport) -> Drawing:
    height = 70 * mm
    chart = VerticalBarChart()
    drawing = _placed(chart, height, (22 * mm, 14 * mm, 4 * mm, 8 * mm))
    _bars(page, chart, [d.amount_fen for d in report.daily], empty_max=100)
    chart.bars[0].fillColor = BAR
    chart.barSpacing = 1
    chart.valueAxis.labelTextFormat = _axis_yuan
    chart.valueAxis.gridStrokeColor = colors.HexColor("#dddddd")
    chart.valueAxis.visibleGrid = True
    chart.categoryAxis.categoryNames = [d.day.strftime("%m-%d") for d in report.daily]
    chart.categoryAxis.labels.fontName = page.font
    chart.categoryAxis.labels.fontSize = 5.5
    chart.categoryAxis.labels.angle = 90
    chart.categoryAxis.labels.boxAnchor = "e"
    chart.categoryAxis.labels.dy = -2
    drawing.add(
        String(
            0, height - 6, page.t(SOLD_PER_DAY), fontName=page.font, fontSize=8, textAnchor="start"
        )
    )
    return drawing


def _axis_yuan(value: float) -> str:
    return format_yuan(round(value))  # axis ticks are whole fen


def _bucket_chart(page: _Page, report: StatsReport) -> Drawing:
    chart = HorizontalBarChart()
    drawing = _placed(chart, 45 * mm, (40 * mm, 4 * mm, 10 * mm, 4 * mm))
    _bars(page, chart, [b.count for b in report.balances], empty_max=10)
    for i, b in enumerate(report.balances):
        chart.bars[(0, i)].fillColor = BUCKET_COLORS[b.bucket]
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
    return drawing


def stats_report_pdf(report: StatsReport, *, language: str) -> bytes:
    page = _Page(_t(STATS_TITLE, language), language, report.generated_at)
    t = page.t
    story = page.heading(
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
