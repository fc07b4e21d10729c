"""SMS notices completed (issue 17, 3.13): purchase confirmations once per sale, per-customer
language and opt-out set by the administrator or carried by the archive feed, a rate limit per
customer that holds back a burst but never a trip notice, delivery status (``central sms list``),
arrears due dates through the feed, and the counts of ``central control run --json``.  Real
parts: the reference SMS gateway as its own process, the station on SQLite and PostgreSQL, the
``cardvend`` command line as processes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy import update

from app.clock import FixedClock
from sync import contract as c
from sync.central import channels
from sync.central import models as m
from sync.central import sms_admin
from sync.central.arrears import ArrearsControl
from sync.central.base import Counter
from sync.central.control import ControlLoop
from sync.central.sms import HttpSmsGateway
from sync.central.sms import Limits
from sync.central.sms import Notices
from sync.central.store import CentralStore
from tests.rigs.central import CARD
from tests.rigs.central import REMOTE
from tests.rigs.central import START
from tests.rigs.central import sale
from tests.rigs.central import seeded_store
from tests.rigs.cli import ok_json
from tests.rigs.cli import run
from tests.rigs.fleet_process import station_with_fleet
from tests.rigs.sms import ENGLISH
from tests.rigs.sms import OPTED_OUT
from tests.rigs.sms import phone_of
from tests.rigs.sms import received
from tests.rigs.sms import sms_gateway


@pytest.fixture
def clock() -> FixedClock:
    """The station's time (``clocked_store``'s) starts at ``START``, the day after the demo data."""
    return FixedClock(START)


HERE = Counter("C1", "DEMO")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The reference SMS gateway process (it fails nothing): (url, out file)."""
    with sms_gateway(tmp_path) as g:
        yield g


def to(store: CentralStore, out: Path, customer_no: str) -> list[dict[str, Any]]:
    """What the gateway received for a customer."""
    phone = phone_of(store, customer_no)
    return [g for g in received(out) if g["to"] == phone]


def sell(store: CentralStore, customer_no: str, fen: int, *, kind: str = "remote") -> str:
    """A completed sale of ``fen`` posted by counter C1 as a counter posts it; its id."""
    body = sale(customer_no, kind=kind, amount=fen, credit=fen, cash_received=fen,
                purchase_count=1 if kind == "card" else None)  # fmt: skip
    record = c.SaleRecord.model_validate(body)
    assert store.post("sales", HERE, [record])[0].status == "created"
    return str(record.id)


def reverse(store: CentralStore, sale_id: str, fen: int) -> None:
    body = c.ReversalRecord.model_validate(
        {"id": str(uuid.uuid4()), "sale_id": sale_id, "amount": fen,
         "operator_id": "t01", "approver_id": "s01", "counter_id": "C1",
         "created_at": START.isoformat()}
    )  # fmt: skip
    assert store.post("reversals", HERE, [body])[0].status == "created"


def outbox(store: CentralStore, customer_no: str) -> list[dict[str, Any]]:
    return list(reversed(sms_admin.list_notices(store, customer_no=customer_no)))


