"""The station's charge-control loop against simulated remote meters over DL/T 645 on TCP:
consumption read and priced into balances, alarm and trip sent at the thresholds, a close permit
after a payment a counter syncs, exceptions for readings that are missing, go backwards or jump,
commands retried with backoff and given up into an exception, one run at a time; on SQLite and
PostgreSQL, and end to end with the real ``fleet simulate`` and ``central serve --terminals``
processes."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.clock import FixedClock
from app.clock import SystemClock
from app.paths import resolve_paths
from app.settings import Settings
from cardio.dlt645 import TcpServer
from cardio.fleet import Fleet
from cardio.fleet import demo_meters
from cardio.meter_wire import TerminalMeters
from sync.central import models as m
from sync.central.control import MAX_ATTEMPTS
from sync.central.control import ControlLoop
from sync.central.control import commands_for
from sync.central.control import control_status
from sync.central.store import CentralStore
from tests.rigs.central import NOW
from tests.rigs.central import seeded_store
from tests.rigs.counter import REMOTE
from tests.rigs.fleet_process import relay_open
from tests.rigs.fleet_process import station_with_fleet
from tests.rigs.fleet_process import wait_closed
from tests.rigs.fleet_process import wait_tripped

ROOT = Path(__file__).resolve().parent.parent
REMOTE_METER = "200000000010"


def settings(tmp_path: Path) -> Settings:
    return Settings.load(resolve_paths(tmp_path / "home").ensure().settings_file)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Fleet, str]]:
    """The demo's remote meters in this process, two simulated hours a real second under 5 kW,
    on a free TCP port: (fleet, "127.0.0.1:PORT")."""
    f = Fleet.open(tmp_path / "fleet", demo_meters(), load_kw=5.0, speed=7200,
                   start=dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC))  # fmt: skip
    with TcpServer(f.responder()) as server:
        yield f, f"127.0.0.1:{server.port}"


def commands_of(store: CentralStore, customer_no: str) -> list[tuple[str, str]]:
    cm = m.commands.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(cm.command, cm.status)
            .where(cm.customer_no == customer_no)
            .order_by(cm.created_at)
        ).all()
    return [(r[0], r[1]) for r in rows]


def exceptions_of(store: CentralStore) -> dict[str, set[str]]:
    ex = m.exceptions.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(ex.customer_no, ex.kind)).all()
    found: dict[str, set[str]] = {}
    for customer_no, kind in rows:
        found.setdefault(customer_no, set()).add(kind)
    return found


def test_what_each_change_of_state_sends() -> None:
    assert commands_for("normal", "alarm1") == ["alarm"]
    assert commands_for("alarm1", "alarm2") == ["alarm"]
    assert commands_for("alarm2", "tripped") == ["trip"]
    assert commands_for("normal", "tripped") == ["trip"]
    assert commands_for("tripped", "normal") == ["close", "release"]
    assert commands_for("tripped", "alarm1") == ["close", "alarm"]
    assert commands_for("alarm2", "normal") == ["release"]
    assert commands_for("normal", "normal") == []


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_consumption_takes_customers_through_alarm_to_trip(
    kind: str, tmp_path: Path, fleet: tuple[Fleet, str]
) -> None:
    f, where = fleet
    with seeded_store(kind, tmp_path) as store:
        meters = TerminalMeters(settings(tmp_path), SystemClock(), where)
        loop = ControlLoop(store, meters, opening_fen=5000)
        first = loop.run()
        assert first.enrolled == len(demo_meters()) and first.read == first.enrolled
        deadline = time.monotonic() + 60
        while control_status(store, REMOTE)["state"] != "tripped":  # type: ignore[index]
            assert time.monotonic() < deadline, control_status(store, REMOTE)
            time.sleep(0.3)
            loop.run()
        meters.close()
        sent = commands_of(store, REMOTE)
        assert sent[-1] == ("trip", "done")
        assert ("alarm", "done") in sent[:-1]  # the reminder came before the trip
        assert relay_open(where, REMOTE_METER)  # read back over DL/T 645
        status = control_status(store, REMOTE)
        assert status is not None and status["remaining_fen"] <= 0 and status["relay"] == "open"
        # the balance is the opening less every priced reading, rounded up once
        co, rd = m.control.c, m.readings.c
        with store.engine.connect() as conn:
            cost = conn.execute(select(co.cost_num).where(co.customer_no == REMOTE)).scalar_one()
            priced = sum(
                conn.execute(select(rd.cost_num).where(rd.customer_no == REMOTE)).scalars()
            )
        assert cost == priced > 0
        assert status["remaining_fen"] == 5000 - -(-cost // 100_000)
        assert f.meters[REMOTE_METER].relay_open


def test_a_missing_a_backwards_and_a_jumping_reading_are_exceptions_not_bills(
    tmp_path: Path,
) -> None:
    served = [m_ for m_ in demo_meters() if m_[0] != "200000000020"]  # this one never answers
    f = Fleet.open(tmp_path / "fleet", served, load_kw=1.0, speed=60, start=NOW)
    clock = FixedClock(dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC))
    with TcpServer(f.responder()) as server, seeded_store("sqlite", tmp_path, clock=clock) as store:
        where = f"127.0.0.1:{server.port}"
        fast = settings(tmp_path)
        fast.set("meter_timeout_ms", 300)
        fast.set("meter_retries", 0)
        meters = TerminalMeters(fast, SystemClock(), where)
        loop = ControlLoop(store, meters, opening_fen=5000)
        back = f.meters["200000000030"]
        back.energy_wh = [0.0, 0.0, 0.0, 5000.0]
        loop.run()
        back.energy_wh = [0.0, 0.0, 0.0, 0.0]  # the register went back (a swapped meter, say)
        jump = f.meters["200000000040"]
        jump.energy_wh[2] += 50_000_000  # 50 MWh in a minute of the meter's time
        time.sleep(0.2)
        before = control_status(store, "100000000030")
        report = loop.run()
        meters.close()
        found = exceptions_of(store)
        assert found["100000000020"] == {"reading_missing"}
        assert found["100000000030"] == {"reading_backwards"}
        assert found["100000000040"] == {"reading_jump"}
        assert report.exceptions == 2  # the missing meter's was opened by the first run
        after = control_status(store, "100000000030")
        assert after is not None and before is not None
        assert after["remaining_fen"] == before["remaining_fen"]  # not billed
        meters = TerminalMeters(fast, SystemClock(), where)
        assert ControlLoop(store, meters).run().exceptions == 0  # all open already: none again
        meters.close()
        ex = m.exceptions.c
        with store.engine.connect() as conn:
            rows = conn.execute(select(ex.kind).where(ex.customer_no == "100000000020")).all()
        assert len(rows) == 1


def test_a_command_that_keeps_failing_is_retried_with_backoff_then_given_up(
    tmp_path: Path,
) -> None:
    """The meter of a tripping customer stops answering: the trip is retried, each time later,
    and after the last attempt fails it becomes an exception for a technician."""
    clock = FixedClock(dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC))
    f = Fleet.open(tmp_path / "fleet", demo_meters(), load_kw=1.0, speed=1, start=NOW)
    with TcpServer(f.responder()) as server, seeded_store("sqlite", tmp_path, clock=clock) as store:
        fast = settings(tmp_path)
        fast.set("meter_timeout_ms", 300)
        fast.set("meter_retries", 0)
        meters = TerminalMeters(fast, SystemClock(), f"127.0.0.1:{server.port}")
        loop = ControlLoop(store, meters, opening_fen=0)  # at the trip threshold at once
        server.responder.remove(REMOTE_METER)  # the meter is gone from the bus
        loop.run()
        cm = m.commands.c
        attempts = []
        for _ in range(MAX_ATTEMPTS + 2):
            with store.engine.connect() as conn:
                attempts.append(
                    conn.execute(
                        select(cm.attempts, cm.status, cm.next_at).where(
                            cm.customer_no == REMOTE, cm.command == "trip"
                        )
                    ).one()
                )
            clock.advance(minutes=10)
            loop.run()
        meters.close()
        waits = [b[2] - a[2] for a, b in itertools.pairwise(attempts) if b[1] == "pending"]
        assert [a[0] for a in attempts[:MAX_ATTEMPTS]] == list(range(1, MAX_ATTEMPTS + 1))
        assert attempts[MAX_ATTEMPTS - 1][1] == "failed"
        assert all(w > dt.timedelta(0) for w in waits)
        assert "command_failed" in exceptions_of(store)[REMOTE]
        assert control_status(store, "100000000020")["relay"] == "open"  # type: ignore[index]


def test_one_run_at_a_time(tmp_path: Path) -> None:
    with seeded_store("sqlite", tmp_path) as store:
        first, second = ControlLoop(store, None), ControlLoop(store, None)
        assert first._take_lease()
        assert not second.run().ran  # the other holds the loop
        first._release_lease()
        assert second.run().ran


# --------------------------------------------------------------------------- end to end


def test_end_to_end_a_remote_customer_trips_pays_at_a_counter_and_is_closed_again(
    tmp_path: Path, counter: Any, sleeps: Any
) -> None:
    """Real processes: the fleet simulator and the station with ``--terminals``; the counter
    takes the payment and syncs over HTTP; the meter's relay, read over DL/T 645, closes again
    within the set time (60 s)."""
    from sync.client import CentralClient
    from sync.client import RetryPolicy
    from sync.contract import RegisterRequest
    from sync.service import SyncService

    db = tmp_path / "station.db"
    with station_with_fleet(
        tmp_path, f"sqlite:///{db}", "--control-interval", "0.5",
        fleet_args=("--speed", "7200", "--load-kw", "5"),
    ) as running:  # fmt: skip
        assert running.where is not None
        where, url = running.where, running.url
        store = CentralStore(f"sqlite:///{db}")
        wait_tripped(store, REMOTE, where, REMOTE_METER)

        client = CentralClient(url, None, timeout=(2.0, 10.0), retry=RetryPolicy(sleep=sleeps))
        token = client.register(
            RegisterRequest(counter_id="C01", office_code="DEMO", name="test"), None
        ).token
        client.close()
        service = SyncService(
            counter.db,
            CentralClient(url, token, timeout=(2.0, 10.0), retry=RetryPolicy(sleep=sleeps)),
            counter.clock, counter_id="C01", office_code="DEMO",
        )  # fmt: skip
        counter.remote(20_000)  # 200.00 yuan at the counter
        paid_at = time.monotonic()
        assert service.run_round().push.sent >= 1
        closed_after = wait_closed(store, REMOTE, where, REMOTE_METER, paid_at)
        status = control_status(store, REMOTE)
        assert status is not None and status["close_permit_sent_at"] is not None
        assert status["paid_fen"] > 0 and status["state"] != "tripped"
        assert closed_after < 60
        # the counter's view of it (cardvend control status), through the contract
        viewer = CentralClient(url, token, timeout=(2.0, 10.0), retry=RetryPolicy(sleep=sleeps))
        seen = viewer.control_status(REMOTE)
        viewer.close()
        assert seen.state == status["state"] and seen.relay == "closed"
        assert seen.remaining_fen == status["remaining_fen"] > 0
        assert seen.close_permit_sent_at is not None and seen.last_reading_at is not None
        shown = subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "central", "control", "status", REMOTE,
             "--db", f"sqlite:///{db}", "--json"],
            capture_output=True, text=True, env=running.env, timeout=60,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["close_permit_sent_at"] == status["close_permit_sent_at"]
        store.dispose()
