"""The reference central server, over real HTTP on a free loopback port (``requests``), on
SQLite and, where a server is reachable, on PostgreSQL (a schema per test): registration and
tokens, idempotency, pages, the sales rules, control and audit, seeding and the CLI (bad input and
faults: tests/test_central_server_faults.py)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import text

from app.services import demo
from sync import contract as c
from sync.central import CentralServer
from sync.central import CentralStore
from sync.central import apply
from sync.central import seed as central_seed
from sync.central.api import openapi_document
from sync.central.store import Counter
from tests.conftest import ROOT
from tests.rigs.central import CARD
from tests.rigs.central import FIRST
from tests.rigs.central import NOW
from tests.rigs.central import REMOTE
from tests.rigs.central import Api
from tests.rigs.central import event
from tests.rigs.central import register
from tests.rigs.central import reversal
from tests.rigs.central import sale
from tests.rigs.env import child_env

# --------------------------------------------------------------------------- fixtures
# the fixtures store, server and api: tests/rigs/central.py


def control_report(customer_no: str, remaining: int, seen_at: str) -> dict[str, Any]:
    return event(
        "control-reports",
        customer_no=customer_no,
        meter_remaining=remaining,
        meter_purchase_count=3,
        seen_at=seen_at,
    )


# --------------------------------------------------------------------------- registration, auth


def test_health_and_openapi_need_no_token(server: CentralServer) -> None:
    r = requests.get(server.url + "/api/v1/health", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert c.Health.model_validate_json(r.content).contract == c.CONTRACT_VERSION
    doc = requests.get(server.url + "/api/v1/openapi.json", timeout=5).json()
    assert doc == openapi_document()


def test_http11_keep_alive(server: CentralServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/api/v1/health")
        first = conn.getresponse()
        assert first.status == 200 and first.version == 11
        assert int(first.headers["Content-Length"]) == len(first.read())
        sock = conn.sock
        conn.request("GET", "/api/v1/no-such-thing")
        second = conn.getresponse()
        assert second.status == 404 and json.loads(second.read())["code"] == "not_found"
        assert conn.sock is sock  # the same connection served both
    finally:
        conn.close()


def test_unexpected_error_is_a_logged_500(
    api: Api,
    server: CentralServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(server.store, "tariffs_page_json", boom)
    with caplog.at_level(logging.ERROR, logger="sync.central.server"):
        r = api.get("/tariffs")
    assert r.status_code == 500
    assert c.Problem.model_validate_json(r.content).code == "server_error"
    assert "disk on fire" not in r.text  # details stay in the log
    assert any("disk on fire" in (rec.exc_text or "") for rec in caplog.records)
    assert api.get("/customers", limit=1).status_code == 200


def test_register_and_bearer_token(server: CentralServer) -> None:
    anonymous = Api(server.url)
    r = anonymous.get("/customers")
    assert r.status_code == 401
    assert c.Problem.model_validate_json(r.content).code == "unauthorized"
    assert Api(server.url, "not-a-token").get("/tariffs").status_code == 401
    bad_scheme = requests.get(
        server.url + "/api/v1/tariffs", headers={"Authorization": "Basic abc"}, timeout=5
    )
    assert bad_scheme.status_code == 401

    first = register(server.url, "C1")
    assert Api(server.url, first).get("/tariffs").status_code == 200
    # registering again (with the current token) replaces the token
    second = register(server.url, "C1", Authorization=f"Bearer {first}")
    assert second != first
    assert Api(server.url, first).get("/tariffs").status_code == 401
    assert Api(server.url, second).get("/tariffs").status_code == 200
    # only the hash of a token is stored
    assert server.store.authenticate(second) == Counter("C1", "DEMO", "Counter C1")
    with server.store.engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM central_counters")).scalars().all()
    assert second not in stored and len(stored[0]) == 64


def test_enrolment_key(tmp_path: Path) -> None:
    with CentralServer(str(tmp_path / "k.db"), enrolment_key="s3cret-key") as srv:
        url = srv.url + "/api/v1/counters/register"
        body = {"counter_id": "C9", "office_code": "DEMO"}
        assert requests.post(url, json=body, timeout=5).status_code == 401
        r = requests.post(url, json=body, headers={"X-Enrolment-Key": "wrong"}, timeout=5)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        assert register(srv.url, "C9", **{"X-Enrolment-Key": "s3cret-key"})


def test_posted_counter_id_must_be_the_tokens(api: Api) -> None:
    r = api.post("/sales", sale(counter_id="OTHER"))
    assert r.status_code == 403
    problem = c.Problem.model_validate_json(r.content)
    assert problem.code == "counter_mismatch" and "OTHER" in problem.message and problem.ids
    batch = api.post("/sales/batch", {"items": [sale(counter_id="OTHER"), sale()]})
    assert [(x["status"], x["code"]) for x in batch.json()["results"]] == [
        ("rejected", "counter_mismatch"),
        ("created", None),
    ]


# --------------------------------------------------------------------------- idempotency


def test_single_post_is_idempotent_by_id(api: Api, server: CentralServer) -> None:
    body = sale()
    r1 = api.post("/sales", body)
    assert r1.status_code == 201
    assert c.ItemResult.model_validate_json(r1.content).status == "created"
    r2 = api.post("/sales", body)
    assert r2.status_code == 200 and r2.json()["status"] == "duplicate"
    r3 = api.post("/sales", {**body, "credit": 9_000})
    assert r3.status_code == 409
    assert r3.json()["code"] == "conflict" and r3.json()["ids"] == [body["id"]]
    assert server.store.count("sales") == 1
    # the same holds for every other record kind
    rev = reversal(body["id"])
    assert api.post("/reversals", rev).status_code == 201
    assert api.post("/reversals", rev).status_code == 200
    assert api.post("/reversals", {**rev, "amount": 1}).status_code == 409


def test_batch_mixed_results_in_order(api: Api, server: CentralServer) -> None:
    a, b = sale(), sale(CARD)
    assert api.post("/sales/batch", {"items": [a, b]}).status_code == 200
    fresh = sale()
    r = api.post(
        "/sales/batch",
        {"items": [a, {**b, "amount": 20_000}, fresh, sale(counter_id="C2")]},
    )
    assert r.status_code == 200
    results = c.BatchResult.model_validate_json(r.content).results
    assert [x.status for x in results] == ["duplicate", "conflict", "created", "rejected"]
    assert [x.id for x in results[:3]] == [a["id"], b["id"], fresh["id"]]
    assert server.store.count("sales") == 3  # the conflict did not stop the rest
    held = server.store.sale(b["id"])
    assert held is not None and held.sale.amount == 10_000  # the first body stays


def test_idempotency_key_replays_the_first_answer(api: Api, server: CentralServer) -> None:
    body = sale()
    first = api.post("/sales", body, key="key-0001")
    again = api.post("/sales", body, key="key-0001")
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert first.status_code == 201  # replayed as it was, not as "duplicate"
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = api.post("/sales", sale(), key="key-0001")
    assert other.status_code == 409 and other.json()["code"] == "conflict"
    batch = {"items": [sale(), sale(CARD)]}
    b1 = api.post("/sales/batch", batch, key="batch-key-1")
    b2 = api.post("/sales/batch", batch, key="batch-key-1")
    assert b1.content == b2.content and b1.json()["results"][0]["status"] == "created"
    assert api.post("/sales/batch", {"items": [sale()]}, key="batch-key-1").status_code == 409
    # keys are per counter: another counter may use the same key
    other_counter = Api(server.url, register(server.url, "C2"))
    r = other_counter.post("/sales", sale(counter_id="C2"), key="key-0001")
    assert r.status_code == 201
    # no key, or a key of the wrong length: 400
    assert api.post("/sales", sale(), key=None).status_code == 400
    assert api.post("/sales", sale(), key="short").status_code == 400


# --------------------------------------------------------------------------- pages


def test_pages_follow_the_cursor(api: Api) -> None:
    customers, cursor = api.pull("/customers", limit=300)
    assert len(customers) == demo.CUSTOMERS
    assert [x["customer_no"] for x in customers[:2]] == [FIRST, str(demo.FIRST_CUSTOMER + 1)]
    seqs = [x["seq"] for x in customers]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and cursor == seqs[-1]
    page = c.CustomerPage.model_validate_json(api.get("/customers", after=0, limit=2).content)
    assert page.has_more and page.next_cursor == page.items[-1].seq
    assert {a.ref for a in page.items[0].arrears} == {
        f"DEMO-A-{FIRST}",
        f"DEMO-F-{FIRST}",
    }
    end = api.get("/customers", after=cursor).json()
    assert end == {"items": [], "next_cursor": cursor, "has_more": False}
    huge = api.get("/customers", after=10**30).json()
    assert huge["items"] == [] and huge["next_cursor"] == 10**30

    tariffs, _ = api.pull("/tariffs")
    assert {(t["plan_code"], t["version_no"]) for t in tariffs} == {
        (code, 1) for code in demo.PLANS
    }
    jobs, _ = api.pull("/jobs")
    assert {j["kind"] for j in jobs} == {"price", "purchase_params", "reading_day"}
    for path in ("/tariffs", "/customers", "/jobs", "/remote-purchases", "/counters/me/sales"):
        for bad in ({"limit": 0}, {"limit": c.MAX_PAGE + 1}, {"after": -1}, {"after": "x"}):
            r = api.get(path, **bad)
            assert r.status_code == 400, (path, bad)
            assert r.json()["code"] == "bad_request"


def test_jobs_are_per_office_and_job_results_close_them(api: Api, server: CentralServer) -> None:
    jobs, cursor = api.pull("/jobs")
    assert len(jobs) == 3 and all(j["office_code"] == "DEMO" for j in jobs)
    elsewhere = Api(server.url, register(server.url, "X1", office="NORTH"))
    assert elsewhere.pull("/jobs")[0] == []
    result = event(
        "job-results",
        job_id=jobs[0]["id"],
        outcome="done",
        technician_id="f01",
        done_at="2026-03-02T10:00:00+08:00",
        write_back={"remaining": 1200},
    )
    assert api.post("/job-results", result).status_code == 201
    changed, _ = api.pull("/jobs", after=cursor)
    assert [(j["id"], j["status"]) for j in changed] == [(jobs[0]["id"], "done")]
    central_seed.add_job(server.store, "reading_day", REMOTE, {"reading_day": 5})
    assert len(api.pull("/jobs", after=cursor)[0]) == 2


def test_customer_delta_after_a_sale_settles_arrears(api: Api, server: CentralServer) -> None:
    _, cursor = api.pull("/customers", limit=5000)
    body = sale(
        amount=13_500,
        arrears=3_000,
        fees=500,
        credit=10_000,
        purchase_count=1,
        card_serial="A1B2C3D4",
        settled_refs=[f"DEMO-A-{FIRST}", f"DEMO-F-{FIRST}"],
        cash_received=20_000,
    )
    assert api.post("/sales", body).status_code == 201
    delta, cursor2 = api.pull("/customers", after=cursor)
    assert [x["customer_no"] for x in delta] == [FIRST]
    assert delta[0]["arrears"] == []
    assert delta[0]["purchase_count"] == 1 and delta[0]["card_serial"] == "A1B2C3D4"
    assert server.store.arrears_settled_by(f"DEMO-A-{FIRST}") == body["id"]
    # a purchase count that does not follow never moves it; nothing changed, so no delta
    again = api.post("/sales", sale(purchase_count=1, card_serial="OTHER"))
    assert again.status_code == 201 and again.json()["review"] == "purchase_count_gap"
    assert api.pull("/customers", after=cursor2)[0] == []
    # central-side changes reappear too
    server.store.add_arrears(CARD, "NEW-1", 1_234, description="补收")
    central_seed.set_customer_status(server.store, REMOTE, "paused")
    delta2, cursor3 = api.pull("/customers", after=cursor2)
    assert [x["customer_no"] for x in delta2] == [CARD, REMOTE]
    assert delta2[0]["arrears"][0]["ref"] == "NEW-1" and delta2[1]["status"] == "paused"
    # a replacement card and a card binding change the card serial
    repl = event(
        "replacements",
        customer_no=CARD,
        old_serial=None,
        new_serial="FFEE0001",
        fee=500,
        operator_id="t01",
        created_at="2026-03-01T19:00:00+08:00",
    )
    assert api.post("/replacements", repl).status_code == 201
    binding = event(
        "card-bindings",
        customer_no=FIRST,
        serial="FFEE0002",
        operator_id="t01",
        created_at="2026-03-01T19:05:00+08:00",
    )
    assert api.post("/card-bindings", binding).status_code == 201
    delta3, _ = api.pull("/customers", after=cursor3)
    assert {(x["customer_no"], x["card_serial"]) for x in delta3} == {
        (CARD, "FFEE0001"),
        (FIRST, "FFEE0002"),
    }


def test_new_tariff_version_is_pulled(api: Api, server: CentralServer) -> None:
    _, cursor = api.pull("/tariffs")
    spec = {"kind": "flat", "flat_rate": 5400}
    rec = central_seed.add_tariff_version(
        server.store, "RES-FLAT", spec, dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    )
    assert rec.version_no == 2
    new, _ = api.pull("/tariffs", after=cursor)
    assert [(t["plan_code"], t["version_no"], t["spec"]) for t in new] == [("RES-FLAT", 2, spec)]


# --------------------------------------------------------------------------- sales rules


def test_remote_purchase_status(api: Api, server: CentralServer) -> None:
    issued = sale(REMOTE, kind="remote")
    not_remote = sale(CARD, kind="remote")
    failed_state = sale(REMOTE, kind="remote", state="failed")
    unknown = sale("999999999999", kind="remote")
    r = api.post("/sales/batch", {"items": [issued, not_remote, failed_state, unknown]})
    assert [x["status"] for x in r.json()["results"]] == ["created"] * 4
    statuses, cursor = api.pull("/remote-purchases")
    by_sale = {s["sale_id"]: s for s in statuses}
    assert set(by_sale) == {issued["id"], not_remote["id"], unknown["id"]}
    assert by_sale[issued["id"]]["status"] == "issued"
    assert by_sale[not_remote["id"]]["status"] == "failed"
    assert "remote" in by_sale[not_remote["id"]]["reason"]
    assert by_sale[unknown["id"]]["status"] == "failed"
    # only this counter's sales; a change shows after the cursor
    other = Api(server.url, register(server.url, "C2"))
    assert other.pull("/remote-purchases")[0] == []
    server.store.set_remote_status(issued["id"], "failed", "meter offline")
    later, _ = api.pull("/remote-purchases", after=cursor)
    assert [(s["sale_id"], s["status"]) for s in later] == [(issued["id"], "failed")]


def test_sales_are_never_dropped_but_flagged(api: Api, server: CentralServer) -> None:
    central_seed.set_customer_status(server.store, CARD, "closed")
    closed = sale(CARD)
    unknown = sale("999999999999")
    bad_tariff = sale(tariff_plan="NO-SUCH", tariff_version_no=1)
    bad_version = sale(tariff_version_no=7, purchase_count=2)
    r = api.post("/sales/batch", {"items": [closed, unknown, bad_tariff, bad_version]})
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created"] * 4
    assert [x["review"] for x in results] == [
        "customer_closed",
        "unknown_customer",
        "unknown_tariff",
        "unknown_tariff",
    ]
    # a repeat answers duplicate with the same review
    again = api.post("/sales", closed)
    assert again.json() == {
        "id": closed["id"],
        "status": "duplicate",
        "review": "customer_closed",
        "message": "",
        "code": None,
    }
    held, _ = api.pull("/counters/me/sales")
    assert {s["sale"]["id"]: s["review"] for s in held} == {
        closed["id"]: "customer_closed",
        unknown["id"]: "unknown_customer",
        bad_tariff["id"]: "unknown_tariff",
        bad_version["id"]: "unknown_tariff",
    }
    assert c.CounterSalePage.model_validate_json(api.get("/counters/me/sales").content)


def test_a_batch_applies_as_if_one_by_one(store: CentralStore) -> None:
    """A batch is applied set-wise; the outcome is that of its items one after another."""
    store.register(c.RegisterRequest(counter_id="C1", office_code="DEMO"), token="t" * 40)
    counter = store.counter("C1")
    assert counter is not None
    before = store.customers_page(counter, after=0, limit=c.MAX_PAGE).next_cursor

    def sales(*bodies: dict[str, Any]) -> list[c.Model]:
        return [c.SaleRecord.model_validate(b) for b in bodies]

    a_ref, f_ref = f"DEMO-A-{FIRST}", f"DEMO-F-{FIRST}"
    first = sale(purchase_count=1, card_serial="S1", settled_refs=[a_ref])
    second = sale(purchase_count=2, card_serial="S2", settled_refs=[a_ref, f_ref])
    lower = sale(purchase_count=1, card_serial="S3")
    closed = sale("999999999999")
    short = sale(cash_received=9_999)
    results = store.post(
        "sales",
        counter,
        sales(
            first,
            second,
            lower,
            first,
            {**first, "credit": 20_000, "amount": 20_000},
            closed,
            short,
            closed,
            {**short, "cash_received": None},
        ),
    )
    assert [(r.id, r.status, r.review, r.code) for r in results] == [
        (first["id"], "created", None, None),
        (second["id"], "created", None, None),
        (lower["id"], "created", "purchase_count_gap", None),
        (first["id"], "duplicate", None, None),
        (first["id"], "conflict", None, "conflict"),
        (closed["id"], "created", "unknown_customer", None),
        (short["id"], "rejected", None, "cash_short"),
        (closed["id"], "duplicate", "unknown_customer", None),
        (short["id"], "created", "purchase_count_gap", None),  # refused first: judged afresh
    ]
    assert store.count("sales") == 5
    # the first sale settled DEMO-A, the second only what was left; a count that does not
    # follow moves neither the count nor the card serial
    assert store.arrears_settled_by(a_ref) == first["id"]
    assert store.arrears_settled_by(f_ref) == second["id"]
    rec = store.customer(FIRST)
    assert rec is not None
    assert (rec.purchase_count, rec.card_serial, rec.arrears) == (2, "S2", [])
    assert [(r["record_id"], r["code"]) for r in store.refusals("C1")] == [
        (short["id"], "cash_short")
    ]
    delta = store.customers_page(counter, after=before, limit=c.MAX_PAGE).items
    assert [x.customer_no for x in delta] == [FIRST]  # one new seq for the customer

    # events: an id twice, two reversals of one sale, the latest control report wins
    r1, r2 = reversal(first["id"]), reversal(first["id"])
    sales_seq = store.last_seq("sales")
    out = store.post(
        "reversals",
        counter,
        [c.ReversalRecord.model_validate(b) for b in (r1, r2, r1, {**r2, "amount": 1})],
    )
    assert [x.status for x in out] == ["created", "created", "duplicate", "conflict"]
    assert store.last_seq("sales") == sales_seq + 2  # a sales seq per reversal, as one by one
    held = store.sale(first["id"])
    assert held is not None and held.reversed and held.seq == sales_seq + 1
    reports = [
        control_report(CARD, 300, "2026-03-02T11:00:00+08:00"),
        control_report(CARD, 100, "2026-03-02T12:00:00+08:00"),
        control_report(CARD, 200, "2026-03-02T10:00:00+08:00"),
    ]
    out = store.post(
        "control-reports", counter, [c.ControlReport.model_validate(b) for b in reports]
    )
    assert [x.status for x in out] == ["created"] * 3
    status = store.control_status(counter, CARD)
    assert status is not None and status.meter_remaining == 100


def test_the_sales_waiting_for_a_count_are_found_by_their_own_index(store: CentralStore) -> None:
    """Each card sale that moves a customer's purchase count looks for the customer's sales
    waiting for a count: through the partial index of those sales, not through every sale the
    customer ever bought (the look-up grew with the customer's history)."""
    store.register(c.RegisterRequest(counter_id="C1", office_code="DEMO"), token="t" * 40)
    counter = store.counter("C1")
    assert counter is not None
    history = [sale(purchase_count=n, card_serial=f"S{n}") for n in range(1, 301)]
    store.post("sales", counter, [c.SaleRecord.model_validate(b) for b in history])
    waiting = sale(purchase_count=302, card_serial="S302")
    out = store.post("sales", counter, [c.SaleRecord.model_validate(waiting)])
    assert out[0].review == "purchase_count_gap"
    with store.engine.connect() as conn:
        gaps = apply._GAP_SALES.on(conn)
        if store.dialect == "postgresql":  # column = ANY(:nos), one array parameter
            conn.execute(text("ANALYZE central_sales"))
            compiled = gaps.compile(conn)
            explain = "EXPLAIN "
            params: Any = compiled.construct_params({"nos": [FIRST]})
        else:  # the expanding IN, rendered for one value
            compiled = gaps.params(nos=[FIRST]).compile(
                conn, compile_kwargs={"literal_binds": True}
            )
            explain, params = "EXPLAIN QUERY PLAN ", ()
        plan = " ".join(str(row) for row in conn.exec_driver_sql(explain + str(compiled), params))
        rows = conn.execute(gaps, {"nos": [FIRST]})
        assert [r.body["purchase_count"] for r in rows] == [302]
    assert "ix_central_sales_gaps" in plan, plan
    # the missing sale arrives: the waiting one follows it
    store.post("sales", counter, [c.SaleRecord.model_validate(sale(purchase_count=301))])
    rec = store.customer(FIRST)
    assert rec is not None and (rec.purchase_count, rec.card_serial) == (302, "S302")


def test_reversal_before_or_after_the_sale(api: Api, server: CentralServer) -> None:
    early_sale, late_sale = sale(), sale(CARD)

    assert api.post("/sales", early_sale).status_code == 201
    _, cursor = api.pull("/counters/me/sales")
    assert api.post("/reversals", reversal(early_sale["id"])).status_code == 201
    # the reversal arrives before its sale (the outbox sent them out of order)
    assert api.post("/reversals", reversal(late_sale["id"])).status_code == 201
    assert api.post("/sales", late_sale).status_code == 201
    changed, _ = api.pull("/counters/me/sales", after=cursor)
    assert {s["sale"]["id"]: s["reversed"] for s in changed} == {
        early_sale["id"]: True,
        late_sale["id"]: True,
    }
    status = api.get(f"/customers/{FIRST}/control-status").json()
    assert status["system_credit"] == 0


def test_rewrites_and_sms_are_stored(api: Api, server: CentralServer) -> None:
    body = sale()
    api.post("/sales", body)
    rw = event(
        "rewrites",
        sale_id=body["id"],
        rewrite_no=1,
        operator_id="t01",
        created_at="2026-03-01T18:00:00+08:00",
    )
    sms = event(
        "sms",
        customer_no=FIRST,
        template="payment_received",
        params={"amount": "100.00", "count": 2},
        created_at="2026-03-01T18:00:00+08:00",
    )
    assert api.post("/rewrites/batch", {"items": [rw]}).json()["results"][0]["status"] == "created"
    assert api.post("/sms", sms).status_code == 201
    assert server.store.event("sms", sms["id"]) == c.SmsRequest.model_validate(sms).model_dump(
        mode="json"
    )
    assert server.store.event("rewrites", rw["id"]) is not None


# --------------------------------------------------------------------------- control, audit


def test_control_status_states(api: Api, server: CentralServer) -> None:
    # defaults: alarm1 20.00, alarm2 10.00, overdraft 0
    assert api.get(f"/customers/{FIRST}/control-status").json()["state"] == "unknown"
    assert api.post("/sales", sale(amount=7_000, credit=7_000)).status_code == 201
    failed = sale(amount=3_000, credit=3_000, state="failed", purchase_count=2)
    assert api.post("/sales", failed).status_code == 201
    for remaining, expected in (
        (5_000, "normal"),
        (2_000, "alarm1"),
        (1_000, "alarm2"),
        (0, "tripped"),
    ):
        hour = {5_000: 10, 2_000: 11, 1_000: 12, 0: 13}[remaining]
        rep = control_report(FIRST, remaining, f"2026-03-02T{hour}:00:00+08:00")
        assert api.post("/control-reports", rep).status_code == 201
        status = c.ControlStatus.model_validate_json(
            api.get(f"/customers/{FIRST}/control-status").content
        )
        assert (status.state, status.meter_remaining) == (expected, remaining)
        assert status.system_credit == 7_000  # completed sales only
    # an older report does not replace a newer one
    api.post("/control-reports", control_report(FIRST, 9_999, "2026-03-01T00:00:00+08:00"))
    assert api.get(f"/customers/{FIRST}/control-status").json()["meter_remaining"] == 0
    # overdraft: tripped only below the limit
    server.store.update_customer(CARD, overdraft_limit=500)
    api.post("/control-reports", control_report(CARD, -400, "2026-03-02T10:00:00+08:00"))
    assert api.get(f"/customers/{CARD}/control-status").json()["state"] == "alarm2"
    api.post("/control-reports", control_report(CARD, -500, "2026-03-02T11:00:00+08:00"))
    assert api.get(f"/customers/{CARD}/control-status").json()["state"] == "tripped"
    central_seed.set_customer_status(server.store, CARD, "closed")
    assert api.get(f"/customers/{CARD}/control-status").json()["state"] == "closed"
    r = api.get("/customers/999999999999/control-status")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert api.get("/customers/12345/control-status").status_code == 400


def test_audit_head_divergence(api: Api, server: CentralServer) -> None:
    h = [f"{i:064x}" for i in range(10)]
    at = "2026-03-01T09:00:00+08:00"

    def put(**head: Any) -> requests.Response:
        return api.put("/counters/me/audit-head", {"at": at, **head})

    r = put(seq=10, hash=h[1])
    assert r.status_code == 200
    assert c.AuditHeadAck.model_validate_json(r.content).seq == 10
    assert put(seq=10, hash=h[1]).status_code == 200  # the same again is fine
    assert put(seq=20, hash=h[2], previous_seq=10, at_previous_seq=h[1]).status_code == 200
    for diverged in (
        {"seq": 15, "hash": h[3]},  # below the last report
        {"seq": 20, "hash": h[3]},  # the same seq with another hash
        {"seq": 30, "hash": h[4], "previous_seq": 20, "at_previous_seq": h[5]},  # rewritten
        {"seq": 30, "hash": h[4], "previous_seq": 10, "at_previous_seq": h[5]},  # older too
    ):
        r = put(**diverged)
        assert r.status_code == 409, diverged
        assert c.Problem.model_validate_json(r.content).code == "audit_diverged"
    # no previous_seq, or one never reported: accepted
    assert put(seq=30, hash=h[4]).status_code == 200
    assert put(seq=40, hash=h[5], previous_seq=35, at_previous_seq=h[6]).status_code == 200
    assert [x.seq for x in server.store.audit_heads("C1")] == [10, 20, 30, 40]
    assert put(seq=41, hash="XYZ").status_code == 400


# --------------------------------------------------------------------------- seeding, CLI


def test_seed_matches_the_counter_demo(store: CentralStore) -> None:
    again = central_seed.seed_demo(store, NOW)
    assert (again.plans_added, again.customers_added, again.jobs_added) == (0, 0, 0)
    assert store.count("customers") == demo.CUSTOMERS
    for i in (0, 9, 24, 40, 999):
        d = demo.demo_customer(i)
        rec = store.customer(d["customer_no"])
        assert rec is not None
        assert (rec.name, rec.meter_no, rec.meter_kind, rec.tariff_plan, rec.office_code) == (
            d["name"],
            d["meter_no"],
            d["meter_kind"],
            d["tariff_plan"],
            demo.OFFICE,
        )
        assert (rec.alarm1, rec.purchase_count, rec.status) == (2000, 0, "active")
        assert [a.model_dump() for a in rec.arrears] == demo.demo_arrears(i)
    added = central_seed.seed_synthetic(store, 2_000)
    assert added == 2_000 and central_seed.seed_synthetic(store, 2_000) == 0
    store.register(c.RegisterRequest(counter_id="C1", office_code=demo.OFFICE), token="t" * 40)
    counter = store.counter("C1")
    assert counter is not None
    page = store.customers_page(counter, after=0, limit=c.MAX_PAGE)
    assert len(page.items) == 3_000 and not page.has_more
    syn = store.customer(str(central_seed.FIRST_SYNTHETIC_CUSTOMER))
    assert syn is not None and syn.arrears[0].ref.startswith("SYN-A-")


def test_cli_serve(tmp_path: Path) -> None:
    env = child_env(CARDVEND_HOME=str(tmp_path / "home"), CARDVEND_LANG="en")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "central",
            "serve",
            "--port",
            "0",
            "--db",
            str(tmp_path / "cli.db"),
            "--enrolment-key",
            "k-123456",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("central listening on http://127.0.0.1:"), proc.stderr
        url = line.rsplit(" ", 1)[1]
        token = register(url, "CLI1", **{"X-Enrolment-Key": "k-123456"})
        customers, _ = Api(url, token).pull("/customers", limit=5000)
        assert len(customers) == demo.CUSTOMERS  # seeded with the demo data
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_serving_process_freezes_its_start_up_heap() -> None:
    """settle_heap (called by ``central serve`` and each worker) takes start-up's objects out
    of the collector's view and collects the young generation less often; a child process, so
    this test process's collector stays as it is."""
    probe = (
        "import gc, json\n"
        "from sync.central.server import GC_YOUNG_THRESHOLD, settle_heap\n"
        "before = (gc.get_freeze_count(), gc.get_threshold()[0])\n"
        "settle_heap()\n"
        "print(json.dumps([before, [gc.get_freeze_count(), gc.get_threshold()[0]],"
        " GC_YOUNG_THRESHOLD]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    before, after, young = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == [0, 700]
    assert after[0] > 10_000  # the modules and their objects, frozen
    assert after[1] == young > 700
