"""Payment channels (seed 3.2) with real parts: the station's rules on SQLite and PostgreSQL, the
channel API of a real ``central serve`` process over HTTP, the ``central channels`` commands as
processes, the daily reconciliation finding each kind of difference, and end to end a tripped
demo remote customer who pays through a channel and whose relay (read over DL/T 645 from the
fleet simulator process) is closed again."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from sync import contract as c
from sync.central import channels as ch
from sync.central import models as m
from sync.central import seed as central_seed
from sync.central.channel_reconcile import read_file
from sync.central.channel_reconcile import reconcile
from sync.central.channel_reconcile import statement_csv
from sync.central.control import ControlLoop
from sync.central.control import control_status
from sync.central.store import CentralStore
from tests.rigs.central import CARD
from tests.rigs.central import REMOTE
from tests.rigs.central import register
from tests.rigs.central_process import CentralProcess
from tests.rigs.cli import run
from tests.rigs.fleet_process import station_with_fleet
from tests.rigs.fleet_process import wait_closed
from tests.rigs.fleet_process import wait_tripped

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
OTHER_REMOTE = str(central_seed.FIRST_SYNTHETIC_CUSTOMER + 9)  # office OTHER's remote customer
REMOTE_METER = "200000000010"
PAYMENTS = f"{c.API_PREFIX}{c.CHANNEL_PREFIX}/payments"


def body(customer_no: str = REMOTE, amount: int = 20_000, **over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "txn_id": "B-" + uuid.uuid4().hex[:16],
        "customer_no": customer_no,
        "amount_fen": amount,
        "paid_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    b.update(over)
    return b


def request(req: dict[str, Any]) -> c.ChannelPaymentRequest:
    return c.ChannelPaymentRequest.model_validate(req)


def refusal(store: CentralStore, chan: ch.Channel, req: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(ch.ChannelError) as err:
        ch.pay(store, chan, request(req))
    return err.value.status, err.value.code


def with_other_office(store: CentralStore) -> None:
    store.add_office("OTHER", "Other office")
    central_seed.seed_synthetic(store, 10, office_code="OTHER")


# --------------------------------------------------------------------------- the station's rules


def test_a_channel_pays_once_per_transaction_id_and_only_its_offices_remote_customers(
    store: CentralStore,
) -> None:
    with_other_office(store)
    token = ch.add_channel(store, "BANK1", "Bank", ["DEMO"], all_offices=False)
    chan = ch.authenticate(store, token)
    assert chan is not None and chan.offices == {"DEMO"} and not chan.all_offices
    assert ch.authenticate(store, token + "x") is None
    # only the hash is kept
    with store.engine.connect() as conn:
        kept = conn.execute(select(m.channels.c.token_hash)).scalar_one()
    assert token not in kept and kept == ch.sha256_hex(token)

    first = body()
    paid = ch.pay(store, chan, request(first))
    assert not paid.replayed and paid.payment.amount_fen == 20_000
    again = ch.pay(store, chan, request(first))  # the same id and body: the same answer
    assert again.replayed and again.payment == paid.payment
    assert refusal(store, chan, {**first, "amount_fen": 20_001}) == (409, "conflict")
    assert refusal(store, chan, body(OTHER_REMOTE)) == (403, "customer_not_allowed")
    assert refusal(store, chan, body("999999999999")) == (403, "customer_not_allowed")
    assert refusal(store, chan, body(CARD)) == (409, "not_remote")
    now = store.now()
    future = (now + dt.timedelta(minutes=11)).isoformat()
    assert refusal(store, chan, body(paid_at=future)) == (422, "future_paid_at")
    old = (now - dt.timedelta(days=3, minutes=1)).isoformat()
    assert refusal(store, chan, body(paid_at=old)) == (422, "stale_paid_at")
    central_seed.set_customer_status(store, REMOTE, "closed")
    assert refusal(store, chan, body()) == (409, "customer_closed")
    central_seed.set_customer_status(store, REMOTE, "active")
    with store.engine.connect() as conn:
        rows = conn.execute(select(m.channel_payments.c.txn_id)).scalars().all()
    assert rows == [first["txn_id"]]  # refusals are not kept

    # another channel may use the same transaction id: ids are the channel's own
    every = ch.authenticate(store, ch.add_channel(store, "APP1", "", [], all_offices=True))
    assert every is not None
    assert not ch.pay(store, every, request({**first, "customer_no": OTHER_REMOTE})).replayed

    assert ch.revoke_channel(store, "BANK1") and not ch.revoke_channel(store, "NOPE")
    assert ch.authenticate(store, token) is None  # a revoked channel opens nothing
    with pytest.raises(ValueError, match="exists already"):
        ch.add_channel(store, "APP1", "", ["DEMO"], all_offices=False)
    with pytest.raises(ValueError, match="no such office"):
        ch.add_channel(store, "APP2", "", ["NOPE"], all_offices=False)
    with pytest.raises(ValueError, match="not valid"):
        ch.add_channel(store, "bank\n", "", ["DEMO"], all_offices=False)


def test_the_same_transaction_posted_at_once_is_taken_once(store: CentralStore) -> None:
    """Eight posts of one transaction at the same moment: one payment, seven replays."""
    chan = ch.authenticate(store, ch.add_channel(store, "BANK1", "", ["DEMO"], False))
    assert chan is not None
    same = request(body())
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: ch.pay(store, chan, same), range(8)))
    assert sorted(a.replayed for a in answers) == [False] + [True] * 7
    assert len({a.payment for a in answers}) == 1
    with store.engine.connect() as conn:
        assert len(conn.execute(select(m.channel_payments.c.id)).all()) == 1


def test_a_channel_payment_lifts_a_tripped_customer_with_a_close_permit(
    store: CentralStore,
) -> None:
    loop = ControlLoop(store, None, opening_fen=0)  # at the trip threshold at once
    loop.run()
    assert control_status(store, REMOTE)["state"] == "tripped"  # type: ignore[index]
    chan = ch.authenticate(store, ch.add_channel(store, "BANK1", "", ["DEMO"], False))
    assert chan is not None
    ch.pay(store, chan, request(body(amount=30_000)))
    loop.run()
    status = control_status(store, REMOTE)
    assert status is not None and status["state"] != "tripped"
    assert status["paid_fen"] == 30_000 and status["remaining_fen"] == 30_000
    cm = m.commands.c
    with store.engine.connect() as conn:
        sent = conn.execute(
            select(cm.command).where(cm.customer_no == REMOTE).order_by(cm.created_at)
        ).scalars()
        assert "close" in list(sent)


def test_reconciliation_finds_every_kind_of_difference(store: CentralStore) -> None:
    chan = ch.authenticate(store, ch.add_channel(store, "BANK1", "", ["DEMO"], False))
    assert chan is not None
    day = store.now().astimezone(ch.DAY_ZONE).date()
    held = [ch.pay(store, chan, request(body(amount=a))).payment for a in (100, 200, 300, 400)]
    station = statement_csv(held)
    # the station's own file reconciles with itself
    mine = reconcile(store, "BANK1", day, read_file(station.decode()))
    assert mine.differences == 0 and mine.counts["matched"] == 4
    at = held[0].paid_at.astimezone(SHANGHAI).isoformat()
    text = "\n".join(
        [
            "txn_id,customer_no,amount_fen,paid_at",
            f"{held[0].txn_id},{REMOTE},100,{at}",  # matched
            f"{held[1].txn_id},{REMOTE},250,{at}",  # amount differs
            f"{held[2].txn_id},100000000020,300,{at}",  # customer differs
            f"NEVER-ARRIVED,{REMOTE},500,{at}",  # missing at the station
            # held[3] is not listed: missing at the channel
        ]
    )
    report = reconcile(store, "BANK1", day, read_file(text))
    assert report.counts == {
        "matched": 1,
        "missing_at_station": 1,
        "missing_at_channel": 1,
        "amount_differs": 1,
        "customer_differs": 1,
    }
    assert report.station_fen == 1000 and report.channel_fen == 1150
    kinds = {f.txn_id: f.kind for f in report.findings}
    assert kinds == {
        held[1].txn_id: "amount_differs",
        held[2].txn_id: "customer_differs",
        "NEVER-ARRIVED": "missing_at_station",
        held[3].txn_id: "missing_at_channel",
    }


def test_a_day_is_the_office_days_by_the_channels_time(store: CentralStore) -> None:
    """Days are Asia/Shanghai's: 23:59:59 there belongs to that day, 00:00 to the next."""
    chan = ch.authenticate(store, ch.add_channel(store, "BANK1", "", ["DEMO"], False))
    assert chan is not None
    now = store.now().astimezone(SHANGHAI)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    late = ch.pay(
        store, chan, request(body(paid_at=(midnight - dt.timedelta(seconds=1)).isoformat()))
    )
    early = ch.pay(store, chan, request(body(paid_at=midnight.isoformat())))
    today, yesterday = midnight.date(), midnight.date() - dt.timedelta(days=1)
    assert [p.txn_id for p in ch.day_payments(store, "BANK1", yesterday)] == [late.payment.txn_id]
    assert [p.txn_id for p in ch.day_payments(store, "BANK1", today)] == [early.payment.txn_id]


