"""The counter window for GUI tests of the sale page, on a demo home with the card adapters
wired (``rigs/context.py``: ``make_ctx(home, data="demo", wire=SELLING)``): teller t01 with a
shift open, the window in training mode with its card tray."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.clock import FixedClock
from app.context import AppContext
from app.persistence.models import Customer
from app.persistence.models import Sale
from app.services.auth import Principal
from tests.rigs.context import sign_in
from tests.rigs.context import teller_with_shift

WAIT_MS = 20_000
CUSTOMER = "100000000002"  # a demo card customer without arrears
OWING = "100000000001"  # owes 30.00 arrears and a 5.00 fee


def sales_of(ctx: AppContext, customer_no: str) -> list[Sale]:
    with ctx.db.read() as session:
        cid = session.scalar(select(Customer.id).where(Customer.customer_no == customer_no))
        rows = session.scalars(
            select(Sale).where(Sale.customer_id == cid).order_by(Sale.purchase_count)
        ).all()
        session.expunge_all()
        return list(rows)


def main_window(qtbot, ctx: AppContext, principal: Principal, **kw: Any):  # type: ignore[no-untyped-def]
    """The main window with ``principal`` signed in (``kw``: ``training=True``), shown."""
    from ui.main_window import MainWindow

    window = MainWindow(ctx, principal=principal, **kw)
    qtbot.addWidget(window)
    window.show()
    return window


def training_window(qtbot, ctx: AppContext, principal: Principal | None = None):  # type: ignore[no-untyped-def]
    """The main window in training mode, ``principal`` signed in (default: teller t01 with a
    shift open): (window, sale page, training card tray)."""
    principal = principal or teller_with_shift(ctx)
    window = main_window(qtbot, ctx, principal, training=True)
    return window, window.pages["sale"], window.tray_dock


@contextmanager
def station_page(qtbot, ctx: AppContext, folder: Path, name: str) -> Iterator[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    """The main window in training mode with supervisor s01 signed in, its clock at the
    statistics' ``NOW`` and its station views on a station serving the statistics rows (in
    ``folder``), shown on page ``name``: (server, rows, window, page)."""
    from tests.rigs import stats_data as sd

    ctx.clock = FixedClock(sd.NOW)
    with sd.serving_station(folder) as (server, rows, views):
        ctx.station = views
        window = main_window(qtbot, ctx, sign_in(ctx, "s01"), training=True)
        window.show_page(name)
        yield server, rows, window, window.pages[name]


def rules_tab(qtbot, ctx: AppContext) -> tuple[Any, Any]:  # type: ignore[no-untyped-def]
    """The main window with administrator a01 signed in, on the administration page's approval
    rules tab once its rows are loaded: (window, tab)."""
    window = main_window(qtbot, ctx, sign_in(ctx, "a01"))
    window.show_page("admin")
    tab = window.pages["admin"].rules
    tab.load()
    qtbot.waitUntil(lambda: len(tab.rows) > 0, timeout=10_000)
    return window, tab


def key_in(widget, ch: str) -> None:  # type: ignore[no-untyped-def]
    """One keystroke into ``widget`` as a person types it: backspace (``"\\b"``), an ASCII
    key, or a character (Chinese) committed by an input method."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QInputMethodEvent
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    if ch == "\b":
        QTest.keyClick(widget, Qt.Key.Key_Backspace)
    elif ch.isascii():
        QTest.keyClicks(widget, ch)
    else:
        event = QInputMethodEvent("", [])
        event.setCommitString(ch)
        QApplication.sendEvent(widget, event)


def tray_card(dock, customer_no: str) -> str:  # type: ignore[no-untyped-def]
    return next(c.card_id for c in dock.cards if c.customer_no == customer_no)


def insert(qtbot, dock, customer_no: str, page=None, state: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """The customer's tray card into the reader; with ``page`` and ``state``, until the sale
    page shows that state."""
    from PySide6.QtCore import Qt

    qtbot.waitUntil(lambda: len(dock.cards) == 6, timeout=WAIT_MS)
    dock.select(tray_card(dock, customer_no))
    qtbot.mouseClick(dock.insert_button, Qt.MouseButton.LeftButton)
    if page is not None and state is not None:
        qtbot.waitUntil(lambda: page.state == state, timeout=WAIT_MS)


def card_behind_the_ledger(qtbot, ctx: AppContext, page, dock, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    """Sell 20.00 onto CUSTOMER's tray card, then give the card back its contents from before
    the sale (its last write lost) and insert it: the sale page shows it behind the ledger."""
    import shutil

    from PySide6.QtCore import Qt

    from ui.pages import sale as page_module

    qtbot.waitUntil(lambda: len(dock.cards) == 6, timeout=WAIT_MS)
    image = ctx.paths.data_dir / "training-cards" / f"{tray_card(dock, CUSTOMER)}.json"
    before = scratch / "before.json"
    shutil.copy(image, before)
    insert(qtbot, dock, CUSTOMER, page, page_module.READY)
    qtbot.keyClicks(page.amount, "20")
    qtbot.keyClick(page.amount, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: page.state == page_module.DONE, timeout=WAIT_MS)
    qtbot.mouseClick(dock.remove_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state == page_module.WAITING, timeout=WAIT_MS)
    shutil.copy(before, image)  # the card lost its last write
    insert(qtbot, dock, CUSTOMER, page, page_module.BLOCKED)
    assert "behind the ledger" in page.situation.text()
