"""The fleet of simulated remote fee-control meters (``cardvend fleet simulate``): energy by rate
under the daily load profile while the relay is closed and none while it is open, simulated time
and state that survive a restart, bad meters files and state files as one clear line, and the real
command serving DL/T 645 on TCP to our meter client."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.errors import CardVendError
from cardio.dlt645 import MeterClient
from cardio.dlt645 import Password
from cardio.dlt645 import TcpSettings
from cardio.dlt645 import connect_tcp_link
from cardio.dlt645 import dataids as D
from cardio.dlt645.errors import MeterNoAnswer
from cardio.dlt645.messages import RelayCommand
from cardio.fleet import LOAD_PROFILE
from cardio.fleet import RATE_OF_HOUR
from cardio.fleet import Fleet
from cardio.fleet import FleetError
from cardio.fleet import FleetMeter
from cardio.fleet import FleetStateError
from cardio.fleet import MetersFileError
from cardio.fleet import SimClock
from cardio.fleet import consumption
from cardio.fleet import demo_meters
from cardio.fleet import read_meters_file
from cardio.profile import BEIJING
from tests.rigs.env import child_env

ROOT = Path(__file__).resolve().parent.parent
MIDNIGHT = dt.datetime(2026, 3, 2, 0, 0, tzinfo=BEIJING)
PASSWORD = Password(2, "000000")


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_load_profile_averages_to_the_mean_and_every_hour_has_a_rate() -> None:
    assert len(LOAD_PROFILE) == len(RATE_OF_HOUR) == 24
    assert sum(LOAD_PROFILE) == pytest.approx(24)
    assert set(RATE_OF_HOUR) == {1, 2, 3, 4}


def test_a_day_at_a_mean_load_is_that_load_times_24_hours_split_by_rate() -> None:
    by_rate = consumption(MIDNIGHT, MIDNIGHT + dt.timedelta(days=1), 1000.0)
    assert sum(by_rate) == pytest.approx(24_000)
    for rate in (1, 2, 3, 4):
        hours = [h for h in range(24) if RATE_OF_HOUR[h] == rate]
        assert by_rate[rate - 1] == pytest.approx(1000 * sum(LOAD_PROFILE[h] for h in hours))
    # the evening sharp hour draws more than a night valley hour
    assert (
        consumption(MIDNIGHT.replace(hour=19), MIDNIGHT.replace(hour=20), 1000.0)[0]
        > (consumption(MIDNIGHT.replace(hour=3), MIDNIGHT.replace(hour=4), 1000.0)[3])
    )


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3 * 86_400), st.integers(0, 3 * 86_400), st.integers(0, 3 * 86_400))
def test_consumption_adds_up_over_any_split(a: int, b: int, c: int) -> None:
    """Settling at any moments in between never changes what a meter counts."""
    t0, t1, t2 = (MIDNIGHT + dt.timedelta(seconds=s) for s in sorted((a, b, c)))
    whole = consumption(t0, t2, 750.0)
    parts = [
        x + y for x, y in zip(consumption(t0, t1, 750.0), consumption(t1, t2, 750.0), strict=True)
    ]
    assert parts == pytest.approx(list(whole), abs=1e-6)


def meter(ticks: Ticks, speed: float = 3600.0, mean_w: float = 2000.0) -> FleetMeter:
    clock = SimClock(MIDNIGHT, speed, monotonic=ticks)
    m = FleetMeter("200000000010", source=clock, mean_w=mean_w)
    m.settled_at = clock.now()
    return m


def test_energy_grows_while_the_relay_is_closed_and_stops_while_it_is_tripped() -> None:
    ticks = Ticks()
    m = meter(ticks)
    ticks.t = 2.0  # two simulated hours (00:00-02:00, valley)
    first = m.value(D.POSITIVE_ENERGY)
    assert first == int(2000 * (LOAD_PROFILE[0] + LOAD_PROFILE[1]))
    assert m.value(D.POSITIVE_ENERGY_RATES[3]) == first  # valley
    assert m.value(D.COMBINED_ENERGY) == first
    m.relay(RelayCommand.TRIP, "op")
    assert m.value(D.STATUS_WORD_3) & D.Status3.RELAY_OPEN
    ticks.t = 5.0
    assert m.value(D.POSITIVE_ENERGY) == first  # nothing flows through an open relay
    m.relay(RelayCommand.CLOSE_PERMIT, "op")  # the customer switches on (auto_close)
    ticks.t = 6.0
    assert m.value(D.POSITIVE_ENERGY) == int(
        2000 * (LOAD_PROFILE[0] + LOAD_PROFILE[1] + LOAD_PROFILE[5])
    )
    assert not m.value(D.STATUS_WORD_3) & D.Status3.RELAY_OPEN


class Running(Ticks):
    """A monotonic clock that moves a quarter of a second (a quarter of a simulated hour at
    3600x) every time it is read, as a busy machine's would between two register reads."""

    def __call__(self) -> float:
        self.t += 0.25
        return self.t


