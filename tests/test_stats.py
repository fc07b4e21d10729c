"""Charge-control statistics by region on the station (``sync/central/stats.py``), on SQLite and
PostgreSQL: the figures of rows written into a real store, checked against the same figures
computed in Python from those rows; the counter's region rule; bad input as typed errors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.clock import FixedClock
from sync.central import stats
from sync.central.store import CentralStore
from tests.rigs import stats_data as sd
from tests.rigs.central import seeded_store
from tests.rigs.stats_data import check

ZJ = {"DEMO", "HZ2", "NB1"}


@pytest.fixture(params=["sqlite", "postgresql"])
def data(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CentralStore, Any]]:
    with seeded_store(request.param, tmp_path, clock=FixedClock(sd.NOW)) as store:
        yield store, sd.build(store)


def station(store: CentralStore, region: str | None, **kw: Any) -> dict[str, Any]:
    return stats.for_region(store, region, *sd.PERIOD, kw.get("plan"), kw.get("state"))


def test_figures_by_region_match_the_rows(data: tuple[CentralStore, Any]) -> None:
    store, rows = data
    assert rows.control and rows.sales and rows.readings  # the data holds something to count
    everything = station(store, "all")
    check(everything, sd.expected(rows, set(rows.offices)))
    assert [a["area"] for a in everything["by_area"]] == ["上海", "浙江"]
    province = station(store, "province:浙江")
    check(province, sd.expected(rows, ZJ))
    assert [a["area"] for a in province["by_area"]] == ["宁波", "杭州"]
    # the breakdown adds up to the region's figures
    for key in ("controlled", "balance_fen", "sold_fen", "consumption_wh"):
        assert sum(a[key] for a in province["by_area"]) == province[key]
    city = station(store, "city:浙江/杭州")
    check(city, sd.expected(rows, {"DEMO", "HZ2"}))
    assert [(a["area"], a["name"]) for a in city["by_area"]] == [
        ("DEMO", "Demo office"),
        ("HZ2", "Hangzhou West"),
    ]
    check(station(store, "NB1"), sd.expected(rows, {"NB1"}))
    check(station(store, "office:SH1"), sd.expected(rows, {"SH1"}))
    assert len(city["by_day"]) == 10 and city["by_day"][0]["day"] == "2026-03-01"


def test_filters_by_plan_state_and_period(data: tuple[CentralStore, Any]) -> None:
    store, rows = data
    for state in sd.STATES:
        check(station(store, "all", state=state), sd.expected(rows, set(rows.offices), state=state))
    plan = sd.PLANS[1]
    check(station(store, "province:浙江", plan=plan), sd.expected(rows, ZJ, plan=plan))
    one_day = (dt.date(2026, 3, 1), dt.date(2026, 3, 1))
    got = stats.for_region(store, "all", *one_day, None, None)
    check(got, sd.expected(rows, set(rows.offices), period=one_day))
    assert [d["day"] for d in got["by_day"]] == ["2026-03-01"]


def test_a_counter_sees_its_office_city_and_province(data: tuple[CentralStore, Any]) -> None:
    store, rows = data

    def ask(office: str, region: str | None) -> dict[str, Any]:
        return stats.for_region(store, region, *sd.PERIOD, None, None, office_code=office)

    check(ask("HZ2", None), sd.expected(rows, {"HZ2"}))  # its own office by default
    check(ask("HZ2", "city:杭州"), sd.expected(rows, {"DEMO", "HZ2"}))  # its province's city
    check(ask("HZ2", "province:浙江"), sd.expected(rows, ZJ))
    check(ask("NB1", "city"), sd.expected(rows, {"NB1"}))  # the city its office is in
    check(ask("NB1", "province"), sd.expected(rows, ZJ))
    for region in ("NB1", "city:宁波", "province:上海", "all", "city:上海/杭州"):
        with pytest.raises((stats.RegionNotAllowed, stats.UnknownRegion)):
            ask("HZ2", region)
    with pytest.raises(stats.RegionNotAllowed) as refused:
        ask("HZ2", "SH1")
    assert "HZ2" in str(refused.value) and refused.value.status == 403
    with pytest.raises(stats.UnknownRegion):
        ask("HZ2", "NOPE")


def test_bad_input_is_a_typed_error(data: tuple[CentralStore, Any]) -> None:
    store, _ = data
    with pytest.raises(stats.UnknownRegion):
        station(store, "province:火星")
    with pytest.raises(stats.UnknownRegion):
        station(store, "county:x")
    with pytest.raises(stats.BadPeriod) as late:
        stats.for_region(store, None, dt.date(2026, 3, 5), dt.date(2026, 3, 1), None, None)
    assert "after" in str(late.value)
    with pytest.raises(stats.BadPeriod):
        stats.for_region(store, None, dt.date(2024, 1, 1), dt.date(2026, 3, 1), None, None)
    with pytest.raises(stats.BadFilter):
        station(store, None, state="dimmed")
    with pytest.raises(stats.BadFilter):
        station(store, None, plan="NO-SUCH-PLAN")


def test_the_default_period_is_the_last_thirty_office_days(
    data: tuple[CentralStore, Any],
) -> None:
    store, _ = data
    got = stats.for_region(store, None, None, None, None, None)
    assert (got["date_from"], got["date_to"]) == ("2026-02-09", "2026-03-10")
    assert got["level"] == "all" and got["time_zone"] == "Asia/Shanghai"