@pytest.mark.parametrize(
    ("line", "wrong"),
    [
        ("T1,100000000010,100", "cells"),
        ('"T1\n",100000000010,100,2026-03-01T09:00:00+08:00', "txn_id"),
        ("T1,１00000000010,100,2026-03-01T09:00:00+08:00", "customer_no"),
        ("T1,100000000010,1.5,2026-03-01T09:00:00+08:00", "amount_fen"),
        ("T1,100000000010,-5,2026-03-01T09:00:00+08:00", "amount_fen"),
        ("T1,100000000010,100,2026-03-01T09:00:00", "paid_at"),
    ],
)
def test_a_channel_file_out_of_format_is_refused_at_its_line(line: str, wrong: str) -> None:
    from sync.central.channel_reconcile import FileError

    with pytest.raises(FileError, match=wrong) as err:
        read_file("txn_id,customer_no,amount_fen,paid_at\r\n" + line + "\n")
    assert err.value.line == 2
    with pytest.raises(FileError, match="header"):
        read_file("id,customer,amount,time\n")
    twice = "txn_id,customer_no,amount_fen,paid_at\nT1,100000000010,1,2026-03-01T09:00:00+08:00\n"
    with pytest.raises(FileError, match="twice"):
        read_file(twice + twice.splitlines()[1])


