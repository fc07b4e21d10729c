"""The technician's jobs page (F9), offscreen on a demo database: a job listed for the office,
taken, its card programmed after the content is shown, applied by a simulated meter, returned,
closed and queued for the central system; tellers do not see the page."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from sqlalchemy import select

from app.context import AppContext
from app.domain.card import CardKind
from app.persistence.models import MgmtJob
from app.persistence.models import OutboxEntry
from app.settings import UTILITY_CODE
from cardio.meter_sim import MeterSimulator
from tests.cardkit import UTILITY
from tests.cardkit import CardKit
from tests.rigs.context import make_ctx
from tests.rigs.context import sign_in
from tests.rigs.sale_window import main_window

pytestmark = pytest.mark.gui

CUSTOMER = "100000000001"
METER = "200000000001"
WAIT = 10_000  # ms


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    return make_ctx(tmp_path / "home", data="prepared", **{UTILITY_CODE.key: UTILITY})


def add_job(ctx: AppContext, *, created: dt.datetime) -> str:
    job_id = str(uuid.uuid4())
    with ctx.db.write() as session:
        session.add(
            MgmtJob(
                id=job_id,
                kind="purchase_params",
                customer_no=CUSTOMER,
                meter_no=METER,
                office_code=ctx.office_code,
                params={"alarm1": 3000, "alarm2": 1500, "overdraft_limit": 500},
                status="open",
                created_at=created,
                updated_at=created,
            )
        )
    return job_id


def test_tellers_do_not_see_the_jobs_page(qtbot: Any, ctx: AppContext) -> None:
    assert "jobs" not in main_window(qtbot, ctx, sign_in(ctx, "t01")).pages


def test_take_program_apply_return(
    qtbot: Any, ctx: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = add_job(ctx, created=ctx.clock.now())
    kit = CardKit(tmp_path)
    image = kit.blank()
    kit.terminal(image).issue(CardKind.PARAMETERS)
    window = main_window(qtbot, ctx, sign_in(ctx, "f01"))
    window.terminal = lambda: kit.terminal(image)  # the card in the reader
    window.show_page("jobs")
    page = window.pages["jobs"]
    qtbot.waitUntil(lambda: page.open.rowCount() == 1, timeout=WAIT)
    assert page.open.item(0, 3).text() == METER and "alarm1=3000" in page.open.item(0, 4).text()
    assert not page.program_button.isEnabled()  # not taken yet

    page.open.selectRow(0)
    qtbot.mouseClick(page.take_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.mine.rowCount() == 1, timeout=WAIT)
    assert page.open.rowCount() == 0

    shown: list[str] = []

    def confirm(_parent: Any, _title: str, text: str, *a: Any) -> QMessageBox.StandardButton:
        shown.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", confirm)
    page.mine.selectRow(0)
    qtbot.mouseClick(page.program_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "is written" in page.message.text(), timeout=WAIT)
    assert shown and "alarm1_fen: 3000" in shown[0] and METER in shown[0]  # shown before writing
    qtbot.waitUntil(lambda: "card out" in page.mine.item(0, 6).text(), timeout=WAIT)

    meter = MeterSimulator(tmp_path / "meter.json", kit.keys, meter_no=METER, clock=ctx.clock)
    meter.insert(kit.terminal(image))  # on site: the meter applies it and writes its result

    qtbot.mouseClick(page.return_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "applied by the meter" in page.message.text(), timeout=WAIT)
    qtbot.waitUntil(lambda: page.mine.rowCount() == 0, timeout=WAIT)
    assert page.returned.rowCount() == 1
    assert page.returned.item(0, 4).text() == "applied by the meter"
    with ctx.db.read() as session:
        job = session.get(MgmtJob, job_id)
        assert job is not None and (job.status, job.result) == ("done", "applied")
        kinds = session.scalars(select(OutboxEntry.kind)).all()
        assert kinds.count("job_result") == 1


def test_an_overdue_card_is_flagged(qtbot: Any, ctx: AppContext, tmp_path: Path) -> None:
    job_id = add_job(ctx, created=ctx.clock.now())
    kit = CardKit(tmp_path)
    image = kit.blank()
    kit.terminal(image).issue(CardKind.PARAMETERS)
    principal = sign_in(ctx, "f01")
    from app.services import jobs

    jobs.take(ctx.db, principal, ctx.clock, job_id, office_code=ctx.office_code)
    jobs.program(
        ctx.db,
        principal,
        ctx.clock,
        job_id,
        kit.terminal(image),
        office_code=ctx.office_code,
        utility_code=UTILITY,
    )
    with ctx.db.write() as session:  # the card went out ten days ago
        job = session.get(MgmtJob, job_id)
        assert job is not None
        job.issued_at = ctx.clock.now() - dt.timedelta(days=10)
    window = main_window(qtbot, ctx, sign_in(ctx, "f01"))
    window.show_page("jobs")
    page = window.pages["jobs"]
    qtbot.waitUntil(lambda: page.mine.rowCount() == 1, timeout=WAIT)
    assert "OVERDUE" in page.mine.item(0, 6).text()
    assert "more than 7 days" in page.message.text()


def test_the_meter_page_reads_and_trips_a_meter_over_tcp(
    qtbot: Any, ctx: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cardvend meter simulate --tcp 0`` as a process; the page reads it through the
    composition root's meter reader, shows the values, trips the relay (audited)."""
    import main
    from app.persistence.models import AuditEntry
    from cardio.wiring import ensure_demo_keystore
    from tests.rigs.meter import METER
    from tests.rigs.meter import Simulator

    main.wire_meters(ctx)
    ensure_demo_keystore(ctx)  # the simulated meter's keys
    sim = Simulator(tmp_path / "home", tmp_path / "meter.json", "--tcp", "0")
    try:
        assert sim.endpoint is not None
        window = main_window(qtbot, ctx, sign_in(ctx, "f01"))
        window.show_page("meter")
        page = window.pages["meter"]
        page.where.setText(sim.endpoint)
        page.addr.setText("２" + METER[1:])  # a full-width digit from an input method
        qtbot.mouseClick(page.read_button, Qt.MouseButton.LeftButton)
        assert "12 digits" in page.message.text()  # refused before anything is sent
        page.addr.setText(METER)
        qtbot.mouseClick(page.read_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "answered" in page.message.text(), timeout=WAIT)
        assert page.values["purchase_count"].text() == "0"
        assert page.values["relay"].text() == "open (power off)"  # a new meter has no credit

        def relay_rows() -> list[tuple[str, str]]:
            with ctx.db.read() as session:
                rows = session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "meter_relay")
                ).all()
                return [(r.operator_id, r.result) for r in rows]

        monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.Yes)
        page.command.setCurrentIndex(page.command.findData("close"))
        qtbot.mouseClick(page.send_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: relay_rows() == [("f01", "failed")], timeout=WAIT)
        qtbot.waitUntil(lambda: page.read_button.isEnabled(), timeout=WAIT)
        assert page.message.property("tone") == "error"  # no credit, no close permit
        page.command.setCurrentIndex(page.command.findData("trip"))
        qtbot.mouseClick(page.send_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: relay_rows()[-1:] == [("f01", "ok")], timeout=WAIT)
        qtbot.waitUntil(lambda: "answered" in page.message.text(), timeout=WAIT)
        assert page.values["relay"].text() == "open (power off)"
    finally:
        sim.stop()


def test_tellers_do_not_see_the_meter_page(qtbot: Any, ctx: AppContext) -> None:
    assert "meter" not in main_window(qtbot, ctx, sign_in(ctx, "t01")).pages
