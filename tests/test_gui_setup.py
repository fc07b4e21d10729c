"""The first-run set-up wizard, driven offscreen with pytest-qt: each page refuses what is wrong
with the step's translated message, Finish writes the settings, the administrator and the audit
entry, Cancel writes nothing; the reader page lists pcscd's readers and reads a card served on
a vpcd slot."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from sqlalchemy import select

from app.i18n import set_language
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.services import auth
from app.services.setup import setup_needed
from app.settings import Settings
from tests.conftest import KEYSTORE_PASSPHRASE
from tests.pcsc_fixtures import READER_SLOT0
from tests.pcsc_fixtures import READER_SLOT1
from tests.pcsc_fixtures import Pcscd
from tests.rigs.card_process import Emulator
from tests.rigs.cli import run
from tests.rigs.context import make_ctx

pytestmark = pytest.mark.gui
PASSPHRASE = KEYSTORE_PASSPHRASE  # the conftest keystore's


# what the wizard's pages use: readers, cards and keystores, the test receipt, the registration
DEVICES = ("cards", "printing", "setup")


@pytest.fixture
def wizard(qtbot: Any, tmp_path: Path) -> Iterator[Any]:
    from ui.setup_wizard import SetupWizard

    ctx = make_ctx(tmp_path / "counter", wire=DEVICES)
    w = SetupWizard(ctx)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.shutdown()
    assert ctx.card_worker is not None
    ctx.card_worker.shutdown()


def next_page(w: Any) -> str:
    """Press Next and wait for the page's check; the error it shows (empty when it moved on)."""
    from pytestqt.qtbot import QtBot

    page = w.currentPage()
    w.next()
    QtBot(w).waitUntil(lambda: w.currentPage() is not page or bool(page.error.text()),
                       timeout=30_000)  # fmt: skip
    return "" if w.currentPage() is not page else page.error.text()


def fill_to_admin(w: Any, keystore: Path, office_code: str = "OF01") -> None:
    office, _db, reader, keys, _printer = w.pages[:5]
    office.office.setText(office_code)
    office.counter.setText("C07")
    assert next_page(w) == ""
    assert next_page(w) == ""  # this PC's SQLite
    reader.reader.setCurrentIndex(0)  # emulated cards
    assert next_page(w) == ""
    keys.file.setText(str(keystore))
    keys.passphrase.setText(PASSPHRASE)
    assert next_page(w) == ""
    assert next_page(w) == ""  # PDF files


def test_wrong_answers_are_refused_page_by_page_and_finish_sets_up(
    wizard: Any, keystore: Path, qtbot: Any
) -> None:
    w, ctx = wizard, wizard.ctx
    office, db, reader, keys, printer, admin, central = w.pages
    office.office.setText("BAD OFFICE!")
    office.counter.setText("C07")
    error = next_page(w)
    assert "office and counter" in error and "office code" in error
    office.office.setText("OF01")
    assert next_page(w) == ""
    db.office.setChecked(True)
    db.url.setText("mysql://nowhere/x")
    assert "not a PostgreSQL URL" in next_page(w)
    db.local.setChecked(True)
    assert next_page(w) == ""
    reader.reader.setCurrentIndex(0)
    assert next_page(w) == ""
    keys.file.setText(str(keystore))
    keys.passphrase.setText("wrong")
    assert "passphrase is wrong" in next_page(w)
    keys.passphrase.setText(PASSPHRASE)
    assert next_page(w) == ""
    printer.test.click()
    qtbot.waitUntil(lambda: "test receipt went to PDF" in printer.result.text(), timeout=20_000)
    assert list((ctx.paths.data_dir / "receipts").glob("*.pdf"))
    assert next_page(w) == ""
    admin.admin_id.setText("boss")
    admin.password.setText("short")
    admin.repeat.setText("short")
    assert "at least 8 characters" in next_page(w)
    admin.password.setText("boss-password")
    admin.repeat.setText("boss-passwort")
    assert "differ" in next_page(w)
    admin.repeat.setText("boss-password")
    assert next_page(w) == ""
    assert w.currentPage() is central
    assert not ctx.paths.settings_file.exists()  # nothing written before Finish
    central.url.setText("ftp://central")
    # the last page: Finish (validatePage) checks and applies, off the GUI thread
    assert not central.validatePage()
    qtbot.waitUntil(lambda: bool(central.error.text()), timeout=30_000)
    assert "not a web address" in central.error.text() and w.outcome is None
    central.url.setText("")
    assert not central.validatePage()
    qtbot.waitUntil(lambda: w.outcome is not None, timeout=30_000)
    assert w.result() == w.DialogCode.Accepted and not central.error.text()
    settings = json.loads(ctx.paths.settings_file.read_text())
    assert settings["office_code"] == "OF01" and settings["demo_mode"] is False
    db_ = Database(str(ctx.paths.default_db_file))
    try:
        auth.login(db_, "boss", "boss-password", counter_id="C07", clock=ctx.clock)
        with db_.read() as session:
            actions = session.scalars(select(AuditEntry.action)).all()
        assert "counter_setup" in actions
    finally:
        db_.dispose()


def test_cancel_writes_nothing(wizard: Any, keystore: Path) -> None:
    fill_to_admin(wizard, keystore)
    wizard.reject()
    ctx = wizard.ctx
    assert not ctx.paths.settings_file.exists()
    assert not (ctx.paths.data_dir / "keystore.json").exists()
    assert not ctx.paths.default_db_file.exists()