# --------------------------------------------------------------------------- over HTTP


@pytest.fixture
def station(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """``central serve`` on its own SQLite database: (url, database URL, the CLI's home)."""
    db = f"sqlite:///{tmp_path / 'station.db'}"
    proc = CentralProcess(tmp_path / "station-home", "--db", db)
    try:
        yield proc.url, db, tmp_path / "cli-home"
    finally:
        assert proc.stop() == 0


def channels(home: Path, db: str, *args: str) -> Any:
    return run(home, "central", "channels", *args, "--db", db)


def add(home: Path, db: str, channel_id: str, *args: str) -> str:
    r = channels(home, db, "add", channel_id, *args)
    assert r.returncode == 0, r.stderr
    assert channel_id in r.stderr
    return r.stdout.strip()


def post(url: str, token: str, payload: Any, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    if isinstance(payload, bytes | str):
        headers.setdefault("Content-Type", "application/json")
        return requests.post(url + PAYMENTS, data=payload, headers=headers, timeout=10)
    return requests.post(url + PAYMENTS, json=payload, headers=headers, timeout=10)


def test_the_channel_api_over_http(station: tuple[str, str, Path]) -> None:
    url, db, home = station
    token = add(home, db, "BANK1", "--name", "Bank", "--office", "DEMO")
    first = body()
    r = post(url, token, first)
    assert r.status_code == 201, r.text
    held = c.ChannelPayment.model_validate_json(r.content)
    assert held.channel_id == "BANK1" and held.amount_fen == 20_000
    again = post(url, token, first)  # a replay: the same answer, said so
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert c.ChannelPayment.model_validate_json(again.content) == held
    conflict = post(url, token, {**first, "customer_no": "100000000020"})
    assert conflict.status_code == 409 and conflict.json()["code"] == "conflict"
    looked = requests.get(
        f"{url}{PAYMENTS}/{first['txn_id']}", headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )  # fmt: skip
    assert looked.status_code == 200 and looked.json()["received_at"] == again.json()["received_at"]
    unknown = requests.get(f"{url}{PAYMENTS}/NOPE", headers={"Authorization": f"Bearer {token}"},
                           timeout=10)  # fmt: skip
    assert unknown.status_code == 404

    def code(r: requests.Response) -> tuple[int, str]:
        return r.status_code, r.json()["code"]

    assert code(post(url, token, body(CARD))) == (409, "not_remote")
    assert code(post(url, token, body("999999999999"))) == (403, "customer_not_allowed")
    for bad in (0, -100, c.CHANNEL_MAX_FEN + 1, "20000", 1.5, None):
        assert code(post(url, token, body(amount=bad))) == (400, "bad_request"), bad
    assert post(url, token, body(amount=20000.0)).status_code == 201  # 20000.0 is the integer
    assert code(post(url, token, '{"txn_id": "T1", "customer_no": ')) == (400, "bad_request")
    assert code(post(url, token, "[1, 2]")) == (400, "bad_request")
    assert code(post(url, token, {**body(), "extra": 1})) == (400, "bad_request")
    assert code(post(url, token, body(txn_id="bad id"))) == (400, "bad_request")
    assert code(post(url, token, body(txn_id="T1\n"))) == (400, "bad_request")
    assert code(post(url, token, body(paid_at="2026-03-01T09:00:00"))) == (400, "bad_request")
    as_form = post(url, token, "a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert code(as_form) == (415, "unsupported_media_type")

    # credentials: none, wrong, a counter's, a revoked channel's
    assert code(post(url, "wrong", body())) == (401, "unauthorized")
    no_auth = requests.post(url + PAYMENTS, json=body(), timeout=10)
    assert code(no_auth) == (401, "unauthorized")
    counter_token = register(url, "C1", "DEMO")
    assert code(post(url, counter_token, body())) == (401, "unauthorized")
    counter_route = requests.get(
        f"{url}{c.API_PREFIX}/customers/{REMOTE}/control-status", headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )  # fmt: skip
    assert counter_route.status_code == 401  # a channel's token is not a counter's
    revoked = channels(home, db, "revoke", "BANK1")
    assert revoked.returncode == 0, revoked.stderr
    assert code(post(url, token, body())) == (401, "unauthorized")
    listed = json.loads(channels(home, db, "list", "--json").stdout)
    assert [(x["id"], x["offices"], x["revoked_at"] is not None) for x in listed] == [
        ("BANK1", ["DEMO"], True)
    ]
    assert "token" not in json.dumps(listed)


def test_reconcile_and_statement_commands(station: tuple[str, str, Path], tmp_path: Path) -> None:
    url, db, home = station
    token = add(home, db, "BANK1", "--office", "DEMO")
    paid = []
    for amount in (1000, 2000, 3000):
        r = post(url, token, body(amount=amount))
        assert r.status_code == 201, r.text
        paid.append(r.json())
    day = dt.datetime.fromisoformat(paid[0]["paid_at"]).astimezone(ch.DAY_ZONE).date().isoformat()
    out = tmp_path / "station.csv"
    r = channels(home, db, "statement", "--channel", "BANK1", "--date", day, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "txn_id,customer_no,amount_fen,paid_at" and len(lines) == 4
    same = channels(home, db, "reconcile", "--channel", "BANK1", "--date", day, "--file",
                    str(out), "--json")  # fmt: skip
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["counts"]["matched"] == 3
    # the channel's file: one amount changed, one payment dropped, one the station never got
    theirs = tmp_path / "bank.csv"
    changed = lines[1].rsplit(",", 2)
    theirs.write_text(
        "\n".join([lines[0], f"{changed[0]},1001,{changed[2]}", lines[2],
                   f"LOST-1,{REMOTE},700,{changed[2]}"]) + "\n", encoding="utf-8",
    )  # fmt: skip
    found = channels(home, db, "reconcile", "--channel", "BANK1", "--date", day, "--file",
                     str(theirs), "--json")  # fmt: skip
    assert found.returncode == 3, found.stderr
    report = json.loads(found.stdout)
    assert report["counts"] == {
        "matched": 1, "missing_at_station": 1, "missing_at_channel": 1,
        "amount_differs": 1, "customer_differs": 0,
    }  # fmt: skip
    text = channels(home, db, "reconcile", "--channel", "BANK1", "--date", day, "--file",
                    str(theirs))  # fmt: skip
    assert text.returncode == 3 and "missing at the station: 1" in text.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("txn_id,customer_no,amount_fen,paid_at\nX,1,2,3\n", encoding="utf-8")
    refused = channels(home, db, "reconcile", "--channel", "BANK1", "--date", day, "--file",
                       str(bad))  # fmt: skip
    assert refused.returncode == 1 and "line 2" in refused.stderr
    r = channels(home, db, "reconcile", "--channel", "NOPE", "--date", day, "--file", str(out))
    assert r.returncode == 1 and "no payment channel NOPE" in r.stderr, r.stderr
    # a day that is not one is a usage error, said as by every command that takes a date
    for command, lang, said in (
        (("reconcile", "--file"), "en", "is not a date; write it as YYYY-MM-DD, e.g. 2026-03-01"),
        (("statement", "--out"), "zh_CN", "不是日期；请写成 YYYY-MM-DD，例如 2026-03-01"),
    ):
        r = run(home, "central", "channels", command[0], "--channel", "BANK1", "--date",
                "2026-3-1", command[1], str(out), "--db", db, lang=lang)  # fmt: skip
        assert r.returncode == 2 and r.stderr.strip().endswith(f"2026-3-1 {said}"), r.stderr
    again = channels(home, db, "statement", "--channel", "BANK1", "--date", day, "--out", str(out))
    assert again.returncode == 1  # an existing file is not replaced without --force


# --------------------------------------------------------------------------- end to end


def test_end_to_end_a_tripped_customer_pays_through_a_channel_and_is_closed_again(
    tmp_path: Path,
) -> None:
    """Real processes: the fleet simulator and ``central serve --terminals``; the bank posts
    the payment over HTTP; the meter's relay, read over DL/T 645, closes within 60 s."""
    db = f"sqlite:///{tmp_path / 'station.db'}"
    with station_with_fleet(
        tmp_path, db, "--control-interval", "0.5", fleet_args=("--speed", "7200", "--load-kw", "5")
    ) as running:
        assert running.where is not None
        where, url = running.where, running.url
        token = add(tmp_path / "cli-home", db, "BANK1", "--office", "DEMO")
        store = CentralStore(db)
        wait_tripped(store, REMOTE, where, REMOTE_METER)
        r = post(url, token, body(amount=20_000))
        assert r.status_code == 201, r.text
        wait_closed(store, REMOTE, where, REMOTE_METER, time.monotonic())
        status = control_status(store, REMOTE)
        assert status is not None and status["paid_fen"] == 20_000
        assert status["state"] != "tripped"
        store.dispose()
