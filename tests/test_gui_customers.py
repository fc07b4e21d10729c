"""The customers page, the card operation dialogs with their approvals and the Unresolved page,
offscreen, on the demo data (1,000 customers) with emulated cards in-process."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.domain.card import UnissuedCard
from app.domain.settlement import Settlement
from app.errors import Conflict
from app.services import approvals
from app.services import auth
from app.services import ledger
from app.services import selling
from app.services.customers import SearchHit
from app.services.customers import SearchPage
from app.services.customers import customer_view
from app.services.demo import demo_customer
from cardio.meter_sim import MeterSimulator
from tests.cardkit import CardKit
from tests.rigs.context import make_ctx
from tests.rigs.context import teller_with_shift
from tests.rigs.counter import sell_pulled
from tests.rigs.sale_window import key_in

pytestmark = pytest.mark.gui

WAIT_MS = 10_000
CUSTOMER = "100000000002"  # a card customer without arrears
OTHER = "100000000003"


def type_text(widget: Any, text: str) -> None:
    """Type into a line edit: ASCII by key clicks, Chinese as an input method commits it."""
    for ch in text:
        key_in(widget, ch)


class Counter:
    """A counter window signed in as teller t01 with a shift open; ``card`` is the emulated
    card image now "in the reader"."""

    def __init__(self, qtbot: Any, tmp_path: Path) -> None:
        from ui.main_window import MainWindow

        self.ctx = make_ctx(tmp_path / "home", data="prepared")  # the demo data
        self.db = self.ctx.db
        self.kit = CardKit(tmp_path)
        self.card: Path | None = None
        self.teller = teller_with_shift(self.ctx)
        self.ctx.terminal_factory = lambda _reader, _image: self.terminal()
        self.window = MainWindow(self.ctx, principal=self.teller)
        self.window.terminal = self.terminal  # type: ignore[method-assign]
        qtbot.addWidget(self.window)
        self.window.show()
        self.qtbot = qtbot
        self.page: Any = self.window.pages["customers"]  # CustomersPage
        self.recovery: Any = self.window.pages["recovery"]  # RecoveryPage

    def terminal(self) -> Any:
        assert self.card is not None, "no card in the reader"
        return self.kit.terminal(self.card)

    def blank(self) -> Path:
        self.card = self.kit.blank()
        return self.card

    def search(self, text: str) -> list[SearchHit]:
        page = self.page
        self.window.show_page("customers")
        page.search.clear()
        page.model.set_text("")
        type_text(page.search, text)
        self.qtbot.waitUntil(
            lambda: page.model.text == text and page.model.idle and bool(page.status.text()),
            timeout=WAIT_MS,
        )
        return list(page.model.hits)

    def open_customer(self, customer_no: str) -> None:
        from PySide6.QtCore import Qt

        hits = self.search(customer_no)
        assert [h.customer.customer_no for h in hits] == [customer_no]
        self.qtbot.keyClick(self.page.search, Qt.Key.Key_Return)  # one row: its details
        self.qtbot.waitUntil(
            lambda: (
                self.page.details is not None
                and self.page.details.hit.customer.customer_no == customer_no
            ),
            timeout=WAIT_MS,
        )

    def sell_with_service(self, customer_no: str, amount: int | None) -> str | None:
        """Open the customer's account on a new blank card, with a first purchase unless
        ``amount`` is None; that sale."""
        image = self.blank()
        _, outcome = selling.open_account(
            self.db,
            self.kit.terminal(image),
            actor=self.teller,
            customer_no=customer_no,
            clock=self.ctx.clock,
            settings=self.ctx.settings,
            amount=amount,
        )
        return outcome.sale.sale_id if outcome is not None else None

    def reversal_waiting_in_the_queue(self, sale_id: str) -> tuple[Any, Any]:
        """The reversal dialog for ``sale_id``, started, its approval request sent to the
        queue and waiting: (reversal dialog, approval dialog)."""
        from ui.dialogs import start_reversal

        dialog: Any = start_reversal(self.window, sale_id=sale_id)
        self.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
        dialog.start_button.click()
        self.qtbot.waitUntil(lambda: dialog.approval is not None, timeout=WAIT_MS)
        approval = dialog.approval
        approval.queue_button.click()
        self.qtbot.waitUntil(lambda: approval.waiting_id is not None, timeout=WAIT_MS)
        return dialog, approval


@pytest.fixture
def counter(qtbot: Any, tmp_path: Path) -> Iterator[Counter]:
    c = Counter(qtbot, tmp_path)
    yield c
    c.window.close()


# --------------------------------------------------------------------------- search


def test_search_by_number_and_keyboard_to_details(counter: Counter) -> None:
    from PySide6.QtCore import Qt

    hits = counter.search("100000000042")
    assert [h.customer.customer_no for h in hits] == ["100000000042"]
    assert counter.page.model.data(counter.page.model.index(0, 1)) == demo_customer(41)["name"]
    counter.qtbot.keyClick(counter.page.search, Qt.Key.Key_Down)  # to the table
    assert counter.page.table.hasFocus() or counter.page.table.currentIndex().row() == 0
    counter.qtbot.keyClick(counter.page.table, Qt.Key.Key_Return)  # the details and actions
    counter.qtbot.waitUntil(lambda: counter.page.details is not None, timeout=WAIT_MS)
    assert counter.page.fields["customer_no"].text() == "100000000042"
    assert counter.page.open_button.isEnabled()  # no card yet
    assert not counter.page.reverse_button.isEnabled()
    # the meter number finds the same customer
    hits = counter.search(demo_customer(41)["meter_no"])
    assert [h.customer.customer_no for h in hits] == ["100000000042"]


def test_search_by_name_prefix_phone_suffix_and_address(counter: Counter) -> None:
    hits = counter.search("王")
    assert len(hits) == 50 and all(h.customer.name.startswith("王") for h in hits)
    assert not counter.page.model.canFetchMore()  # exactly the 50 demo customers named 王

    suffix = demo_customer(41)["phone"][-5:]
    hits = counter.search(suffix)
    assert "100000000042" in [h.customer.customer_no for h in hits]
    assert all(h.customer.phone.endswith(suffix) for h in hits)

    hits = counter.search("人民路")  # a street: part of the address
    assert hits and all("人民路" in h.customer.address for h in hits)

    counter.search("12")
    assert "4 digits" in counter.page.status.text()
    counter.search("没有这个人")
    assert counter.page.model.rowCount() == 0 and "No customer" in counter.page.status.text()


@pytest.mark.parametrize("typed", ["１０００００００００４２", "٤٢٤٢٤"])
def test_search_in_other_digits_says_how_to_type_them(counter: Counter, typed: str) -> None:
    """An input method in full-width mode types １０００…: the search looked that number up,
    found nothing and said only "No customer found"."""
    assert counter.search(typed) == []
    text = counter.page.status.text()
    assert "0-9" in text and "half-width" in text and "No customer" not in text
    hits = counter.search("100000000042")  # the same number in ASCII digits
    assert [h.customer.customer_no for h in hits] == ["100000000042"]


def test_arrears_column(counter: Counter) -> None:
    hits = counter.search("100000000001")  # demo customer 0 owes 30.00 arrears and a 5.00 fee
    assert (hits[0].arrears_fen, hits[0].fees_fen) == (3000, 500)
    model = counter.page.model
    assert model.data(model.index(0, model.ARREARS_COLUMN)) == "35.00"


def test_scrolling_fetches_more_pages(counter: Counter) -> None:
    model = counter.page.model
    model.page_size = 10
    counter.search("李")  # 50 demo customers, 10 a page
    first = model.rowCount()
    assert 10 <= first < 50 and model.canFetchMore()
    table = counter.page.table
    for _ in range(10):
        if model.idle and not model.canFetchMore():
            break
        rows = model.rowCount()
        table.scrollToBottom()
        counter.qtbot.waitUntil(
            lambda rows=rows: model.rowCount() > rows or (model.idle and not model.canFetchMore()),
            timeout=WAIT_MS,
        )
    assert model.rowCount() == 50 and not model.canFetchMore()
    names = [h.customer.customer_no for h in model.hits]
    assert len(set(names)) == 50 and all(h.customer.name.startswith("李") for h in model.hits)
    assert "50" in counter.page.status.text()


def test_typing_is_debounced_and_stale_answers_are_dropped(qtbot: Any) -> None:
    from ui.bridge import Ops
    from ui.models import CustomerSearchModel

    asked: list[str] = []
    release = threading.Event()

    def search(text: str, after: Any, limit: int) -> SearchPage:
        asked.append(text)
        if text == "slow":
            release.wait(10)
        return SearchPage((), None)

    ops = Ops()
    model = CustomerSearchModel(ops, search, debounce_ms=100)
    try:
        for text in ("a", "ab", "abc"):
            model.set_text(text)
        qtbot.waitUntil(lambda: asked == ["abc"] and not model.busy, timeout=WAIT_MS)
        answered: list[str] = []
        model.results_changed.connect(lambda: answered.append(model.text))
        model.search_now("slow")  # blocks in the worker
        qtbot.waitUntil(lambda: model.busy, timeout=WAIT_MS)
        model.search_now("quick")  # waits for the slow one; only the newest is asked
        model.search_now("quicker")
        release.set()
        qtbot.waitUntil(lambda: asked[-1] == "quicker" and not model.busy, timeout=WAIT_MS)
        assert asked == ["abc", "slow", "quicker"]
        assert answered == ["quicker"]  # the slow answer was for an older text: dropped
    finally:
        release.set()
        ops.shutdown()


# --------------------------------------------------------------------------- operations


def _approve_on_spot(counter: Counter, dialog: Any, operator: str, password: str) -> None:
    approval = dialog.approval
    approval.form.operator.setText(operator)
    approval.form.password.setText(password)
    approval.approve_button.click()


def test_open_account_then_reversal_with_approval(counter: Counter) -> None:
    # open the account from the customers page: a blank card and a first purchase of 40.00
    counter.open_customer(CUSTOMER)
    counter.blank()
    counter.page.open_button.click()
    dialog: Any = counter.page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    dialog.amount.setText("40.00")
    dialog.cash.setText("50")
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    assert "Change: 10.00" in dialog.message.text()
    view = customer_view(counter.db, CUSTOMER)
    assert view.card_serial is not None and view.purchase_count == 1
    sale = ledger.list_sales(counter.db, customer_no=CUSTOMER)[0]
    assert (sale.state, sale.amount_fen, sale.operator_id) == ("completed", 4000, "t01")
    dialog.close()

    # the details now offer the reversal of that sale
    counter.qtbot.waitUntil(counter.page.reverse_button.isEnabled, timeout=WAIT_MS)
    counter.page.reverse_button.click()
    dialog = counter.page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    assert f"Sale {sale.sale_id[:8].upper()}:" in dialog.info.text()  # the receipt number
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.approval is not None, timeout=WAIT_MS)
    approval = dialog.approval
    assert approval.isVisible()

    # another teller may not approve
    _approve_on_spot(counter, dialog, "t02", "demo-t02")
    counter.qtbot.waitUntil(lambda: "cannot sign" in approval.message.text(), timeout=WAIT_MS)
    assert "supervisor" in approval.message.text() and approval.isVisible()
    # nor the seller (also a teller)
    _approve_on_spot(counter, dialog, "t01", "demo-t01")
    counter.qtbot.waitUntil(
        lambda: "t01" in approval.message.text() and approval.approve_button.isEnabled(),
        timeout=WAIT_MS,
    )
    assert "cannot sign" in approval.message.text() or "may not sign" in approval.message.text()
    # a wrong password
    _approve_on_spot(counter, dialog, "s01", "wrong-password")
    counter.qtbot.waitUntil(
        lambda: approval.approve_button.isEnabled() and "password" in approval.message.text(),
        timeout=WAIT_MS,
    )
    assert ledger.get_sale(counter.db, sale.sale_id).state == "completed"
    # the supervisor
    _approve_on_spot(counter, dialog, "s01", "demo-s01")
    counter.qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    assert "approved by s01" in dialog.message.text()
    assert "Hand back 40.00" in dialog.message.text()
    assert ledger.get_sale(counter.db, sale.sale_id).state == "reversed"
    assert customer_view(counter.db, CUSTOMER).purchase_count == 0
    card = counter.terminal().read()
    assert card.purchase is None or card.purchase.purchase_count == 0
    dialog.close()


def test_reversal_approved_from_the_queue(counter: Counter) -> None:
    sale_id = counter.sell_with_service(OTHER, 3000)
    assert sale_id is not None
    counter.open_customer(OTHER)
    counter.qtbot.waitUntil(counter.page.reverse_button.isEnabled, timeout=WAIT_MS)
    counter.page.reverse_button.click()
    dialog = counter.page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.approval is not None, timeout=WAIT_MS)
    approval = dialog.approval
    approval.queue_button.click()  # the teller files a request
    counter.qtbot.waitUntil(lambda: approval.waiting_id is not None, timeout=WAIT_MS)
    request_id = approval.waiting_id
    assert approvals.get_request(counter.db, request_id).state == "pending"

    # the queue on the Unresolved page; the teller signed in here cannot approve: s01 signs in
    counter.window.show_page("recovery")
    page = counter.recovery
    counter.qtbot.waitUntil(lambda: page.queue_table.rowCount() == 1, timeout=WAIT_MS)
    assert page.queue_table.item(0, 2).text() == sale_id
    page.queue_table.setCurrentCell(0, 0)
    page.approve_selected()
    signin = page.signin
    assert signin is not None and signin.isVisible()
    signin.form.operator.setText("t02")
    signin.form.password.setText("demo-t02")
    signin.submit()
    counter.qtbot.waitUntil(lambda: not signin.isVisible(), timeout=WAIT_MS)
    counter.qtbot.waitUntil(lambda: "cannot sign" in page.queue_message.text(), timeout=WAIT_MS)
    assert approvals.get_request(counter.db, request_id).state == "pending"
    page.approve_selected()
    signin = page.signin
    signin.form.operator.setText("s01")
    signin.form.password.setText("demo-s01")
    signin.submit()
    counter.qtbot.waitUntil(lambda: "s01 approved" in page.queue_message.text(), timeout=WAIT_MS)

    # the teller's dialog notices the approval and reverses the sale with it
    counter.qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    assert "approved by s01" in dialog.message.text()
    assert ledger.get_sale(counter.db, sale_id).state == "reversed"
    assert approvals.get_request(counter.db, request_id).state == "used"
    counter.qtbot.waitUntil(lambda: page.queue_table.rowCount() == 0, timeout=WAIT_MS)
    dialog.close()


def test_rejected_request_is_shown_to_the_teller(counter: Counter) -> None:
    sale_id = counter.sell_with_service(OTHER, 2000)
    assert sale_id is not None
    dialog, approval = counter.reversal_waiting_in_the_queue(sale_id)
    supervisor = auth.login(
        counter.db, "s01", "demo-s01", counter_id="C02", clock=counter.ctx.clock
    )
    assert approval.waiting_id is not None
    approvals.reject(
        counter.db,
        approval.waiting_id,
        approver_id="s01",
        approver_role=supervisor.role,
        counter_id="C02",
        clock=counter.ctx.clock,
        reason="the customer left",
    )
    counter.qtbot.waitUntil(
        lambda: "rejected: the customer left" in approval.queue_status.text(), timeout=WAIT_MS
    )
    assert approval.queue_button.isEnabled()  # the teller may ask again
    assert ledger.get_sale(counter.db, sale_id).state == "completed"
    approval.reject()
    counter.qtbot.waitUntil(lambda: "Not approved" in dialog.message.text(), timeout=WAIT_MS)
    dialog.close()


def test_rewrite_and_replacement_from_the_customers_page(counter: Counter) -> None:
    sale_id = counter.sell_with_service(CUSTOMER, 5000)
    assert sale_id is not None
    old_card = counter.card
    # a rewrite of a card that is not behind is refused with the reason
    counter.open_customer(CUSTOMER)
    counter.page.rewrite_button.click()
    dialog = counter.page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    dialog.start_button.click()
    counter.qtbot.waitUntil(
        lambda: "does not need a rewrite" in dialog.message.text(), timeout=WAIT_MS
    )
    assert dialog.start_button.isEnabled() and not dialog.completed
    dialog.close()

    # a replacement card: fee shown, supervisor approves, the old card is blacklisted
    counter.blank()
    counter.page.replace_button.click()
    dialog = counter.page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    assert "Replacement fee: 20.00" in dialog.info.text()
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.approval is not None, timeout=WAIT_MS)
    _approve_on_spot(counter, dialog, "s01", "demo-s01")
    counter.qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    assert "approved by s01" in dialog.message.text()
    new_serial = customer_view(counter.db, CUSTOMER).card_serial
    assert new_serial == counter.terminal().read().serial_hex
    counter.card = old_card
    with pytest.raises(selling.CardRefused):
        selling.sell(
            counter.db,
            counter.terminal(),
            actor=counter.teller,
            amount=100,
            clock=counter.ctx.clock,
            settings=counter.ctx.settings,
        )
    assert ledger.get_sale(counter.db, sale_id).state == "completed"
    dialog.close()


def test_a_damaged_card_is_exchanged_from_the_customers_page(counter: Counter) -> None:
    """One reader: the damaged card first, then the blank card, then the damaged card again to
    erase it.  No approval rule for an exchange: nobody is asked to approve."""
    sale_id = counter.sell_with_service(CUSTOMER, 5000)
    assert sale_id is not None
    old_card = counter.card
    assert old_card is not None
    old_serial = counter.terminal().read().serial_hex
    counter.open_customer(CUSTOMER)
    counter.page.replace_button.click()
    dialog = counter.page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    dialog.damaged.click()
    assert "Exchange fee: 10.00" in dialog.info.text()
    dialog.start_button.click()  # the damaged card is in the reader: it is read
    counter.qtbot.waitUntil(lambda: dialog.step == "new", timeout=WAIT_MS)
    assert dialog.old_card is not None and dialog.old_card.serial_hex == old_serial
    counter.blank()
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.step == "erase", timeout=WAIT_MS)
    assert dialog.approval is None
    assert "exchanged for card" in dialog.message.text()
    new_serial = customer_view(counter.db, CUSTOMER).card_serial
    assert new_serial == counter.terminal().read().serial_hex != old_serial
    counter.card = old_card  # the old card back in the reader: erased for reuse
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    assert "is erased" in dialog.message.text()
    with pytest.raises(UnissuedCard):
        counter.terminal().read()
    assert ledger.get_sale(counter.db, sale_id).state == "completed"
    dialog.close()


# --------------------------------------------------------------------------- recovery


def test_in_doubt_sale_is_decided_by_presenting_the_card(counter: Counter) -> None:
    counter.sell_with_service(CUSTOMER, None)  # purchase 0: the card is ready for a sale
    image = counter.card
    assert image is not None
    # a sale whose card write is interrupted: in doubt, the card never got it
    sell_pulled(
        counter.kit,
        image,
        lambda terminal, contents: selling.sell(
            counter.db,
            terminal,
            actor=counter.teller,
            amount=2000,
            clock=counter.ctx.clock,
            settings=counter.ctx.settings,
            contents=contents,
        ),
        applied=False,
    )
    doubtful = selling.unresolved(counter.db)
    assert len(doubtful) == 1
    counter.window.show_page("recovery")
    page = counter.recovery
    counter.qtbot.waitUntil(lambda: page.sales_table.rowCount() == 1, timeout=WAIT_MS)
    assert page.sales_table.item(0, 4).text() == "in doubt"
    page.present_card()
    counter.qtbot.waitUntil(lambda: "failed" in page.result.text(), timeout=WAIT_MS)
    assert "return 20.00 yuan" in page.result.text()
    counter.qtbot.waitUntil(lambda: page.sales_table.rowCount() == 0, timeout=WAIT_MS)
    assert ledger.get_sale(counter.db, doubtful[0].sale_id).state == "failed"


def test_cancel_withdraws_the_request_from_the_queue(counter: Counter) -> None:
    """Cancel while waiting for a supervisor withdraws the request: it leaves the queue, an
    approval cannot be given to it any more, and starting again asks anew."""
    sale_id = counter.sell_with_service(OTHER, 2500)
    assert sale_id is not None
    dialog, first = counter.reversal_waiting_in_the_queue(sale_id)
    request_id = first.waiting_id
    first.reject()  # the teller stops waiting (Esc)
    counter.qtbot.waitUntil(
        lambda: "withdrawn from the approval queue: nothing was done" in dialog.message.text(),
        timeout=WAIT_MS,
    )
    counter.qtbot.waitUntil(
        lambda: approvals.get_request(counter.db, request_id).state == "withdrawn",
        timeout=WAIT_MS,
    )
    assert request_id not in [v.id for v in approvals.pending(counter.db, clock=counter.ctx.clock)]
    with pytest.raises(approvals.ApprovalStateError):
        approvals.approve(
            counter.db,
            request_id,
            approver_id="s01",
            approver_role="supervisor",
            counter_id="C02",
            clock=counter.ctx.clock,
        )
    dialog.start_button.click()  # again: a new request, nothing reversed meanwhile
    counter.qtbot.waitUntil(
        lambda: dialog.approval is not None and dialog.approval is not first, timeout=WAIT_MS
    )
    assert ledger.get_sale(counter.db, sale_id).state == "completed"
    dialog.approval.reject()
    dialog.close()


def test_reprint_from_the_customers_sales_with_the_supervisors_approval(
    counter: Counter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No printer configured: the copy goes to a PDF the teller names, once a supervisor
    approved (the rules ask it for a teller's reprint); counted and audited once."""
    from PySide6.QtWidgets import QApplication
    from PySide6.QtWidgets import QFileDialog
    from sqlalchemy import select

    import main
    from app.persistence.models import ReceiptPrint
    from ui.dialogs import ApprovalDialog

    main.wire_printing(counter.ctx)  # the PDF renderer, as main.py wires it
    counter.ctx.printer_factory = lambda: None  # no printer here
    sale_id = counter.sell_with_service(CUSTOMER, 4000)
    assert sale_id is not None
    out = tmp_path / "copy.pdf"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "PDF"))
    counter.open_customer(CUSTOMER)
    page = counter.page
    counter.qtbot.waitUntil(page.reprint_button.isEnabled, timeout=WAIT_MS)
    assert page.reprint_sale.currentData() == sale_id
    page.reprint_button.click()

    def approval() -> Any:
        found = [w for w in QApplication.topLevelWidgets() if isinstance(w, ApprovalDialog)] + [
            w for w in page.findChildren(ApprovalDialog) if w.isVisible()
        ]
        return found[0] if found else None

    counter.qtbot.waitUntil(lambda: approval() is not None, timeout=WAIT_MS)
    dialog = approval()
    assert not out.exists()  # nothing before the approval
    dialog.form.operator.setText("s01")
    dialog.form.password.setText("demo-s01")
    dialog.approve_button.click()
    counter.qtbot.waitUntil(lambda: "Copy 1" in page.status.text(), timeout=WAIT_MS)
    assert out.read_bytes().startswith(b"%PDF")
    assert sale_id[:8] in page.status.text() and str(out) in page.status.text()
    with counter.db.read() as session:
        [row] = session.scalars(select(ReceiptPrint).where(ReceiptPrint.sale_id == sale_id))
        assert (row.copy_no, row.operator_id) == (1, "t01") and row.approval_id is not None


