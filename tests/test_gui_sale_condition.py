""" "Call the meter" on the sale page, offscreen, with real processes: the fleet simulator and
the station (``central serve --terminals``) call a remote customer's meter and the page shows
the relay the simulator has; a meter that does not answer keeps the window responsive (the
button waits disabled) and ends in a clear line; a station without terminals and a station
that is away are clear lines too, and the sale stays possible throughout."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from sync import contract as c
from sync.client import CentralClient
from sync.views import ClientViews
from tests.rigs.cli import ok_json
from tests.rigs.cli import run
from tests.rigs.condition import SILENT
from tests.rigs.condition import fleet_and_station
from tests.rigs.context import SELLING
from tests.rigs.context import make_ctx
from tests.rigs.counter import REMOTE
from tests.rigs.sale_window import WAIT_MS
from tests.rigs.sale_window import training_window

pytestmark = pytest.mark.gui

METER_WAIT_MS = 40_000  # the station's meter timeout and more


def views(url: str) -> ClientViews:
    """This counter (C01) registered with the station at ``url``, its views over the contract."""
    client = CentralClient(url, None)
    token = client.register(
        c.RegisterRequest(counter_id="C01", office_code="DEMO", name="test"), "office-secret"
    ).token
    client.close()
    return ClientViews(lambda: CentralClient(url, token))


def choose(qtbot: Any, page: Any, customer_no: str) -> None:
    page.search.setText(customer_no)
    page.find_remote()
    qtbot.waitUntil(lambda: page.control.customer_no == customer_no, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "asking" not in page.control_line.text(), timeout=WAIT_MS)


def test_the_sale_page_calls_the_customers_meter(qtbot: Any, tmp_path: Path) -> None:
    from PySide6.QtCore import QTimer

    from ui.pages import sale as sale_page

    db = f"sqlite:///{tmp_path / 'station.db'}"
    with fleet_and_station(tmp_path, db) as station:
        ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING)
        ctx.station = views(station.url)
        window, page, _dock = training_window(qtbot, ctx)
        assert not page.call_meter.isVisible() and not page.condition_line.isVisible()

        choose(qtbot, page, REMOTE)
        assert page.call_meter.isVisible() and page.call_meter.isEnabled()
        page.call_meter.click()
        assert not page.call_meter.isEnabled() and "calling" in page.condition_line.text()
        qtbot.waitUntil(lambda: page.control.condition is not None, timeout=METER_WAIT_MS)
        assert station.fleet_state is not None
        shown = ok_json(run(tmp_path / "fleet-home", "fleet", "show", "--state",
                            str(station.fleet_state), "--json"))  # fmt: skip
        relay = next(r["relay"] for r in shown["meters"] if r["meter_no"] == "200000000010")
        text = page.condition_line.text()
        assert page.control.condition["relay"] == relay
        assert f"relay {relay}" in text and "200000000010" in text and "kWh" in text, text
        assert page.call_meter.isEnabled() and page.control_line.isVisible()

        choose(qtbot, page, SILENT)  # the next customer: nothing of the last call stays
        assert not page.condition_line.isVisible() and page.control.condition is None
        page.call_meter.click()
        ticks: list[int] = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(1))
        timer.start(50)
        qtbot.waitUntil(lambda: len(ticks) >= 10, timeout=5_000)  # the window keeps working
        timer.stop()
        assert not page.call_meter.isEnabled()  # still calling the silent meter
        assert page.state == sale_page.REMOTE  # the payment can be taken meanwhile
        qtbot.waitUntil(lambda: "did not answer" in page.condition_line.text(),
                        timeout=METER_WAIT_MS)  # fmt: skip
        assert page.call_meter.isEnabled() and page.control.condition is None

        page.cancel()
        assert not page.call_meter.isVisible() and not page.condition_line.isVisible()
        window.close()


def test_a_station_without_terminals_or_away_says_so(qtbot: Any, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'station.db'}"
    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING)
    with fleet_and_station(tmp_path, db, terminals=False) as station:
        ctx.station = views(station.url)
        window, page, _dock = training_window(qtbot, ctx)
        choose(qtbot, page, REMOTE)
        page.call_meter.click()
        qtbot.waitUntil(lambda: page.call_meter.isEnabled(), timeout=WAIT_MS)
        text = page.condition_line.text()
        assert "not connected to the meters' terminals" in text, text
    page.call_meter.click()  # the station has stopped
    qtbot.waitUntil(lambda: page.call_meter.isEnabled(), timeout=WAIT_MS)
    assert "cannot be reached" in page.condition_line.text(), page.condition_line.text()
    window.close()


def test_the_meter_lines_read_in_chinese() -> None:
    from app.errors import CardVendError
    from app.i18n import set_language
    from app.presenters.control import meter_line
    from ui.pages.sale_control import refusal

    codes = ["terminal_no_answer", "no_terminals", "not_remote", "not_found", "central_unreachable"]
    set_language("zh_CN")
    try:
        lines = [meter_line("200000000010", "closed", "2026-12-05 21:50:01", 12345, "—")]
        lines += [meter_line("200000000010", relay, None, None, "—") for relay in ("open", None)]
        lines += [refusal(type("Refused", (CardVendError,), {"code": code})()) for code in codes]
        for line in lines:
            assert set(re.findall(r"[A-Za-z]{3,}", line)) <= {"kWh"}, line
        assert "继电器合闸" in lines[0] and "12.345" in lines[0]
    finally:
        set_language("en")
