"""No English in the Chinese interface: every page of the window, for an administrator (who
sees every page) and the error lines the pages show for typical mistakes, rendered in zh_CN;
every text a person reads is searched for English words that were not translated."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton
from PySide6.QtWidgets import QComboBox
from PySide6.QtWidgets import QGroupBox
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QListWidget
from PySide6.QtWidgets import QTableView
from PySide6.QtWidgets import QWidget

from app.context import AppContext
from app.i18n import set_language
from tests.rigs.context import SELLING
from tests.rigs.context import make_ctx
from tests.rigs.context import sign_in

pytestmark = pytest.mark.gui

WAIT = 10_000
# words that are the same in both languages: units, formats, product and protocol names, keys
ALLOWED = {
    "kwh",
    "pdf",
    "csv",
    "ic",
    "psam",
    "pc",
    "sc",
    "ctrl",
    "esc",
    "enter",
    "tab",
    "shift",
    "alt",
    "host",
    "port",
    "tcp",
    "com",
    "dev",
    "ttyusb",
    "utc",
    "iana",
    "asia",
    "shanghai",
    "dl",
    "cardvend",
    "https",
    "http",
    "url",
    "api",
    "json",
    "id",
    "ok",
    "demo",
    "rs",
    "crc",
    "mac",
    "sms",
    "apdu",
    "qr",
    "esc/pos",
    "pos",
    "ca",
    "tls",
    "sqlite",
    "postgresql",
    "utf",
    "bom",
    "cny",
    "english",
    "lp",
    "cups",
    "usb",
    "atr",
    "vpcd",
    "pcscd",
    "gb",
    "sm",
    "rmb",
}
ALLOWED |= {"del", "ins"}  # key names on buttons
# what is not interface text: a command to type, a quoted literal (a reader's name), demo data
LITERALS = re.compile(r"cardvend( [-\w:/.…]+)+|'[^']*'|Demo office")
WORD = re.compile(r"[A-Za-z][A-Za-z]{2,}")


def english_words(text: str) -> list[str]:
    """Words of three or more Latin letters in ``text`` that are not allowed as they are."""
    text = re.sub(r"https?://\S+|/[\w./-]+|\S+@\S+|[\w.-]+:\d+", " ", text)  # addresses, paths
    text = re.sub(r"\b[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\b", " ", text)  # ids (UUIDs)
    text = LITERALS.sub(" ", text)
    return [w for w in WORD.findall(text) if w.lower() not in ALLOWED]


def visible_texts(root: QWidget) -> list[str]:
    texts: list[str] = []
    for w in [root, *root.findChildren(QWidget)]:
        if isinstance(w, QLabel):
            texts.append(w.text())
        elif isinstance(w, QAbstractButton):
            texts.append(w.text())
        elif isinstance(w, QGroupBox):
            texts.append(w.title())
        elif isinstance(w, QLineEdit):
            texts.append(w.placeholderText())
        elif isinstance(w, QComboBox):
            texts += [w.itemText(i) for i in range(w.count())]
        elif isinstance(w, QListWidget):
            texts += [w.item(i).text() for i in range(w.count())]
        if isinstance(w, QTableView) and w.model() is not None:
            model = w.model()
            texts += [
                str(model.headerData(c, Qt.Orientation.Horizontal) or "")
                for c in range(model.columnCount())
            ]
        texts.append(w.toolTip())
    return [t for t in texts if t]


def untranslated(root: QWidget) -> list[str]:
    found = []
    for text in visible_texts(root):
        words = english_words(re.sub(r"<[^>]+>", " ", text))
        if words:
            found.append(f"{text!r}: {words}")
    return sorted(set(found))


@pytest.fixture
def ctx(tmp_path: Path) -> Any:
    ctx = make_ctx(tmp_path / "home", data="prepared", wire=("printing", "meters"))
    set_language("zh_CN")
    yield ctx
    set_language("en")


def test_the_english_finder_finds_english() -> None:
    assert english_words("请插卡 Insert the card") == ["Insert", "the", "card"]
    assert english_words("电量 12.50 kWh,端口 /dev/ttyUSB0 或 10.0.0.5:8899") == []
    assert english_words("请执行 cardvend counter register --central URL 然后重启") == []
    assert english_words("异常 14d99928-1888-4a6f-9cbb-ff87078955ed") == []


@pytest.mark.parametrize("operator", ["a01", "f01"])  # every page: administrator, technician
def test_every_page_in_chinese(qtbot: Any, ctx: AppContext, operator: str) -> None:
    from tests.rigs.sale_window import main_window

    window = main_window(qtbot, ctx, sign_in(ctx, operator))
    qtbot.waitUntil(lambda: window.status_link.text() != "", timeout=WAIT)
    found: dict[str, list[str]] = {}
    for key in window.pages:
        window.show_page(key)
        qtbot.wait(50)
        found[key] = untranslated(window.pages[key])
    found["window"] = untranslated(window.statusBar())
    problems = [f"{k}: {text}" for k, v in found.items() for text in v]
    assert not problems, "\n".join(problems)


def test_error_lines_in_chinese(qtbot: Any, ctx: AppContext) -> None:
    """The mistakes a teller makes on the pages: their error lines are in Chinese."""
    from tests.rigs.sale_window import main_window

    window = main_window(qtbot, ctx, sign_in(ctx, "t01"))
    shift = window.pages["shift"]
    window.show_page("shift")
    shift.float_edit.setText("12.345")  # not an amount
    qtbot.keyClick(shift.float_edit, Qt.Key.Key_Return)
    assert shift.status.text()
    sale = window.pages["sale"]
    window.show_page("sale")
    sale.search.setText("３００")  # full-width digits
    qtbot.keyClick(sale.search, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bool(sale.message.text()), timeout=WAIT)
    customers = window.pages["customers"]
    window.show_page("customers")
    customers.search.setText("zzzz-nobody")
    qtbot.wait(300)
    texts = {
        "shift": shift.status.text(),
        "sale": sale.message.text(),
        "customers": customers.status.text(),
    }
    assert {k: english_words(v) for k, v in texts.items() if english_words(v)} == {}


def test_approval_rules_tab_and_dialog_in_chinese(qtbot: Any, ctx: AppContext) -> None:
    """The administration page's approval rules: the table's rows and the edit dialog with its
    inline errors (the dialog's own and the service's)."""
    from app.domain.permissions import Action
    from tests.rigs.sale_window import rules_tab

    _window, tab = rules_tab(qtbot, ctx)
    table = tab.table
    cells = [
        table.item(i, j).text() for i in range(table.rowCount()) for j in range(table.columnCount())
    ]
    found = untranslated(tab) + [repr(t) for t in cells if english_words(t)]
    table.selectRow([r.action for r in tab.rows].index(Action.SELL.value))  # not asked for yet
    tab.edit_rule()
    dialog = tab.dialog
    dialog.needed.setChecked(True)
    dialog.ttl.setText("x")
    dialog.ok.click()
    found += untranslated(dialog)
    dialog.ttl.setText("0")
    dialog.ok.click()
    qtbot.waitUntil(lambda: "10080" in dialog.error.text(), timeout=WAIT)
    found += [repr(t) for t in (dialog.error.text(),) if english_words(t)]
    assert not found, "\n".join(found)


def test_the_exceptions_page_in_chinese(qtbot: Any, tmp_path: Path) -> None:
    """The exceptions queue with the station's answers (an exception and its history shown, a
    step refused here) and with the station away."""
    from tests.rigs.sale_window import station_page

    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING)
    set_language("zh_CN")
    try:
        with station_page(qtbot, ctx, tmp_path, "exceptions") as (server, _rows, window, page):
            qtbot.waitUntil(lambda: bool(page.items), timeout=WAIT)
            page.table.selectRow(0)
            qtbot.waitUntil(lambda: page.detail is not None, timeout=WAIT)
            assert "异常" in page.info.text()
            page.step.setCurrentIndex(page.step.findData("explain"))
            page.apply()  # no note: refused at the counter
            assert untranslated(page) == [], untranslated(page)
            server.stop()
            page.refresh()
            qtbot.waitUntil(lambda: page.items is None, timeout=WAIT)
            assert untranslated(page) == [], untranslated(page)
            window.close()
    finally:
        set_language("en")
