"""The customers page's "Change meter" (pytest-qt, offscreen): from the card's write-back, then
again with values typed from the display and a supervisor's approval; the new meter simulators
take the card and the slip is saved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.services.customers import customer_view
from cardio.meter_sim import MeterSimulator
from printing.meter_change import PdfSlipRenderer
from tests.test_gui_customers import CUSTOMER, WAIT_MS, Counter, _approve_on_spot

pytestmark = pytest.mark.gui

FIRST, SECOND = "990000000101", "990000000102"


@pytest.fixture
def counter(qtbot: Any, tmp_path: Path) -> Iterator[Counter]:
    c = Counter(qtbot, tmp_path)
    c.ctx.slip_renderer = PdfSlipRenderer()
    yield c
    c.window.close()


def meter(counter: Counter, tmp_path: Path, meter_no: str | None = None) -> MeterSimulator:
    name = meter_no or "old"
    return MeterSimulator(
        tmp_path / f"{name}.json", counter.kit.keys, meter_no=meter_no, clock=counter.ctx.clock
    )


def open_dialog(counter: Counter) -> Any:
    counter.open_customer(CUSTOMER)
    counter.qtbot.waitUntil(counter.page.meter_button.isEnabled, timeout=WAIT_MS)
    counter.page.meter_button.click()
    dialog = counter.page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    return dialog


def test_change_meter_from_the_card_then_typed_with_approval(
    counter: Counter, tmp_path: Path
) -> None:
    counter.sell_with_service(CUSTOMER, 5000)
    old = meter(counter, tmp_path)
    assert old.insert(counter.terminal()).credited == 5000

    dialog = open_dialog(counter)
    assert not dialog.remaining.isEnabled()  # the card is the default source
    dialog.new_meter.setText("12345")
    dialog.start_button.click()
    assert "12 digits" in dialog.message.text() and not dialog.completed
    dialog.new_meter.setText(FIRST)
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    text = dialog.message.text()
    assert f"to meter {FIRST}" in text and "50.00 yuan as purchase 1" in text
    assert dialog.slip_path is not None and dialog.slip_path.read_bytes().startswith(b"%PDF")
    assert customer_view(counter.db, CUSTOMER).meter_no == FIRST
    dialog.close()
    first = meter(counter, tmp_path, FIRST)
    assert first.insert(counter.terminal()).credited == 5000

    # the first new meter is faulty: its display is typed, a supervisor approves
    dialog = open_dialog(counter)
    dialog.new_meter.setText(SECOND)
    dialog.source.setCurrentIndex(dialog.source.findData("typed"))
    assert dialog.remaining.isEnabled() and not dialog.where.isEnabled()
    dialog.remaining.setText("-3.00")
    dialog.purchase_count.setText("1")
    dialog.reading.setText("12.5")
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.approval is not None, timeout=WAIT_MS)
    _approve_on_spot(counter, dialog, "s01", "demo-s01")
    counter.qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    text = dialog.message.text()
    assert "overdraft of 3.00 yuan is now arrears" in text and "Approved by s01." in text
    assert dialog.outcome.energy_wh == 12_500 and dialog.outcome.approver_id == "s01"
    dialog.close()
    second = meter(counter, tmp_path, SECOND)
    result = second.insert(counter.terminal())
    assert result.accepted and second.state.purchase_count == 1 and second.state.remaining == 0
