"""Pause, resume and close an account from the customers page: the status and its reason shown,
the settlement shown before the supervisor approves the close, the statement saved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from app.domain.settlement import Settlement
from app.errors import Conflict
from app.services import selling
from app.services.customers import customer_view
from cardio.meter_sim import MeterSimulator
from tests.test_gui_customers import CUSTOMER, WAIT_MS, Counter, _approve_on_spot, type_text

pytestmark = pytest.mark.gui


@pytest.fixture
def counter(qtbot: Any, tmp_path: Path) -> Iterator[Counter]:
    c = Counter(qtbot, tmp_path)
    yield c
    c.window.close()


class StatementRenderer:
    """The report renderer main.py sets, for the settlement statement."""

    def report_pdf(self, report: object, *, language: str) -> bytes:
        from printing.reports import settlement_pdf

        assert isinstance(report, Settlement)
        return settlement_pdf(report, language=language)

    def report_csv(self, report: object) -> str:
        raise NotImplementedError


def _sell(counter: Counter, amount: int) -> None:
    selling.sell(
        counter.db,
        counter.terminal(),
        actor=counter.teller,
        amount=amount,
        clock=counter.ctx.clock,
        settings=counter.ctx.settings,
    )


def test_pause_resume_then_close_from_the_customers_page(counter: Counter, tmp_path: Path) -> None:
    counter.ctx.report_renderer = StatementRenderer()
    counter.sell_with_service(CUSTOMER, 5000)
    meter = MeterSimulator(tmp_path / "meter.json", counter.kit.keys, clock=counter.ctx.clock)
    meter.insert(counter.terminal())  # the meter loaded the purchase and wrote back 50.00
    counter.open_customer(CUSTOMER)
    page = counter.page
    assert page.pause_button.isEnabled() and not page.resume_button.isEnabled()

    page.pause_button.click()
    dialog = page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    type_text(counter.qtbot, dialog.reason, "vacant house")
    counter.qtbot.keyClick(dialog.reason, Qt.Key.Key_Return)
    counter.qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    assert "paused: vacant house" in dialog.message.text()
    dialog.close()
    counter.qtbot.waitUntil(lambda: "vacant house" in page.fields["status"].text(), timeout=WAIT_MS)
    assert page.resume_button.isEnabled() and not page.pause_button.isEnabled()
    assert not page.sell_button.isEnabled()
    with pytest.raises(Conflict, match=r"paused \(vacant house\)"):
        _sell(counter, 1000)

    page.resume_button.click()
    dialog = page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    assert "vacant house" in dialog.info.text()
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    dialog.close()
    counter.qtbot.waitUntil(page.pause_button.isEnabled, timeout=WAIT_MS)
    assert customer_view(counter.db, CUSTOMER).status == "active"

    # the close: the settlement first (card read), then the supervisor approves
    page.close_account_button.click()
    dialog = page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    type_text(counter.qtbot, dialog.reason, "moved away")
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.preview is not None, timeout=WAIT_MS)
    assert "Hand back 50.00 yuan" in dialog.message.text()
    assert customer_view(counter.db, CUSTOMER).status == "active"  # nothing closed yet
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.approval is not None, timeout=WAIT_MS)
    _approve_on_spot(counter, dialog, "s01", "demo-s01")
    counter.qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    assert "closed, approved by s01" in dialog.message.text()
    view = customer_view(counter.db, CUSTOMER)
    assert (view.status, view.status_reason, view.card_serial) == ("closed", "moved away", None)
    statements = counter.ctx.paths.data_dir / "statements"
    counter.qtbot.waitUntil(
        lambda: statements.is_dir() and any(statements.glob("close-*.pdf")), timeout=WAIT_MS
    )
    dialog.close()
    counter.qtbot.waitUntil(lambda: not page.close_account_button.isEnabled(), timeout=WAIT_MS)
    assert "moved away" in page.fields["status"].text()
