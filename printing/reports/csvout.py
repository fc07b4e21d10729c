"""The shift, daily and statistics reports as CSV: UTF-8 with a BOM, sections, formula-safe cells."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from collections.abc import Sequence

from app import csvsafe
from app.services.reports import DailyReport
from app.services.reports import DailyRow
from app.services.reports import ShiftReport
from app.services.reports import StatsReport
from printing.reports.labels import _kwh
from printing.reports.labels import _yuan

# --------------------------------------------------------------------------- CSV


def _money(name: str, fen: int | None) -> dict[str, str]:
    return {f"{name}_yuan": _yuan(fen), f"{name}_fen": _opt(fen)}


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
                rows.append({"field": field, "value": _opt(value)})
        self.section("summary", rows, ("field", "value", "fen"))

    def text(self) -> str:
        return self.out.getvalue()


def _opt(value: object) -> str:
    """A cell: empty for ``None``, else the value as text."""
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
    s.summary(_shift_summary(report))
    _shift_ledger_sections(s, report)
    return s.text()


def _shift_summary(report: ShiftReport) -> list[tuple[str, str | int | None, bool]]:
    """The shift's key figures: (name, value, is money)."""
    return [
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
        ("refunds_count", report.refunds_count, False),
        ("refunds", report.refunds_fen, True),
    ]


def _shift_ledger_sections(s: _Sections, report: ShiftReport) -> None:
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
    s.section(
        "refunds",
        (
            {
                "at": _iso(r.at),
                "event_id": r.event_id,
                "customer_no": r.customer_no,
                **_money("amount", r.amount_fen),
                "operator_id": r.operator_id,
                "approver_id": r.approver_id,
            }
            for r in report.refunds
        ),
        _headers(
            ("at", "event_id", "customer_no"), _money_cols("amount"), ("operator_id", "approver_id")
        ),
    )


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
        "refunds_count": str(row.refunds_count),
        **_money("refunds", row.refunds_fen),
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