def test_a_purchase_is_confirmed_once_in_the_customers_language(
    clocked_store: CentralStore, clock: FixedClock, gateway: tuple[str, Path]
) -> None:
    url, out = gateway
    assert sms_admin.set_prefs(clocked_store, ENGLISH, language="en") is not None
    assert sms_admin.set_prefs(clocked_store, OPTED_OUT, opted_out=True) is not None
    http = HttpSmsGateway(url)
    notices = Notices(clocked_store, http)
    loop = ControlLoop(
        clocked_store, None, opening_fen=5000, steps=[ArrearsControl(clocked_store), notices]
    )
    loop.run()  # under control with 50.00; nothing sold yet: no notice
    assert received(out) == []
    clock.advance(minutes=1)
    chinese = sell(clocked_store, REMOTE, 10_000)
    english = sell(clocked_store, ENGLISH, 12_345)
    sell(clocked_store, OPTED_OUT, 10_000)
    card = sell(clocked_store, CARD, 2_000, kind="card")
    loop.run()
    loop.run()  # again: each sale has had its confirmation
    assert notices.last == {"queued": 0, "sent": 0, "failed": 0, "limited": 0}
    (zh,) = to(clocked_store, out, REMOTE)
    assert zh["language"] == "zh_CN" and "100.00" in zh["text"] and "150.00" in zh["text"]
    (en,) = to(clocked_store, out, ENGLISH)
    assert en["language"] == "en"
    assert "payment of 123.45 yuan" in en["text"] and "Balance: 173.45 yuan" in en["text"]
    (cd,) = to(clocked_store, out, CARD)  # a card sale: the amount, no balance the station knows
    assert "20.00" in cd["text"] and "余额" not in cd["text"]
    assert to(clocked_store, out, OPTED_OUT) == []
    (unsent,) = outbox(clocked_store, OPTED_OUT)
    assert (unsent["kind"], unsent["status"], unsent["last_error"]) == (
        "purchase", "unsent", "opted out",
    )  # fmt: skip
    sent = outbox(clocked_store, ENGLISH)[0]
    assert sent["cause"] == english and sent["status"] == "sent" and sent["attempts"] == 1
    assert sent["gateway_id"].startswith("gw-") and sent["sent_at"] is not None
    assert {n["cause"] for n in outbox(clocked_store, REMOTE)} == {chinese}
    # the card sale is reversed after its confirmation went: a reversal notice, once
    reverse(clocked_store, card, 2_000)
    clock.advance(minutes=1)
    loop.run()
    loop.run()
    assert [n["kind"] for n in outbox(clocked_store, CARD)] == ["purchase", "reversal"]
    assert (
        len(to(clocked_store, out, CARD)) == 2
        and "20.00" in to(clocked_store, out, CARD)[1]["text"]
    )
    # a sale reversed before the station saw it sold is no purchase at all
    late = sell(clocked_store, REMOTE, 500)
    reverse(clocked_store, late, 500)
    loop.run()
    assert late not in {n["cause"] for n in outbox(clocked_store, REMOTE)}
    http.close()


def test_a_confirmation_still_waiting_for_a_reversed_sale_is_not_sent(tmp_path: Path) -> None:
    clock = FixedClock(START)
    with seeded_store("sqlite", tmp_path, clock=clock) as store:
        notices = Notices(store, None)  # no gateway: notices wait
        sold = sell(store, CARD, 3_000, kind="card")
        assert notices.queue_purchases() == 1
        reverse(store, sold, 3_000)
        notices.queue_purchases()
        (row,) = outbox(store, CARD)
        assert (row["status"], row["last_error"]) == ("unsent", "the sale was reversed")


def test_a_channel_payment_is_confirmed_once_with_the_balance(
    clocked_store: CentralStore, clock: FixedClock
) -> None:
    notices = Notices(clocked_store, None)  # no gateway: the notices wait in the outbox
    loop = ControlLoop(clocked_store, None, opening_fen=5000, steps=[notices])
    loop.run()  # under control with 50.00
    bank = channels.authenticate(
        clocked_store,
        channels.add_channel(clocked_store, "BANK1", "Bank", ["DEMO"], all_offices=False),
    )
    assert bank is not None
    request = c.ChannelPaymentRequest(
        txn_id="T-0001", customer_no=REMOTE, amount_fen=8_800, paid_at=START
    )
    channels.pay(clocked_store, bank, request)
    channels.pay(clocked_store, bank, request)  # the channel's retry: the same payment, replayed
    loop.run()
    loop.run()
    (notice,) = outbox(clocked_store, REMOTE)
    assert notice["kind"] == "purchase" and notice["cause"].startswith("ch-")
    assert "88.00" in notice["text"] and "138.00" in notice["text"]  # paid, then balance