# --------------------------------------------------------------------------- meter change

METER_A, METER_B = "990000000101", "990000000102"


def meter(counter: Counter, tmp_path: Path, meter_no: str | None = None) -> Any:
    from cardio.meter_sim import MeterSimulator

    name = meter_no or "old"
    return MeterSimulator(
        tmp_path / f"{name}.json", counter.kit.keys, meter_no=meter_no, clock=counter.ctx.clock
    )


def open_meter_change(counter: Counter) -> Any:
    counter.open_customer(CUSTOMER)
    counter.qtbot.waitUntil(counter.page.meter_button.isEnabled, timeout=WAIT_MS)
    counter.page.meter_button.click()
    dialog = counter.page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    return dialog


def test_change_meter_from_the_card_then_typed_with_approval(
    counter: Counter, tmp_path: Path
) -> None:
    from printing.meter_change import PdfSlipRenderer

    counter.ctx.slip_renderer = PdfSlipRenderer()
    counter.sell_with_service(CUSTOMER, 5000)
    old = meter(counter, tmp_path)
    assert old.insert(counter.terminal()).credited == 5000

    dialog = open_meter_change(counter)
    assert not dialog.remaining.isEnabled()  # the card is the default source
    dialog.new_meter.setText("12345")
    dialog.start_button.click()
    assert "12 digits" in dialog.message.text() and not dialog.completed
    dialog.new_meter.setText(METER_A)
    dialog.start_button.click()
    counter.qtbot.waitUntil(lambda: dialog.completed, timeout=WAIT_MS)
    text = dialog.message.text()
    assert f"to meter {METER_A}" in text and "50.00 yuan as purchase 1" in text
    assert dialog.slip_path is not None and dialog.slip_path.read_bytes().startswith(b"%PDF")
    assert customer_view(counter.db, CUSTOMER).meter_no == METER_A
    dialog.close()
    first = meter(counter, tmp_path, METER_A)
    assert first.insert(counter.terminal()).credited == 5000

    # the first new meter is faulty: its display is typed, a supervisor approves
    dialog = open_meter_change(counter)
    dialog.new_meter.setText(METER_B)
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
    second = meter(counter, tmp_path, METER_B)
    result = second.insert(counter.terminal())
    assert result.accepted and second.state.purchase_count == 1 and second.state.remaining == 0


