"""The control loop's lifecycle (issue 17, part "life"): tier pricing kept across readings, a
command that keeps failing becoming a job the counter pulls, control parameters and
commissioning with the first purchase, and lifting control with a supervisor's approval.  On
SQLite and PostgreSQL, with the fleet simulator over TCP."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.clock import FixedClock
from app.clock import SystemClock
from app.domain.pricing import RATE_SCALE
from app.domain.pricing import TariffSpec
from app.paths import resolve_paths
from app.services.tariffs import SPEC_DEFAULTS
from app.settings import Settings
from cardio.dlt645 import TcpServer
from cardio.dlt645 import dataids as D
from cardio.fleet import Fleet
from cardio.fleet import demo_meters
from cardio.meter_wire import TerminalMeters
from sync import cli_control_lift
from sync import contract as c
from sync.central import models as m
from sync.central.base import Counter
from sync.central.control import MAX_ATTEMPTS
from sync.central.control import ControlLoop
from sync.central.control import control_status
from sync.central.control import tier_year_used
from sync.central.control_lift import LiftRefused
from sync.central.control_lift import apply_lift
from sync.central.server import CentralServer
from sync.central.store import CentralStore
from tests.rigs.central import NOW
from tests.rigs.central import START
from tests.rigs.central import sale
from tests.rigs.cli import ok_json
from tests.rigs.cli import registered_counter
from tests.rigs.cli import run
from tests.rigs.counter import REMOTE
from tests.rigs.pricing_oracle import oracle_cost

REMOTE_METER = "200000000010"


@pytest.fixture
def clock() -> FixedClock:
    """The station's time (``clocked_store``'s) starts at ``START``, the day after the demo data."""
    return FixedClock(START)


TIERED = {
    "kind": "tiered",
    "flat_rate": 5000,  # 0.5000 yuan/kWh
    "tiers": [{"upto_kwh": 10, "surcharge": 0}, {"upto_kwh": None, "surcharge": 3000}],
    "reset_month": 1,
    "reset_day": 1,
}


def settings(tmp_path: Path) -> Settings:
    s = Settings.load(resolve_paths(tmp_path / "home").ensure().settings_file)
    s.set("meter_timeout_ms", 300)
    s.set("meter_retries", 0)
    return s


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Fleet, TcpServer]]:
    """The demo's remote meters under a negligible load, an hour a real second (so that a few
    kWh set by hand between runs are a possible draw), on a free TCP port."""
    f = Fleet.open(tmp_path / "fleet", demo_meters(), load_kw=0.001, speed=3600, start=START)
    with TcpServer(f.responder()) as server:
        yield f, server


def _where(server: TcpServer) -> str:
    return f"127.0.0.1:{server.port}"


def test_the_tier_year_is_kept_until_a_new_one_starts() -> None:
    spec = TariffSpec.from_dict({**SPEC_DEFAULTS, **TIERED})
    year = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    at = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    assert tier_year_used(7000, year, spec, at, at) == (7000, year)
    # the first reading of 2027 starts a new tier year: nothing used in it yet
    later = dt.datetime(2027, 1, 1, 0, 5, tzinfo=dt.UTC)
    new_year = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert tier_year_used(7000, year, spec, later, later) == (0, new_year)
    # never kept before: 0
    assert tier_year_used(0, None, spec, at, at) == (0, year)


def test_a_tiered_customer_reaches_the_higher_tier(
    clocked_store: CentralStore, clock: FixedClock, tmp_path: Path, fleet: tuple[Fleet, TcpServer]
) -> None:
    """Three readings of 6 kWh each on a tariff whose second tier starts at 10 kWh: the station
    prices each against the consumption of the tier year so far (the pricing oracle of
    tests/test_pricing.py), so the second and third readings cost more than the first."""
    f, server = fleet
    clocked_store.add_tariff_version("RES-TIER", "tiered", TIERED, NOW - dt.timedelta(days=30))
    clocked_store.update_customer(REMOTE, tariff_plan="RES-TIER")
    spec = TariffSpec.from_dict({**SPEC_DEFAULTS, **TIERED})
    meters = TerminalMeters(settings(tmp_path), SystemClock(), _where(server))
    loop = ControlLoop(clocked_store, meters, opening_fen=100_000)
    meter = f.meters[REMOTE_METER]
    loop.run()  # the first reading: nothing to price yet
    for _ in range(3):
        meter.energy_wh[1] += 6000.0
        clock.advance(minutes=30)
        time.sleep(0.3)  # 18 minutes of the meters' time: 6 kWh is a possible draw
        loop.run()
    meters.close()
    rd = m.readings.c
    with clocked_store.engine.connect() as conn:
        rows = conn.execute(
            select(rd.energy_wh, rd.cost_num, rd.status)
            .where(rd.customer_no == REMOTE)
            .order_by(rd.id)
        ).all()
    assert [r.status for r in rows] == ["first", "billed", "billed", "billed"]
    used, costs = 0, []
    for before, after in itertools.pairwise(rows):
        energy = after.energy_wh - before.energy_wh
        expected = oracle_cost(spec, energy, used) * RATE_SCALE
        assert expected.denominator == 1 and after.cost_num == expected
        costs.append(Fraction(after.cost_num, energy))
        used += energy
    assert costs[0] == Fraction(5000 * RATE_SCALE, 100_000)  # all in the first tier
    assert costs[1] > costs[0]  # crosses 10 kWh
    assert costs[2] == Fraction(8000 * RATE_SCALE, 100_000)  # all in the second tier
    status = control_status(clocked_store, REMOTE)
    assert status is not None and status["tier_year_used_wh"] == used >= 18_000


# --------------------------------------------------------------------------- jobs

TECH = {"CARDVEND_PASSWORD": "demo-f01"}


def _serve(store: CentralStore) -> CentralServer:
    store.enrolment_key = "office-secret"
    return CentralServer(store.url, store=store)


def _give_up_on(loop: ControlLoop, clock: FixedClock) -> None:
    for _ in range(MAX_ATTEMPTS + 1):
        loop.run()
        clock.advance(minutes=10)


def onsite_jobs(store: CentralStore, customer_no: str) -> list[dict[str, Any]]:
    j = m.jobs.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(j.id, j.kind, j.office_code, j.params, j.status, j.seq).where(
                j.customer_no == customer_no, j.kind == "onsite_control"
            )
        ).mappings()
        return [dict(r) for r in rows]


def test_a_silent_meters_command_ends_in_a_job_the_counter_pulls(
    clocked_store: CentralStore, clock: FixedClock, tmp_path: Path, fleet: tuple[Fleet, TcpServer]
) -> None:
    """The meter of a customer at the trip threshold is gone from the bus: after the last
    attempt the trip becomes one on-site job of the customer's office (not one per failure),
    which a real counter process pulls and lists for the technician with what to do."""
    _, server = fleet
    meters = TerminalMeters(settings(tmp_path), SystemClock(), _where(server))
    loop = ControlLoop(clocked_store, meters, opening_fen=0)  # at the trip threshold at once
    server.responder.remove(REMOTE_METER)
    _give_up_on(loop, clock)
    # the trip failed for good; later commands that fail again add no second job
    clocked_store.update_customer(REMOTE, alarm1=10**6)
    _give_up_on(loop, clock)
    meters.close()
    found = onsite_jobs(clocked_store, REMOTE)
    assert len(found) == 1, found
    job = found[0]
    assert (job["office_code"], job["status"]) == ("DEMO", "open")
    assert job["params"]["purpose"] == "command_failed"
    assert job["params"]["command"] == "trip" and job["params"]["attempts"] == MAX_ATTEMPTS
    with _serve(clocked_store) as central:
        home = registered_counter(tmp_path / "counter", central.url)
        r = run(home, "sync")
        assert r.returncode == 0, r.stderr
        listed = ok_json(run(home, "jobs", "list", "--json", "--operator", "f01", env=TECH))
        shown = ok_json(
            run(home, "jobs", "show", job["id"], "--json", "--operator", "f01", env=TECH)
        )
        text = run(home, "jobs", "list", "--operator", "f01", env=TECH, lang="zh_CN")
    mine = [j for j in listed if j["id"] == job["id"]]
    assert [(j["kind"], j["customer_no"], j["card_kind"]) for j in mine] == [
        ("onsite_control", REMOTE, "parameters")
    ]
    assert shown["params"]["command"] == "trip"
    assert shown["card_content"]["alarm1_fen"] == 10**6  # the archive as pulled
    assert "现场费控检查" in text.stdout, text.stdout


# --------------------------------------------------------------------------- commissioning


def pay(store: CentralStore, customer_no: str, fen: int, when: dt.datetime) -> None:
    """A remote payment of ``fen`` a counter of the office posted."""
    body = sale(customer_no, kind="remote", purchase_count=None, amount=fen, credit=fen,
                cash_received=fen, energy_wh=fen, created_at=when.isoformat())  # fmt: skip
    [result] = store.post("sales", Counter("C1", "DEMO"), [c.SaleRecord.model_validate(body)])
    assert result.status == "created", result


def test_control_input_issues_parameters_and_the_first_purchase_commissions(
    clocked_store: CentralStore, clock: FixedClock, tmp_path: Path, fleet: tuple[Fleet, TcpServer]
) -> None:
    """Coming under control writes the archive's alarm thresholds and overdraft allowance into
    the meter (read back over DL/T 645 from the simulator); the first purchase tests the
    control function: the relay of the tripped customer reads closed after the close permit,
    and commissioning passed."""
    f, server = fleet
    meters = TerminalMeters(settings(tmp_path), SystemClock(), _where(server))
    loop = ControlLoop(clocked_store, meters, opening_fen=0)  # at the trip threshold at once
    first = loop.run()
    assert first.params_issued == first.enrolled == len(demo_meters())
    meter = f.meters[REMOTE_METER]
    cust = clocked_store.customer(REMOTE)
    assert cust is not None
    assert meter.value(D.ALARM_AMOUNT_1) == cust.alarm1
    assert meter.value(D.ALARM_AMOUNT_2) == cust.alarm2
    assert meter.value(D.OVERDRAFT_LIMIT) == cust.overdraft_limit
    assert meter.relay_open  # tripped
    status = control_status(clocked_store, REMOTE)
    assert status is not None and status["commission"] == "pending"
    clock.advance(minutes=5)
    assert loop.run().commissioned == 0  # no purchase yet: still pending
    pay(clocked_store, REMOTE, 20_000, clock.now())
    clock.advance(minutes=1)
    report = loop.run()
    meters.close()
    assert report.commissioned == 1 and report.commission_failed == 0
    status = control_status(clocked_store, REMOTE)
    assert status is not None and status["commission"] == "passed"
    assert status["commission_at"] == clock.now().isoformat()
    assert not meter.relay_open
    assert onsite_jobs(clocked_store, REMOTE) == []


def test_commissioning_that_fails_opens_an_onsite_job(
    clocked_store: CentralStore, clock: FixedClock, tmp_path: Path, fleet: tuple[Fleet, TcpServer]
) -> None:
    """The meter stopped answering after it came under control: the first purchase's test
    fails, commissioning is failed, and one on-site job says why."""
    _, server = fleet
    meters = TerminalMeters(settings(tmp_path), SystemClock(), _where(server))
    loop = ControlLoop(clocked_store, meters, opening_fen=5000)
    loop.run()
    server.responder.remove(REMOTE_METER)
    pay(clocked_store, REMOTE, 20_000, clock.now())
    clock.advance(minutes=1)
    report = loop.run()
    loop.run()  # failed stays failed: no second test, no second job
    meters.close()
    assert report.commission_failed == 1
    status = control_status(clocked_store, REMOTE)
    assert status is not None and status["commission"] == "failed"
    jobs = onsite_jobs(clocked_store, REMOTE)
    assert [j["params"]["purpose"] for j in jobs] == ["commission_failed"]
    assert jobs[0]["params"]["problem"]
    other = control_status(clocked_store, "100000000030")
    assert other is not None and other["commission"] == "pending"  # no purchase there


# --------------------------------------------------------------------------- lift and resume

TELLER = {"CARDVEND_PASSWORD": "demo-t01"}


def lift_events(store: CentralStore, customer_no: str) -> list[dict[str, Any]]:
    e = m.events.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(e.body, e.counter_id).where(e.kind == "control_lift", e.subject == customer_no)
        ).all()
    return [{**r.body, "counter": r.counter_id} for r in rows]


def test_lifting_control_needs_an_approval_and_stops_trips_until_resumed(
    clocked_store: CentralStore, clock: FixedClock, tmp_path: Path, fleet: tuple[Fleet, TcpServer]
) -> None:
    """A real counter process asks the station to lift a tripped customer's control: refused
    without a supervisor's approval (the station changes nothing), done with one (who asked
    and who approved kept at the station); the next run sends the close permit and the alarm
    release and no trip although the balance is below the threshold; a resume trips again."""
    f, server = fleet
    meter = f.meters[REMOTE_METER]
    meters = TerminalMeters(settings(tmp_path), SystemClock(), _where(server))
    loop = ControlLoop(clocked_store, meters, opening_fen=0)  # tripped at once
    loop.run()
    assert meter.relay_open
    # the station's own rule, whatever a counter does: a lift names another approver, and
    # a counter of another office cannot reach the customer
    own, other = Counter("C1", "DEMO"), Counter("C9", "ELSEWHERE")
    for approver in (None, "t01"):
        with pytest.raises(LiftRefused):
            apply_lift(clocked_store, own, REMOTE, c.ControlLift(
                id=str(uuid.uuid4()), action="lift", operator_id="t01",
                approver_id=approver, created_at=START))  # fmt: skip
    assert not apply_lift(clocked_store, other, REMOTE, c.ControlLift(
        id=str(uuid.uuid4()), action="lift", operator_id="t01", approver_id="s01",
        created_at=START))  # fmt: skip
    with _serve(clocked_store) as central:
        home = registered_counter(tmp_path / "counter", central.url)
        lift = ["control", "lift", REMOTE, "--reason", "hospital ward", "--operator", "t01"]
        refused = run(home, *lift, env=TELLER)
        assert refused.returncode != 0 and "approv" in refused.stderr, refused.stderr
        assert control_status(clocked_store, REMOTE)["lifted_at"] is None  # type: ignore[index]
        assert lift_events(clocked_store, REMOTE) == []
        same = run(home, *lift, "--approver", "t01", env={**TELLER,
                   "CARDVEND_APPROVER_PASSWORD": "demo-t01"})  # fmt: skip
        assert same.returncode != 0  # a teller cannot approve, least of all their own
        done = run(home, *lift, "--approver", "s01", "--json",
                   env={**TELLER, "CARDVEND_APPROVER_PASSWORD": "demo-s01"})  # fmt: skip
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["lifted_at"] is not None and answer["state"] == "normal"
        [event] = lift_events(clocked_store, REMOTE)
        assert (event["action"], event["operator_id"], event["approver_id"]) == (
            "lift",
            "t01",
            "s01",
        )
        assert event["reason"] == "hospital ward" and event["approval_id"]
        clock.advance(minutes=5)
        report = loop.run()
        assert not meter.relay_open and not meter.alarm  # close permit and release taken
        assert report.changed == 0  # no decision for a lifted customer
        status = control_status(clocked_store, REMOTE)
        assert status is not None and status["remaining_fen"] <= 0
        assert status["state"] == "normal" and status["commands_pending"] == []
        back = run(home, "control", "resume", REMOTE, "--operator", "t01", "--json",
                   env=TELLER)  # fmt: skip
        assert back.returncode == 0, back.stderr
        assert json.loads(back.stdout)["lifted_at"] is None
    clock.advance(minutes=5)
    loop.run()
    meters.close()
    assert meter.relay_open  # under control again: tripped
    assert control_status(clocked_store, REMOTE)["state"] == "tripped"  # type: ignore[index]


@pytest.mark.parametrize(("station", "shown"), [(None, "12.34"), (5000, "50.00"), (0, "0.00")])
def test_the_control_line_shows_the_card_balance_where_the_station_keeps_none(
    station: int | None, shown: str
) -> None:
    """``control status``, ``lift`` and ``resume`` print this one line (lift and resume had
    their own, which showed "—" for a customer the station does not control yet): the
    station's balance where it keeps one, else the card's write-back."""
    status = c.ControlStatus(
        customer_no=REMOTE,
        state="normal",
        meter_remaining=1234,
        system_credit=5000,
        remaining_fen=station,
    )
    line = cli_control_lift.control_line(status)
    assert line.startswith(f"{REMOTE}: normal, remaining {shown} yuan,"), line