def test_the_rate_limit_holds_back_a_burst_but_not_a_trip(
    clocked_store: CentralStore, clock: FixedClock, gateway: tuple[str, Path]
) -> None:
    url, out = gateway
    http = HttpSmsGateway(url)
    notices = Notices(clocked_store, http, limits=Limits(per_hour=2, per_day=4))
    loop = ControlLoop(clocked_store, None, opening_fen=100_000, steps=[notices])
    loop.run()
    for _ in range(5):  # a burst of payments
        sell(clocked_store, ENGLISH, 1_000)
    loop.run()
    assert notices.last == {"queued": 5, "sent": 2, "failed": 0, "limited": 3}
    assert len(to(clocked_store, out, ENGLISH)) == 2
    limited = [n for n in outbox(clocked_store, ENGLISH) if n["status"] == "limited"]
    assert len(limited) == 3 and all("2 an hour" in n["last_error"] for n in limited)
    co = m.control.c
    with clocked_store.engine.begin() as conn:  # the balance falls below the trip threshold
        conn.execute(
            update(m.control).where(co.customer_no == ENGLISH).values(opening_fen=-500_000)
        )
    clock.advance(minutes=5)
    loop.run()
    got = to(clocked_store, out, ENGLISH)
    assert len(got) == 3 and "停止供电" in got[-1]["text"]  # the trip went, over the limit
    loop.run()
    assert len(to(clocked_store, out, ENGLISH)) == 3  # the limited ones never go later
    # an hour on the hour's limit is free again, but the day holds 3 of 4
    clock.advance(hours=1, minutes=1)
    with clocked_store.engine.begin() as conn:
        conn.execute(update(m.control).where(co.customer_no == ENGLISH).values(opening_fen=600_000))
    sell(clocked_store, ENGLISH, 1_000)
    sell(clocked_store, ENGLISH, 1_000)
    loop.run()
    assert notices.last["sent"] == 1 and notices.last["limited"] == 1
    with clocked_store.engine.connect() as conn:
        last = conn.execute(
            select(m.sms_outbox.c.last_error)
            .where(m.sms_outbox.c.status == "limited")
            .order_by(m.sms_outbox.c.id.desc())
        ).first()
    assert last is not None and "4 a day" in last[0]
    # a day later the customer hears from the station again
    clock.advance(days=1)
    sell(clocked_store, ENGLISH, 1_000)
    loop.run()
    assert notices.last["sent"] == 1 and len(to(clocked_store, out, ENGLISH)) == 5
    http.close()


def test_the_archive_feed_carries_sms_preferences_and_arrears_due_dates(
    store: CentralStore,
) -> None:
    pr, ar = m.sms_prefs.c, m.arrears_items.c
    base = {
        "name": "王五", "meter_kind": "remote", "office_code": "DEMO", "tariff_plan": "RES-FLAT",
        "alarm1": 2000, "alarm2": 1000, "overdraft_limit": 0, "credit_ceiling": 999_999,
        "phone": "13800000001",
    }  # fmt: skip
    due = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)
    rows = [
        {**base, "customer_no": "300000000001", "meter_no": "300000000001",
         "sms_language": "en",
         "arrears": [{"ref": "FEED-1", "kind": "arrears", "amount": 1234, "due_at": due}]},
        {**base, "customer_no": "300000000002", "meter_no": "300000000002",
         "sms_opted_out": True},
        {**base, "customer_no": "300000000003", "meter_no": "300000000003"},
    ]  # fmt: skip
    assert store.add_customers(rows) == 3
    with store.engine.connect() as conn:
        got = {
            r[0]: (r[1], r[2])
            for r in conn.execute(select(pr.customer_no, pr.language, pr.opted_out))
        }
        fed_due = conn.execute(select(ar.due_at).where(ar.ref == "FEED-1")).scalar_one()
    assert got["300000000001"] == ("en", False)
    assert got["300000000002"] == ("zh_CN", True)
    assert "300000000003" not in got  # no row: Chinese, notices on
    assert fed_due == due
    # the feed again does not undo what the administrator changed since
    sms_admin.set_prefs(store, "300000000001", opted_out=True)
    assert store.add_customers(rows) == 0
    assert sms_admin.prefs(store, "300000000001") == {
        "customer_no": "300000000001", "language": "en", "opted_out": True,
    }  # fmt: skip
    with pytest.raises(ValueError):
        store.add_customers([{**base, "customer_no": "300000000004", "meter_no": "300000000004",
                              "sms_language": "fr"}])  # fmt: skip
    # an arrears item added later with its due date: overdue past the grace, under control
    assert store.add_arrears("300000000003", "FEED-2", 500, due_at=due)
    with pytest.raises(ValueError):
        store.add_arrears("300000000003", "FEED-3", 500, due_at=dt.datetime(2026, 1, 1))
    arrears = ArrearsControl(store, grace_days=30)
    arrears.before_send()
    assert arrears.last["entered"] == 2  # due 15 January, the store's clock in March


