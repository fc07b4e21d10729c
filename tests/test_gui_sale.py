"""The sale screen, offscreen: a card sale through a real pcscd + vpcd with the emulated card, and
a training sale on the emulated card tray (sell, take the card to the meter, sell again)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from sqlalchemy import func
from sqlalchemy import select

from app.context import AppContext
from app.persistence.models import OutboxEntry
from app.services import demo
from app.services import selling
from app.settings import CARD_READER
from cardio import wiring
from cardio.channel import EmulatedChannel
from cardio.emulator import CardImage
from cardio.emulator import UserCardOS
from cardio.terminal import ApduTerminal
from tests.pcsc_fixtures import READER_SLOT0
from tests.pcsc_fixtures import Pcscd
from tests.pcsc_fixtures import wait_card_absent
from tests.rigs.context import SELLING
from tests.rigs.context import make_ctx
from tests.rigs.context import teller_with_shift
from tests.rigs.sale_window import CUSTOMER
from tests.rigs.sale_window import OWING
from tests.rigs.sale_window import WAIT_MS
from tests.rigs.sale_window import card_behind_the_ledger
from tests.rigs.sale_window import sales_of
from tests.rigs.sale_window import training_window
from tests.rigs.sale_window import tray_card

pytestmark = pytest.mark.gui


class Heartbeat:
    """Ticks on the GUI thread every 10 ms; the longest gap says whether the window froze."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.last = time.monotonic()
        self.longest = 0.0

    def _tick(self) -> None:
        now = time.monotonic()
        self.longest = max(self.longest, now - self.last)
        self.last = now

    def start(self) -> Heartbeat:
        self.last = time.monotonic()
        self.timer.start()
        return self

    def stop(self) -> float:
        self.timer.stop()
        return self.longest


def read_image(ctx: AppContext, path: Path) -> object:
    """What the card image holds now, read in-process."""
    keys = wiring.key_provider(ctx)
    channel = EmulatedChannel(UserCardOS(CardImage.load(path)))
    try:
        return ApduTerminal(channel, keys, utility_code="100001").read()
    finally:
        channel.close()


