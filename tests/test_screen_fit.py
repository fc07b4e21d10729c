"""Counter screens: every page, for every role, in both languages, fits a 1366×768 screen under
a real X server (Xvfb): the window and its status bar lie within the screen, no page needs
scrolling sideways, and no key column of a table (what identifies a row, the money) is elided or
out of view.  The tour itself is ``tests/screenshots.py --check``, which ``make screenshots``
shares; this test runs it in its own process on its own Xvfb display."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.rigs.env import child_env

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.gui


def tour_at(width: int, height: int, *args: str) -> dict[str, Any]:
    env = child_env()
    env["QT_QPA_PLATFORM"] = "xcb"
    run = subprocess.run(
        [
            "xvfb-run", "-a", "-s", f"-screen 0 {width}x{height}x24",
            sys.executable, "-m", "tests.screenshots", "--check", *args,
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.stdout.strip(), run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    result["returncode"] = run.returncode
    return result


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run is not installed")
@pytest.mark.parametrize("lang", ["zh_CN", "en"])  # a language each: two workers share the tour
def test_every_page_for_every_role_fits_1366_by_768(lang: str) -> None:
    result = tour_at(1366, 768, "--lang", lang)
    assert result["screen"] == [1366, 768]
    assert result["problems"] == [], "\n".join(result["problems"])
    assert result["returncode"] == 0


def test_the_check_sees_an_elided_key_column(qtbot: Any) -> None:
    """The check is not blind: a key column narrower than its text, or pushed out of view, is
    reported; the same table sized to its contents is not."""
    from PySide6.QtWidgets import QHeaderView

    from tests.screenshots import column_problems
    from ui.pages.common import KEY_COLUMNS
    from ui.pages.reports import fill_table
    from ui.pages.reports import make_table

    table = make_table(["Customer", "Address", "Amount"])
    qtbot.addWidget(table)
    table.resize(900, 300)
    fill_table(table, [["100000000002", "示范市解放路1号", "1,234,567.89"]], numeric=(2,))
    table.show()
    qtbot.waitExposed(table)
    assert table.property(KEY_COLUMNS) == [0, 2]
    assert column_problems(table) == []
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    table.setColumnWidth(0, 30)
    assert any("'Customer' is " in p and "its text needs" in p for p in column_problems(table))
    table.setColumnWidth(0, 200)
    table.setColumnWidth(1, 2000)  # the amount pushed off to the right
    assert any("'Amount' is out of view" in p for p in column_problems(table))