def test_the_administrator_sets_preferences_and_sees_the_notices_from_the_command_line(
    tmp_path: Path,
) -> None:
    # the command line runs on the system clock: the sale is received now
    clock = FixedClock(dt.datetime.now(dt.UTC))
    with seeded_store("sqlite", tmp_path, clock=clock) as store:
        sell(store, CARD, 4_200, kind="card")
    db = f"sqlite:///{tmp_path / 'central.db'}"
    home = tmp_path / "home"
    got = ok_json(run(home, "central", "sms", "prefs", CARD, "--json", "--db", db))
    assert got == {"customer_no": CARD, "language": "zh_CN", "opted_out": False}
    got = ok_json(
        run(home, "central", "sms", "prefs", CARD, "--language", "en", "--opt-out", "--json",
            "--db", db)
    )  # fmt: skip
    assert got == {"customer_no": CARD, "language": "en", "opted_out": True}
    got = ok_json(run(home, "central", "sms", "prefs", CARD, "--opt-in", "--json", "--db", db))
    assert got == {"customer_no": CARD, "language": "en", "opted_out": False}
    missing = run(home, "central", "sms", "prefs", "199999999999", "--db", db)
    assert missing.returncode != 0 and "199999999999" in missing.stderr
    zh = run(home, "central", "sms", "prefs", CARD, "--db", db, lang="zh_CN")
    assert zh.returncode == 0 and "短信" in zh.stdout, zh.stdout
    report = ok_json(run(home, "central", "control", "run", "--json", "--db", db))
    # the purchase, and the trip notices of the remote customers that came under control at 0
    assert report["sms"]["queued"] > 1 and report["sms"]["sent"] == 0
    assert report["states"]["tripped"] + report["states"]["alarm2"] == report["sms"]["queued"] - 1
    assert report["arrears"] == {"entered": 0, "reminded": 0, "lifted": 0}
    (notice,) = ok_json(run(home, "central", "sms", "list", "--customer", CARD, "--json",
                            "--db", db))  # fmt: skip
    assert notice["kind"] == "purchase" and notice["status"] == "pending"
    assert notice["language"] == "en" and "42.00 yuan" in notice["text"]
    assert notice["attempts"] == 0 and notice["sent_at"] is None
    assert (
        ok_json(run(home, "central", "sms", "list", "--status", "sent", "--json", "--db", db)) == []
    )
    text = run(home, "central", "sms", "list", "--db", db)
    assert text.returncode == 0 and "purchase pending" in text.stdout


