"""What the sale page shows is true and current: what blocks a sale is said as soon as the card
is read, the split of the amount before Enter, and a card changed by another page is read again
(no F9)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.services import shifts
from cardio import wiring
from tests.rigs.context import SELLING
from tests.rigs.context import make_ctx
from tests.rigs.context import sign_in
from tests.rigs.sale_window import CUSTOMER
from tests.rigs.sale_window import WAIT_MS
from tests.rigs.sale_window import card_behind_the_ledger
from tests.rigs.sale_window import insert
from tests.rigs.sale_window import training_window

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _no_keystore_passphrase(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(wiring.PASSPHRASE_ENV, raising=False)
    monkeypatch.setenv("CARDVEND_CARD_WAIT", "5")
    yield


def test_no_shift_is_said_when_the_card_is_read_and_f4_clears_it(
    qtbot: Any, tmp_path: Path
) -> None:
    from ui.pages import sale as page_module

    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING, printer="none")
    teller = sign_in(ctx, "t01")  # no shift open
    window, page, dock = training_window(qtbot, ctx, teller)
    insert(qtbot, dock, CUSTOMER, page, page_module.BLOCKED)
    assert "No shift is open on this counter: press F4" in page.situation.text()
    assert not page.amount.isEnabled() and not page.sell_button.isEnabled()

    # the shift page opens one: the sale page reads the card again by itself
    shifts.open_shift(ctx.db, actor=teller, float_fen=0, clock=ctx.clock)
    window.ledger_changed(source=window.pages["shift"])
    qtbot.waitUntil(lambda: page.state == page_module.READY, timeout=WAIT_MS)
    assert page.situation.text() == "Ready for a sale."
    window.close()


def test_a_technician_has_no_sale_page_and_selling_says_why(qtbot: Any, tmp_path: Path) -> None:
    from app.services import selling
    from ui.main_window import MainWindow

    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING, printer="none")
    technician = sign_in(ctx, "f01")
    window = MainWindow(ctx, principal=technician, training=True)
    qtbot.addWidget(window)
    assert "sale" not in window.pages and window.landing_page() == "jobs"
    readiness = selling.sale_readiness(ctx.db, technician, ctx.clock, ctx.settings)
    assert readiness.blocked is not None
    assert "Your role (technician) may not sell electricity" in readiness.blocked
    window.close()


def test_the_split_is_shown_before_enter(qtbot: Any, tmp_path: Path) -> None:
    from ui.pages import sale as page_module

    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING, printer="none")
    window, page, dock = training_window(qtbot, ctx)
    insert(qtbot, dock, CUSTOMER, page, page_module.READY)
    assert page.values["minimum"].text() == "0.01 yuan"
    qtbot.keyClicks(page.amount, "100")
    quote = page.assessment.quote(10000)
    assert quote.split.credit == 10000 and quote.energy_wh and quote.energy_wh > 0
    energy = f"{quote.energy_wh / 1000:.2f}"
    assert page.split.text() == f"100.00 yuan credit ({energy} kWh) goes onto the card."
    page.amount.clear()
    assert page.split.text() == ""
    window.close()


def test_a_card_rewritten_elsewhere_is_read_again_without_f9(qtbot: Any, tmp_path: Path) -> None:
    """The sale page showed the card behind the ledger; the rewrite dialog (customers page)
    writes it: the sale page shows the card as it is now, not as it was."""
    from ui.dialogs import start_rewrite

    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING, printer="none")
    window, page, dock = training_window(qtbot, ctx)
    card_behind_the_ledger(qtbot, ctx, page, dock, tmp_path)

    dialog: Any = start_rewrite(window, CUSTOMER)
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    dialog.close()
    # read again by itself: purchase 1 is on the card now, for the meter to load
    qtbot.waitUntil(
        lambda: "insert the card into the meter first" in page.situation.text(), timeout=WAIT_MS
    )
    assert page.values["purchases"].text() == "card 1, ledger 1"
    window.close()


def test_focus_returns_to_the_amount_after_a_dialog(qtbot: Any, tmp_path: Path) -> None:
    from app.domain.permissions import Action
    from ui.dialogs import ApprovalDialog
    from ui.pages import sale as page_module

    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING, printer="none")
    window, page, dock = training_window(qtbot, ctx)
    insert(qtbot, dock, CUSTOMER, page, page_module.READY)
    window.activateWindow()
    page.amount.setFocus()
    qtbot.waitUntil(page.amount.hasFocus, timeout=WAIT_MS)
    dialog = ApprovalDialog(window, Action.REVERSE, "a-sale", parent=page)
    dialog.open()
    qtbot.waitUntil(lambda: dialog.form.operator.hasFocus() or dialog.isActiveWindow())
    dialog.reject()
    qtbot.waitUntil(page.amount.hasFocus, timeout=WAIT_MS)
    window.close()
