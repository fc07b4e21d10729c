"""SMS notices and arrears control of the station's control loop, with real parts: the reference
SMS gateway as its own process (``cardvend central sms-gateway``), the demo's remote meters on
DL/T 645 over TCP, the station on SQLite and PostgreSQL.  A notice goes once per cause, even when
the loop runs again or the gateway fails and recovers; a gateway that is down is retried with
backoff; overdue arrears bring reminders (alarm and SMS) until paid, then are lifted."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from app.clock import FixedClock
from app.clock import SystemClock
from app.paths import resolve_paths
from app.settings import Settings
from cardio.dlt645 import TcpServer
from cardio.fleet import Fleet
from cardio.fleet import demo_meters
from cardio.meter_wire import TerminalMeters
from sync.central import models as m
from sync.central import sms
from sync.central.arrears import ArrearsControl
from sync.central.control import ControlLoop
from sync.central.sms import HttpSmsGateway
from sync.central.sms import Notices
from sync.central.store import CentralStore
from tests.rigs.central import NOW
from tests.rigs.central import START
from tests.rigs.central import seeded_store
from tests.rigs.counter import REMOTE
from tests.rigs.fleet_process import station_with_fleet
from tests.rigs.sms import ENGLISH
from tests.rigs.sms import OPTED_OUT
from tests.rigs.sms import phone_of
from tests.rigs.sms import received
from tests.rigs.sms import sms_gateway

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clock() -> FixedClock:
    """The station's time (``clocked_store``'s) starts at ``START``, the day after the demo data."""
    return FixedClock(START)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The reference SMS gateway process, failing its first two messages: (url, out file)."""
    with sms_gateway(tmp_path, "--fail", "2") as g:
        yield g


@pytest.fixture
def meters(tmp_path: Path) -> Iterator[TerminalMeters]:
    f = Fleet.open(tmp_path / "fleet", demo_meters(), load_kw=0.0, speed=1, start=NOW)
    with TcpServer(f.responder()) as server:
        settings = Settings.load(resolve_paths(tmp_path / "home").ensure().settings_file)
        t = TerminalMeters(settings, SystemClock(), f"127.0.0.1:{server.port}")
        yield t
        t.close()


def outbox(store: CentralStore, customer_no: str) -> list[dict[str, Any]]:
    sm = m.sms_outbox.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(m.sms_outbox).where(sm.customer_no == customer_no).order_by(sm.id)
        ).mappings()
        return [dict(r) for r in rows]


def prefer(store: CentralStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            insert(m.sms_prefs),
            [
                {"customer_no": ENGLISH, "language": "en", "opted_out": False},
                {"customer_no": OPTED_OUT, "language": "zh_CN", "opted_out": True},
            ],
        )


def pay(store: CentralStore, customer_no: str, fen: int) -> None:
    """Lift a customer's balance as a payment does (the balance step adds it in)."""
    co = m.control.c
    with store.engine.begin() as conn:
        conn.execute(
            update(m.control)
            .where(co.customer_no == customer_no)
            .values(opening_fen=co.opening_fen + fen)
        )