@pytest.fixture(autouse=True)
def _no_keystore_passphrase(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(wiring.PASSPHRASE_ENV, raising=False)
    monkeypatch.setenv("CARDVEND_CARD_WAIT", "5")
    yield


def test_card_sale_through_pcscd_and_vpcd(qtbot, pcscd: Pcscd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    from cardio.vpcd import VpcdCard
    from ui.main_window import MainWindow
    from ui.pages import sale as page_module

    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING, **{CARD_READER.key: READER_SLOT0})
    teller = teller_with_shift(ctx)
    # the customer's card: a blank image issued by opening the account in-process
    master = wiring.load_master_keys(ctx)
    serial = os.urandom(8)
    image = tmp_path / "card.json"
    CardImage.blank(
        serial, {int(r): k for r, k in master.diversified_card_keys(serial).items()}
    ).save(image)
    selling.open_account(
        ctx.db,
        ctx.open_terminal(None, str(image)),
        actor=teller,
        customer_no=CUSTOMER,
        clock=ctx.clock,
        settings=ctx.settings,
    )
    server = VpcdCard(UserCardOS(CardImage.load(image), persist_path=image), slot=0)
    window = MainWindow(ctx, principal=teller)
    qtbot.addWidget(window)
    window.show()
    page = window.pages["sale"]
    try:
        assert page.state == page_module.WAITING
        heartbeat = Heartbeat().start()
        server.start()  # the card goes into the reader
        qtbot.waitUntil(lambda: page.state == page_module.READY, timeout=WAIT_MS)
        assert page.values["customer_no"].text() == CUSTOMER
        assert page.values["name"].text() == demo.demo_customer(1)["name"]
        assert page.values["balance"].text() == "not read by the meter yet"
        assert "card in" in window.status_reader.text()
        assert not page.training_mark.isVisible()
        qtbot.keyClicks(page.amount, "88.5")
        qtbot.keyClicks(page.cash, "100")
        assert page.change.text() == "11.50"
        qtbot.keyClick(page.cash, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: page.state == page_module.DONE, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: "Receipt printed" in page.receipt_label.text(), timeout=WAIT_MS)
        longest = heartbeat.stop()
        assert "Take the card out" in page.prompt.text()
        assert "Change: 11.50 yuan." in page.message.text()

        [sale] = sales_of(ctx, CUSTOMER)
        assert (sale.state, sale.purchase_count, sale.amount, sale.cash_received) == (
            "completed",
            1,
            8850,
            10000,
        )
        assert not sale.training
        card = read_image(ctx, image)
        assert card.purchase is not None and card.purchase.purchase_count == 1  # type: ignore[attr-defined]
        assert card.purchase.amount == sale.credit  # type: ignore[attr-defined]
        assert list((ctx.paths.data_dir / "receipts").glob("*.pdf"))
        # the window kept painting while the card was read and written
        assert longest < 0.5, f"the GUI thread stalled for {longest:.3f} s"

        server.remove()  # the customer takes the card: ready for the next one
        qtbot.waitUntil(lambda: page.state == page_module.WAITING, timeout=WAIT_MS)
        assert page.values["customer_no"].text() == "—"
        assert "no card" in window.status_reader.text()
    finally:
        window.close()
        server.stop()
        wait_card_absent()


def test_training_sale_with_the_card_tray(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    from ui.pages import sale as page_module

    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING)
    window, page, dock = training_window(qtbot, ctx)
    assert page.training_mark.isVisible()
    # at first use the tray opened the accounts of five demo customers and has a blank card
    qtbot.waitUntil(lambda: len(dock.cards) == 6, timeout=WAIT_MS)
    assert [c.customer_no for c in dock.cards][:2] == [OWING, CUSTOMER]
    assert dock.cards[-1].customer_no is None

    card_id = tray_card(dock, CUSTOMER)
    dock.select(card_id)
    qtbot.mouseClick(dock.insert_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state == page_module.READY, timeout=WAIT_MS)
    assert page.values["customer_no"].text() == CUSTOMER
    assert "card in" in window.status_reader.text()
    qtbot.waitUntil(lambda: "in the reader" in dock.list.currentItem().text(), timeout=WAIT_MS)
    qtbot.mouseClick(page.preset_buttons[1], Qt.MouseButton.LeftButton)  # 100 yuan
    assert page.amount.text() == "100.00"
    qtbot.keyClick(page.amount, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: page.state == page_module.DONE, timeout=WAIT_MS)
    assert "Training sale" in page.message.text()
    qtbot.waitUntil(lambda: "Receipt printed" in page.receipt_label.text(), timeout=WAIT_MS)

    # selling again before the meter loaded the purchase is refused plainly
    page.read_card()
    qtbot.waitUntil(lambda: page.state == page_module.BLOCKED, timeout=WAIT_MS)
    assert "insert the card into the meter first" in page.situation.text()

    # the customer goes home: 10 hours at 1 kW, then the card goes into the meter
    dock.hours.setValue(10)
    dock.load_kw.setValue(1)
    qtbot.mouseClick(dock.meter_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Purchase 1 loaded" in dock.summary.text(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: page.state == page_module.WAITING, timeout=WAIT_MS)  # taken out

    dock.select(card_id)
    qtbot.mouseClick(dock.insert_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state == page_module.READY, timeout=WAIT_MS)
    assert page.values["balance"].text() == "100.00 yuan"
    assert page.values["meter_status"].text() == "normal, power on"
    for key in "50":
        qtbot.mouseClick(
            next(b for b in page.pad_buttons if b.text() == key), Qt.MouseButton.LeftButton
        )
    assert page.amount.text() == "50"
    qtbot.keyClick(page.amount, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: page.state == page_module.DONE, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "Receipt printed" in page.receipt_label.text(), timeout=WAIT_MS)
    qtbot.mouseClick(dock.remove_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state == page_module.WAITING, timeout=WAIT_MS)

    sales = sales_of(ctx, CUSTOMER)
    assert [(s.state, s.purchase_count, s.amount, s.training) for s in sales] == [
        ("completed", 1, 10000, True),
        ("completed", 2, 5000, True),
    ]
    with ctx.db.read() as session:
        # training never reaches the central system: not the sales, not the demo accounts
        assert session.scalar(select(func.count()).select_from(OutboxEntry)) == 0
    window.close()


def test_arrears_offline_override_and_remote_payment(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    from app.persistence.models import ApprovalRequest
    from ui.pages import sale as page_module

    ctx = make_ctx(
        tmp_path / "home", data="demo", wire=SELLING, offline_max_sales=0, printer="none"
    )
    window, page, dock = training_window(qtbot, ctx)
    qtbot.waitUntil(lambda: len(dock.cards) == 6, timeout=WAIT_MS)

    dock.select(tray_card(dock, OWING))
    qtbot.mouseClick(dock.insert_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state == page_module.READY, timeout=WAIT_MS)
    assert page.values["arrears"].text() == "30.00 yuan"
    assert page.values["fees"].text() == "5.00 yuan"
    # at least the dues and some credit; no maximum without a credit ceiling
    assert page.values["minimum"].text() == "35.01 yuan"
    assert page.values["maximum"].text() == "no limit (no credit ceiling)"
    # the offline limit is said when the card is read, not after the amount
    assert "Selling has stopped" in page.situation.text()
    qtbot.keyClick(page.amount, Qt.Key.Key_Return)  # nothing typed yet
    assert page.message.text() == "Type the amount first."
    qtbot.keyClicks(page.amount, "35")
    assert page.message.text() == ""  # the error goes once the amount is edited
    assert "Not a valid amount" in page.split.text()
    qtbot.keyClick(page.amount, Qt.Key.Key_Return)
    assert page.state == page_module.READY and "at least 35.01 yuan" in page.message.text()

    page.amount.clear()
    qtbot.keyClicks(page.amount, "100")
    assert page.split.text().startswith(
        "Deducted first: arrears 30.00 yuan, fees 5.00 yuan. 65.00 yuan credit ("
    )
    qtbot.keyClick(page.amount, Qt.Key.Key_Return)  # stops at the offline limit
    # the one approval dialog, under the configured lockout policy
    qtbot.waitUntil(lambda: page.override_dialog is not None, timeout=WAIT_MS)
    dialog = page.override_dialog
    assert dialog is not None and dialog.isVisible()
    assert "Selling has stopped" in page.message.text()
    qtbot.keyClicks(dialog.form.operator, "s01")
    qtbot.keyClicks(dialog.form.password, "wrong-password")
    qtbot.mouseClick(dialog.approve_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "password is wrong" in dialog.message.text(), timeout=WAIT_MS)
    assert dialog.isVisible() and page.state == page_module.READY
    dialog.form.password.clear()
    qtbot.keyClicks(dialog.form.password, "demo-s01")
    qtbot.mouseClick(dialog.approve_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state == page_module.DONE, timeout=WAIT_MS)
    assert "Collected first: 30.00 yuan arrears, 5.00 yuan fees." in page.message.text()
    qtbot.waitUntil(lambda: "No receipt printer" in page.receipt_label.text(), timeout=WAIT_MS)
    [sale] = sales_of(ctx, OWING)
    assert (sale.state, sale.amount, sale.arrears, sale.fees, sale.credit) == (
        "completed",
        10000,
        3000,
        500,
        6500,
    )
    with ctx.db.read() as session:
        [request] = session.scalars(select(ApprovalRequest)).all()
        assert (request.action, request.state) == ("override_offline_limit", "used")
    qtbot.mouseClick(dock.remove_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state == page_module.WAITING, timeout=WAIT_MS)

    # a remote fee-control customer is found by number instead of a card
    ctx.settings.set("offline_max_sales", 1000)
    remote = demo.demo_customer(9)["customer_no"]
    qtbot.keyClicks(page.search, demo.demo_customer(1)["meter_no"])
    qtbot.keyClick(page.search, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "has a card meter" in page.message.text(), timeout=WAIT_MS)
    assert page.state == page_module.WAITING
    page.search.clear()
    qtbot.keyClicks(page.search, remote)
    qtbot.keyClick(page.search, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: page.state == page_module.REMOTE, timeout=WAIT_MS)
    assert page.values["customer_no"].text() == remote
    qtbot.keyClicks(page.amount, "30")
    qtbot.keyClick(page.amount, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: page.state == page_module.REMOTE_DONE, timeout=WAIT_MS)
    assert "The central system will issue it to the meter." in page.message.text()
    [paid] = sales_of(ctx, remote)
    assert (paid.kind, paid.state, paid.amount, paid.training) == (
        "remote",
        "completed",
        3000,
        True,
    )
    qtbot.waitUntil(lambda: "No receipt printer" in page.receipt_label.text(), timeout=WAIT_MS)
    window.close()


def test_a_card_behind_the_ledger_is_rewritten(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    from ui.pages import sale as page_module

    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING, printer="none")
    window, page, dock = training_window(qtbot, ctx)
    card_behind_the_ledger(qtbot, ctx, page, dock, tmp_path)
    assert page.rewrite_button.isVisible() and not page.sell_button.isEnabled()
    qtbot.mouseClick(page.rewrite_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state == page_module.DONE, timeout=WAIT_MS)
    assert "written onto the card again" in page.message.text()
    [sale] = sales_of(ctx, CUSTOMER)
    assert (sale.purchase_count, sale.rewrites, sale.training) == (1, 1, True)
    window.close()
