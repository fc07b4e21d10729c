"""The exceptions queue page (Ctrl+F5), offscreen, against a real station in this process: a
supervisor sees this office's exceptions (open ones first, then every state), takes steps that
the history shows with the operator and the counter; an illegal step, an unknown id and a
missing note are one clear line each, the steps are audited at the counter, a stopped station
is one line, and a teller has no such page."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from sqlalchemy import text

from tests.rigs import stats_data as sd
from tests.rigs.context import SELLING
from tests.rigs.context import make_ctx
from tests.rigs.context import sign_in
from tests.rigs.sale_window import WAIT_MS
from tests.rigs.sale_window import station_page

pytestmark = pytest.mark.gui
OPEN = {"new", "assigned", "escalated"}


def office_rows(rows: sd.Rows, states: set[str] | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in rows.exceptions
        if rows.customers[e["customer_no"]]["office"] == "DEMO"
        and (states is None or e["state"] in states)
    ]


def listed(page: Any) -> list[tuple[str, str]]:
    return sorted((i["customer_no"], i["state"]) for i in page.items)


def choose(page: Any, combo: Any, value: str | None) -> None:
    combo.setCurrentIndex(combo.findData(value))


def take(qtbot: Any, page: Any, step: str, *, to: str = "", note: str = "") -> None:
    choose(page, page.step, step)
    page.assignee.setText(to)
    page.note.setText(note)
    before = page.status.text()
    page.apply()
    qtbot.waitUntil(
        lambda: page.apply_button.isEnabled() and page.status.text() != before, timeout=WAIT_MS
    )


def test_a_supervisor_works_the_office_queue(qtbot: Any, tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING)
    with station_page(qtbot, ctx, tmp_path, "exceptions") as (server, rows, window, page):
        qtbot.waitUntil(lambda: page.items is not None, timeout=WAIT_MS)
        want = office_rows(rows, OPEN)
        assert want and listed(page) == sorted((e["customer_no"], e["state"]) for e in want)
        assert page.table.rowCount() == len(want)

        choose(page, page.state, None)  # all states: the resolved ones too
        qtbot.waitUntil(lambda: len(page.items or []) == len(office_rows(rows)), timeout=WAIT_MS)
        assert {i["state"] for i in page.items} >= {"new", "resolved"}

        choose(page, page.state, "new")
        qtbot.waitUntil(
            lambda: page.items is not None and {i["state"] for i in page.items} == {"new"},
            timeout=WAIT_MS,
        )
        first = page.items[0]
        page.table.selectRow(0)
        qtbot.waitUntil(lambda: page.detail is not None, timeout=WAIT_MS)
        assert page.detail["id"] == first["id"] and first["customer_no"] in page.info.text()

        take(qtbot, page, "explain")  # no note: refused here, nothing sent
        assert "must not be empty" in page.status.text()

        take(qtbot, page, "assign", to="t01", note="look at the meter")
        assert "is now assigned" in page.status.text(), page.status.text()
        assert page.detail["state"] == "assigned" and page.detail["assignee"] == "t01"
        qtbot.waitUntil(lambda: page.refresh_button.isEnabled(), timeout=WAIT_MS)  # listed again
        assert "is now assigned" in page.status.text()  # the answer stays on the status line
        assert first["id"] not in [i["id"] for i in page.items]  # no longer new
        last = page.detail["history"][-1]
        assert (last["action"], last["operator_id"], last["counter_id"]) == ("assign", "s01", "C01")
        n = page.history.rowCount()
        assert page.history.item(n - 1, 3).text() == "s01@C01"
        assert page.history.item(n - 1, 4).text() == "look at the meter"

        take(qtbot, page, "resolve", note="meter read again")
        assert page.detail["state"] == "resolved"
        take(qtbot, page, "escalate")  # resolved is final: the station refuses
        assert "refused the step" in page.status.text(), page.status.text()
        assert page.detail["state"] == "resolved"

        with ctx.db.engine.connect() as conn:
            audited = conn.execute(
                text("SELECT action, result FROM audit_log WHERE action LIKE 'exception_%'")
            ).fetchall()
        assert [tuple(r) for r in audited] == [
            ("exception_assign", "ok"), ("exception_resolve", "ok"),
            ("exception_escalate", "failed"),
        ]  # fmt: skip

        page.load(str(uuid.uuid4()))  # an id the station does not hold for this office
        qtbot.waitUntil(lambda: "holds no such exception" in page.status.text(), timeout=WAIT_MS)
        assert page.detail is None and not page.apply_button.isEnabled()

        server.stop()
        page.refresh()
        qtbot.waitUntil(lambda: "cannot be reached" in page.status.text(), timeout=WAIT_MS)
        assert page.items is None and page.detail is None and page.table.rowCount() == 0
        window.close()


def test_a_teller_has_no_exceptions_page(qtbot: Any, tmp_path: Path) -> None:
    from ui.main_window import MainWindow

    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING)
    window = MainWindow(ctx, principal=sign_in(ctx, "t01"), training=True)
    qtbot.addWidget(window)
    assert "exceptions" not in window.pages and "control_stats" not in window.pages
    window.close()