def test_trip_and_close_notices_go_once_through_a_gateway_that_fails_then_recovers(
    clocked_store: CentralStore,
    clock: FixedClock,
    gateway: tuple[str, Path],
    meters: TerminalMeters,
) -> None:
    url, out = gateway
    prefer(clocked_store)
    http = HttpSmsGateway(url)
    steps = [ArrearsControl(clocked_store), Notices(clocked_store, http)]
    loop = ControlLoop(clocked_store, meters, opening_fen=0, steps=steps)  # all trip at once
    loop.run()
    first = outbox(clocked_store, REMOTE)
    assert [(n["kind"], n["language"]) for n in first] == [("trip", "zh_CN")]
    assert "0.00" in first[0]["text"] and "元" in first[0]["text"]
    loop.run()  # the gateway refuses the second message too: the rest wait a run
    sm = m.sms_outbox.c
    with clocked_store.engine.connect() as conn:
        refused = conn.execute(
            select(sm.next_at, sm.last_error).where(sm.status == "pending", sm.attempts == 1)
        ).all()
    assert len(refused) == 2 and all("503" in r[1] for r in refused)
    assert all(r[0] == START + dt.timedelta(seconds=sms.BACKOFF_S[0]) for r in refused)
    loop.run()  # the others go; the two refused wait for their retry
    assert len(received(out)) == len(demo_meters()) - 3
    clock.advance(seconds=sms.BACKOFF_S[0])
    loop.run()
    loop.run()  # nothing new: every cause has had its notice
    got = received(out)
    remote_customers = len(demo_meters()) - 1  # the opted-out one gets none
    assert len(got) == remote_customers
    assert len({g["id"] for g in got}) == remote_customers  # each once
    assert phone_of(clocked_store, OPTED_OUT) not in {g["to"] for g in got}
    assert outbox(clocked_store, OPTED_OUT)[0]["status"] == "unsent"
    english = [g for g in got if g["to"] == phone_of(clocked_store, ENGLISH)]
    assert len(english) == 1 and "cut off" in english[0]["text"]
    # a payment: the close permit reaches the meter, then the close notice goes
    pay(clocked_store, ENGLISH, 12345)
    clock.advance(minutes=1)
    loop.run()
    loop.run()
    closes = [n for n in outbox(clocked_store, ENGLISH) if n["kind"] == "close"]
    assert len(closes) == 1 and closes[0]["status"] == "sent"
    assert "Balance: 123.45 yuan" in closes[0]["text"]
    last = received(out)[-1]
    assert last["to"] == phone_of(clocked_store, ENGLISH) and "restored" in last["text"]
    assert len(received(out)) == remote_customers + 1
    http.close()


def test_a_gateway_that_is_down_is_retried_with_growing_waits(
    tmp_path: Path, meters: TerminalMeters
) -> None:
    clock = FixedClock(START)
    with seeded_store("sqlite", tmp_path, clock=clock) as store:
        # nothing listens on port 9 of the loopback: every post is refused
        notices = Notices(store, HttpSmsGateway("http://127.0.0.1:9/sms", timeout=2))
        loop = ControlLoop(store, meters, opening_fen=0, steps=[notices])
        loop.run()
        seen = []
        for _ in range(sms.MAX_ATTEMPTS + 1):
            (row,) = [n for n in outbox(store, REMOTE)]
            seen.append(row)
            clock.set(row["next_at"])
            notices.send_due()
        (row,) = outbox(store, REMOTE)
        assert row["status"] == "failed" and row["attempts"] == sms.MAX_ATTEMPTS
        assert "did not answer" in row["last_error"]
        waits = [
            (b["next_at"] - a["next_at"]).total_seconds()
            for a, b in itertools.pairwise(seen)
            if b["status"] == "pending"
        ]
        # the first try was in the run; then each wait is the next of the backoff
        assert waits == list(sms.BACKOFF_S[1 : 1 + len(waits)]) and len(waits) >= 3
        # without a gateway a notice stays queued, and fails as expired a day on
        quiet = Notices(store, None)
        with store.engine.begin() as conn:
            conn.execute(update(m.sms_outbox).values(status="pending", attempts=0))
        assert quiet.send_due() == (0, 0, 0)
        assert outbox(store, REMOTE)[0]["status"] == "pending"
        clock.advance(days=2)
        quiet.send_due()
        assert outbox(store, REMOTE)[0]["status"] == "failed"


