"""The reports (shift Z-report, daily office report, charge-control statistics) on SQLite and
PostgreSQL, from sales made through the selling flow; their PDFs read back with pdftotext and
rendered with pdftoppm, their CSVs parsed back with the csv module."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import subprocess
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from app.clock import FixedClock
from app.domain import permissions
from app.domain.operators import Role
from app.domain.permissions import Action
from app.domain.permissions import PermissionDenied
from app.i18n import translate
from app.money import format_yuan
from app.persistence.db import Database
from app.persistence.models import Customer
from app.persistence.models import Sale
from app.persistence.models import Shift
from app.persistence.models import TariffVersion
from app.services import auth
from app.services import reports
from app.services import selling
from app.services import shifts
from app.services.auth import Principal
from app.services.auth import ReauthRequired
from printing import reports as pdf
from printing.reports import labels
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import OWING
from tests.rigs.counter import REMOTE
from tests.rigs.counter import Counter
from tests.rigs.sale_rows import sale_row

CJK = re.compile(r"[\u4e00-\u9fff]")
TZ = "Asia/Shanghai"
REMOTE2 = "100000000020"  # a remote customer without dues (RES-TOU)
DAY1 = dt.date(2026, 3, 1)  # the clock starts at 2026-03-01 09:00 UTC = 17:00 in Shanghai
DAY2 = dt.date(2026, 3, 2)


@dataclass
class Day:
    counter: Counter
    c01_shift: str  # t01's shift on C01, float 500.00, closed with 0.50 too much
    c02_shift: str  # t02's shift on C02, float 100.00, closed with 1.00 missing
    empty_shift: str  # the shift Counter opened, closed at once with nothing in it
    supervisor: Principal
    reversed_sale: str
    failed_sale: str

    @property
    def db(self) -> Database:
        return self.counter.db

    @property
    def clock(self) -> FixedClock:
        return self.counter.clock


def fresh(p: Principal, clock: FixedClock) -> Principal:
    p.last_activity = clock.now()
    return p


def a_day(counter: Counter) -> Day:
    """C01 (t01): account opened with 50.00, a sale of 30.00, one of 12.00 reversed, a sale
    whose card write never happened (failed) followed by its real one of 15.00, 100.00 from a
    customer who owed 30.00 arrears and a 5.00 fee, a remote payment of 88.00, a replacement
    card (fee 20.00).  C02 (t02): a remote payment of 40.00, and after local midnight one of
    7.00."""
    db, clock = counter.db, counter.clock
    empty = shifts.close_shift(db, actor=counter.teller, counted_fen=0, clock=clock).shift_id
    clock.advance(minutes=1)
    shifts.open_shift(db, actor=counter.teller, float_fen=50000, clock=clock)

    def tick() -> None:
        clock.advance(minutes=1)
        fresh(counter.teller, clock)

    image = counter.open(amount=5000)
    tick()
    counter.to_meter(image)
    counter.sell(image, 3000, cash_received=5000)
    tick()
    counter.to_meter(image)
    reversed_sale = counter.sell(image, 1200).sale.sale_id
    tick()
    counter.reverse(image, reversed_sale)
    tick()
    from app.services import ledger

    failed = ledger.begin_card_sale(
        db, actor=counter.teller, customer_no=CUSTOMER, amount=1500, clock=clock
    ).sale_id  # then the power goes: the card was never written
    selling.recover_at_start(db, "C01", clock)
    tick()
    out = counter.sell(image, 1500)
    assert [s.state for s in out.assessment.recovered] == ["failed"]
    tick()
    owing = counter.open(OWING, amount=None)
    tick()
    sold = counter.sell(owing, 10000).sale
    assert (sold.arrears_fen, sold.fees_fen, sold.credit_fen) == (3000, 500, 6500)
    tick()
    counter.remote(8800)
    tick()
    _view, fee = counter.replace(counter.kit.blank())
    assert fee == 2000
    tick()
    c01 = shifts.close_shift(
        db, actor=counter.teller, counted_fen=80350, clock=clock, reason="found 0.50"
    )
    assert (c01.expected_fen, c01.variance_fen) == (80300, 50)

    t02 = auth.login(db, "t02", "demo-t02", counter_id="C02", clock=clock)
    c02 = shifts.open_shift(db, actor=t02, float_fen=10000, clock=clock).shift_id
    counter.remote(4000, REMOTE2, actor=t02)
    clock.set(dt.datetime(2026, 3, 1, 16, 0, tzinfo=dt.UTC))  # 00:00 on 2 March in Shanghai
    counter.remote(700, REMOTE2, actor=fresh(t02, clock))
    clock.advance(minutes=5)
    closed = shifts.close_shift(
        db, actor=fresh(t02, clock), counted_fen=14600, clock=clock, reason="1.00 short"
    )
    assert (closed.expected_fen, closed.variance_fen) == (14700, -100)
    supervisor = fresh(auth.login(db, "s01", "demo-s01", counter_id="C01", clock=clock), clock)
    return Day(counter, c01.shift_id, c02, empty, supervisor, reversed_sale, failed)


@pytest.fixture
def day(counter: Counter) -> Day:
    return a_day(counter)


# --------------------------------------------------------------------------- CSV reading


def sections(text: str) -> dict[str, list[dict[str, str]]]:
    """A report CSV back as ``section name -> rows``, with the csv module."""
    assert text.startswith("\ufeff")
    found: dict[str, list[dict[str, str]]] = {}
    rows = list(csv.reader(io.StringIO(text[1:])))
    i = 0
    while i < len(rows):
        row = rows[i]
        assert len(row) == 1 and row[0].startswith("[") and row[0].endswith("]"), row
        header = rows[i + 1]
        i += 2
        body = []
        while rows[i]:
            assert len(rows[i]) == len(header)
            body.append(dict(zip(header, rows[i], strict=True)))
            i += 1
        found[row[0][1:-1]] = body
        i += 1
    return found


def fen(row: dict[str, str], name: str) -> int:
    """The ``<name>_fen`` column, checked against the ``<name>_yuan`` text."""
    value = int(row[f"{name}_fen"])
    assert Decimal(row[f"{name}_yuan"]) * 100 == value
    assert row[f"{name}_yuan"] == format_yuan(value)
    return value


def summary(rows: list[dict[str, str]]) -> dict[str, str]:
    return {r["field"]: r["fen"] or r["value"] for r in rows}


# --------------------------------------------------------------------------- PDF reading


def pdftext(data: bytes, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(data)
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


def zh(msgid: str) -> str:
    text = translate(msgid, "zh_CN")
    assert CJK.search(text), f"no Chinese translation of {msgid!r} in the zh_CN catalog yet"
    return text


def chinese_pdf(data: bytes, tmp_path: Path, name: str, *msgids: str) -> str:
    """The text of a report PDF made in Chinese; each of ``msgids`` stands on it translated."""
    text = pdftext(data, tmp_path, name)
    for msgid in msgids:
        assert zh(msgid) in text, msgid
    return text


# --------------------------------------------------------------------------- shift report


def test_shift_report_figures(day: Day) -> None:
    r = reports.shift_report(
        day.db, day.c01_shift, actor=day.supervisor, clock=day.clock, office_code="DEMO"
    )
    assert (r.counter_id, r.operator_id, r.operator_name) == ("C01", "t01", "王丽 Wang Li")
    assert (r.office_name, r.closed_by, r.is_open) == ("示范营业厅 Demo office", "t01", False)
    assert r.opened_at.utcoffset() == dt.timedelta(hours=8)
    assert r.opened_at.isoformat() == "2026-03-01T17:01:00+08:00"
    lines = [(s.customer_no, s.kind, s.state, s.amount_fen, s.cash_fen) for s in r.sales]
    assert lines == [
        (CUSTOMER, "card", "completed", 5000, 5000),
        (CUSTOMER, "card", "completed", 3000, 3000),
        (CUSTOMER, "card", "reversed", 1200, 1200),
        (CUSTOMER, "card", "failed", 1500, 0),
        (CUSTOMER, "card", "completed", 1500, 1500),
        (OWING, "card", "completed", 10000, 10000),
        (REMOTE, "remote", "completed", 8800, 8800),
    ]
    assert r.sales[1].tendered_fen == 5000 and r.sales[0].tendered_fen is None
    assert r.sales[2].sale_id == day.reversed_sale and r.sales[3].sale_id == day.failed_sale
    assert r.sales[2].short_id == day.reversed_sale[:8].upper()
    assert [s.purchase_count for s in r.sales] == [1, 2, 3, 3, 3, 1, None]
    assert {s.state: (s.count, s.amount_fen) for s in r.by_state} == {
        "pending": (0, 0),
        "completed": (5, 28300),
        "failed": (1, 1500),
        "in_doubt": (0, 0),
        "reversed": (1, 1200),
    }
    assert (r.sales_count, r.sales_fen) == (6, 29500)
    assert (r.credit_fen, r.arrears_fen, r.fees_fen) == (24800, 3000, 500)
    assert [(x.sale_id, x.state, x.amount_fen, x.approver_id) for x in r.reversals] == [
        (day.reversed_sale, "completed", 1200, "s01")
    ]
    assert (r.reversals_count, r.reversals_fen) == (1, 1200)
    assert [(p.customer_no, p.kind, p.amount_fen) for p in r.fee_payments] == [
        (CUSTOMER, "replacement", 2000)
    ]
    assert (r.fee_payments_count, r.fee_payments_fen) == (1, 2000)
    assert r.net_cash_fen == 29500 + 2000 - 1200
    assert (r.float_fen, r.expected_cash_fen, r.counted_cash_fen, r.variance_fen) == (
        50000,
        80300,
        80350,
        50,
    )
    assert r.expected_cash_fen == r.float_fen + r.net_cash_fen
    data = json.loads(json.dumps(r.to_json()))
    assert data["variance_fen"] == 50 and data["is_open"] is False
    assert data["sales"][2]["state"] == "reversed" and data["closed_at"].endswith("+08:00")


def test_an_open_shift_is_provisional(counter: Counter) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    counter.sell(image, 2500)
    shift_id = reports.current_shift_id(counter.db, "C01")
    assert shift_id is not None
    r = reports.shift_report(counter.db, shift_id, actor=counter.teller, clock=counter.clock)
    assert r.is_open and r.closed_at is None
    assert (r.expected_cash_fen, r.counted_cash_fen, r.variance_fen) == (7500, None, None)
    assert r.office_code is None and r.office_name is None
    text = pdftext(pdf.shift_report_pdf(r, language="en"), counter.kit.folder, "open")
    assert "still open" in text and "provisional" in text
    shifts.close_shift(counter.db, actor=counter.teller, counted_fen=7500, clock=counter.clock)
    assert reports.current_shift_id(counter.db, "C01") == shift_id  # the last closed one
    assert reports.current_shift_id(counter.db, "C99") is None


def test_shift_report_pdf(day: Day, tmp_path: Path) -> None:
    r = reports.shift_report(
        day.db, day.c01_shift, actor=day.supervisor, clock=day.clock, office_code="DEMO"
    )
    en = pdftext(pdf.shift_report_pdf(r, language="en"), tmp_path, "shift-en")
    assert "Shift report (Z-report)" in en
    assert "王丽 Wang Li (t01)" in en and "示范营业厅 Demo office (DEMO)" in en
    expected = re.search(r"Expected cash\s+(\S+)", en)
    assert expected and expected.group(1) == "803.00"
    assert re.search(r"Counted cash\s+803\.50", en) and re.search(r"Variance\s+0\.50", en)
    assert re.search(r"Handed back by reversals \(1\)\s+-12\.00", en)
    assert re.search(r"Credit loaded\s+248\.00", en)
    assert day.reversed_sale[:8].upper() in en and "reversed" in en
    assert en.count(CUSTOMER) == 6 + 1  # its sales and the fee payment
    # the sales table's total holds the reversed sale; "Collected" leaves it out: both say so
    flat = " ".join(en.split())
    assert "Collected by the sales that stand (reversed sales left out)" in flat
    assert "Total, reversed sales included" in flat


def test_shift_report_pdf_in_chinese(day: Day, tmp_path: Path) -> None:
    r = reports.shift_report(
        day.db, day.c01_shift, actor=day.supervisor, clock=day.clock, office_code="DEMO"
    )
    zh_text = chinese_pdf(
        pdf.shift_report_pdf(r, language="zh_CN"),
        tmp_path,
        "shift-zh",
        labels.SHIFT_TITLE,
        labels.EXPECTED,
        labels.VARIANCE,
        labels.REVERSALS,
        labels.COL_CUSTOMER,
    )
    assert "王丽" in zh_text and "803.00" in zh_text
    assert "Expected cash" not in zh_text


def test_shift_report_csv_sums_to_the_report(day: Day) -> None:
    r = reports.shift_report(day.db, day.c01_shift, actor=day.supervisor, clock=day.clock)
    text = pdf.shift_report_csv(r)
    got = sections(text)
    assert set(got) == {"summary", "by_state", "sales", "reversals", "fee_payments", "refunds"}
    head = summary(got["summary"])
    assert head["shift_id"] == day.c01_shift and head["operator_name"] == "王丽 Wang Li"
    assert (head["expected_cash"], head["counted_cash"], head["variance"]) == (
        "80300",
        "80350",
        "50",
    )
    sales = got["sales"]
    assert len(sales) == len(r.sales) == 7
    assert sum(fen(s, "cash") for s in sales) == r.sales_fen
    standing = [s for s in sales if s["state"] == "completed"]
    assert sum(fen(s, "credit") for s in standing) == r.credit_fen
    assert sum(fen(s, "arrears") for s in standing) == r.arrears_fen
    assert sum(fen(s, "fees") for s in standing) == r.fees_fen
    for s in sales:
        assert fen(s, "amount") == fen(s, "arrears") + fen(s, "fees") + fen(s, "credit")
    assert sum(fen(x, "amount") for x in got["reversals"]) == r.reversals_fen
    assert sum(fen(x, "amount") for x in got["fee_payments"]) == r.fee_payments_fen
    assert sum(fen(x, "amount") for x in got["by_state"]) == sum(s.amount_fen for s in r.sales)
    assert sales[1]["tendered_fen"] == "5000" and sales[0]["tendered_fen"] == ""
    assert dt.datetime.fromisoformat(sales[0]["at"]) == r.sales[0].at


# --------------------------------------------------------------------------- daily report


def test_daily_report_by_operator_and_counter(day: Day) -> None:
    r = reports.daily_report(day.db, "DEMO", DAY1, TZ, actor=day.supervisor, clock=day.clock)
    assert r.start.isoformat() == "2026-03-01T00:00:00+08:00"
    assert r.end.isoformat() == "2026-03-02T00:00:00+08:00"
    assert r.office_name == "示范营业厅 Demo office"
    c01 = (6, 29500, 24800, 3000, 500, 1, 1200, 1, 2000, 30300)
    c02 = (1, 4000, 4000, 0, 0, 0, 0, 0, 0, 4000)

    def figures(row: reports.DailyRow) -> tuple[int, ...]:
        return (
            row.sales_count,
            row.sales_fen,
            row.credit_fen,
            row.arrears_fen,
            row.fees_fen,
            row.reversals_count,
            row.reversals_fen,
            row.fee_payments_count,
            row.fee_payments_fen,
            row.net_cash_fen,
        )

    assert [(x.key, x.name, figures(x)) for x in r.by_operator] == [
        ("t01", "王丽 Wang Li", c01),
        ("t02", "李强 Li Qiang", c02),
    ]
    assert [(x.key, figures(x)) for x in r.by_counter] == [("C01", c01), ("C02", c02)]
    assert figures(r.totals) == tuple(a + b for a, b in zip(c01, c02, strict=True))
    assert (r.unresolved_count, r.failed_count) == (0, 1)
    assert [(s.counter_id, s.float_fen, s.expected_cash_fen, s.variance_fen) for s in r.shifts] == [
        ("C01", 0, 0, 0),
        ("C01", 50000, 80300, 50),
        ("C02", 10000, 14700, -100),
    ]
    # the 7.00 paid at 00:00 in Shanghai belongs to the next day
    r2 = reports.daily_report(day.db, "DEMO", DAY2, TZ, actor=day.supervisor, clock=day.clock)
    assert [(x.key, figures(x)) for x in r2.by_counter] == [
        ("C02", (1, 700, 700, 0, 0, 0, 0, 0, 0, 700))
    ]
    assert [s.shift_id for s in r2.shifts] == [day.c02_shift]
    # in UTC the same sales fall on 1 March, all of them
    utc = reports.daily_report(day.db, "DEMO", DAY1, "UTC", actor=day.supervisor, clock=day.clock)
    assert utc.totals.sales_fen == 29500 + 4000 + 700
    # the cash of the day reconciles with the shifts: net cash = expected - float
    closing = {s.shift_id: s for s in r.shifts}
    c01_shift = closing[day.c01_shift]
    assert c01_shift.expected_cash_fen is not None
    assert r.by_counter[0].net_cash_fen == c01_shift.expected_cash_fen - c01_shift.float_fen
    data = json.loads(json.dumps(r.to_json()))
    assert data["day"] == "2026-03-01" and data["totals"]["net_cash_fen"] == 34300
    assert data["by_operator"][0]["name"] == "王丽 Wang Li"


def test_daily_report_pdf_and_csv(day: Day, tmp_path: Path) -> None:
    r = reports.daily_report(day.db, "DEMO", DAY1, TZ, actor=day.supervisor, clock=day.clock)
    en = pdftext(pdf.daily_report_pdf(r, language="en"), tmp_path, "daily-en")
    assert "Daily office report" in en and "2026-03-01" in en
    assert re.search(r"王丽 Wang Li \(t01\)\s+6\s+295\.00\s+248\.00", en)
    assert re.search(r"C02\s+1\s+40\.00", en)
    assert re.search(r"Total\s+7\s+335\.00", en)
    assert "Failed sales (took no money): 1" in en
    got = sections(pdf.daily_report_csv(r))
    assert set(got) == {"summary", "by_operator", "by_counter", "totals", "shifts"}
    for part in ("by_operator", "by_counter"):
        rows = got[part]
        for name, total in (
            ("sales", r.totals.sales_fen),
            ("credit", r.totals.credit_fen),
            ("arrears", r.totals.arrears_fen),
            ("fees", r.totals.fees_fen),
            ("reversals", r.totals.reversals_fen),
            ("fee_payments", r.totals.fee_payments_fen),
            ("net_cash", r.totals.net_cash_fen),
        ):
            assert sum(fen(x, name) for x in rows) == total
        assert sum(int(x["sales_count"]) for x in rows) == r.totals.sales_count == 7
    assert fen(got["totals"][0], "net_cash") == 34300
    assert [x["name"] for x in got["by_operator"]] == ["王丽 Wang Li", "李强 Li Qiang"]
    assert sum(fen(x, "variance") for x in got["shifts"]) == -50
    assert summary(got["summary"])["failed_count"] == "1"


def test_daily_report_pdf_in_chinese(day: Day, tmp_path: Path) -> None:
    r = reports.daily_report(day.db, "DEMO", DAY1, TZ, actor=day.supervisor, clock=day.clock)
    zh_text = chinese_pdf(
        pdf.daily_report_pdf(r, language="zh_CN"),
        tmp_path,
        "daily-zh",
        labels.DAILY_TITLE,
        labels.BY_OPERATOR,
        labels.BY_COUNTER,
        labels.COL_NET,
        labels.SHIFTS,
    )
    assert "李强" in zh_text and "343.00" in zh_text  # net cash of the day


# --------------------------------------------------------------------------- statistics


def seed_statistics(day: Day) -> None:
    """Statuses and card write-backs (remaining, overdraft limit; the bucket they fall in) on
    demo customers, and older sales in and out of the 30-day window."""
    db = day.db
    examples = {
        "100000000101": (5000, 0, "normal"),
        "100000000102": (2001, 0, "normal"),
        "100000000103": (2000, 0, "alarm1"),  # at alarm 1 (20.00)
        "100000000104": (1001, 0, "alarm1"),
        "100000000105": (1000, 0, "alarm2"),  # at alarm 2 (10.00)
        "100000000106": (1, 0, "alarm2"),
        "100000000107": (-300, 500, "alarm2"),  # in the overdraft, not yet tripped
        "100000000108": (-500, 500, "tripped"),
        "100000000111": (0, 0, "tripped"),
    }
    with db.write() as session:
        for cno, (remaining, overdraft, _bucket) in examples.items():
            session.execute(
                update(Customer)
                .where(Customer.customer_no == cno)
                .values(
                    meter_remaining=remaining, overdraft_limit=overdraft, meter_purchase_count=3
                )
            )
        for cno, status in (
            ("100000000201", "paused"),
            ("100000000202", "paused"),
            ("100000000203", "closed"),
            ("100000000102", "closed"),  # closed with a write-back: not in the balances
            ("100000000300", "paused"),  # a remote meter (i = 299)
            ("100000000400", "closed"),  # a remote meter (i = 399)
        ):
            session.execute(
                update(Customer).where(Customer.customer_no == cno).values(status=status)
            )
        customer = session.scalar(select(Customer).where(Customer.customer_no == "100000000003"))
        assert customer is not None  # i = 2: RES-TIER
        version = session.scalar(
            select(TariffVersion.id).where(TariffVersion.plan_id == customer.tariff_plan_id)
        )
        shift_id = str(uuid.uuid4())
        old = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        session.execute(
            insert(Shift).values(
                id=shift_id,
                operator_id="t02",
                counter_id="C09",
                opened_at=old,
                float_amount=0,
                closed_at=old,
                closed_by="t02",
                expected_cash=0,
                counted_cash=0,
                variance=0,
            )
        )
        rows = []
        for n, (when, amount, state) in enumerate(
            (
                (dt.datetime(2026, 1, 31, 15, 59, 59, tzinfo=dt.UTC), 3300, "completed"),  # 31 Jan
                (dt.datetime(2026, 1, 31, 16, 0, tzinfo=dt.UTC), 2200, "completed"),  # 1 Feb 00:00
                (dt.datetime(2026, 2, 20, 3, 0, tzinfo=dt.UTC), 4400, "reversed"),
                (dt.datetime(2026, 2, 20, 4, 0, tzinfo=dt.UTC), 1100, "completed"),
            ),
            start=1,
        ):
            rows.append(
                sale_row(
                    str(uuid.uuid4()),
                    customer.id,
                    amount,
                    purchase_count=n,
                    tariff_version_id=version,
                    shift_id=shift_id,
                    at=when,
                    state=state,
                    operator_id="t02",
                    counter_id="C09",
                )
            )
        session.execute(insert(Sale), rows)


def bucket_oracle(db: Database) -> dict[str, tuple[int, int]]:
    """The balance buckets computed plainly in Python over every customer."""
    out = {b: [0, 0] for b in reports.BUCKETS}
    with db.read() as session:
        for c in session.scalars(select(Customer).where(Customer.office_code == "DEMO")):
            if c.meter_kind != "card" or c.status == "closed":
                continue
            r = c.meter_remaining
            if r is None:
                b = "no_write_back"
            elif r <= -c.overdraft_limit:
                b = "tripped"
            elif r <= c.alarm2:
                b = "alarm2"
            elif r <= c.alarm1:
                b = "alarm1"
            else:
                b = "normal"
            out[b][0] += 1
            out[b][1] += r or 0
    return {b: (n, s) for b, (n, s) in out.items()}


def test_stats_report_figures(day: Day) -> None:
    seed_statistics(day)
    day.clock.set(dt.datetime(2026, 3, 2, 4, 0, tzinfo=dt.UTC))  # 2 March, noon in Shanghai
    r = reports.stats_report(day.db, "DEMO", day.clock, TZ, actor=fresh(day.supervisor, day.clock))
    assert (r.first_day, r.last_day) == (dt.date(2026, 2, 1), DAY2)
    counts = {(c.meter_kind, c.status): c.count for c in r.customers}
    assert counts == {
        ("card", "active"): 900 - 4,
        ("card", "paused"): 2,
        ("card", "closed"): 2,
        ("remote", "active"): 98,
        ("remote", "paused"): 1,
        ("remote", "closed"): 1,
    }
    assert r.customers_total == 1000
    assert len(r.daily) == 30 and r.daily[0].day == dt.date(2026, 2, 1)
    per_day = {d.day: (d.sales_count, d.amount_fen) for d in r.daily if d.sales_count}
    assert per_day == {
        dt.date(2026, 2, 1): (1, 2200),  # 00:00 local counts, 23:59:59 the day before does not
        dt.date(2026, 2, 20): (1, 1100),  # the reversed one was not sold
        DAY1: (6, 5000 + 3000 + 1500 + 10000 + 8800 + 4000),
        DAY2: (1, 700),
    }
    assert (r.sold_count, r.sold_fen) == (9, 2200 + 1100 + 32300 + 700)
    plans = {p.plan_code: (p.customers, p.sales_count, p.amount_fen) for p in r.plans}
    assert plans == {
        "RES-FLAT": (334, 2, 10000 + 8800),
        "RES-TIER": (333, 2, 2200 + 1100),
        "RES-TOU": (333, 5, 5000 + 3000 + 1500 + 4000 + 700),
    }
    assert next(p for p in r.plans if p.plan_code == "RES-TIER").energy_wh == (2200 + 1100) * 2
    buckets = {b.bucket: (b.count, b.remaining_fen) for b in r.balances}
    assert buckets == bucket_oracle(day.db)
    # the seeded write-backs (102 is closed) and CUSTOMER's from the flow: its card came back
    # from the meter with 80.00 left (OWING's card never went into a meter)
    with day.db.read() as session:
        flow = dict(
            session.execute(
                select(Customer.customer_no, Customer.meter_remaining).where(
                    Customer.customer_no.in_((CUSTOMER, OWING))
                )
            ).all()
        )
    assert flow == {CUSTOMER: 8000, OWING: None}
    assert buckets == {
        "normal": (2, 5000 + 8000),
        "alarm1": (2, 2000 + 1001),
        "alarm2": (3, 1000 + 1 - 300),
        "tripped": (2, -500 + 0),
        "no_write_back": (898 - 9, 0),
    }
    assert r.balance_customers == 900 - 2  # card meters that are not closed
    assert r.remaining_fen == sum(s for _n, s in buckets.values())
    data = json.loads(json.dumps(r.to_json()))
    assert data["balances"][0] == {"bucket": "normal", "count": 2, "remaining_fen": 13000}
    assert data["daily"][0]["day"] == "2026-02-01" and data["last_day"] == "2026-03-02"


def test_stats_report_pdf_chart_and_csv(day: Day, tmp_path: Path) -> None:
    seed_statistics(day)
    r = reports.stats_report(day.db, "DEMO", day.clock, TZ, actor=day.supervisor)
    data = pdf.stats_report_pdf(r, language="en")
    en = pdftext(data, tmp_path, "stats-en")
    assert "Charge-control statistics" in en and "2026-02-01 to 2026-03-02" in en
    assert re.search(r"card\s+896\s+2\s+2\s+900", en)
    assert "居民分时电价 Residential time-of-use (RES-TOU)" in en
    assert "Amount sold per day (yuan)" in en and "No write-back yet" in en
    # the charts are drawn: pdftoppm renders their bars in the chart colours
    path = tmp_path / "stats-en.pdf"
    assert pixels(path, tmp_path, labels.BAR.hexval()) > 300  # the amounts per day
    assert pixels(path, tmp_path, labels.BUCKET_COLORS["no_write_back"].hexval()) > 300
    got = sections(pdf.stats_report_csv(r))
    assert set(got) == {"summary", "customers", "daily", "plans", "balances"}
    assert sum(int(x["count"]) for x in got["customers"]) == r.customers_total == 1000
    assert len(got["daily"]) == 30
    assert sum(fen(x, "amount") for x in got["daily"]) == r.sold_fen
    assert sum(int(x["sales_count"]) for x in got["daily"]) == r.sold_count
    assert sum(fen(x, "amount") for x in got["plans"]) == r.sold_fen
    assert sum(int(x["count"]) for x in got["balances"]) == r.balance_customers
    assert sum(fen(x, "remaining") for x in got["balances"]) == r.remaining_fen
    head = summary(got["summary"])
    assert (head["sold"], head["remaining"]) == (str(r.sold_fen), str(r.remaining_fen))


def test_stats_report_pdf_in_chinese(day: Day, tmp_path: Path) -> None:
    r = reports.stats_report(day.db, "DEMO", day.clock, TZ, actor=day.supervisor)
    zh_text = chinese_pdf(
        pdf.stats_report_pdf(r, language="zh_CN"),
        tmp_path,
        "stats-zh",
        labels.STATS_TITLE,
        labels.SOLD_PER_DAY,
        reports.BUCKET_LABELS["tripped"],
    )
    assert zh(reports.KIND_LABELS["remote"]) in zh_text and "示范营业厅" in zh_text


def pixels(path: Path, tmp_path: Path, color: str) -> int:
    """How many pixels of page 1 of ``path`` (pdftoppm, 60 dpi) have exactly ``color``
    (``0xRRGGBB``)."""
    rgb = bytes.fromhex(color.removeprefix("0x"))
    raw = render(path, tmp_path)
    return sum(1 for i in range(0, len(raw), 3) if raw[i : i + 3] == rgb)


def render(path: Path, tmp_path: Path) -> bytes:
    """Page 1 of ``path`` as raw RGB (pdftoppm's PPM), without the header."""
    subprocess.run(
        ["pdftoppm", "-r", "60", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")],
        check=True,
    )
    (page,) = tmp_path.glob("page*.ppm")
    page = page.rename(tmp_path / f"{path.stem}.ppm")
    raw = page.read_bytes()
    magic, width, height, depth, rest = raw.split(maxsplit=4)
    assert (magic, depth) == (b"P6", b"255")
    assert len(rest) == int(width) * int(height) * 3
    return rest


# --------------------------------------------------------------------------- permissions


def test_reports_need_view_reports(day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    # every role has VIEW_REPORTS in the matrix; take it from tellers to see the check work
    without = permissions.PERMISSIONS[Role.TELLER] - {Action.VIEW_REPORTS}
    monkeypatch.setitem(permissions.PERMISSIONS, Role.TELLER, without)
    teller = fresh(day.counter.teller, day.clock)
    with pytest.raises(PermissionDenied, match="view reports"):
        reports.shift_report(day.db, day.c01_shift, actor=teller, clock=day.clock)
    with pytest.raises(PermissionDenied):
        reports.daily_report(day.db, "DEMO", DAY1, TZ, actor=teller, clock=day.clock)
    with pytest.raises(PermissionDenied):
        reports.stats_report(day.db, "DEMO", day.clock, TZ, actor=teller)
    # the supervisor still may; an idle one must sign in again
    assert reports.shift_report(day.db, day.c01_shift, actor=day.supervisor, clock=day.clock)
    day.clock.advance(minutes=16)
    with pytest.raises(ReauthRequired):
        reports.daily_report(day.db, "DEMO", DAY1, TZ, actor=day.supervisor, clock=day.clock)


def test_every_role_may_view_reports() -> None:
    assert all(Action.VIEW_REPORTS in actions for actions in permissions.PERMISSIONS.values())


def test_business_day_follows_the_office_time_zone() -> None:
    start, end = reports.day_bounds(DAY1, TZ)
    assert (start.isoformat(), end - start) == ("2026-03-01T00:00:00+08:00", dt.timedelta(hours=24))
    # a daylight-saving change: 8 March 2026 has 23 hours in New York
    start, end = reports.day_bounds(dt.date(2026, 3, 8), "America/New_York")
    assert end.astimezone(dt.UTC) - start.astimezone(dt.UTC) == dt.timedelta(hours=23)


def test_bad_input(day: Day) -> None:
    from app.errors import NotFound
    from app.errors import ValidationError

    with pytest.raises(NotFound):
        reports.shift_report(day.db, "no-such-shift", actor=day.supervisor, clock=day.clock)
    with pytest.raises(ValidationError, match="time zone"):
        reports.daily_report(
            day.db, "DEMO", DAY1, "Mars/Olympus", actor=day.supervisor, clock=day.clock
        )
