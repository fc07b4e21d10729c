"""The administration page's approval rules, offscreen on a demo database: the table of every
approvable action, the edit dialog (steps, roles, another person, time limit) with its inline
errors, the new rule used by the next request while a request already waiting keeps its rule
(the tab and the dialog in Chinese: tests/test_gui_zh.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.context import AppContext
from app.domain.permissions import Action
from app.i18n import set_language
from app.services import approvals
from app.services.approvals import ApprovalStep
from tests.rigs.context import make_ctx
from tests.rigs.sale_window import rules_tab

pytestmark = pytest.mark.gui

WAIT = 10_000  # ms


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    yield make_ctx(tmp_path / "home", data="prepared")  # the demo database
    set_language("en")


def row_of(tab: Any, action: Action) -> int:
    return [r.action for r in tab.rows].index(action.value)


def cell(tab: Any, action: Action, column: int) -> str:
    return str(tab.table.item(row_of(tab, action), column).text())


def ask(ctx: AppContext, target: str) -> approvals.ApprovalView:
    return approvals.request(
        ctx.db,
        action=Action.REPRINT,
        target=target,
        payload={},
        operator_id="t01",
        counter_id=ctx.counter_id,
        clock=ctx.clock,
    )


def open_editor(qtbot: Any, tab: Any, action: Action) -> Any:
    tab.table.selectRow(row_of(tab, action))
    tab.edit_rule()
    dialog = tab.dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def test_edit_a_rule_and_the_next_request_uses_it(qtbot: Any, ctx: AppContext) -> None:
    window, tab = rules_tab(qtbot, ctx)
    actions = [r.action for r in tab.rows]
    assert actions == [a.value for a in Action if a is not Action.APPROVE]
    assert tab.table.rowCount() == len(actions)
    assert cell(tab, Action.PAUSE_ACCOUNT, 1) == "no approval needed"
    assert cell(tab, Action.PAUSE_ACCOUNT, 2) == ""
    assert cell(tab, Action.CLOSE_ACCOUNT, 1) == "1. supervisor (another person)"
    assert cell(tab, Action.REPRINT, 2) == "60 minutes"

    old = ask(ctx, "sale-old")  # filed under the rule as it is: one supervisor
    dialog = open_editor(qtbot, tab, Action.REPRINT)
    assert dialog.needed.isChecked() and dialog.count.value() == 1
    assert [dialog.steps[0].role.itemData(i) for i in range(dialog.steps[0].role.count())] == [
        r.value for r in approvals.approver_roles()
    ]
    dialog.count.setValue(2)
    assert dialog.steps[1].isVisibleTo(dialog) and not dialog.steps[2].isVisibleTo(dialog)
    second = dialog.steps[1]
    second.role.setCurrentIndex(second.role.findData("admin"))
    second.distinct.setChecked(False)

    dialog.ttl.setText("soon")  # the dialog's own check: said inline, nothing saved
    dialog.ok.click()
    assert "whole number of minutes" in dialog.error.text() and dialog.isVisible()
    dialog.ttl.setText("0")  # the service's check: comes back inline, the dialog stays
    dialog.ok.click()
    qtbot.waitUntil(lambda: "1 to 10080 minutes" in dialog.error.text(), timeout=WAIT)
    assert dialog.isVisible()
    with ctx.db.read() as session:
        assert len(approvals.get_rule(session, Action.REPRINT).steps) == 1

    dialog.ttl.setText("45")
    with qtbot.waitSignal(dialog.finished, timeout=WAIT):  # saved: the dialog closes
        dialog.ok.click()
    qtbot.waitUntil(lambda: cell(tab, Action.REPRINT, 2) == "45 minutes", timeout=WAIT)
    assert cell(tab, Action.REPRINT, 1) == (
        "1. supervisor (another person); 2. administrator (may be the same person)"
    )
    assert "Approval rule saved" in window.message.text()

    new = ask(ctx, "sale-new")  # at once: the next request has the new steps
    assert new.steps == (ApprovalStep("supervisor"), ApprovalStep("admin", False))
    waiting = {v.id: v for v in approvals.pending(ctx.db, clock=ctx.clock)}
    assert waiting[old.id].steps == (ApprovalStep("supervisor"),)
    done = approvals.approve(
        ctx.db,
        old.id,
        approver_id="s01",
        approver_role="supervisor",
        counter_id=ctx.counter_id,
        clock=ctx.clock,
    )
    assert done.state == "approved"  # finished under the rule it was filed under
    rows = [r for r in approvals.list_rules(ctx.db) if r.action == "reprint"]
    assert rows[0].ttl_minutes == 45


def test_no_approval_needed_and_always_approved(qtbot: Any, ctx: AppContext) -> None:
    _window, tab = rules_tab(qtbot, ctx)
    dialog = open_editor(qtbot, tab, Action.PAUSE_ACCOUNT)
    dialog.needed.setChecked(True)  # asks for one (not by default) ...
    with qtbot.waitSignal(dialog.finished, timeout=WAIT):
        dialog.ok.click()
    qtbot.waitUntil(
        lambda: cell(tab, Action.PAUSE_ACCOUNT, 1) != "no approval needed", timeout=WAIT
    )
    dialog = open_editor(qtbot, tab, Action.PAUSE_ACCOUNT)  # ... and no longer
    dialog.needed.setChecked(False)
    assert not dialog.count.isEnabled() and not dialog.ttl.isEnabled()
    with qtbot.waitSignal(dialog.finished, timeout=WAIT):
        dialog.ok.click()
    qtbot.waitUntil(
        lambda: cell(tab, Action.PAUSE_ACCOUNT, 1) == "no approval needed", timeout=WAIT
    )
    with ctx.db.read() as session:
        assert not approvals.needs_approval(session, Action.PAUSE_ACCOUNT)

    reverse = open_editor(qtbot, tab, Action.REVERSE)  # its flow cannot go on without one
    assert reverse.needed.isChecked() and not reverse.needed.isEnabled()
    reverse.reject()
    close = open_editor(qtbot, tab, Action.CLOSE_ACCOUNT)  # a close hands back cash
    assert close.needed.isChecked() and not close.needed.isEnabled()
    close.reject()