def test_finish_registers_with_the_central_system(
    wizard: Any, keystore: Path, qtbot: Any, central: Any
) -> None:
    w = wizard
    fill_to_admin(w, keystore, "DEMO")
    admin, page = w.pages[5:]
    admin.password.setText("boss-password")
    admin.repeat.setText("boss-password")
    assert next_page(w) == ""
    page.url.setText(central.url)
    assert not page.validatePage()
    qtbot.waitUntil(lambda: w.outcome is not None or bool(page.error.text()), timeout=30_000)
    assert not page.error.text() and w.outcome.registered == "DEMO/C07"
    settings = json.loads(w.ctx.paths.settings_file.read_text())
    assert settings["central_url"] == central.url.rstrip("/")
    assert (w.ctx.paths.data_dir / "central.token").exists()


def test_errors_in_chinese(wizard: Any) -> None:
    set_language("zh_CN")
    office = wizard.pages[0]
    office.office.setText("BAD OFFICE!")
    office.counter.setText("C07")
    error = next_page(wizard)
    assert error and "设置" in error, error


def test_the_wizard_shows_when_demo_mode_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.load(tmp_path / "settings.json")
    monkeypatch.delenv("CARDVEND_DEMO", raising=False)
    assert not setup_needed(settings)  # make run: the demo as before
    assert setup_needed(settings, forced=True)
    monkeypatch.setenv("CARDVEND_DEMO", "0")
    assert setup_needed(settings)
    (tmp_path / "settings.json").write_text('{"schema_version": 1}')
    assert not setup_needed(Settings.load(tmp_path / "settings.json"))


def test_reader_page_lists_readers_reads_a_card_and_says_no_card(
    pcscd: Pcscd, wizard: Any, qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARDVEND_CARD_WAIT", "1")
    w = wizard
    reader = w.pages[2]
    w.pages[0].office.setText("OF01")
    assert next_page(w) == "" and next_page(w) == ""
    assert w.currentPage() is reader
    names = [reader.reader.itemData(i) for i in range(reader.reader.count())]
    assert names[0] == "" and {READER_SLOT0, READER_SLOT1} <= set(names)
    reader.reader.setCurrentIndex(names.index(READER_SLOT0))
    reader.test.click()  # no card in the slot
    qtbot.waitUntil(lambda: bool(reader.error.text()), timeout=20_000)
    assert "no card" in reader.error.text().lower()
    cards = tmp_path / "cards"
    image = cards / "card.json"
    assert run(cards, "card", "blank", "--image", str(image)).returncode == 0
    assert run(cards, "card", "issue", "--image", str(image), "--kind", "user").returncode == 0
    card = Emulator(cards, "--slot", "0", "--image", str(image))
    try:
        reader.test.click()
        qtbot.waitUntil(lambda: "serial" in reader.result.text(), timeout=20_000)
        assert "user card" in reader.result.text() and not reader.error.text()
    finally:
        card.stop()  # returns once pcscd has seen it leave: not taken for the next test's card


def test_run_setup_cancelled_quits_without_configuration(qtbot: Any, tmp_path: Path) -> None:
    """What run_gui does first with CARDVEND_DEMO=0 or --setup: the wizard, modal; Cancel
    answers False (the window then quits) and writes nothing."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from ui.setup_wizard import SetupWizard
    from ui.setup_wizard import run_setup

    ctx = make_ctx(tmp_path / "counter", wire=DEVICES)
    seen: list[str] = []

    def cancel() -> None:
        modal = QApplication.activeModalWidget()
        if isinstance(modal, SetupWizard):
            seen.append(modal.windowTitle())
            modal.reject()

    timer = QTimer()
    timer.timeout.connect(cancel)
    timer.start(50)
    try:
        assert run_setup(ctx) is False
    finally:
        timer.stop()
        assert ctx.card_worker is not None
        ctx.card_worker.shutdown()
    assert seen[:1] == ["CardVend set-up"]
    assert not ctx.paths.settings_file.exists() and not ctx.paths.default_db_file.exists()


def test_after_the_set_up_the_login_signs_in_the_new_administrator(
    wizard: Any, keystore: Path, qtbot: Any
) -> None:
    from PySide6.QtCore import Qt

    from ui.app import start_session

    w, ctx = wizard, wizard.ctx
    fill_to_admin(w, keystore)
    admin, central = w.pages[5:]
    admin.password.setText("boss-password")
    admin.repeat.setText("boss-password")
    assert next_page(w) == ""
    assert not central.validatePage()
    qtbot.waitUntil(lambda: w.outcome is not None, timeout=30_000)
    ctx.settings = Settings.load(ctx.paths.settings_file)  # as run_setup does
    session = start_session(ctx)
    try:
        qtbot.waitUntil(lambda: session.ready, timeout=30_000)
        dialog = session.dialog
        dialog.operator.setText("admin")  # the page's default id
        qtbot.keyClick(dialog.operator, Qt.Key.Key_Return)
        dialog.password.setText("boss-password")
        qtbot.keyClick(dialog.password, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: session.window is not None, timeout=20_000)
        assert ctx.office_code == "OF01" and ctx.counter_id == "C07"
    finally:
        session.shutdown()
