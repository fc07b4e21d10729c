"""The control state of a remote fee-control customer on the sale page, offscreen, from a real
station in this process (its control loop run once, balances only): shown when the customer is
found, hidden for the next customer, and a short note (the sale still possible) once the station
has stopped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.clock import SystemClock
from sync import contract as c
from sync.central import CentralServer
from sync.central import CentralStore
from sync.central.control import ControlLoop
from sync.central.control import control_status
from sync.central.seed import seed_demo
from sync.client import CentralClient
from sync.views import ClientViews
from tests.rigs.context import SELLING
from tests.rigs.context import make_ctx
from tests.rigs.counter import REMOTE
from tests.rigs.sale_window import WAIT_MS
from tests.rigs.sale_window import training_window

pytestmark = pytest.mark.gui


def test_the_sale_page_shows_the_station_control_state(qtbot: Any, tmp_path: Path) -> None:
    from ui.pages import sale as sale_page

    store = CentralStore(f"sqlite:///{tmp_path / 'central.db'}", clock=SystemClock())
    seed_demo(store, SystemClock().now())
    ControlLoop(store, None, opening_fen=5000).run()  # the remote customers under control
    server = CentralServer("", store=store)
    server.start()
    try:
        client = CentralClient(server.url, None)
        token = client.register(
            c.RegisterRequest(counter_id="C01", office_code="DEMO", name="test"), None
        ).token
        client.close()
        ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING)
        ctx.station = ClientViews(lambda: CentralClient(server.url, token))
        window, page, _dock = training_window(qtbot, ctx)
        assert not page.control_line.isVisible()

        page.search.setText(REMOTE)
        page.find_remote()
        qtbot.waitUntil(lambda: page.control.status is not None, timeout=WAIT_MS)
        held = control_status(store, REMOTE)
        assert held is not None and page.control.status["state"] == held["state"]
        text = page.control_line.text()
        assert page.control_line.isVisible() and page.state == sale_page.REMOTE
        assert REMOTE in text and "normal" in text and "50.00" in text, text

        page.cancel()  # the next customer: nothing of this one stays
        assert not page.control_line.isVisible() and page.control.status is None

        server.stop()
        page.search.setText(REMOTE)
        page.find_remote()
        qtbot.waitUntil(lambda: "cannot be reached" in page.control_line.text(), timeout=WAIT_MS)
        assert page.state == sale_page.REMOTE  # the payment can still be taken (queued)
        window.close()
    finally:
        server.stop()
        store.dispose()