def test_a_serving_station_confirms_payments_in_each_language_within_the_rate_limit(
    tmp_path: Path, gateway: tuple[str, Path]
) -> None:
    """End to end with real processes: the terminal (``fleet simulate``), the station (``central
    serve --terminals ... --sms-url ... --sms-per-customer-per-hour 2``), the gateway; a counter
    posts payments over HTTP, the administrator sets preferences with ``central sms prefs``."""
    import sqlite3
    import time

    from tests.rigs.central import Api
    from tests.rigs.central import register

    url, out = gateway
    burst = "100000000050"
    db_file = tmp_path / "station.db"
    db = f"sqlite:///{db_file}"
    with station_with_fleet(
        tmp_path, db, "--opening-yuan", "100", "--control-interval", "0.5", "--sms-url", url,
        "--sms-per-customer-per-hour", "2", "--enrolment-key", "office-secret",
    ) as running:  # fmt: skip
        base = running.url
        home = tmp_path / "admin"
        for args in ((ENGLISH, "--language", "en"), (OPTED_OUT, "--opt-out")):
            assert run(home, "central", "sms", "prefs", *args, "--db", db).returncode == 0
        token = register(base, "C1", "DEMO", **{"X-Enrolment-Key": "office-secret"})
        api = Api(base, token)
        now = dt.datetime.now(dt.UTC).isoformat()
        paid = {REMOTE: [10_000], ENGLISH: [12_345], OPTED_OUT: [10_000], burst: [100] * 4}
        for number, amounts in paid.items():
            for fen in amounts:
                body = sale(number, kind="remote", amount=fen, credit=fen, cash_received=fen,
                            purchase_count=None, created_at=now)  # fmt: skip
                assert api.post("/sales", body).status_code == 201

        def by(number: str) -> list[dict[str, Any]]:
            with sqlite3.connect(db_file, timeout=10) as conn:
                (phone,) = conn.execute(
                    "SELECT phone FROM central_customers WHERE customer_no = ?", (number,)
                ).fetchone()
            return [g for g in received(out) if g["to"] == phone]

        def listed(number: str) -> list[dict[str, Any]]:
            r = run(home, "central", "sms", "list", "--customer", number, "--json", "--db", db)
            return list(ok_json(r))

        deadline = time.monotonic() + 60
        while not (by(REMOTE) and by(ENGLISH) and len(by(burst)) >= 2):
            assert time.monotonic() < deadline, received(out)
            time.sleep(0.5)
        time.sleep(1.5)  # three more runs: nothing again
        (zh,) = by(REMOTE)
        assert zh["language"] == "zh_CN" and "100.00元" in zh["text"] and "200.00元" in zh["text"]
        (en,) = by(ENGLISH)
        assert en["language"] == "en" and "Balance: 223.45 yuan" in en["text"]
        assert by(OPTED_OUT) == [] and listed(OPTED_OUT)[0]["status"] == "unsent"
        assert len(by(burst)) == 2  # the burst of four: two within the hour's limit
        states = sorted(n["status"] for n in listed(burst))
        assert states == ["limited", "limited", "sent", "sent"]
        # the burst customer's balance falls past the trip threshold: the trip notice goes
        with sqlite3.connect(db_file, timeout=10) as conn:
            conn.execute(
                "UPDATE central_control SET opening_fen = -10000000 WHERE customer_no = ?",
                (burst,),
            )
        deadline = time.monotonic() + 60
        while len(by(burst)) < 3:
            assert time.monotonic() < deadline, listed(burst)
            time.sleep(0.5)
        time.sleep(1.5)
        got = by(burst)
        assert len(got) == 3 and "停止供电" in got[-1]["text"]
        assert len({g["id"] for g in received(out)}) == len(received(out))  # none twice
        assert all(n["gateway_id"] for n in listed(burst) if n["status"] == "sent")


def test_an_administrators_change_waits_for_a_serving_stations_write_on_sqlite(
    tmp_path: Path,
) -> None:
    """``central sms prefs`` beside a serving station on SQLite: the preference is read, then
    written.  Under a plain ``BEGIN`` the write failed at once with "database is locked" while
    the station was writing (SQLite does not wait to turn a reader into a writer; CI saw it
    once); a station change now begins ``BEGIN IMMEDIATE`` and waits for the other writer."""
    import sqlite3
    import threading
    import time

    with seeded_store("sqlite", tmp_path) as store:
        # the serving station's write, held open (another connection, another process's kind)
        other = sqlite3.connect(tmp_path / "central.db", isolation_level=None, timeout=10)
        other.execute("BEGIN IMMEDIATE")
        other.execute(
            "INSERT INTO central_sms_prefs (customer_no, language, opted_out) VALUES (?, ?, ?)",
            (ENGLISH, "en", 0),
        )
        results: list[object] = []

        def admin() -> None:
            try:
                results.append(sms_admin.set_prefs(store, OPTED_OUT, opted_out=True))
            except Exception as exc:  # the test says which error it was
                results.append(exc)

        worker = threading.Thread(target=admin)
        worker.start()
        time.sleep(0.5)  # the change has begun (and, before, read) while the write is open
        assert results == []  # it waits for the write
        other.execute("COMMIT")
        other.close()
        worker.join(15)
        assert results == [{"customer_no": OPTED_OUT, "language": "zh_CN", "opted_out": True}]
        with store.engine.connect() as conn:
            held = dict(
                conn.execute(select(m.sms_prefs.c.customer_no, m.sms_prefs.c.opted_out)).all()
            )
        assert held == {ENGLISH: False, OPTED_OUT: True}
