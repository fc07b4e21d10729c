"""The control statistics page (Ctrl+F7), offscreen, against a real station in this process: a
supervisor sees the figures the rows give (computed in Python), the charts hold them, the
region and period filters ask again, a stopped station and a period backwards are one clear
line, and a teller has no such page."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QDate

from app.i18n import translate
from app.presenters.stats import FIGURES
from app.presenters.stats import figure_text
from tests.rigs import stats_data as sd
from tests.rigs.context import SELLING
from tests.rigs.context import make_ctx
from tests.rigs.context import sign_in
from tests.rigs.sale_window import WAIT_MS
from tests.rigs.sale_window import station_page

pytestmark = pytest.mark.gui
LAST_30 = (dt.date(2026, 2, 9), dt.date(2026, 3, 10))  # the default period at sd.NOW


def shown(page: Any, want: dict[str, Any]) -> None:
    for key, label, unit in FIGURES:
        assert page.value_of(translate(label)) == figure_text(want[key], unit), key


def test_a_supervisor_sees_the_station_figures(qtbot: Any, tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING)
    with station_page(qtbot, ctx, tmp_path, "control_stats") as (server, rows, window, page):
        qtbot.waitUntil(lambda: page.stats is not None, timeout=WAIT_MS)
        want = sd.expected(rows, {"DEMO"}, period=LAST_30)
        shown(page, want)
        assert page.state_chart.bars[-1][1] == want["tripped"]
        assert sum(v for _, v in page.day_chart.bars) == want["sold_fen"]
        assert len(page.day_chart.bars) == 30
        assert "DEMO" in page.status.text()

        page.region.setCurrentIndex(1)  # this city: DEMO and HZ2 in 杭州
        page.date_from.setDate(QDate(2026, 3, 1))
        page.date_to.setDate(QDate(2026, 3, 10))
        page.refresh()
        qtbot.waitUntil(lambda: page.stats is not None and page.stats["level"] == "city",
                        timeout=WAIT_MS)  # fmt: skip
        shown(page, sd.expected(rows, {"DEMO", "HZ2"}))
        assert [name for name, _ in page.area_chart.bars] == ["Demo office", "Hangzhou West"]

        page.date_from.setDate(QDate(2026, 3, 11))
        page.refresh()
        assert page.stats is None and "after the last day" in page.status.text()
        page.date_from.setDate(QDate(2026, 3, 1))
        server.stop()
        page.refresh()
        qtbot.waitUntil(lambda: "cannot be reached" in page.status.text(), timeout=WAIT_MS)
        assert page.stats is None and page.value_of(translate(FIGURES[0][1])) == "—"
        window.close()


def test_a_teller_has_no_statistics_page(qtbot: Any, tmp_path: Path) -> None:
    from ui.main_window import MainWindow

    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING)
    window = MainWindow(ctx, principal=sign_in(ctx, "t01"), training=True)
    qtbot.addWidget(window)
    assert "control_stats" not in window.pages
    window.close()
