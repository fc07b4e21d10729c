"""Measurement tasks (issue 17, seed 3.5): which customers' meters the control loop reads, how
often and which registers.  The demo fleet simulator runs as a process over TCP; the station
on SQLite and PostgreSQL; ``central tasks`` is run as a process."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy import update

from app.clock import FixedClock
from app.clock import SystemClock
from app.paths import resolve_paths
from app.settings import Settings
from cardio.meter_wire import TerminalMeters
from sync.central import models as m
from sync.central import tasks
from sync.central.control import ControlLoop
from sync.central.store import CentralStore
from tests.conftest import station_db
from tests.rigs.cli import ok_json
from tests.rigs.cli import run
from tests.rigs.fleet_process import fleet_process


@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fleet_process(tmp_path_factory.mktemp("fleet")) as w:
        yield w


def _meters(tmp_path: Path, where: str) -> TerminalMeters:
    s = Settings.load(resolve_paths(tmp_path / "home").ensure().settings_file)
    return TerminalMeters(s, SystemClock(), where)


def _read_at(store: CentralStore, at: dt.datetime) -> set[str]:
    """The customers whose meters were read (a reading kept) at station time ``at``."""
    rd = m.readings.c
    with store.engine.connect() as conn:
        return set(conn.execute(select(rd.customer_no).where(rd.read_at == at)).scalars())


def _relays(store: CentralStore, at: dt.datetime) -> dict[str, str | None]:
    """The relay each reading taken at ``at`` gave (None: the status words were not read)."""
    rd = m.readings.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(rd.customer_no, rd.relay).where(rd.read_at == at)).all()
    return {number: relay for number, relay in rows}


def _by_plan(store: CentralStore) -> dict[str, set[str]]:
    cu = m.customers.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(cu.customer_no, cu.tariff_plan).where(cu.meter_kind == "remote")
        ).all()
    found: dict[str, set[str]] = {}
    for number, plan in rows:
        found.setdefault(plan, set()).add(number)
    return found


def test_each_group_is_read_as_often_as_its_task_says(
    clocked_store: CentralStore, clock: FixedClock, tmp_path: Path, where: str
) -> None:
    """Everyone daily, flat-rate customers hourly, time-of-use ones every 15 minutes: a
    customer that several tasks match is read as the most frequent says."""
    plans = _by_plan(clocked_store)
    flat, tou, tier = plans["RES-FLAT"], plans["RES-TOU"], plans["RES-TIER"]
    assert flat and tou and tier
    tasks.add_task(clocked_store, "daily", 24 * 60)
    tasks.add_task(clocked_store, "flat-hourly", 60, plan="RES-FLAT")
    tasks.add_task(clocked_store, "tou-15", 15, office="DEMO", plan="RES-TOU", registers="status")
    meters = _meters(tmp_path, where)
    loop = ControlLoop(clocked_store, meters)
    start = clock.now()
    try:
        first = loop.run()  # never read: everyone is due
        assert _read_at(clocked_store, start) == flat | tou | tier
        assert first.read == len(flat | tou | tier)
        clock.advance(minutes=10)
        assert loop.run().read == 0  # nobody is due 10 minutes later
        assert _read_at(clocked_store, clock.now()) == set()
        clock.advance(minutes=5)  # 15 minutes
        loop.run()
        assert _read_at(clocked_store, clock.now()) == tou
        clock.advance(minutes=44)  # 59: the hourly group is not due yet
        loop.run()
        assert _read_at(clocked_store, clock.now()) == tou
        clock.advance(minutes=1)  # 60 minutes after the first reading: the hourly group
        loop.run()
        assert _read_at(clocked_store, clock.now()) == flat  # tou was read a minute ago
        clock.advance(minutes=14)
        loop.run()
        assert _read_at(clocked_store, clock.now()) == tou
        clock.set(start + dt.timedelta(days=1))  # the daily task: everyone again
        loop.run()
        assert _read_at(clocked_store, clock.now()) == flat | tou | tier
    finally:
        meters.close()


def test_without_a_task_every_meter_is_read_each_run(
    clocked_store: CentralStore, clock: FixedClock, tmp_path: Path, where: str
) -> None:
    """No task: every controlled meter each run (as before tasks); with a task for one plan,
    the customers it does not match are still read every run."""
    plans = _by_plan(clocked_store)
    everyone = set().union(*plans.values())
    meters = _meters(tmp_path, where)
    loop = ControlLoop(clocked_store, meters)
    try:
        for _ in range(2):
            assert loop.run().read == len(everyone)
            assert _read_at(clocked_store, clock.now()) == everyone
            clock.advance(minutes=10)
        flat = plans["RES-FLAT"]
        tasks.add_task(clocked_store, "flat-hourly", 60, plan="RES-FLAT", registers="energy")
        loop.run()  # the flat-rate customers were read 10 minutes ago: not due
        assert _read_at(clocked_store, clock.now()) == everyone - flat
        clock.advance(minutes=50)  # an hour after their last reading
        loop.run()
        relays = _relays(clocked_store, clock.now())
        assert relays.keys() == everyone  # the flat-rate ones without the status words:
        assert {relays[c] for c in flat} == {None}
        assert None not in {relays[c] for c in everyone - flat}
        co = m.control.c
        with clocked_store.engine.connect() as conn:  # ... their relay as last read is kept
            kept = conn.execute(select(co.relay).where(co.customer_no.in_(flat))).scalars()
            assert None not in set(kept)
        tasks.remove_task(clocked_store, "flat-hourly")
        clock.advance(minutes=10)
        loop.run()
        assert _read_at(clocked_store, clock.now()) == everyone
    finally:
        meters.close()


def _move_meter(store: CentralStore, customer_no: str, meter_no: str) -> None:
    """The control loop reads the meter of the customer's control row."""
    co = m.control.c
    with store.engine.begin() as conn:
        conn.execute(
            update(m.control).where(co.customer_no == customer_no).values(meter_no=meter_no)
        )


