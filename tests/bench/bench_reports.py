"""Report benchmarks: the shift Z-report over 5,000 sales, and the charge-control statistics
over 1,000,000 customers.

    python -m tests.bench.bench_reports [--sales N] [--customers N]

* ``zreport``: one closed shift on SQLite holding ``--sales`` sales (default 5,000: completed
  card and remote sales, every 50th reversed with its reversal, every 97th failed, a replacement
  fee every 500th), written straight into the ledger tables with valid keys (demo customers, the
  shift, the tariff versions in force; the sale flow itself is measured by bench_sale).  Timed:
  ``app.services.reports.shift_report`` (the query) + ``printing.reports.shift_report_pdf``
  (Chinese) + ``shift_report_csv``, median of 3.  Target: at most 2 s for 5,000 sales.
* ``stats``: ``app.services.reports.stats_report`` over ``--customers`` customers of one office
  (default 1,000,000) with card write-backs in every balance bucket, inserted in bulk.  It is one
  GROUP BY pass over the office's customers plus two over the period's sales; reference figure,
  with a target of at most 5 s for 1,000,000 customers (scaled linearly).
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy import select

from app.clock import FixedClock
from app.persistence.db import Database
from app.persistence.models import Customer
from app.persistence.models import FeePayment
from app.persistence.models import Reversal
from app.persistence.models import Sale
from app.persistence.models import Shift
from app.persistence.models import TariffPlan
from app.persistence.models import TariffVersion
from app.services import auth
from app.services import reports
from app.services import shifts
from app.services.demo import load_demo
from printing import reports as render
from tests.bench.common import bench_main
from tests.bench.common import emit
from tests.bench.common import median
from tests.bench.common import progress
from tests.bench.common import rounded
from tests.rigs.sale_rows import sale_row

TARGET_ZREPORT_S = 2.0
TARGET_STATS_S_PER_1M = 5.0
START = dt.datetime(2026, 3, 2, 0, 30, tzinfo=dt.UTC)  # 08:30 in Shanghai
FLOAT = 100_000
BATCH = 20_000


def fill_shift(db: Database, shift_id: str, n: int) -> None:
    """``n`` sales of the open shift ``shift_id``, with reversals and fee payments."""
    with db.write() as session:
        customers = session.execute(
            select(Customer.id, Customer.tariff_plan_id, Customer.meter_kind).order_by(Customer.id)
        ).all()
        versions = dict(session.execute(select(TariffVersion.plan_id, TariffVersion.id)).all())
        sales: list[dict[str, Any]] = []
        reversals: list[dict[str, Any]] = []
        fees: list[dict[str, Any]] = []
        counts: dict[int, int] = {}
        for i in range(n):
            cid, plan, kind = customers[i % len(customers)]
            when = START + dt.timedelta(seconds=5 * i)
            amount = 1000 + (i * 37) % 19000
            arrears = 500 if i % 11 == 0 else 0
            state = "reversed" if i % 50 == 7 else "failed" if i % 97 == 3 else "completed"
            count = None
            if kind == "card":
                counts[cid] = counts.get(cid, 0) + 1
                count = counts[cid]
            sid = str(uuid.uuid4())
            sales.append(
                sale_row(
                    sid,
                    cid,
                    amount,
                    kind=kind,
                    purchase_count=count,
                    tariff_version_id=versions[plan],
                    shift_id=shift_id,
                    at=when,
                    state=state,
                    arrears=arrears,
                    cash_received=amount + 500 if i % 3 == 0 else None,
                    remote_status="queued" if kind == "remote" else None,
                )
            )
            if state == "reversed":
                later = when + dt.timedelta(seconds=2)
                reversals.append(
                    {
                        "id": str(uuid.uuid4()),
                        "sale_id": sid,
                        "operator_id": "t01",
                        "approver_id": "s01",
                        "counter_id": "C01",
                        "shift_id": shift_id,
                        "amount": amount,
                        "state": "completed",
                        "created_at": later,
                        "completed_at": later,
                    }
                )
            if i % 500 == 250:
                fees.append(
                    {
                        "id": str(uuid.uuid4()),
                        "customer_id": cid,
                        "kind": "replacement",
                        "amount": 2000,
                        "operator_id": "t01",
                        "counter_id": "C01",
                        "shift_id": shift_id,
                        "created_at": when,
                    }
                )
        session.execute(insert(Sale.__table__), sales)
        if reversals:
            session.execute(insert(Reversal.__table__), reversals)
        if fees:
            session.execute(insert(FeePayment.__table__), fees)


def fill_customers(db: Database, n: int, now: dt.datetime) -> None:
    """``n`` more customers of office DEMO, 1 in 10 remote, with write-backs in every bucket
    (and none for a fifth of them), 1 in 50 paused and 1 in 200 closed."""
    with db.write() as session:
        plans = list(session.scalars(select(TariffPlan.id).order_by(TariffPlan.id)))
        remaining = (None, 50_000, 15_000, 1_500, 500, -100, 0, 8_000, 30_000, None)
        for start in range(0, n, BATCH):
            rows = []
            for i in range(start, min(n, start + BATCH)):
                kind = "remote" if i % 10 == 9 else "card"
                rows.append(
                    {
                        "customer_no": f"{300_000_000_000 + i}",
                        "name": "王" + "伟芳娜秀英敏静丽强磊"[i % 10],
                        "address": f"示范市人民路{i}号",
                        "phone": "",
                        "phone_rev": "",
                        "meter_no": f"{400_000_000_000 + i}",
                        "meter_kind": kind,
                        "status": "closed"
                        if i % 200 == 13
                        else "paused"
                        if i % 50 == 7
                        else "active",
                        "office_code": "DEMO",
                        "tariff_plan_id": plans[i % len(plans)],
                        "ct_ratio": 1,
                        "pt_ratio": 1,
                        "alarm1": 2000,
                        "alarm2": 1000,
                        "overdraft_limit": 0,
                        "credit_ceiling": 99_999_999,
                        "card_serial": None,
                        "purchase_count": 0,
                        "meter_remaining": remaining[i % len(remaining)]
                        if kind == "card"
                        else None,
                        "updated_at": now,
                    }
                )
            session.execute(insert(Customer.__table__), rows)


def bench_zreport(folder: Path, n: int, repeats: int = 3) -> tuple[dict[str, Any], Database]:
    db = Database(str(folder / "reports.db"))
    db.migrate()
    clock = FixedClock(START)
    load_demo(db, clock)
    teller = auth.login(db, "t01", "demo-t01", counter_id="C01", clock=clock)
    shift_id = shifts.open_shift(db, actor=teller, float_fen=FLOAT, clock=clock).shift_id
    progress(f"inserting a shift of {n:,} sales ...")
    fill_shift(db, shift_id, n)
    clock.set(START + dt.timedelta(seconds=5 * n + 60))
    teller.last_activity = clock.now()
    with db.read() as session:
        shift = session.get(Shift, shift_id)
        assert shift is not None
        expected = shifts.expected_cash(session, shift)
    shifts.close_shift(db, actor=teller, counted_fen=expected, clock=clock)
    supervisor = auth.login(db, "s01", "demo-s01", counter_id="C01", clock=clock)
    progress(f"Z-report over {n:,} sales, {repeats} times ...")
    query_s: list[float] = []
    pdf_s: list[float] = []
    csv_s: list[float] = []
    total_s: list[float] = []
    pdf_bytes = csv_chars = 0
    correct = True
    for _ in range(repeats):
        t0 = time.perf_counter()
        report = reports.shift_report(
            db, shift_id, actor=supervisor, clock=clock, office_code="DEMO"
        )
        t1 = time.perf_counter()
        pdf = render.shift_report_pdf(report, language="zh_CN")
        t2 = time.perf_counter()
        text = render.shift_report_csv(report)
        t3 = time.perf_counter()
        query_s.append(t1 - t0)
        pdf_s.append(t2 - t1)
        csv_s.append(t3 - t2)
        total_s.append(t3 - t0)
        pdf_bytes, csv_chars = len(pdf), len(text)
        correct = correct and (
            len(report.sales) == n
            and report.expected_cash_fen == expected == report.float_fen + report.net_cash_fen
            and report.variance_fen == 0
            and pdf.startswith(b"%PDF")
        )
    seconds = median(total_s)
    record = {
        "bench": "reports",
        "kind": "zreport",
        "database": "sqlite",
        "sales": n,
        "query_s": rounded(median(query_s)),
        "pdf_s": rounded(median(pdf_s)),
        "csv_s": rounded(median(csv_s)),
        "median_s": rounded(seconds),
        "max_s": rounded(max(total_s)),
        "pdf_kb": round(pdf_bytes / 1024),
        "csv_kb": round(csv_chars / 1024),
        "reversals": report.reversals_count,
        "target": f"<= {TARGET_ZREPORT_S:g} s",
        "ok": correct and seconds <= TARGET_ZREPORT_S,
    }
    return record, db


def bench_stats(db: Database, customers: int, repeats: int = 3) -> dict[str, Any]:
    clock = FixedClock(START + dt.timedelta(hours=10))
    progress(f"inserting {customers:,} customers ...")
    t0 = time.perf_counter()
    fill_customers(db, customers, clock.now())
    insert_s = time.perf_counter() - t0
    with db.write() as session:  # fresh statistics for the planner, as after an import
        session.connection().exec_driver_sql("ANALYZE")
    admin = auth.login(db, "s01", "demo-s01", counter_id="C01", clock=clock)
    progress(f"statistics over {customers + 1000:,} customers, {repeats} times ...")
    times: list[float] = []
    report = None
    for _ in range(repeats):
        admin.last_activity = clock.now()
        t = time.perf_counter()
        report = reports.stats_report(db, "DEMO", clock, actor=admin)
        times.append(time.perf_counter() - t)
    assert report is not None
    t = time.perf_counter()
    render.stats_report_pdf(report, language="zh_CN")
    render.stats_report_csv(report)
    render_s = time.perf_counter() - t
    total = customers + 1000  # and the demo's
    target = TARGET_STATS_S_PER_1M * total / 1_000_000
    seconds = median(times)
    return {
        "bench": "reports",
        "kind": "stats",
        "database": "sqlite",
        "customers": total,
        "insert_s": rounded(insert_s, 1),
        "median_s": rounded(seconds),
        "max_s": rounded(max(times)),
        "render_s": rounded(render_s),
        "sold_count": report.sold_count,
        "buckets": {b.bucket: b.count for b in report.balances},
        "target": f"<= {target:g} s",
        "ok": report.customers_total == total and seconds <= target,
    }


def run(sales: int = 5000, customers: int = 1_000_000) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="cardvend-bench-reports-") as tmp:
        record, db = bench_zreport(Path(tmp), sales)
        records = [emit(record)]
        if customers > 0:
            records.append(emit(bench_stats(db, customers)))
        db.dispose()
    return records


def main(argv: list[str] | None = None) -> int:
    return bench_main(__doc__, run, argv, sales=5000, customers=1_000_000)


if __name__ == "__main__":
    sys.exit(main())
