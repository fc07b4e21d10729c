"""Signing in, the lock screen, the language switch, the first administrator and the
administration page, driven offscreen with pytest-qt (QT_QPA_PLATFORM=offscreen)."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shiboken6

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from sqlalchemy import select

from app.context import AppContext
from app.persistence.models import AuditEntry
from app.services import auth
from app.settings import Settings
from tests.rigs.context import make_ctx

pytestmark = pytest.mark.gui

# the one answer to every failed sign-in: unknown id, wrong password, locked or disabled
WRONG = (
    "Operator id or password is wrong, or this operator may not sign in now. Check both and try "
    "again; 5 wrong passwords in a row lock an operator for 30 minutes, and an administrator can "
    "unlock it."
)
TITLE_EN = "CardVend counter"
TITLE_ZH = "CardVend 柜台售电"  # the catalog's translation of the window title
WRONG_ZH = (
    "操作员工号或密码错误，或该操作员现在不能登录。请检查后重试；连续输错 5 次密码，"
    "操作员将被锁定 30 分钟，管理员可以解除锁定。"
)


@pytest.fixture
def start(qtbot: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """start(ctx=None, idle_ms=None) -> a CounterSession with its login dialog shown."""
    from ui.app import start_session

    sessions: list[Any] = []

    def make(ctx: AppContext | None = None, idle_ms: int | None = None) -> Any:
        ctx = ctx or make_ctx(tmp_path / f"home{len(sessions)}")
        session = start_session(ctx, idle_ms=idle_ms)
        sessions.append(session)
        qtbot.waitUntil(lambda: session.ready, timeout=30_000)
        return session

    yield make
    for session in sessions:
        session.shutdown()


def type_login(qtbot: Any, dialog: Any, operator: str, password: str) -> None:
    dialog.operator.setText(operator)
    qtbot.keyClick(dialog.operator, Qt.Key.Key_Return)  # Enter moves on to the password
    assert dialog.password.hasFocus() or not dialog.isActiveWindow()
    dialog.password.setText(password)
    qtbot.keyClick(dialog.password, Qt.Key.Key_Return)


def sign_in(qtbot: Any, session: Any, operator: str, password: str | None = None) -> Any:
    type_login(qtbot, session.dialog, operator, password or f"demo-{operator}")
    qtbot.waitUntil(lambda: session.window is not None and session.dialog is None, timeout=10_000)
    return session.window


def gone(widget: Any) -> bool:
    """Closed, and (once the event loop ran) deleted."""
    return not shiboken6.isValid(widget) or not widget.isVisible()


def audit_actions(ctx: AppContext, action: str) -> list[AuditEntry]:
    with ctx.db.read() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# --------------------------------------------------------------------------- login


def test_login_builds_the_window_for_the_operator(qtbot: Any, start: Any) -> None:
    session = start()
    dialog = session.dialog
    assert dialog.isVisible() and dialog.windowTitle() == TITLE_EN
    window = sign_in(qtbot, session, "t01")
    assert window.isVisible() and session.dialog is None  # the login dialog is gone
    assert window.principal.operator_id == "t01" and window.principal.role == "teller"
    assert window.training and window.training_banner.isVisible()  # no card reader configured
    assert "admin" not in window.pages  # administration is for administrators
    assert window.windowTitle() == TITLE_EN
    assert [e.target for e in audit_actions(session.ctx, "login") if e.result == "ok"] == ["t01"]


def test_wrong_password_unknown_id_locked_and_disabled_are_said_alike(
    qtbot: Any, start: Any
) -> None:
    """Nobody at the login learns which operator ids exist: every failure reads the same; the
    reason is in the audit log and the lockout on the administration page."""
    session = start()
    dialog = session.dialog
    type_login(qtbot, dialog, "t01", "not-the-password")
    qtbot.waitUntil(lambda: dialog.error.text() == WRONG)
    assert session.window is None and dialog.password.text() == ""
    assert dialog.operator.text() == "t01"  # only the password is typed again

    dialog.password.setText("")
    qtbot.keyClick(dialog.password, Qt.Key.Key_Return)
    assert dialog.error.text() == "Type your password."

    def said(operator: str, password: str) -> str:
        dialog.error.setText("")
        type_login(qtbot, dialog, operator, password)
        qtbot.waitUntil(lambda: dialog.error.text() != "" and not dialog.busy)
        return str(dialog.error.text())

    assert said("nobody", "not-the-password") == WRONG  # an id that does not exist
    for _i in range(4):  # five wrong passwords in a row lock the operator
        assert said("t01", "still-wrong") == WRONG
    assert said("t01", "demo-t01") == WRONG  # even the right one, until the time is up
    assert session.window is None

    ctx = session.ctx
    admin = auth.login(ctx.db, "a01", "demo-a01", counter_id=ctx.counter_id, clock=ctx.clock)
    auth.set_disabled(ctx.db, admin, "t02", True, ctx.clock)
    assert said("t02", "demo-t02") == WRONG
    results = [(e.target, e.result) for e in audit_actions(ctx, "login")]
    assert results[-8:] == [("nobody", "failed")] + [("t01", "failed")] * 4 + [
        ("t01", "locked"),
        ("a01", "ok"),
        ("t02", "denied"),
    ]
    (t01,) = [o for o in auth.list_operators(ctx.db, admin, ctx.clock) if o.id == "t01"]
    assert t01.locked_until is not None  # the administrator sees the lockout


@pytest.mark.parametrize("typed", ["ｔ01", "t０1", "t01²"])
def test_an_operator_id_in_other_characters_is_said_so(qtbot: Any, start: Any, typed: str) -> None:
    """Typed through a full-width input method, the id was looked up and the login said only
    "wrong operator id or password"."""
    session = start()
    dialog = session.dialog
    type_login(qtbot, dialog, typed, "demo-t01")
    qtbot.waitUntil(lambda: dialog.error.text() != "")
    assert f"operator id {typed!r} is not valid" in dialog.error.text()
    assert dialog.operator.hasFocus() or not dialog.isActiveWindow()
    assert session.window is None and audit_actions(session.ctx, "login") == []
    sign_in(qtbot, session, "t01")


def test_escape_on_the_login_quits(qtbot: Any, start: Any) -> None:
    session = start()
    with qtbot.waitSignal(session.quit_requested, timeout=2000):
        qtbot.keyClick(session.dialog.operator, Qt.Key.Key_Escape)


# --------------------------------------------------------------------------- lock


def test_idle_locks_and_the_password_unlocks(qtbot: Any, start: Any) -> None:
    session = start(idle_ms=300)
    window = sign_in(qtbot, session, "t01")
    principal = window.principal
    qtbot.waitUntil(lambda: session.locked, timeout=5000)
    lock = session.dialog
    assert lock.isVisible() and not window.centralWidget().isVisible()
    assert lock.operator.text() == "t01" and "t01" in lock.info.text()
    qtbot.keyClick(lock.password, Qt.Key.Key_Escape)  # Esc does not put the lock away
    assert session.locked and lock.isVisible()

    lock.password.setText("wrong-password")
    qtbot.keyClick(lock.password, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: lock.error.text() == WRONG)
    assert session.locked

    before = principal.authenticated_at
    lock.password.setText("demo-t01")
    qtbot.keyClick(lock.password, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not session.locked)
    assert gone(lock)
    assert session.window is window  # the same operator: the same window, as it was
    assert window.principal is principal and principal.authenticated_at >= before
    assert window.centralWidget().isVisible()
    qtbot.waitUntil(lambda: session.locked, timeout=5000)  # the idle watch runs again


def test_another_operator_signs_in_at_the_lock_screen(qtbot: Any, start: Any) -> None:
    session = start()
    old = sign_in(qtbot, session, "t01")
    session.lock()
    assert session.locked
    type_login(qtbot, session.dialog, "s01", "demo-s01")
    qtbot.waitUntil(lambda: session.window is not old and session.window is not None)
    assert session.window.principal.operator_id == "s01"
    assert session.window.isVisible() and gone(old)
    qtbot.waitUntil(lambda: [e.target for e in audit_actions(session.ctx, "logout")] == ["t01"])


def test_activity_keeps_the_operator_active_for_the_services(qtbot: Any, start: Any) -> None:
    session = start(idle_ms=60_000)
    window = sign_in(qtbot, session, "t01")
    window.principal.last_activity -= dt.timedelta(hours=1)
    qtbot.keyClick(window, Qt.Key.Key_Shift)
    window.principal.check_active(session.ctx.clock)  # no ReauthRequired


# --------------------------------------------------------------------------- language


def test_language_on_the_login_screen_is_remembered(qtbot: Any, start: Any) -> None:
    from app.i18n import get_language

    session = start()
    dialog = session.dialog
    dialog.language.choose("zh_CN")
    assert get_language() == "zh_CN"
    assert dialog.windowTitle() == TITLE_ZH
    type_login(qtbot, dialog, "t01", "wrong-password")
    qtbot.waitUntil(lambda: dialog.error.text() == WRONG_ZH)
    window = sign_in(qtbot, session, "t01")
    assert window.windowTitle() == TITLE_ZH
    ctx = session.ctx
    assert auth.operator_language(ctx.db, "t01") == "zh_CN"
    assert auth.operator_language(ctx.db, "t02") is None

    # the next sign-in, started in English, comes up in the operator's language
    session.shutdown()
    from app.i18n import set_language

    set_language("en")
    again = start(ctx=ctx)
    assert again.dialog.windowTitle() == TITLE_EN
    window = sign_in(qtbot, again, "t01")
    assert get_language() == "zh_CN" and window.windowTitle() == TITLE_ZH


def test_language_switch_when_signed_in_rebuilds_the_window(qtbot: Any, start: Any) -> None:
    session = start()
    old = sign_in(qtbot, session, "s01")
    assert old.windowTitle() == TITLE_EN
    session._language_box.choose("zh_CN")
    qtbot.waitUntil(lambda: session.window is not old)
    window = session.window
    assert window.windowTitle() == TITLE_ZH and window.isVisible() and gone(old)
    assert window.principal is old.principal  # the same sign-in
    qtbot.waitUntil(lambda: auth.operator_language(session.ctx.db, "s01") == "zh_CN")
    session._language_box.choose("en")
    qtbot.waitUntil(lambda: session.window.windowTitle() == TITLE_EN)
    qtbot.waitUntil(lambda: auth.operator_language(session.ctx.db, "s01") == "en")


# --------------------------------------------------------------------------- first start


def test_first_start_without_an_administrator_creates_one(
    qtbot: Any, start: Any, tmp_path: Path
) -> None:
    from ui.login import FirstAdminDialog

    ctx = make_ctx(tmp_path / "configured")
    ctx.settings.save(ctx.paths.settings_file)  # configured: no demo data, no operators
    ctx.settings = Settings.load(ctx.paths.settings_file)
    session = start(ctx=ctx)
    qtbot.waitUntil(lambda: isinstance(session.dialog, FirstAdminDialog))
    dialog = session.dialog
    assert "at least 8 characters" in dialog.info.text()
    dialog.operator.setText("boss")
    dialog.name.setText("Boss")
    dialog.password.setText("long-enough-1")
    dialog.password2.setText("long-enough-2")
    qtbot.keyClick(dialog.password2, Qt.Key.Key_Return)
    assert dialog.error.text() == "The two passwords differ. Type them again."
    dialog.password.setText("short")
    dialog.password2.setText("short")
    qtbot.keyClick(dialog.password2, Qt.Key.Key_Return)
    assert dialog.error.text() == "A password needs at least 8 characters."
    assert not auth.admin_exists(ctx.db)
    dialog.password.setText("long-enough-1")
    dialog.password2.setText("long-enough-1")
    qtbot.keyClick(dialog.password2, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: session.window is not None, timeout=10_000)
    assert auth.admin_exists(ctx.db)
    assert session.window.principal.operator_id == "boss"
    assert "admin" in session.window.pages


# --------------------------------------------------------------------------- administration


def test_admin_page_saves_settings_and_manages_operators(qtbot: Any, start: Any) -> None:
    session = start()
    window = sign_in(qtbot, session, "a01")
    ctx = session.ctx
    page = window.pages["admin"]
    window.show_page("admin")

    # a bad value: said, marked, nothing saved
    page.fields["offline_max_hours"].setText("many")
    page.save_settings()
    assert "whole number" in page.settings_error.text()
    assert not ctx.paths.settings_file.exists()

    page.fields["offline_max_hours"].setText("48")
    page.fields["offline_max_amount_fen"].setText("2500.50")
    page.fields["time_zone"].setText("Asia/Urumqi")
    page.save_settings()
    qtbot.waitUntil(lambda: ctx.paths.settings_file.exists() and page.save_button.isEnabled())
    stored = json.loads(ctx.paths.settings_file.read_text(encoding="utf-8"))
    assert stored["offline_max_hours"] == 48 and stored["offline_max_amount_fen"] == 250050
    assert stored["time_zone"] == "Asia/Urumqi"
    assert "training_mode" not in stored  # training is decided at start, never saved
    assert ctx.settings.get("offline_max_hours") == 48
    (row,) = audit_actions(ctx, "settings_change")
    assert row.operator_id == "a01" and "offline_max_hours" in row.target
    assert "Settings saved" in window.message.text()

    page.fields["time_zone"].setText("Mars/Olympus")
    page.save_settings()
    assert "not a time zone" in page.settings_error.text()

    # operators: list, add, disable, new password
    page.load_operators()
    qtbot.waitUntil(lambda: len(page.operators) == 5)
    page.add_operator()
    dialog = page.dialog
    dialog.operator.setText("t09")
    dialog.name.setText("New Teller")
    dialog.password.setText("first-pass-9")
    dialog.password2.setText("first-pass-9")
    qtbot.keyClick(dialog.password2, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: any(o.id == "t09" for o in page.operators))
    assert auth.login(ctx.db, "t09", "first-pass-9", counter_id="C01", clock=ctx.clock)
    assert "t09" in window.message.text()

    row = [o.id for o in page.operators].index("t09")
    page.table.selectRow(row)
    page.toggle_operator()
    qtbot.waitUntil(lambda: any(o.id == "t09" and o.disabled for o in page.operators))

    page.table.selectRow([o.id for o in page.operators].index("t02"))
    page.reset_password()
    dialog = page.dialog
    dialog.password.setText("second-pass")
    dialog.password2.setText("second-pass")
    dialog.ok.click()
    qtbot.waitUntil(lambda: "t02" in window.message.text() and "Password" in window.message.text())
    assert auth.login(ctx.db, "t02", "second-pass", counter_id="C01", clock=ctx.clock)


def test_only_administrators_change_settings_and_languages_are_checked(tmp_path: Path) -> None:
    """The services behind the page check for themselves (the page is only hidden)."""
    from app.domain.permissions import PermissionDenied
    from app.errors import ValidationError
    from app.services import configuration

    ctx = make_ctx(tmp_path, data="prepared")
    teller = auth.login(ctx.db, "t01", "demo-t01", counter_id="C01", clock=ctx.clock)
    with pytest.raises(PermissionDenied):
        configuration.change_settings(
            ctx.db, ctx.settings, teller, {"idle_minutes": 5}, ctx.clock, counter_id="C01"
        )
    assert ctx.settings.get("idle_minutes") == 15 and not ctx.paths.settings_file.exists()
    with pytest.raises(ValidationError):
        configuration.parse_setting("idle_minutes", "0")  # at least one minute
    with pytest.raises(ValidationError):
        configuration.check_setting("central_url", "ftp://central")
    with pytest.raises(ValidationError):
        auth.remember_language(ctx.db, teller, "fr")
    auth.remember_language(ctx.db, teller, "en")
    assert auth.operator_language(ctx.db, "t01") == "en"


def test_a_database_that_cannot_start_is_said_on_the_login(qtbot: Any, tmp_path: Path) -> None:
    from ui.app import start_session

    ctx = make_ctx(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    ctx.db_url_override = str(tmp_path / "a-file" / "cardvend.db")
    session = start_session(ctx)
    try:
        dialog = session.dialog
        qtbot.waitUntil(lambda: dialog.error.text() != "", timeout=10_000)
        assert dialog.status.text() == ""
        type_login(qtbot, dialog, "t01", "demo-t01")  # a sign-in says the same, no crash
        qtbot.waitUntil(lambda: not dialog.busy)
        assert dialog.error.text() and session.window is None
    finally:
        session.shutdown()


def test_a_manual_lock_covers_the_tray_and_open_dialogs_even_from_a_dialog(
    qtbot: Any, start: Any, tmp_path: Path
) -> None:
    """Ctrl+L works while the teller waits in an approval dialog; the lock screen does not
    claim an idle time for a manual lock; the training card tray and the dialog are hidden
    behind it and come back with the unlock."""
    from app.domain.permissions import Action
    from ui.dialogs import ApprovalDialog

    # no reader configured: training on the card tray
    ctx = make_ctx(tmp_path, wire=("cards", "demo_keys"))
    session = start(ctx)
    window = sign_in(qtbot, session, "t01")
    tray = window.tray_dock
    qtbot.waitUntil(tray.isVisible)
    dialog = ApprovalDialog(window, Action.REVERSE, "a-sale", parent=window)
    dialog.open()
    qtbot.waitUntil(dialog.isVisible)
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow)
    qtbot.keyClick(dialog.form.operator, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: session.locked, timeout=5000)
    lock = session.dialog
    assert "without activity" not in lock.info.text() and "t01" in lock.info.text()
    assert not tray.isVisible() and not dialog.isVisible()
    lock.password.setText("demo-t01")
    qtbot.keyClick(lock.password, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not session.locked)
    assert session.window is window and tray.isVisible() and dialog.isVisible()
    dialog.reject()


def test_the_idle_lock_names_the_configured_minutes(qtbot: Any, start: Any) -> None:
    session = start()
    sign_in(qtbot, session, "t01")
    session.ctx.settings.set("idle_minutes", 7)  # changed by the administrator meanwhile
    session.lock(idle=True)
    assert session.locked
    assert "locked after 7 minutes without activity" in session.dialog.info.text()


@pytest.mark.parametrize(
    ("operator", "landing", "hidden"),
    [
        ("t01", "sale", {"admin", "jobs", "meter", "control_stats", "exceptions"}),
        ("f01", "jobs", {"sale", "shift", "recovery", "admin", "control_stats", "exceptions"}),
        ("a01", "admin", {"sale", "shift", "recovery", "jobs", "meter"}),
    ],
)
def test_each_role_lands_on_its_page_and_sees_only_its_pages(
    qtbot: Any, start: Any, operator: str, landing: str, hidden: set[str]
) -> None:
    session = start()
    window = sign_in(qtbot, session, operator)
    current = window.current_page()
    assert window.pages[landing] is current
    assert not hidden & set(window.pages)
    # another operator at the lock screen lands on their own page, not the last one's
    session.lock()
    type_login(qtbot, session.dialog, "s01", "demo-s01")
    qtbot.waitUntil(lambda: session.window is not window and session.window is not None)
    assert session.window.current_page() is session.window.pages["sale"]