def test_overdue_arrears_bring_reminders_until_paid_then_are_lifted(
    clocked_store: CentralStore,
    clock: FixedClock,
    gateway: tuple[str, Path],
    meters: TerminalMeters,
) -> None:
    url, out = gateway
    ar = m.arrears_items.c
    with (
        clocked_store.engine.begin() as conn
    ):  # the demo's arrears carry no due date: never overdue
        conn.execute(update(m.arrears_items).values(settled_by_sale="paid-before"))
        conn.execute(
            insert(m.arrears_items).values(
                ref="OVERDUE-1", customer_no=REMOTE, kind="arrears", description="",
                amount=4321, must_collect=True, due_at=START - dt.timedelta(days=40),
            )
        )  # fmt: skip
        conn.execute(
            insert(m.arrears_items).values(
                ref="NOT-YET-1", customer_no=ENGLISH, kind="arrears", description="",
                amount=999, must_collect=True, due_at=START - dt.timedelta(days=10),
            )
        )  # fmt: skip
    http = HttpSmsGateway(url)
    loop = ControlLoop(
        clocked_store, meters, opening_fen=100_000,
        steps=[ArrearsControl(clocked_store, grace_days=30, interval_h=24), Notices(clocked_store, http)],
    )  # fmt: skip
    for _ in range(3):  # the gateway's two failures, then the reminder
        loop.run()
        clock.advance(seconds=sms.BACKOFF_S[1])
    cm, ac = m.commands.c, m.arrears_control.c

    def commands() -> list[tuple[str, str, str]]:
        with clocked_store.engine.connect() as conn:
            rows = conn.execute(
                select(cm.command, cm.reason, cm.status)
                .where(cm.customer_no == REMOTE)
                .order_by(cm.created_at)
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    assert commands() == [("alarm", "arrears", "done")]
    got = received(out)
    assert [g["to"] for g in got] == [phone_of(clocked_store, REMOTE)]  # not the one within grace
    assert "43.21" in got[0]["text"]
    clock.advance(hours=12)
    loop.run()
    assert len(received(out)) == 1  # at most one reminder an interval
    clock.advance(hours=13)
    loop.run()
    assert len(received(out)) == 2 and commands()[-1] == ("alarm", "arrears", "done")
    with clocked_store.engine.begin() as conn:  # a counter's sale settles it
        conn.execute(
            update(m.arrears_items).where(ar.ref == "OVERDUE-1").values(settled_by_sale="s1")
        )
    clock.advance(minutes=1)
    loop.run()
    assert commands()[-1] == ("release", "arrears paid", "done")
    with clocked_store.engine.connect() as conn:
        state, reminders = conn.execute(
            select(ac.state, ac.reminders).where(ac.customer_no == REMOTE)
        ).one()
    assert (state, reminders) == ("lifted", 2)
    clock.advance(days=3)
    loop.run()
    assert len(received(out)) == 2  # no reminder after it was paid
    http.close()


def test_the_serving_station_sends_its_notices_to_the_gateway_url(
    tmp_path: Path, gateway: tuple[str, Path]
) -> None:
    """``central serve --terminals ... --sms-url URL`` (real processes): every remote customer
    comes under control with 0.01 yuan, at alarm2: the reminders reach the gateway as Chinese
    SMS, each once, past the gateway's two failures."""
    import time

    url, out = gateway
    db = f"sqlite:///{tmp_path / 'station.db'}"
    with station_with_fleet(
        tmp_path, db, "--opening-yuan", "0.01", "--control-interval", "0.5", "--sms-url", url
    ):
        deadline = time.monotonic() + 90  # the two refused wait 10 s for their retry

        def reminders() -> list[dict[str, Any]]:
            return [g for g in received(out) if "即将停电" in g["text"]]

        while len(reminders()) < len(demo_meters()):
            assert time.monotonic() < deadline, len(received(out))
            time.sleep(0.5)
        time.sleep(1.5)  # three more runs: no reminder again
        got = reminders()
        assert len(got) == len(demo_meters()) == len({g["to"] for g in got})
        assert all(g["language"] == "zh_CN" and "0.01元" in g["text"] for g in got)
        assert len({g["id"] for g in received(out)}) == len(received(out))  # none twice