def test_an_energy_block_is_read_at_one_moment() -> None:
    """The total and its rates in a block come from one settlement: they add up to the Wh,
    however far the simulated clock moves between the reads of a block's members (once, the
    members were read one by one and the total ran ahead of its rates under load)."""
    ticks = Running()
    m = meter(ticks)
    for _ in range(30):  # through every rate of the day
        for block in (D.POSITIVE_ENERGY_BLOCK, D.COMBINED_ENERGY_BLOCK):
            total, *rates = m.value(block) or ()
            assert total == sum(rates) > 0
    single = m.value(D.POSITIVE_ENERGY)  # a single register still settles on every read
    assert single is not None and single > total


def test_a_fleet_resumes_its_time_energy_and_relays_after_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "fleet"
    fleet = Fleet.open(
        state, [("200000000010", None), ("200000000020", 3.0)], load_kw=2.0, speed=1.0,
        start=MIDNIGHT,
    )  # fmt: skip
    assert stat.S_IMODE(fleet.state_file.stat().st_mode) == 0o600
    assert fleet.meters["200000000020"].mean_w == 3000.0
    assert 0.6 * 2000 <= fleet.meters["200000000010"].mean_w <= 1.4 * 2000
    first = fleet.meters["200000000020"]
    first.energy_wh = [1.0, 2.0, 3.0, 4000.5]
    first.relay(RelayCommand.TRIP, "op")
    fleet.close()
    saved = json.loads(fleet.state_file.read_text())

    again = Fleet.open(state, [("200000000030", None)], load_kw=2.0, speed=1.0, start=MIDNIGHT)
    assert set(again.meters) == {"200000000010", "200000000020", "200000000030"}
    assert again.clock.now() >= dt.datetime.fromisoformat(saved["sim_time"])
    assert again.clock.now() < dt.datetime.fromisoformat(saved["sim_time"]) + dt.timedelta(hours=1)
    back = again.meters["200000000020"]
    assert back.relay_open and back.command_open
    assert back.energy_by_rate() == (1, 2, 3, 4000)  # tripped: nothing drawn since
    # looking at a saved fleet changes nothing in it
    before = again.state_file.read_bytes()
    looked = Fleet.load(state)
    assert looked is not None and looked.meters.keys() == again.meters.keys()
    assert again.state_file.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("200000000010\n20000000001x\n", 2),
        ("meter_no,load_kw\n200000000010,2\n２00000000011\n", 3),
        ("200000000010\n200000000010\n", 2),
        ("200000000010,-1\n", 1),
        ("200000000010,lots\n", 1),
        ("200000000010,1,2\n", 1),
        ("# nothing but a comment\n", 0),
    ],
)
def test_a_bad_meters_file_names_its_line(tmp_path: Path, content: str, line: int) -> None:
    path = tmp_path / "meters.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(MetersFileError) as caught:
        read_meters_file(path)
    assert f"line {line}" in str(caught.value)
    assert str(path) in str(caught.value)
    assert "第" in caught.value.localized("zh_CN") or "行" in caught.value.localized("zh_CN")


def test_a_meters_file_with_loads_comments_and_a_header(tmp_path: Path) -> None:
    path = tmp_path / "meters.csv"
    path.write_text("meter_no,load_kw\n200000000010,2.5  # shop\n\n200000000011\n")
    assert read_meters_file(path) == [("200000000010", 2.5), ("200000000011", None)]


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: "not json",
        lambda d: json.dumps({**d, "version": 99}),
        lambda d: json.dumps({**d, "meters": [{**d["meters"][0], "energy_wh": [1, 2]}]}),
        lambda d: json.dumps({**d, "meters": [{**d["meters"][0], "address": "12345"}]}),
        lambda d: json.dumps({k: v for k, v in d.items() if k != "sim_time"}),
    ],
)
def test_a_damaged_state_file_is_one_clear_error(tmp_path: Path, damage: object) -> None:
    state = tmp_path / "fleet"
    Fleet.open(state, [("200000000010", None)], load_kw=1.0, start=MIDNIGHT).close()
    data = json.loads((state / "fleet.json").read_text())
    (state / "fleet.json").write_text(damage(data))  # type: ignore[operator]
    with pytest.raises(FleetStateError) as caught:
        Fleet.open(state, [], load_kw=1.0, start=MIDNIGHT)
    assert "fleet.json" in str(caught.value)
    assert "fleet.json" in caught.value.localized("zh_CN")


