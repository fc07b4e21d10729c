"""The station's exceptions queue (seed 3.14) and the balance comparison of card customers
(seed 3.5): the workflow with its history on SQLite and PostgreSQL, the office scope, the HTTP
routes, write-backs that open exceptions, and ``cardvend exceptions`` in a real counter process
against a real station process."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sync import contract as c
from sync.central import models as m
from sync.central.base import Counter
from sync.central.card_checks import BALANCE_TOLERANCE_FEN
from sync.central.exceptions import ExceptionError
from sync.central.exceptions import act
from sync.central.exceptions import list_exceptions
from sync.central.exceptions import open_exception
from sync.central.exceptions import show_exception
from sync.central.store import CentralStore
from tests.rigs.central import CARD
from tests.rigs.central import REMOTE
from tests.rigs.central import Api
from tests.rigs.central import sale
from tests.rigs.central_process import serve_central
from tests.rigs.cli import ok_json
from tests.rigs.cli import registered_counter
from tests.rigs.cli import run

HERE = Counter("C1", "DEMO")
ELSEWHERE = Counter("C9", "FAR")
SUPERVISOR = {"CARDVEND_PASSWORD": "demo-s01"}
TELLER = {"CARDVEND_PASSWORD": "demo-t01"}


def opened(store: CentralStore, customer_no: str, kind: str = "reading_missing") -> str:
    with store.engine.begin() as conn:
        assert open_exception(conn, store.now(), customer_no, kind, "something seen") == 1
    items = list_exceptions(store, HERE).items + list_exceptions(store, Counter("x", "")).items
    return next(i.id for i in items if i.customer_no == customer_no and i.kind == kind)


def step(
    store: CentralStore, exc_id: str, action: str, counter: Counter = HERE, **kw: Any
) -> tuple[int, dict[str, Any]]:
    req = c.ExceptionAction(action=action, operator_id="s01", **kw)  # type: ignore[arg-type]
    reply = act(store, counter, exc_id, req, key=uuid.uuid4().hex, request_hash=uuid.uuid4().hex)
    return reply.status, json.loads(reply.body)


def test_the_workflow_keeps_who_and_when_and_refuses_illegal_steps(store: CentralStore) -> None:
    exc_id = opened(store, REMOTE)
    assert show_exception(store, HERE, exc_id).office_code == "DEMO"  # the customer's office
    # resolved is final; explained is final; escalated can be taken up again
    assert step(store, exc_id, "explain")[1]["code"] == "illegal_transition"  # not assigned yet
    status, body = step(store, exc_id, "assign", assignee="t01", note="look at the meter")
    assert status == 200 and (body["state"], body["assignee"]) == ("assigned", "t01")
    assert step(store, exc_id, "escalate", note="meter sealed")[1]["state"] == "escalated"
    assert step(store, exc_id, "assign", assignee="f01")[1]["state"] == "assigned"
    status, body = step(store, exc_id, "resolve", note="seal replaced")
    assert (status, body["state"], body["updated_by"]) == (200, "resolved", "s01")
    for action in ("assign", "explain", "resolve", "escalate"):
        status, problem = step(store, exc_id, action, assignee="t01")
        assert (status, problem["code"]) == (409, "illegal_transition"), action
    detail = show_exception(store, HERE, exc_id)
    moves = [(e.action, e.from_state, e.to_state, e.operator_id) for e in detail.history]
    assert moves == [
        ("opened", None, "new", None),
        ("assign", "new", "assigned", "s01"),
        ("escalate", "assigned", "escalated", "s01"),
        ("assign", "escalated", "assigned", "s01"),
        ("resolve", "assigned", "resolved", "s01"),
    ]  # refused steps left no trace
    assert all(e.counter_id == "C1" for e in detail.history[1:])
    assert detail.history[-1].note == "seal replaced"
    # a closed one does not count as open: the same cause opens a new exception
    with store.engine.begin() as conn:
        assert open_exception(conn, store.now(), REMOTE, "reading_missing", "again") == 1
        assert open_exception(conn, store.now(), REMOTE, "reading_missing", "again") == 0
    assert len(list_exceptions(store, HERE, "open").items) == 1
    assert len(list_exceptions(store, HERE, "resolved").items) == 1


def test_another_office_an_unknown_and_a_malformed_id_are_not_found(store: CentralStore) -> None:
    exc_id = opened(store, REMOTE)
    for who, what in ((ELSEWHERE, exc_id), (HERE, str(uuid.uuid4())), (HERE, exc_id + "\n"),
                      (HERE, exc_id.upper()), (HERE, "١" * 36)):  # fmt: skip
        with pytest.raises(ExceptionError) as err:
            show_exception(store, who, what)
        assert (err.value.status, err.value.code) == (404, "not_found")
        assert step(store, what, "assign", who, assignee="t01")[1]["code"] == "not_found"
    assert list_exceptions(store, ELSEWHERE).items == []
    assert show_exception(store, HERE, exc_id).state == "new"  # nobody moved it


def test_a_step_is_idempotent_by_its_key(store: CentralStore) -> None:
    exc_id = opened(store, REMOTE)
    req = c.ExceptionAction(action="assign", operator_id="s01", assignee="t01")
    first = act(store, HERE, exc_id, req, key="key-00000001", request_hash="a")
    again = act(store, HERE, exc_id, req, key="key-00000001", request_hash="a")
    assert (first.status, again.status, again.replayed) == (200, 200, True)
    assert again.body == first.body
    other = act(store, HERE, exc_id, req, key="key-00000001", request_hash="b")
    assert other.status == 409 and json.loads(other.body)["code"] == "conflict"
    assert len(show_exception(store, HERE, exc_id).history) == 2  # opened + one assign


# --------------------------------------------------------------------------- write-backs


def report(customer_no: str, remaining: int, count: int, at_minute: int, **kw: Any) -> c.Model:
    return c.ControlReport(
        id=str(uuid.uuid4()), customer_no=customer_no, meter_remaining=remaining,
        meter_purchase_count=count, counter_id="C1",
        seen_at=dt.datetime(2026, 3, 1, 10, at_minute, tzinfo=dt.UTC), **kw,
    )  # fmt: skip


def kinds_of(store: CentralStore, customer_no: str) -> list[str]:
    ex = m.exceptions.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(ex.kind).where(ex.customer_no == customer_no).order_by(ex.kind))
        return list(rows.scalars())


def test_write_backs_are_compared_with_what_the_station_sold(store: CentralStore) -> None:
    sold = c.SaleRecord.model_validate(sale(CARD, purchase_count=1, tariff_plan="RES-TOU"))
    assert store.post("sales", HERE, [sold])[0].status == "created"
    # within the tolerance, consumption below: nothing
    ok = [report(CARD, 10_000 + BALANCE_TOLERANCE_FEN, 1, 1, illegal_insert_count=0)]
    assert store.post("control-reports", HERE, ok)[0].status == "created"
    assert kinds_of(store, CARD) == []
    # more on the meter than was loaded, a count the archive never sold, two illegal inserts
    bad = report(CARD, 30_000, 3, 2, illegal_insert_count=2)
    assert store.post("control-reports", HERE, [bad])[0].status == "created"
    assert kinds_of(store, CARD) == ["balance_mismatch", "illegal_insert", "purchase_count_gap"]
    ex = m.exceptions.c
    with store.engine.connect() as conn:
        detail = conn.execute(
            select(ex.detail).where(ex.customer_no == CARD, ex.kind == "balance_mismatch")
        ).scalar_one()
    assert "30000" in detail and "10000" in detail
    # the same again opens nothing more (one open per customer and kind); an older write-back
    # is kept as an event only; the same illegal count is no new insert
    again = [report(CARD, 30_000, 3, 3, illegal_insert_count=2),
             report(CARD, 90_000, 9, 0, illegal_insert_count=7)]  # fmt: skip
    store.post("control-reports", HERE, again)
    assert len(kinds_of(store, CARD)) == 3
    with store.engine.connect() as conn:
        held = conn.execute(
            select(m.control_status.c.illegal_insert_count).where(
                m.control_status.c.customer_no == CARD
            )
        ).scalar_one()
    assert held == 2
    # a remote customer's write-back is not a card customer's: no comparison
    store.post("control-reports", HERE, [report(REMOTE, 99_999, 7, 4)])
    assert kinds_of(store, REMOTE) == []


# --------------------------------------------------------------------------- HTTP and the CLI


def test_the_routes_answer_problems_for_foreign_unknown_and_illegal(
    store: CentralStore, api: Api
) -> None:
    exc_id = opened(store, REMOTE)
    page = api.get("/exceptions", state="open")
    assert page.status_code == 200 and [i["id"] for i in page.json()["items"]] == [exc_id]
    assert api.get("/exceptions", state="bogus").status_code == 400
    assert api.get(f"/exceptions/{uuid.uuid4()}").json()["code"] == "not_found"
    r = api.post(f"/exceptions/{exc_id}/actions", {"action": "explain", "operator_id": "s01"})
    assert (r.status_code, r.json()["code"]) == (409, "illegal_transition")
    r = api.post(f"/exceptions/{exc_id}/actions", {"action": "undo", "operator_id": "s01"})
    assert r.status_code == 400
    r = api.post(f"/exceptions/{exc_id}/actions",
                 {"action": "assign", "operator_id": "s01", "assignee": "t01"})  # fmt: skip
    assert r.status_code == 200 and r.json()["state"] == "assigned"
    history = api.get(f"/exceptions/{exc_id}").json()["history"]
    assert [h["action"] for h in history] == ["opened", "assign"]


@pytest.fixture
def central(tmp_path: Path) -> Iterator[str]:
    yield from serve_central(tmp_path)


def test_a_supervisor_works_the_queue_from_the_counter(central: str, tmp_path: Path) -> None:
    home = registered_counter(tmp_path / "counter", central)
    station = CentralStore(f"sqlite:///{tmp_path / 'central.db'}")
    try:
        mine = opened(station, REMOTE, "reading_backwards")
        foreign = opened(station, "999999999999", "reading_missing")  # no office of ours
    finally:
        station.dispose()
    listed = ok_json(run(home, "exceptions", "list", "--operator", "s01", "--json",
                         env=SUPERVISOR))  # fmt: skip
    assert [i["id"] for i in listed["items"]] == [mine]
    r = run(home, "exceptions", "list", "--operator", "t01", env=TELLER)
    assert r.returncode == 1 and "may not" in r.stderr  # a teller may not
    r = run(home, "exceptions", "show", foreign, "--operator", "s01", "--json", env=SUPERVISOR)
    assert r.returncode == 1 and json.loads(r.stdout)["error"] == "exception_not_found"
    r = run(home, "exceptions", "show", mine + "x", "--operator", "s01", env=SUPERVISOR)
    assert r.returncode == 2  # not an id at all: a usage error
    done = ok_json(run(home, "exceptions", "assign", mine, "--to", "t01", "--note", "check it",
                       "--operator", "s01", "--json", env=SUPERVISOR))  # fmt: skip
    assert (done["state"], done["assignee"]) == ("assigned", "t01")
    r = run(home, "exceptions", "explain", mine, "--note", "meter swapped", "--operator", "s01",
            env=SUPERVISOR)  # fmt: skip
    assert r.returncode == 0 and "explained" in r.stdout, r.stderr
    r = run(home, "exceptions", "resolve", mine, "--operator", "s01", "--json", env=SUPERVISOR)
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["error"] == "illegal_transition", (r.stdout, r.stderr)
    shown = run(home, "exceptions", "show", mine, "--operator", "s01", env=SUPERVISOR)
    assert shown.returncode == 0 and "meter swapped" in shown.stdout
    zh = run(home, "exceptions", "show", mine, "--operator", "s01", env=SUPERVISOR, lang="zh_CN")
    assert zh.returncode == 0 and "历史" in zh.stdout, zh.stdout
    # audited at the counter: the steps, the refused one and the teller's denied attempt
    db = sqlite3.connect(home / "data" / "cardvend.db")
    try:
        rows = db.execute(
            "SELECT action, result FROM audit_log WHERE action LIKE 'exception_%'"
        ).fetchall()
    finally:
        db.close()
    assert ("exception_assign", "ok") in rows and ("exception_explain", "ok") in rows
    assert ("exception_resolve", "failed") in rows and ("exception_list", "denied") in rows


def test_exceptions_opened_before_the_workflow_get_their_office_and_opening(
    tmp_path: Path,
) -> None:
    """c0004 on a station at c0003 that holds an exception: the customer's office and an
    "opened" history entry are filled in; the downgrade to c0003 takes it all back."""
    import sqlalchemy as sa

    from app.persistence.db import make_engine
    from sync.central import schema

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        schema.upgrade(engine, "c0003")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO central_customers (customer_no, name, address, phone, meter_no, "
                    "meter_kind, status, office_code, tariff_plan, ct_ratio, pt_ratio, alarm1, "
                    "alarm2, overdraft_limit, credit_ceiling, purchase_count, seq) VALUES "
                    "('100000000010', 'x', '', '', '200000000010', 'remote', 'active', 'DEMO', "
                    "'RES-FLAT', 1, 1, 2000, 1000, 0, 100000, 0, 1)"
                )
            )
            conn.execute(sa.text(
                "INSERT INTO central_exceptions (id, customer_no, kind, detail, state, "
                "created_at, updated_at) VALUES ('00000000-0000-4000-8000-000000000001', "
                "'100000000010', 'reading_missing', 'no answer', 'new', "
                "'2026-03-01 09:00:00.000000', '2026-03-01 09:00:00.000000')"
            ))  # fmt: skip
        schema.upgrade(engine)
        with engine.connect() as conn:
            office = conn.execute(sa.text("SELECT office_code FROM central_exceptions")).scalar()
            events = conn.execute(
                sa.text("SELECT action, to_state FROM central_exception_events")
            ).all()
        assert office == "DEMO" and [tuple(e) for e in events] == [("opened", "new")]
        from alembic import command

        with engine.connect() as conn:
            command.downgrade(schema._config(conn), "c0003")
            conn.commit()
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            columns = {col["name"] for col in sa.inspect(conn).get_columns("central_exceptions")}
        assert "central_exception_events" not in names and "office_code" not in columns
    finally:
        engine.dispose()
