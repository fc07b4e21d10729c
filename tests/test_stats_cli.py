"""``GET /stats`` over real HTTP and ``cardvend stats`` as a real counter process, against a
station on SQLite and on PostgreSQL holding the statistics rows: the figures the counter gets
equal the ones computed in Python from the rows; another office's region, an unknown one, bad
dates and a period that ends before it starts are clear errors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.clock import FixedClock
from sync import contract as c
from sync.central import CentralServer
from sync.client import CentralClient
from sync.client import RetryPolicy
from sync.errors import StatsRefused
from tests.rigs import stats_data as sd
from tests.rigs.central import Api
from tests.rigs.central import register
from tests.rigs.central import seeded_store
from tests.rigs.cli import ok_json
from tests.rigs.cli import registered_counter
from tests.rigs.cli import run
from tests.rigs.stats_data import FIGURES
from tests.rigs.stats_data import check


@pytest.fixture(params=["sqlite", "postgresql"])
def station(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """(URL, rows) of a station serving the statistics rows; its enrolment key office-secret."""
    with seeded_store(request.param, tmp_path, clock=FixedClock(sd.NOW)) as store:
        rows = sd.build(store)
        server = CentralServer("", store=store, enrolment_key="office-secret")
        server.start()
        try:
            yield server.url, rows
        finally:
            server.stop()


def test_the_api_answers_a_counter_for_its_areas_only(station: tuple[str, Any]) -> None:
    url, rows = station
    api = Api(url, register(url, "C9", "HZ2", **{"X-Enrolment-Key": "office-secret"}))
    r = api.get("/stats", **{"from": "2026-03-01", "to": "2026-03-10"})
    assert r.status_code == 200, r.text
    check(c.Stats.model_validate_json(r.content).model_dump(mode="json"),
          sd.expected(rows, {"HZ2"}))  # fmt: skip
    r = api.get("/stats", region="province:浙江", **{"from": "2026-03-01", "to": "2026-03-10"})
    check(r.json(), sd.expected(rows, {"DEMO", "HZ2", "NB1"}))
    for region, status, code in (
        ("SH1", 403, "region_not_allowed"),
        ("city:宁波", 403, "region_not_allowed"),
        ("all", 403, "region_not_allowed"),
        ("MARS", 404, "unknown_region"),
    ):
        r = api.get("/stats", region=region)
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
    r = api.get("/stats", **{"from": "2026-03-05", "to": "2026-03-01"})
    assert (r.status_code, r.json()["code"]) == (422, "bad_period")
    r = api.get("/stats", **{"from": "2000-01-01"})  # well formed, but more than 366 days
    assert (r.status_code, r.json()["code"]) == (422, "bad_period")
    r = api.get("/stats", plan="NO-SUCH-PLAN")
    assert (r.status_code, r.json()["code"]) == (422, "bad_filter")
    assert api.get("/stats", **{"from": "2026-02-30"}).status_code == 400
    assert api.get("/stats", to="0").status_code == 400  # a number is no day
    assert api.get("/stats", state="dimmed").status_code == 400
    assert Api(url).get("/stats").status_code == 401
    # the client turns a refusal into a typed error a person can read
    client = CentralClient(url, api.http.headers["Authorization"].split()[1],
                           retry=RetryPolicy(attempts=1))  # fmt: skip
    with pytest.raises(StatsRefused) as refused:
        client.stats(region="SH1")
    assert refused.value.kind == "region_not_allowed" and "its own office" in str(refused.value)
    got = client.stats(date_from=dt.date(2026, 3, 1), date_to=dt.date(2026, 3, 10))
    client.close()
    assert got.controlled == sd.expected(rows, {"HZ2"})["controlled"]


def test_cardvend_stats_as_a_counter_runs_it(station: tuple[str, Any], tmp_path: Path) -> None:
    url, rows = station
    home = registered_counter(tmp_path / "counter", url)  # the demo counter: office DEMO
    period = ("--from", "2026-03-01", "--to", "2026-03-10")
    got = ok_json(run(home, "stats", *period, "--json"))
    check(got, sd.expected(rows, {"DEMO"}))
    got = ok_json(run(home, "stats", "--region", "city:杭州", *period, "--json"))
    check(got, sd.expected(rows, {"DEMO", "HZ2"}))
    plan = sd.PLANS[0]
    got = ok_json(run(home, "stats", "--region", "province:浙江", *period, "--plan", plan,
                      "--state", "tripped", "--json"))  # fmt: skip
    want = sd.expected(rows, {"DEMO", "HZ2", "NB1"}, plan=plan, state="tripped")
    assert {k: got[k] for k in FIGURES} == {k: want[k] for k in FIGURES}
    text = run(home, "stats", "--region", "city:杭州", *period)
    assert text.returncode == 0 and "Customers under fee control" in text.stdout
    assert "Hangzhou West" in text.stdout
    zh = run(home, "stats", "--region", "city:杭州", *period, lang="zh_CN")
    assert zh.returncode == 0 and "费控用户" in zh.stdout, zh.stdout
    refused = run(home, "stats", "--region", "SH1")
    assert refused.returncode == 1 and "its own office" in refused.stderr, refused.stderr
    unknown = run(home, "stats", "--region", "province:火星")
    assert unknown.returncode == 1 and "no office is in that region" in unknown.stderr
    late = run(home, "stats", "--from", "2026-03-05", "--to", "2026-03-01")
    assert late.returncode == 1 and "is after" in late.stderr, late.stderr
    bad = run(home, "stats", "--from", "2026-13-01")
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr, bad.stderr


def test_central_stats_on_the_station(tmp_path: Path) -> None:
    """``cardvend central stats`` over the station's own database (any region)."""
    with seeded_store("sqlite", tmp_path) as store:
        rows = sd.build(store)
    db = f"sqlite:///{tmp_path / 'central.db'}"
    period = ("--from", "2026-03-01", "--to", "2026-03-10")
    got = ok_json(run(tmp_path / "home", "central", "stats", "--db", db, *period, "--json"))
    # the station's clock is now, past the rows: only the control figures need no clock
    want = sd.expected(rows, set(rows.offices))
    for key in ("controlled", "tripped", "balance_fen", "sold_fen", "consumption_wh"):
        assert got[key] == want[key], key
    got = ok_json(run(tmp_path / "home", "central", "stats", "--db", db, "--region", "SH1",
                      *period, "--json"))  # fmt: skip
    assert got["controlled"] == sd.expected(rows, {"SH1"})["controlled"]
    text = run(tmp_path / "home", "central", "stats", "--db", db, "--region", "province:浙江")
    assert text.returncode == 0 and "宁波" in text.stdout
    bad = run(tmp_path / "home", "central", "stats", "--db", db, "--region", "county:x")
    assert bad.returncode == 1 and "No office is in region" in bad.stderr, bad.stderr


def test_cardvend_stats_without_a_station_is_one_clear_line(tmp_path: Path) -> None:
    home = tmp_path / "counter"
    assert run(home, "demo").returncode == 0
    unregistered = run(home, "stats")
    assert unregistered.returncode == 1 and "not registered" in unregistered.stderr
    with seeded_store("sqlite", tmp_path) as store:
        server = CentralServer("", store=store, enrolment_key="office-secret")
        server.start()
        url = server.url
        try:
            registered_counter(home, url)
        finally:
            server.stop()
    away = run(home, "stats", "--json")
    lines = away.stderr.strip().splitlines()
    assert away.returncode == 1 and len(lines) == 1 and "cannot be reached" in lines[0], lines