# --------------------------------------------------------------------------- account lifecycle


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
    from PySide6.QtCore import Qt

    counter.sell_with_service(CUSTOMER, 5000)
    meter = MeterSimulator(tmp_path / "meter.json", counter.kit.keys, clock=counter.ctx.clock)
    meter.insert(counter.terminal())  # the meter loaded the purchase and wrote back 50.00
    counter.open_customer(CUSTOMER)
    page = counter.page
    assert page.pause_button.isEnabled() and not page.resume_button.isEnabled()

    page.pause_button.click()
    dialog = page.dialog
    counter.qtbot.waitUntil(dialog.start_button.isEnabled, timeout=WAIT_MS)
    type_text(dialog.reason, "vacant house")
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
    type_text(dialog.reason, "moved away")
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


def test_the_latest_sales_show_the_office_time_not_the_pcs(
    counter: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A counter PC set to another time zone still shows the office's local time (the
    ``time_zone`` setting) in the customer's latest sales and the reprint list."""
    import datetime as dt
    import time

    from app.localtime import local_time
    from app.settings import TIME_ZONE

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        sale_id = counter.sell_with_service("100000000042", 5000)
        assert sale_id is not None
        created = ledger.get_sale(counter.db, sale_id).created_at
        office = local_time(created, counter.ctx.settings.value(TIME_ZONE))
        on_the_pc = dt.datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M")
        assert office != on_the_pc  # Asia/Shanghai and New York never share a wall clock
        counter.open_customer("100000000042")
        assert office in counter.page.sales_label.text()
        assert on_the_pc not in counter.page.sales_label.text()
        assert counter.page.reprint_sale.itemText(0).startswith(office)
    finally:
        monkeypatch.undo()  # the PC's own zone back before anything else reads it
        time.tzset()
