"""Starting the counter: prepare, ``python main.py`` up to the login window, the warnings the
window shows at once (changed audit log, offline limits near), offscreen."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.persistence.models import OutboxEntry
from app.settings import Settings
from tests.conftest import ROOT
from tests.rigs.context import make_ctx
from tests.rigs.env import child_env

pytestmark = pytest.mark.gui


def unsent_sale(amount: int, created_at: dt.datetime, **fields: Any) -> OutboxEntry:
    """A sale's record of ``amount`` fen waiting in the outbox since ``created_at``."""
    return OutboxEntry(
        kind="sale",
        ref_id=str(uuid.uuid4()),
        payload={},
        amount=amount,
        created_at=created_at,
        **fields,
    )


def test_prepare_loads_demo_only_when_unconfigured(tmp_path: Path) -> None:
    from app.services.customers import count_customers
    from ui.app import prepare

    ctx = make_ctx(tmp_path / "fresh")
    prepare(ctx)
    assert count_customers(ctx.db) == 1000
    configured = make_ctx(tmp_path / "configured")
    configured.settings.save(configured.paths.settings_file)
    configured.settings = Settings.load(configured.paths.settings_file)
    prepare(configured)
    assert count_customers(configured.db) == 0


def test_python_main_py_starts_the_window(tmp_path: Path) -> None:
    env = child_env(CARDVEND_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    log = tmp_path / "logs" / "cardvend.log"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if log.exists() and "login window shown" in log.read_text(encoding="utf-8"):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        else:
            pytest.fail("the login window did not come up within 60 s")
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_changed_audit_log_is_shown_at_start(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    from ui.app import prepare
    from ui.main_window import MainWindow

    ctx = make_ctx(tmp_path)
    assert prepare(ctx).ok
    con = sqlite3.connect(tmp_path / "data" / "cardvend.db")
    con.execute("UPDATE audit_log SET detail = '{}' WHERE seq = 1")
    con.commit()
    con.close()
    state = prepare(ctx)
    assert not state.ok and state.first_bad_seq == 1
    window = MainWindow(ctx, state)
    qtbot.addWidget(window)
    window.show()
    assert window.audit_warning.isVisible() and "row 1" in window.audit_warning.text()


def test_offline_banner_shows_the_numbers(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An unsent record older than 80 % of offline_max_hours (72 h): the banner says so."""
    from ui.main_window import MainWindow

    ctx = make_ctx(tmp_path, data="prepared")
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.status_link.text() != "")
    assert not window.offline_banner.isVisible()  # nothing waits

    with ctx.db.write() as session:
        session.add(unsent_sale(12345, dt.datetime.now(dt.UTC) - dt.timedelta(hours=60)))
    window.refresh_status()
    qtbot.waitUntil(window.offline_banner.isVisible)
    text = window.offline_banner.text()
    assert "1 records (12345 fen)" in text and "the oldest for 60.0 hours" in text
    assert "72 hours" in text
    assert "1 waiting" in window.status_link.text()


def test_offline_banner_warns_whenever_a_sale_would_be_refused(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The last successful sync was 80 hours ago (limit 72) and a record from an hour ago waits:
    the sale is refused, so the banner must warn, although the oldest record is young (the banner
    once measured the oldest record while the sale measured the time since the last sync)."""
    from app.services import selling
    from app.services.sync_status import LAST_SUCCESS
    from app.services.sync_status import put_counter_setting
    from ui.main_window import MainWindow

    ctx = make_ctx(tmp_path, data="prepared")
    now = dt.datetime.now(dt.UTC)
    with ctx.db.write() as session:
        put_counter_setting(
            session, LAST_SUCCESS, ctx.counter_id, (now - dt.timedelta(hours=80)).isoformat()
        )
        session.add(unsent_sale(100, now - dt.timedelta(hours=1), counter_id=ctx.counter_id))
    outlook = selling.offline_outlook(ctx.db, ctx.counter_id, ctx.clock, ctx.settings)
    assert outlook.refused is not None and outlook.near
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(window.offline_banner.isVisible)
    assert "80.0 hours" in window.offline_banner.text()


def test_signals_do_not_leak_references_to_true() -> None:
    """PySide6-Essentials 6.12.0 dropped a reference to True on every Signal.emit(): the
    counter aborted after a few thousand background operations (setup.cfg pins < 6.12)."""
    import sys

    from PySide6.QtCore import QCoreApplication
    from PySide6.QtCore import QObject
    from PySide6.QtCore import Signal

    QCoreApplication.instance() or QCoreApplication([])

    class Emitter(QObject):
        fired = Signal(object)

    emitter = Emitter()
    before = sys.getrefcount(True)
    for _ in range(50):
        emitter.fired.emit(1)
    assert sys.getrefcount(True) >= before


def test_gui_card_work_runs_on_the_composition_roots_card_thread(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One card thread: the window's card operations and the APDUs they send run on the thread
    main.py built (ctx.card_worker), so a PC/SC call made there runs inline, without a hop."""
    import threading

    from ui.bridge import Ops

    ctx = make_ctx(tmp_path, wire=("cards",))
    card = ctx.card_worker
    assert card is not None
    ops = Ops(workers=1, card=card)
    seen: list[tuple[str, bool]] = []
    ops.card(lambda: (threading.current_thread().name, card.is_current()), seen.append)
    qtbot.waitUntil(lambda: bool(seen), timeout=10_000)
    assert seen == [("card", True)]
    ops.shutdown()
    assert card.submit(lambda: "still there").result(10) == "still there"  # the root's thread
    # a closing window's timer asking for work after the shutdown: not run, no error
    ran: list[str] = []
    late = ops.run(lambda: ran.append("late"), seen.append)
    assert late.cancelled()
    assert ops.card(lambda: "closed", seen.append).result(10) == "closed"
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=10_000)
    assert ran == [] and seen[1] == "closed"
    card.shutdown()


def test_gui_asks_for_the_keystore_passphrase_in_a_dialog_never_getpass(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GUI started from a terminal with no passphrase set used to hang in getpass on the card
    thread: the window asks in a dialog on the GUI thread while the card thread waits."""
    import getpass
    import os as os_module

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication
    from PySide6.QtWidgets import QInputDialog

    import main as composition
    from cardio import wiring
    from cardio.emulator import CardImage
    from cardio.keys import create_keystore
    from ui.bridge import Ops
    from ui.passphrase import QtPassphraseHandler

    def no_getpass(prompt: str = "") -> str:
        raise AssertionError("getpass called")

    monkeypatch.setattr(getpass, "getpass", no_getpass)
    monkeypatch.delenv(wiring.PASSPHRASE_ENV, raising=False)
    ctx = make_ctx(tmp_path)
    master = create_keystore(wiring.keystore_path(ctx), "only the person knows")
    serial = os_module.urandom(8)
    image = tmp_path / "card.json"
    keys = {int(r): k for r, k in master.diversified_card_keys(serial).items()}
    CardImage.blank(serial, keys).save(image)
    composition.wire_cards(ctx, QtPassphraseHandler())
    ops = Ops(workers=1, card=ctx.card_worker)
    issued: list[object] = []
    failed: list[BaseException] = []
    ops.card(lambda: ctx.open_terminal(None, str(image)).issue(1), issued.append, failed.append)

    labels: list[str] = []

    def answer() -> None:  # runs inside the dialog's own event loop
        modal = QApplication.activeModalWidget()
        if isinstance(modal, QInputDialog):
            labels.append(modal.labelText())
            modal.setTextValue("only the person knows")
            modal.accept()

    timer = QTimer()
    timer.timeout.connect(answer)
    timer.start(50)
    qtbot.waitUntil(lambda: bool(issued or failed), timeout=10_000)
    timer.stop()
    assert not failed and len(issued) == 1
    assert len(labels) == 1 and "Keystore passphrase" in labels[0]
    ops.shutdown()
