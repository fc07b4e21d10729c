"""The shift, central link and reports pages of the counter window, offscreen, on a demo
database: a shift opened and closed with a cash count by denominations, its Z-report on screen
and as a PDF read back with pdftotext, the sync status and the registration hint, the reports'
charts and a CSV export."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from sqlalchemy import select

from app.context import AppContext
from app.persistence.models import Shift
from app.services import selling
from app.services import shifts
from app.services.auth import Principal
from app.services.sync_status import pending_records
from app.services.sync_status import sync_status
from tests.rigs.context import make_ctx
from tests.rigs.context import sign_in
from tests.rigs.sale_window import main_window

pytestmark = pytest.mark.gui

REMOTE = "100000000020"  # a demo remote fee-control customer without dues
WAIT = 10_000  # ms


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    # the demo database; the report renderer, as main.py wires it
    return make_ctx(tmp_path / "home", data="prepared", wire=("printing",))


def remote_payment(ctx: AppContext, actor: Principal, amount: int) -> None:
    selling.remote_payment(
        ctx.db,
        actor=actor,
        customer_no=REMOTE,
        amount=amount,
        clock=ctx.clock,
        settings=ctx.settings,
        cash_received=amount,
    )


def cells(table: Any) -> list[list[str]]:
    from ui.pages.reports import table_text

    return table_text(table)


def test_counted_cash_is_count_times_face_value() -> None:
    from ui.pages.shift import DENOMINATIONS
    from ui.pages.shift import counted_fen

    assert [face for face, _ in DENOMINATIONS] == [
        10000,
        5000,
        2000,
        1000,
        500,
        100,
        50,
        10,
        5,
        2,
        1,
    ]
    assert counted_fen({10000: 3, 50: 3, 10: 7, 1: 9}) == 30000 + 150 + 70 + 9
    assert counted_fen({}) == 0


def test_open_and_close_a_shift_with_a_cash_count(
    qtbot: Any, ctx: AppContext, tmp_path: Path
) -> None:
    teller = sign_in(ctx, "t01")
    window = main_window(qtbot, ctx, teller)
    page = window.pages["shift"]
    window.show_page("shift")
    qtbot.waitUntil(lambda: page.open_box.isEnabled(), timeout=WAIT)
    assert not page.close_box.isEnabled()

    # a float that is not an amount is refused with the reason
    page.float_edit.setText("12.345")
    qtbot.keyClick(page.float_edit, Qt.Key.Key_Return)
    assert "12.345" in page.status.text() and page.shift is None

    page.float_edit.setText("500")
    qtbot.keyClick(page.float_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: page.shift is not None and page.close_box.isEnabled(), timeout=WAIT)
    assert page.shift.float_fen == 50000
    assert shifts.current_shift(ctx.db, ctx.counter_id) is not None

    remote_payment(ctx, teller, 8800)
    page.refresh()
    qtbot.waitUntil(lambda: page.report is not None and len(page.report.sales) == 1, timeout=WAIT)
    rows = cells(page.report_table)
    assert len(rows) == 1 and rows[0][3] == REMOTE and rows[0][5] == "88.00"
    assert "588.00" in page.report_summary.text()  # expected so far: float + the sale
    assert "(reversed sales included)" in page.report_summary.text()

    # the count: 5 x 100, 1 x 50, 1 x 20, 1 x 10, 8 x 1 yuan and one 5 jiao coin = 588.50,
    # typed with Enter moving from one denomination to the next
    typed = {10000: "5", 5000: "1", 2000: "1", 1000: "1", 500: "0", 100: "8", 50: "1"}
    page.counts[10000].setFocus()
    for face, text in typed.items():
        box = page.counts[face]
        box.selectAll()
        qtbot.keyClicks(box, text)
        qtbot.keyClick(box, Qt.Key.Key_Return)
    assert page.counted() == 58850
    assert "588.50" in page.total_label.text()
    # counted - expected while counting; a difference asks for the reason first
    assert "counted − expected = +0.50" in page.difference_label.text()
    page.close_button.click()
    assert not page.confirming and "say why first" in page.status.text()
    assert page.reason_edit.isVisible() and page.reason_edit.hasFocus()
    qtbot.keyClicks(page.reason_edit, "a 5 jiao coin from the last customer")

    page.close_button.click()  # the first press asks to confirm
    assert page.confirming and "588.50" in page.confirm_label.text()
    qtbot.keyClick(page, Qt.Key.Key_Escape)  # Esc takes it back
    assert not page.confirming
    page.close_button.click()
    page.close_button.click()
    qtbot.waitUntil(lambda: page.closed is not None, timeout=WAIT)

    with ctx.db.read() as session:
        shift = session.scalars(select(Shift)).one()
        assert (shift.expected_cash, shift.counted_cash, shift.variance) == (58800, 58850, 50)
        assert shift.variance_reason == "a 5 jiao coin from the last customer"
        assert shift.closed_at is not None
    assert page.expected_value.text() == "588.00"
    assert page.counted_value.text() == "588.50"
    assert "+0.50" in page.variance_value.text()
    assert page.open_box.isEnabled() and not page.close_box.isEnabled()

    # the Z-report of the closed shift
    qtbot.waitUntil(lambda: page.report is not None and not page.report.is_open, timeout=WAIT)
    assert page.report.variance_fen == 50
    assert any(r[3] == REMOTE and r[5] == "88.00" for r in cells(page.report_table))
    assert "+0.50" in page.report_summary.text()

    saved: list[Path] = []
    page.save_zreport(str(tmp_path / "z-report.pdf"), on_saved=saved.append)
    qtbot.waitUntil(lambda: bool(saved), timeout=WAIT)
    pdf = saved[0]
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "88.00" in text and "588.50" in text and REMOTE in text

    # a folder that is not there: the report is not saved, and the page says what to do
    page.save_zreport(str(tmp_path / "missing" / "z.pdf"))
    qtbot.waitUntil(lambda: "was not saved" in page.status.text(), timeout=WAIT)
    assert "Choose a folder" in window.message.text()

    # a teller may not export a CSV (an export needs EXPORT_REPORTS)
    assert not page.csv_button.isEnabled()
    page.save_zreport(str(tmp_path / "z-report.csv"))
    assert "supervisor" in page.status.text() and not (tmp_path / "z-report.csv").exists()


def test_closing_with_a_short_count_shows_the_shortfall(qtbot: Any, ctx: AppContext) -> None:
    teller = sign_in(ctx, "t01")
    shifts.open_shift(ctx.db, actor=teller, float_fen=10000, clock=ctx.clock)
    window = main_window(qtbot, ctx, teller)
    page = window.pages["shift"]
    window.show_page("shift")
    qtbot.waitUntil(lambda: page.close_box.isEnabled(), timeout=WAIT)
    page.counts[5000].setValue(1)
    page.counts[2000].setValue(2)
    page.counts[1].setValue(3)  # 90.03 counted against 100.00
    assert "counted − expected = -9.97 (short)" in page.difference_label.text()
    page.reason_edit.setText("a customer's change was counted twice")
    page.request_close()
    page.request_close()
    qtbot.waitUntil(lambda: page.closed is not None, timeout=WAIT)
    assert page.closed.variance_fen == -997
    assert "-9.97" in page.variance_value.text()
    with ctx.db.read() as session:
        assert session.scalars(select(Shift.variance)).one() == -997


def test_sync_page_shows_pending_records_and_how_to_register(qtbot: Any, ctx: AppContext) -> None:
    teller = sign_in(ctx, "t01")
    shifts.open_shift(ctx.db, actor=teller, float_fen=0, clock=ctx.clock)
    remote_payment(ctx, teller, 4000)
    remote_payment(ctx, teller, 1250)
    status = sync_status(ctx.db, ctx.clock, ctx.counter_id)
    assert status.pending >= 2
    records = pending_records(ctx.db, ctx.counter_id, 100)
    assert len(records) == status.pending and records[0].created_at <= records[-1].created_at
    assert len(pending_records(ctx.db, ctx.counter_id, 1)) == 1

    window = main_window(qtbot, ctx, teller)
    page = window.pages["sync"]
    window.show_page("sync")
    qtbot.waitUntil(lambda: page.status_data is not None, timeout=WAIT)
    assert page.pending_value.text().startswith(f"{status.pending} ")
    assert format(status.pending_amount / 100, ".2f") in page.pending_value.text()
    assert page.table.rowCount() == status.pending
    assert {"40.00", "12.50"} <= {row[3] for row in cells(page.table)}
    assert page.register_note.isVisible()
    # a command the administrator can run as it is: it names who registers (a required argument)
    assert "cardvend counter register --central URL --operator ID" in page.register_note.text()

    page.sync_button.click()
    assert "not registered" in page.message.text()
    assert "cardvend counter register --central URL --operator ID" in window.message.text()

    class Worker:
        woken = 0

        def sync_now(self) -> None:
            self.woken += 1

    worker = Worker()
    window.sync_worker = worker
    page.activated()
    assert not page.register_note.isVisible()
    qtbot.keyClick(page.sync_button, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert worker.woken == 1 and "Syncing" in page.message.text()


def test_sync_page_lists_refused_records_with_what_to_do(qtbot: Any, ctx: AppContext) -> None:
    import json

    from sqlalchemy import update

    from app.persistence.models import OutboxEntry
    from app.persistence.models import Setting
    from app.services.sync_status import AUDIT_DIVERGED
    from app.services.sync_status import counter_key

    teller = sign_in(ctx, "t01")
    shifts.open_shift(ctx.db, actor=teller, float_fen=0, clock=ctx.clock)
    remote_payment(ctx, teller, 4000)
    remote_payment(ctx, teller, 1250)
    with ctx.db.write() as session:  # what a sync round leaves behind for a refused record
        first = session.scalars(select(OutboxEntry.id).order_by(OutboxEntry.id)).first()
        session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id == first)
            .values(
                refused_at=ctx.clock.now(),
                refused_code="invalid",
                refused_reason="operator_id: String should match pattern (got 't02\\n')",
            )
        )
        message = {"since": ctx.clock.now().isoformat(), "seq": 9, "message": "seq 9 rewritten"}
        session.add(
            Setting(key=counter_key(AUDIT_DIVERGED, ctx.counter_id), value=json.dumps(message))
        )
    window = main_window(qtbot, ctx, teller)
    page = window.pages["sync"]
    window.show_page("sync")
    qtbot.waitUntil(lambda: page.status_data is not None, timeout=WAIT)
    assert page.status_data.refused == 1 and page.status_data.pending == 1
    assert page.table.rowCount() == 1 and page.refused_table.rowCount() == 1
    assert page.refused_table.isVisible() and "40.00 yuan" in page.refused_value.text()
    [row] = cells(page.refused_table)
    assert row[1] == "remote payment" and row[2].startswith(f"{first} · ")
    assert "operator_id" in row[4] and page.advice.isVisible()
    assert f"cardvend sync retry {first}" in page.advice.text()
    assert page.audit_note.isVisible() and "seq 9 rewritten" in page.audit_note.text()


def test_reports_page_charts_and_csv_export(qtbot: Any, ctx: AppContext, tmp_path: Path) -> None:
    teller = sign_in(ctx, "t01")
    shifts.open_shift(ctx.db, actor=teller, float_fen=0, clock=ctx.clock)
    remote_payment(ctx, teller, 8800)
    supervisor = sign_in(ctx, "s01")
    window = main_window(qtbot, ctx, supervisor)
    page = window.pages["reports"]
    window.show_page("reports")
    qtbot.waitUntil(lambda: page.daily is not None, timeout=WAIT)
    rows = cells(page.day_table)
    assert rows[-1][0] == "Total" and rows[-1][2] == "88.00"
    assert any(r[0].startswith("t01") for r in rows)
    assert cells(page.shift_table)[0][1] == "t01"

    page.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: page.stats is not None, timeout=WAIT)
    bars = page.amount_chart.bars
    assert len(bars) == 30 and bars[-1][1] == 8800 and sum(v for _, v in bars) == 8800
    buckets = page.balance_chart.bars
    assert len(buckets) == 5 and sum(v for _, v in buckets) == page.stats.balance_customers > 0
    for chart in (page.amount_chart, page.balance_chart):
        image = chart.grab().toImage()  # paints: the chart draws without an error
        assert not image.isNull() and image.width() > 100

    assert page.stats_csv.isEnabled()
    saved: list[Path] = []
    page.save(page.stats, str(tmp_path / "stats.csv"), on_saved=saved.append)
    qtbot.waitUntil(lambda: bool(saved), timeout=WAIT)
    text = saved[0].read_text(encoding="utf-8")
    assert len(list(csv.reader(io.StringIO(text)))) > 30
    page.export("daily", "csv", str(tmp_path / "daily"))
    qtbot.waitUntil(lambda: (tmp_path / "daily.csv").exists(), timeout=WAIT)
    assert "88.00" in (tmp_path / "daily.csv").read_text(encoding="utf-8")


def test_reports_page_for_a_teller_has_no_csv(qtbot: Any, ctx: AppContext) -> None:
    window = main_window(qtbot, ctx, sign_in(ctx, "t01"))
    page = window.pages["reports"]
    assert page.tabs.isEnabled()
    assert not page.day_csv.isEnabled() and not page.stats_csv.isEnabled()
    assert page.day_pdf.isEnabled()


def test_pages_without_a_signed_in_operator_say_so(qtbot: Any, ctx: AppContext) -> None:
    from ui.main_window import MainWindow

    window = MainWindow(ctx)
    qtbot.addWidget(window)
    assert "Sign in" in window.pages["reports"].denied.text()
    assert not window.pages["reports"].tabs.isEnabled()
    assert "Sign in" in window.pages["shift"].state_label.text()
    assert not window.pages["shift"].open_box.isEnabled()