def test_a_meter_that_did_not_answer_is_due_again_at_the_next_run(
    clocked_store: CentralStore, clock: FixedClock, tmp_path: Path, where: str
) -> None:
    """A missing reading is an exception as before, and the meter is not taken as read: the
    next run tries it again although its task reads the others hourly."""
    plans = _by_plan(clocked_store)
    everyone = set().union(*plans.values())
    silent = sorted(plans["RES-TOU"])[0]
    ControlLoop(clocked_store, None).run()  # everyone comes under control, nothing read
    co, ex = m.control.c, m.exceptions.c
    with clocked_store.engine.connect() as conn:
        meter_no = conn.execute(select(co.meter_no).where(co.customer_no == silent)).scalar_one()
    _move_meter(clocked_store, silent, "299999999999")  # no meter answers there
    tasks.add_task(clocked_store, "hourly", 60)
    meters = _meters(tmp_path, where)
    loop = ControlLoop(clocked_store, meters)
    try:
        report = loop.run()
        assert _read_at(clocked_store, clock.now()) == everyone - {silent}
        assert report.exceptions == 1
        clock.advance(minutes=10)
        report = loop.run()  # only the silent meter is due: tried, still silent
        assert report.read == 0 and _read_at(clocked_store, clock.now()) == set()
        with clocked_store.engine.connect() as conn:
            kinds = conn.execute(select(ex.kind).where(ex.customer_no == silent)).scalars()
            assert list(kinds) == ["reading_missing"]  # one open exception, not one a run
        _move_meter(clocked_store, silent, meter_no)  # answering again
        clock.advance(minutes=10)
        loop.run()
        assert _read_at(clocked_store, clock.now()) == {silent}  # the others were read 20 min ago
    finally:
        meters.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_central_tasks_as_a_process(kind: str, tmp_path: Path) -> None:
    """add / list / remove, and each bad input a typed error in the person's language with
    nothing stored."""
    home = tmp_path / "station-home"
    with station_db(kind, tmp_path) as db:
        r = run(home, "central", "offices", "add", "DEMO", "--db", db)
        assert r.returncode == 0, r.stderr
        found = _cli_round(home, db)
        assert found == [
            {"name": "flat-hourly", "office": "DEMO", "plan": "RES-FLAT", "every_min": 60,
             "registers": ["energy", "clock"]},
        ]  # fmt: skip
        store = CentralStore(db)
        try:
            assert tasks.list_tasks(store) == []  # removed again
        finally:
            store.dispose()


def _cli_round(home: Path, db: str) -> list[dict[str, object]]:
    def tasks_cmd(*args: str, lang: str = "en") -> tuple[int, str, str]:
        r = run(home, "central", "tasks", *args, "--db", db, lang=lang)
        return r.returncode, r.stdout, r.stderr

    code, out, _err = tasks_cmd(
        "add", "flat-hourly", "--every", "60", "--office", "DEMO", "--plan", "RES-FLAT",
        "--registers", "energy",
    )  # fmt: skip
    assert code == 0 and "60" in out, _err
    errors = {
        ("add", "flat-hourly", "--every", "60"): ("exists already", "已存在"),
        ("add", "x", "--every", "0"): ("is not valid", "无效"),
        ("add", "x", "--every", "soon"): ("is not valid", "无效"),
        ("add", "x", "--every", "5", "--office", "NOWHERE"): ("No office NOWHERE", "NOWHERE"),
        ("add", "x", "--every", "5", "--registers", "volts"): ("Unknown register volts", "volts"),
        ("remove", "no-such"): ("No measurement task named no-such", "no-such"),
    }
    for args, (en, zh) in errors.items():
        code, out, err = tasks_cmd(*args)
        assert code != 0 and en in err, (args, err)
        code, out, err = tasks_cmd(*args, lang="zh")
        assert code != 0 and zh in err and any("\u4e00" <= ch <= "\u9fff" for ch in err), err
    r = run(home, "central", "tasks", "list", "--json", "--db", db)
    found = [{k: v for k, v in t.items() if k != "created_at"} for t in ok_json(r)]
    code, out, _err = tasks_cmd("list")
    assert code == 0 and "flat-hourly" in out and "RES-FLAT" in out
    code, out, _err = tasks_cmd("remove", "flat-hourly")
    assert code == 0
    code, out, _err = tasks_cmd("list")
    assert code == 0 and "flat-hourly" not in out
    return found