def test_a_bad_meter_address_in_the_state_is_said_in_the_readers_language(tmp_path: Path) -> None:
    state = tmp_path / "fleet"
    Fleet.open(state, [("200000000010", None)], load_kw=1.0, start=MIDNIGHT).close()
    data = json.loads((state / "fleet.json").read_text())
    data["meters"][0]["address"] = "12345"
    (state / "fleet.json").write_text(json.dumps(data))
    with pytest.raises(FleetStateError) as caught:
        Fleet.open(state, [], load_kw=1.0, start=MIDNIGHT)
    why = caught.value.params["reason"]
    assert isinstance(why, CardVendError) and "12345" in str(caught.value)
    assert why.localized("zh_CN") in caught.value.localized("zh_CN")
    assert why.localized("en") not in caught.value.localized("zh_CN")


def test_a_fleet_needs_meters_and_a_sensible_load(tmp_path: Path) -> None:
    with pytest.raises(FleetError):
        Fleet.open(tmp_path / "a", [], load_kw=1.0, start=MIDNIGHT)
    with pytest.raises(FleetError):
        Fleet.open(tmp_path / "b", [("200000000010", None)], load_kw=5000.0, start=MIDNIGHT)


def test_the_demo_fleet_is_the_demo_databases_remote_meters() -> None:
    from app.services.demo import CUSTOMERS
    from app.services.demo import demo_customer

    remote = {
        demo_customer(i)["meter_no"]
        for i in range(CUSTOMERS)
        if demo_customer(i)["meter_kind"] == "remote"
    }
    assert {m for m, _ in demo_meters()} == remote
    assert len(remote) == CUSTOMERS // 10


# --------------------------------------------------------------------------- the command


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """``cardvend fleet simulate`` of 2,000 meters at an hour a second, on a free port."""
    meters = tmp_path / "meters.csv"
    meters.write_text("".join(f"{300000000000 + i}\n" for i in range(2000)))
    state = tmp_path / "state"
    env = child_env()
    env["CARDVEND_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--lang", "en", "fleet", "simulate", "--tcp", "0",
         "--meters", str(meters), "--state", str(state), "--speed", "3600", "--load-kw", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "Serving 2000 meters on tcp 127.0.0.1:" in line, line + proc.stderr.read()
    port = int(line.split("127.0.0.1:")[1].split()[0])
    try:
        yield proc, port, state
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_the_command_serves_every_meter_by_address_and_keeps_what_commands_did(
    served: tuple[subprocess.Popen[str], int, Path], tmp_path: Path
) -> None:
    proc, port, state = served
    client = MeterClient(connect_tcp_link(TcpSettings("127.0.0.1", port, timeout=2.0)))
    try:
        far = "300000001999"
        assert client.read(far, D.METER_ADDRESS) == far
        first = client.read(far, D.POSITIVE_ENERGY)
        rates = client.read(far, D.POSITIVE_ENERGY_BLOCK)
        assert sum(rates[1:]) == rates[0]  # whole Wh by rate, read at one moment
        until = client.read(far, D.DATE_TIME) + dt.timedelta(hours=2)
        client.relay(far, RelayCommand.TRIP, until, password=PASSWORD, operator="00000001")
        assert client.read(far, D.STATUS_WORD_3) & D.Status3.RELAY_OPEN
        tripped = client.read(far, D.POSITIVE_ENERGY)
        assert tripped >= first
        other = client.read("300000000000", D.POSITIVE_ENERGY)
        import time

        time.sleep(1.5)  # an hour and a half of simulated time
        assert client.read(far, D.POSITIVE_ENERGY) == tripped  # the open relay draws nothing
        assert client.read("300000000000", D.POSITIVE_ENERGY) > other  # the others go on
        quick = MeterClient(
            connect_tcp_link(TcpSettings("127.0.0.1", port, timeout=0.3, retries=0))
        )
        with pytest.raises(MeterNoAnswer):  # not one of the fleet's meters: no answer
            quick.read("399999999999", D.POSITIVE_ENERGY)
        quick.link.close()
    except Exception:
        proc.kill()
        raise
    finally:
        client.link.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    shown = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "fleet", "show", "--state", str(state), "--json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={**os.environ, "CARDVEND_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    rows = {r["meter_no"]: r for r in json.loads(shown.stdout)["meters"]}
    assert len(rows) == 2000
    assert rows["300000001999"]["relay"] == "open"
    # the wire carries energy to 0.01 kWh (10 Wh); the state keeps the Wh
    assert tripped <= sum(rows["300000001999"]["energy_wh"]) < tripped + 10
    assert rows["300000000000"]["relay"] == "closed"
