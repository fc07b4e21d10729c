"""The central system's trust boundary, over real HTTP (the reference server on a free loopback
port) on SQLite and PostgreSQL: a counter acts only in its own lane, records hold together,
registration cannot take a counter over, and who asks is known before a body is read.

Office DEMO holds the demo customers; office NORTH holds two customers of its own.  Counters C1
and C2 are of DEMO, N1 of NORTH.  The store's clock is fixed at NOW (what "the future" means).
"""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import text

from app.clock import FixedClock
from app.persistence.db import Database
from app.services import demo
from app.services import receipts
from sync import contract as c
from sync.central import CentralServer
from sync.central import CentralStore
from sync.central import seed as central_seed
from sync.client import CentralClient
from sync.errors import CounterIdTaken
from sync.errors import RegistrationRefused
from sync.service import SyncService
from tests.rigs.central import CARD
from tests.rigs.central import FIRST
from tests.rigs.central import REMOTE
from tests.rigs.central import Api
from tests.rigs.central import event
from tests.rigs.central import register
from tests.rigs.central import sale
from tests.rigs.central import seeded_store
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import Counter

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
NORTH_FIRST = central_seed.FIRST_SYNTHETIC_CUSTOMER + 500_000
NORTH = f"{NORTH_FIRST:012d}"  # a card customer of office NORTH, owes SYN-A-<no>
LATER = "2026-03-01T17:05:00+08:00"  # five minutes after NOW


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CentralStore]:
    """A seeded central store on each database, its clock fixed at NOW."""
    with seeded_store(request.param, tmp_path, clock=FixedClock(NOW)) as s:
        central_seed.seed_synthetic(s, 2, NORTH_FIRST, office_code="NORTH")
        yield s


@pytest.fixture
def server(store: CentralStore) -> Iterator[CentralServer]:
    with CentralServer(store.url, store=store) as srv:
        yield srv


@pytest.fixture
def c1(server: CentralServer) -> Api:
    return Api(server.url, register(server.url, "C1"))


@pytest.fixture
def c2(server: CentralServer) -> Api:
    return Api(server.url, register(server.url, "C2"))


@pytest.fixture
def n1(server: CentralServer) -> Api:
    return Api(server.url, register(server.url, "N1", office="NORTH"))


def refused(r: requests.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    problem = c.Problem.model_validate_json(r.content)
    assert problem.code == code, problem


def batch_codes(r: requests.Response) -> list[tuple[str, str | None]]:
    assert r.status_code == 200, r.text
    return [(x.status, x.code) for x in c.BatchResult.model_validate_json(r.content).results]


def codes_refused(store: CentralStore, counter_id: str) -> list[tuple[str, str]]:
    return [(r["resource"], r["code"]) for r in store.refusals(counter_id)]


def reversal(sale_id: str, **over: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sale_id": sale_id,
        "amount": 10_000,
        "operator_id": "t01",
        "approver_id": "s01",
        "created_at": LATER,
    }
    fields.update(over)
    counter_id = fields.pop("counter_id", "C1")
    return event("reversals", counter_id=counter_id, **fields)


# --------------------------------------------------------------------------- a counter's lane


def test_sales_only_for_customers_of_the_counters_office(
    n1: Api, c1: Api, store: CentralStore
) -> None:
    for body in (
        sale(FIRST, counter_id="N1", office_code="NORTH"),  # a DEMO customer
        sale(REMOTE, counter_id="N1", office_code="NORTH", kind="remote"),
        sale(NORTH, counter_id="N1", office_code="DEMO"),  # names another office
    ):
        refused(n1.post("/sales", body), 403, "other_office")
    both = n1.post(
        "/sales/batch",
        {
            "items": [
                sale(FIRST, counter_id="N1", office_code="NORTH", purchase_count=1),
                sale(NORTH, counter_id="N1", office_code="NORTH", purchase_count=1),
            ]
        },
    )
    assert batch_codes(both) == [("rejected", "other_office"), ("created", None)]
    refused(c1.post("/sales", sale(NORTH)), 403, "other_office")
    # nothing of the refused sales reached the archive
    assert store.count("sales") == 1 and store.count("remote_status") == 0
    first = store.customer(FIRST)
    assert first is not None and first.purchase_count == 0 and len(first.arrears) == 2
    assert codes_refused(store, "N1") == [("sales", "other_office")] * 4
    assert codes_refused(store, "C1") == [("sales", "other_office")]


def test_bindings_replacements_reports_sms_and_jobs_only_for_the_counters_office(
    n1: Api, c1: Api, store: CentralStore
) -> None:
    binding = event(
        "card-bindings", "N1", customer_no=FIRST, serial="EVIL", operator_id="n01",
        created_at=LATER,
    )  # fmt: skip
    replacement = event(
        "replacements", "N1", customer_no=CARD, old_serial=None, new_serial="EVIL", fee=0,
        operator_id="n01", created_at=LATER,
    )  # fmt: skip
    report = event(
        "control-reports", "N1", customer_no=FIRST, meter_remaining=-10**6,
        meter_purchase_count=1, seen_at=LATER,
    )  # fmt: skip
    sms = event("sms", "N1", customer_no=FIRST, template="low_balance", params={}, created_at=LATER)
    for resource, body in (
        ("card-bindings", binding),
        ("replacements", replacement),
        ("control-reports", report),
        ("sms", sms),
    ):
        refused(n1.post(f"/{resource}", body), 403, "other_office")
        assert batch_codes(n1.post(f"/{resource}/batch", {"items": [body]})) == [
            ("rejected", "other_office")
        ]
    job = c1.pull("/jobs")[0][0]
    result = event(
        "job-results", "N1", job_id=job["id"], outcome="failed", technician_id="n02",
        done_at=LATER,
    )  # fmt: skip
    refused(n1.post("/job-results", result), 403, "other_office")
    assert store.job(job["id"]) is not None and store.job(job["id"]).status == "open"  # type: ignore[union-attr]
    for no in (FIRST, CARD):
        held = store.customer(no)
        assert held is not None and held.card_serial is None
    assert c1.get(f"/customers/{FIRST}/control-status").json()["state"] == "unknown"
    assert store.count("events") == 0
    # the same records from a counter of the customers' office are applied
    own = {**binding, "id": str(uuid.uuid4()), "counter_id": "C1"}
    assert c1.post("/card-bindings", own).status_code == 201
    held = store.customer(FIRST)
    assert held is not None and held.card_serial == "EVIL"


def test_reversals_and_rewrites_only_of_the_counters_own_sales(
    c1: Api, c2: Api, store: CentralStore
) -> None:
    mine = sale()
    assert c1.post("/sales", mine).status_code == 201
    refused(c2.post("/reversals", reversal(mine["id"], counter_id="C2")), 403, "not_own_sale")
    rewrite = event(
        "rewrites", "C2", sale_id=mine["id"], rewrite_no=1, operator_id="t02", created_at=LATER
    )
    refused(c2.post("/rewrites", rewrite), 403, "not_own_sale")
    assert batch_codes(c2.post("/reversals/batch", {"items": [reversal(mine["id"], counter_id="C2")]})) == [
        ("rejected", "not_own_sale")
    ]  # fmt: skip
    held = store.sale(mine["id"])
    assert held is not None and not held.reversed
    # a reversal C2 sent before C1's sale arrived does not reverse it either
    early = sale()
    assert c2.post("/reversals", reversal(early["id"], counter_id="C2")).status_code == 201
    assert c1.post("/sales", early).status_code == 201
    held = store.sale(early["id"])
    assert held is not None and not held.reversed
    # the counter that made the sale reverses and rewrites it
    assert c1.post("/reversals", reversal(mine["id"])).status_code == 201
    assert c1.post("/rewrites", {**rewrite, "id": str(uuid.uuid4()), "counter_id": "C1"}).status_code == 201  # fmt: skip
    held = store.sale(mine["id"])
    assert held is not None and held.reversed
    assert codes_refused(store, "C2") == [
        ("reversals", "not_own_sale"),
        ("rewrites", "not_own_sale"),
        ("reversals", "not_own_sale"),
    ]


def test_a_reversal_is_approved_by_someone_else_and_returns_the_sales_amount(
    c1: Api, store: CentralStore
) -> None:
    mine = sale()
    assert c1.post("/sales", mine).status_code == 201
    refused(
        c1.post("/reversals", reversal(mine["id"], approver_id="t01")), 422, "approver_is_operator"
    )
    refused(c1.post("/reversals", reversal(mine["id"], amount=1)), 422, "does_not_add_up")
    held = store.sale(mine["id"])
    assert held is not None and not held.reversed
    assert c1.post("/reversals", reversal(mine["id"])).status_code == 201


def test_a_sale_must_add_up(c1: Api, store: CentralStore) -> None:
    refused(c1.post("/sales", sale(amount=10_001)), 422, "does_not_add_up")
    refused(c1.post("/sales", sale(amount=13_500, arrears=3_000, fees=500, cash_received=20_000, credit=9_999)), 422, "does_not_add_up")  # fmt: skip
    refused(c1.post("/sales", sale(cash_received=9_999)), 422, "cash_short")
    results = batch_codes(
        c1.post(
            "/sales/batch",
            {
                "items": [
                    sale(credit=1),
                    sale(cash_received=None, purchase_count=1),
                    sale(CARD, cash_received=10_000, purchase_count=1),
                ]
            },
        )
    )
    assert results == [("rejected", "does_not_add_up"), ("created", None), ("created", None)]
    assert store.count("sales") == 2
    assert codes_refused(store, "C1") == [
        ("sales", "does_not_add_up"),
        ("sales", "does_not_add_up"),
        ("sales", "cash_short"),
        ("sales", "does_not_add_up"),
    ]


def test_settled_refs_exist_and_belong_to_the_customer(c1: Api, store: CentralStore) -> None:
    owing = dict(amount=13_500, arrears=3_000, fees=500, cash_received=13_500)
    a_ref, f_ref = f"DEMO-A-{FIRST}", f"DEMO-F-{FIRST}"
    refused(
        c1.post("/sales", sale(**owing, settled_refs=[a_ref, "NO-SUCH-REF"])), 422, "unknown_ref"
    )
    # another customer's item, and another office's
    refused(c1.post("/sales", sale(CARD, **owing, settled_refs=[a_ref])), 422, "unknown_ref")
    refused(c1.post("/sales", sale(**owing, settled_refs=[f"SYN-A-{NORTH}"])), 422, "unknown_ref")
    assert store.arrears_settled_by(a_ref) is None
    paid = sale(**owing, settled_refs=[a_ref, f_ref])
    assert c1.post("/sales", paid).status_code == 201
    assert store.arrears_settled_by(a_ref) == paid["id"]
    # a ref settled already (paid twice offline) still exists: accepted, settles nothing
    twice = sale(**owing, settled_refs=[a_ref], purchase_count=2)
    assert c1.post("/sales", twice).status_code == 201
    assert store.arrears_settled_by(a_ref) == paid["id"]


def test_no_record_time_in_the_future_beyond_the_skew(
    c1: Api, store: CentralStore, server: CentralServer
) -> None:
    at = NOW + dt.timedelta(minutes=10)
    assert c1.post("/sales", sale(created_at=at.isoformat(), purchase_count=1)).status_code == 201
    too_late = (at + dt.timedelta(seconds=1)).isoformat()
    refused(c1.post("/sales", sale(created_at=too_late)), 422, "future_created_at")
    report = event(
        "control-reports", "C1", customer_no=FIRST, meter_remaining=100,
        meter_purchase_count=1, seen_at=too_late,
    )  # fmt: skip
    refused(c1.post("/control-reports", report), 422, "future_created_at")
    mine = sale(purchase_count=2)
    assert c1.post("/sales", mine).status_code == 201
    refused(
        c1.post("/reversals", reversal(mine["id"], created_at=too_late)), 422, "future_created_at"
    )
    # the store's clock decides: an hour later the same report is in the past
    assert isinstance(store.clock, FixedClock)
    store.clock.advance(hours=1)
    assert c1.post("/control-reports", report).status_code == 201
    # the allowance is an option
    store.clock_skew = dt.timedelta(0)
    ahead = (store.now() + dt.timedelta(seconds=1)).isoformat()
    refused(c1.post("/sales", sale(created_at=ahead)), 422, "future_created_at")


def test_a_purchase_count_that_does_not_follow_is_flagged_and_moves_nothing(
    c1: Api, store: CentralStore
) -> None:
    first = sale(purchase_count=1, card_serial="CARD-1")
    assert c1.post("/sales", first).json()["review"] is None
    for count in (1, 3, 2**63 - 1):
        r = c1.post("/sales", sale(purchase_count=count, card_serial=f"X{count}"))
        assert r.status_code == 201 and r.json()["review"] == "purchase_count_gap"
    held = store.customer(FIRST)
    assert held is not None and (held.purchase_count, held.card_serial) == (1, "CARD-1")
    # the missing purchase arrives: the archive follows it and the flagged 3 behind it
    second = sale(purchase_count=2, card_serial="CARD-1")
    assert c1.post("/sales", second).json()["review"] is None
    held = store.customer(FIRST)
    assert held is not None and (held.purchase_count, held.card_serial) == (3, "X3")
    # a reversal of the latest purchase takes the count back, as on the counter
    sale3 = next(s for s in c1.pull("/counters/me/sales")[0] if s["sale"]["purchase_count"] == 3)
    assert c1.post("/reversals", reversal(sale3["sale"]["id"])).status_code == 201
    held = store.customer(FIRST)
    assert held is not None and held.purchase_count == 2
    # a reversal of a purchase whose count another purchase holds takes nothing back: of a
    # flagged one (the count was never its own), or of one sold again before the reversal came
    third = f"{demo.FIRST_CUSTOMER + 2:012d}"
    for customer_no, reversed_one in ((CARD, 1), (third, 0)):
        pair = [sale(customer_no, purchase_count=1, card_serial="C-1") for _ in range(2)]
        assert [c1.post("/sales", x).json()["review"] for x in pair] == [
            None,
            "purchase_count_gap",
        ]
        assert c1.post("/reversals", reversal(pair[reversed_one]["id"])).status_code == 201
        held = store.customer(customer_no)
        assert held is not None and held.purchase_count == 1
    # a card binding never moves the count
    binding = event("card-bindings", "C1", customer_no=FIRST, serial="NEW", operator_id="t01",
                    created_at=LATER)  # fmt: skip
    assert c1.post("/card-bindings", binding).status_code == 201
    held = store.customer(FIRST)
    assert held is not None and (held.purchase_count, held.card_serial) == (2, "NEW")


def test_pulls_control_status_and_receipts_answer_for_the_counters_office_only(
    c1: Api, n1: Api, store: CentralStore
) -> None:
    demo_customers, _ = c1.pull("/customers", limit=5000)
    assert len(demo_customers) == demo.CUSTOMERS
    assert {x["office_code"] for x in demo_customers} == {"DEMO"}
    north, cursor = n1.pull("/customers")
    assert [x["customer_no"] for x in north] == [NORTH, f"{NORTH_FIRST + 1:012d}"]
    assert north[0]["arrears"][0]["ref"] == f"SYN-A-{NORTH}"
    # a change of a DEMO customer is not in NORTH's delta
    store.add_arrears(FIRST, "NEW-DEMO-1", 100)
    assert n1.pull("/customers", after=cursor)[0] == []
    # control status of another office's customer: 404, as for an unknown one
    r = n1.get(f"/customers/{FIRST}/control-status")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert n1.get(f"/customers/{NORTH}/control-status").status_code == 200
    assert c1.get(f"/customers/{NORTH}/control-status").status_code == 404
    # a receipt of a DEMO sale is unknown to NORTH
    body = sale(purchase_count=1)
    assert c1.post("/sales", body).status_code == 201
    counter = store.counter("C1")
    assert counter is not None
    r = n1.get(f"/receipts/{body['id']}/check", code="AAAAAAAA")
    assert r.status_code == 200 and r.json() == {
        "sale_id": body["id"],
        "valid": False,
        "known": False,
        "amount": None,
    }
    assert c1.get(f"/receipts/{body['id']}/check", code="AAAAAAAA").json()["known"] is True
    # jobs by office, remote purchases and held sales by counter
    assert n1.pull("/jobs")[0] == [] and len(c1.pull("/jobs")[0]) == 3
    remote = sale(REMOTE, kind="remote")
    assert c1.post("/sales", remote).status_code == 201
    assert n1.pull("/remote-purchases")[0] == [] and n1.pull("/counters/me/sales")[0] == []
    assert [s["sale_id"] for s in c1.pull("/remote-purchases")[0]] == [remote["id"]]


def test_every_refusal_is_audited_centrally(c1: Api, n1: Api, store: CentralStore) -> None:
    bad = sale(counter_id="C1", amount=1)
    other = sale(counter_id="C2")
    r = c1.post("/sales/batch", {"items": [bad, other]})
    assert batch_codes(r) == [("rejected", "does_not_add_up"), ("rejected", "counter_mismatch")]
    messages = {x.id: x.message for x in c.BatchResult.model_validate_json(r.content).results}
    rows = store.refusals("C1")
    assert [(x["resource"], x["record_id"], x["code"]) for x in rows] == [
        ("sales", bad["id"], "does_not_add_up"),
        ("sales", other["id"], "counter_mismatch"),
    ]
    assert [x["message"] for x in rows] == [messages[bad["id"]], messages[other["id"]]]
    assert all(x["at"] == NOW for x in rows)
    # a replayed Idempotency-Key answers the same without auditing twice
    again = c1.post("/sales/batch", {"items": [bad, other]}, key="audit-key-1")
    replay = c1.post("/sales/batch", {"items": [bad, other]}, key="audit-key-1")
    assert again.content == replay.content and len(store.refusals("C1")) == 4


# --------------------------------------------------------------------------- registration


def test_the_enrolment_key_alone_cannot_take_a_counter_over(tmp_path: Path) -> None:
    with CentralServer(str(tmp_path / "c.db"), enrolment_key="office-key") as srv:
        url = srv.url
        real = CentralClient(url).register(c.RegisterRequest(counter_id="C01", office_code="DEMO"), "office-key")  # fmt: skip
        with pytest.raises(CounterIdTaken):
            CentralClient(url).register(c.RegisterRequest(counter_id="C01", office_code="DEMO"), "office-key")  # fmt: skip
        with pytest.raises(RegistrationRefused):  # no credential at all: 401, body unread
            CentralClient(url).register(c.RegisterRequest(counter_id="C01", office_code="DEMO"), None)  # fmt: skip
        raw = requests.post(
            url + "/api/v1/counters/register",
            json={"counter_id": "C01", "office_code": "DEMO"},
            headers={"X-Enrolment-Key": "office-key"},
            timeout=5,
        )
        refused(raw, 409, "counter_id_taken")
        assert "receipt_key" not in raw.text and real.receipt_key not in raw.text
        # the real counter's token still works; another counter's token does not take it either
        assert Api(url, real.token).get("/tariffs").status_code == 200
        other = CentralClient(url).register(c.RegisterRequest(counter_id="C02", office_code="DEMO"), "office-key")  # fmt: skip
        with pytest.raises(CounterIdTaken):
            CentralClient(url, other.token).register(c.RegisterRequest(counter_id="C01", office_code="DEMO"), None)  # fmt: skip
        assert Api(url, real.token).get("/tariffs").status_code == 200
        assert [r["code"] for r in srv.store.refusals("C01")] == ["counter_id_taken"] * 3
        # the holder of the token registers again: a new token, the same receipt key
        again = CentralClient(url, real.token).register(c.RegisterRequest(counter_id="C01", office_code="DEMO", name="new name"), None)  # fmt: skip
        assert again.token != real.token and again.receipt_key == real.receipt_key
        assert Api(url, real.token).get("/tariffs").status_code == 401
        # ...but it stays in its office
        with pytest.raises(RegistrationRefused, match="office"):
            CentralClient(url, again.token).register(c.RegisterRequest(counter_id="C01", office_code="NORTH"), None)  # fmt: skip
        assert srv.store.enrolments("C01") == [("key", "DEMO"), ("token", "DEMO")]


def test_an_enrolment_code_enrols_a_counter_again_once(
    store: CentralStore, server: CentralServer
) -> None:
    url = server.url
    req = c.RegisterRequest(counter_id="C1", office_code="DEMO")
    first = CentralClient(url).register(req, None)
    old_key = bytes.fromhex(first.receipt_key)
    api = Api(url, first.token)
    body = sale(purchase_count=1)
    assert api.post("/sales", body).status_code == 201
    old_code = receipts.verification_code(old_key, body["id"], FIRST, 10_000, 10_000)
    head = {"seq": 50, "hash": "a" * 64, "at": LATER}
    assert api.put("/counters/me/audit-head", head).status_code == 200

    code, expires = store.issue_enrolment_code("C1", "DEMO", hours=2)
    assert expires == NOW + dt.timedelta(hours=2)
    with pytest.raises(RegistrationRefused):  # issued for C1, not C2
        CentralClient(url).register(c.RegisterRequest(counter_id="C2", office_code="NORTH"), None, enrolment_code=code)  # fmt: skip
    with pytest.raises(RegistrationRefused, match="office"):  # issued for DEMO
        CentralClient(url).register(c.RegisterRequest(counter_id="C1", office_code="NORTH"), None, enrolment_code=code)  # fmt: skip
    again = CentralClient(url).register(req, None, enrolment_code=code.lower().replace("-", ""))
    assert again.receipt_key != first.receipt_key  # a new key for the new holder
    assert api.get("/tariffs").status_code == 401  # the old token is gone
    new = Api(url, again.token)
    # receipts made before still check, those of the new key too
    assert new.get(f"/receipts/{body['id']}/check", code=old_code).json()["valid"] is True
    later = sale(purchase_count=2)
    assert new.post("/sales", later).status_code == 201
    new_code = receipts.verification_code(bytes.fromhex(again.receipt_key), later["id"], FIRST, 10_000, 10_000)  # fmt: skip
    assert new.get(f"/receipts/{later['id']}/check", code=new_code).json()["valid"] is True
    # the reinstalled counter starts an audit history of its own
    assert new.put("/counters/me/audit-head", {**head, "seq": 3}).status_code == 200
    assert [h.seq for h in store.audit_heads("C1")] == [3]
    # used once
    with pytest.raises(RegistrationRefused):
        CentralClient(url).register(req, None, enrolment_code=code)
    # it expires; issuing a new one withdraws the unused one; it moves a counter's office
    late, _ = store.issue_enrolment_code("C1", "DEMO", hours=1)
    with pytest.raises(ValueError, match="no office NORTH"):  # the station must know it
        store.issue_enrolment_code("C1", "NORTH", hours=1)
    store.add_office("NORTH", "North office", "浙江", "湖州")
    moved, _ = store.issue_enrolment_code("C1", "NORTH", hours=1)
    with pytest.raises(RegistrationRefused):
        CentralClient(url).register(req, None, enrolment_code=late)
    assert isinstance(store.clock, FixedClock)
    store.clock.advance(minutes=61)
    with pytest.raises(RegistrationRefused):
        CentralClient(url).register(c.RegisterRequest(counter_id="C1", office_code="NORTH"), None, enrolment_code=moved)  # fmt: skip
    store.clock.advance(minutes=-61)
    north = CentralClient(url).register(c.RegisterRequest(counter_id="C1", office_code="NORTH"), None, enrolment_code=moved)  # fmt: skip
    assert north.office_code == "NORTH"
    assert Api(url, north.token).pull("/jobs")[0] == []
    # a code registers a new counter id too
    fresh, _ = store.issue_enrolment_code("C9", "DEMO")
    assert CentralClient(url).register(c.RegisterRequest(counter_id="C9", office_code="DEMO"), None, enrolment_code=fresh).counter_id == "C9"  # fmt: skip
    assert store.enrolments("C1") == [("open", "DEMO"), ("code", "DEMO"), ("code", "NORTH")]
    # only the hash of a code is kept
    with store.engine.connect() as conn:
        kept = conn.execute(text("SELECT code_hash FROM central_enrolment_codes")).scalars().all()
    assert code not in kept and all(len(h) == 64 for h in kept)


def test_a_registration_whose_answer_was_lost_is_answered_again(
    server: CentralServer, store: CentralStore
) -> None:
    url = server.url + "/api/v1/counters/register"
    body = {"counter_id": "C7", "office_code": "DEMO"}
    headers = {"Idempotency-Key": "lost-answer-0001"}
    first = requests.post(url, json=body, headers=headers, timeout=5)
    assert first.status_code == 200
    retry = requests.post(url, json=body, headers=headers, timeout=5)
    assert retry.status_code == 200
    assert retry.json()["receipt_key"] == first.json()["receipt_key"]
    assert Api(server.url, retry.json()["token"]).get("/tariffs").status_code == 200
    # another key is someone else; the window closes
    other = requests.post(url, json=body, headers={"Idempotency-Key": "someone-else-1"}, timeout=5)
    refused(other, 409, "counter_id_taken")
    assert isinstance(store.clock, FixedClock)
    store.clock.advance(minutes=16)
    refused(requests.post(url, json=body, headers=headers, timeout=5), 409, "counter_id_taken")


# --------------------------------------------------------------------------- HTTP


def _raw(server: CentralServer, head: str, body: bytes = b"", wait: float = 5.0) -> bytes:
    """Send a request by hand and read the answer (the connection is closed by the server or
    after ``wait`` seconds of silence)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        chunks = []
        try:
            while True:
                part = sock.recv(65536)
                if not part:
                    break
                chunks.append(part)
        except TimeoutError:
            pass
    return b"".join(chunks)


def test_an_unauthenticated_post_is_refused_before_its_body_is_read(
    server: CentralServer, c1: Api
) -> None:
    # headers promise 100 MB that never come: a server that read the body would wait
    start = time.monotonic()
    answer = _raw(
        server,
        "POST /api/v1/sales/batch HTTP/1.1\nHost: x\nContent-Type: application/json\n"
        "Idempotency-Key: unauth-0001\nContent-Length: 100000000\n",
        wait=20,
    )
    assert time.monotonic() - start < 10
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401") and b"connection: close" in head.lower()
    assert c.Problem.model_validate_json(body).code == "unauthorized"
    # the same for a registration that brings no credential while an enrolment key is set
    server.store.enrolment_key = "office-key"
    answer = _raw(
        server,
        "POST /api/v1/counters/register HTTP/1.1\nHost: x\nContent-Type: application/json\n"
        "Content-Length: 100000000\n",
        wait=20,
    )
    assert answer.startswith(b"HTTP/1.1 401")
    # an authenticated one is then read, up to the limit
    token = c1.http.headers["Authorization"]
    answer = _raw(
        server,
        f"POST /api/v1/sales/batch HTTP/1.1\nHost: x\nAuthorization: {token}\n"
        f"Content-Type: application/json\nIdempotency-Key: too-big-0001\n"
        f"Content-Length: {c.MAX_BODY + 1}\n",
        wait=20,
    )
    assert answer.startswith(b"HTTP/1.1 413") and b"payload_too_large" in answer


def test_post_and_put_need_application_json(c1: Api, server: CentralServer) -> None:
    body = sale()
    form = c1.http.post(c1.base + "/sales", data={"x": "1"}, headers={"Idempotency-Key": "form-0001"}, timeout=5)  # fmt: skip
    refused(form, 415, "unsupported_media_type")
    for ctype in ("text/plain", "application/json; charset=latin-1", ""):
        r = c1.http.post(
            c1.base + "/sales",
            data=sale_json(body),
            headers={"Idempotency-Key": "ctype-0001", "Content-Type": ctype},
            timeout=5,
        )
        refused(r, 415, "unsupported_media_type")
    r = c1.http.put(c1.base + "/counters/me/audit-head", data=b"{}", headers={"Content-Type": "text/plain"}, timeout=5)  # fmt: skip
    refused(r, 415, "unsupported_media_type")
    r = requests.post(server.url + "/api/v1/counters/register", data=b'{"counter_id":"F1","office_code":"DEMO"}', headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5)  # fmt: skip
    refused(r, 415, "unsupported_media_type")
    assert server.store.count("sales") == 0 and server.store.counter("F1") is None
    ok = c1.http.post(
        c1.base + "/sales",
        data=sale_json(body),
        headers={
            "Idempotency-Key": "ctype-0002",
            "Content-Type": "Application/JSON; charset=UTF-8",
        },
        timeout=5,
    )
    assert ok.status_code == 201, ok.text


def sale_json(body: dict[str, Any]) -> bytes:
    return c.SaleRecord.model_validate(body).model_dump_json().encode()


def test_lists_and_bodies_are_bounded(c1: Api, server: CentralServer) -> None:
    r = c1.post("/sales", sale(settled_refs=[f"R{i}" for i in range(c.MAX_REFS + 1)]))
    assert r.status_code == 400 and "settled_refs" in r.json()["message"]
    sms = event("sms", "C1", customer_no=FIRST, template="low_balance", created_at=LATER)
    many = {f"k{i}": i for i in range(c.MAX_ENTRIES + 1)}
    assert c1.post("/sms", {**sms, "params": many}).status_code == 400
    job = event("job-results", "C1", job_id=str(uuid.uuid4()), outcome="done",
                technician_id="f01", done_at=LATER)  # fmt: skip
    assert c1.post("/job-results", {**job, "write_back": {"deep": {"a": 1}}}).status_code == 400
    assert c1.post("/job-results", {**job, "write_back": many}).status_code == 400
    assert c1.post("/sms", sms).status_code == 201
    # the largest legitimate batch fits: a thousand sales, each settling two refs
    items = [
        sale(settled_refs=[f"DEMO-A-{FIRST}", f"DEMO-F-{FIRST}"], card_serial="A1B2C3D4E5F60708")
        for _ in range(c.MAX_BATCH)
    ]
    raw = c.BATCHES["sales"].model_validate({"items": items}).model_dump_json().encode()
    assert len(raw) < c.MAX_BODY // 4
    r = c1.http.post(
        c1.base + "/sales/batch",
        data=raw,
        headers={"Idempotency-Key": "thousand-01", "Content-Type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 200 and len(r.json()["results"]) == c.MAX_BATCH


# --------------------------------------------------------------------------- the counter's side


def test_the_counter_client_takes_refusals_as_rejected_results(
    server: CentralServer, n1: Api
) -> None:
    client = CentralClient(server.url, n1.http.headers["Authorization"].removeprefix("Bearer "))
    item = c.SaleRecord.model_validate(sale(FIRST, counter_id="N1", office_code="NORTH"))
    one = client.post_one("sales", item)
    assert (one.status, one.code) == ("rejected", "other_office") and FIRST in one.message
    batch = client.post_batch("sales", [item])
    assert [(x.status, x.code) for x in batch.results] == [("rejected", "other_office")]
    # a batch larger than the body limit goes in halves
    nul_refs = ["\x00" * 40] * c.MAX_REFS
    big = [
        c.SaleRecord.model_validate(
            sale(NORTH, counter_id="N1", office_code="NORTH", settled_refs=nul_refs)
        )
        for _ in range(c.MAX_BATCH)
    ]
    results = client.post_batch("sales", big).results
    assert len(results) == c.MAX_BATCH and {x.code for x in results} == {"unknown_ref"}
    client.close()


def test_a_forged_purchase_count_does_not_block_the_real_card(
    demo_db: Database, tmp_path: Path, store: CentralStore, server: CentralServer
) -> None:
    """Counters of another office, and of the same office, post a card sale with purchase
    count 2**63-1 and another card serial for a customer; the customer's real card still
    sells at the real counter after the next pull."""
    clock = FixedClock(NOW)
    counter = Counter(demo_db, clock, tmp_path)
    token = register(server.url, "C01")
    service = SyncService(
        counter.db, CentralClient(server.url, token), clock, counter_id="C01", office_code="DEMO"
    )
    card = counter.open(CUSTOMER, amount=5000)
    service.run_round()
    held = store.customer(CUSTOMER)
    assert held is not None and held.purchase_count == 1 and held.card_serial
    real_serial = held.card_serial
    forged = {"purchase_count": 2**63 - 1, "card_serial": "FFFFFFFF"}
    n1 = Api(server.url, register(server.url, "N1", office="NORTH"))
    refused(n1.post("/sales", sale(CUSTOMER, counter_id="N1", office_code="NORTH", **forged)), 403, "other_office")  # fmt: skip
    binding = event("card-bindings", "N1", customer_no=CUSTOMER, serial="FFFFFFFF",
                    operator_id="x", created_at=LATER)  # fmt: skip
    refused(n1.post("/card-bindings", binding), 403, "other_office")
    c2 = Api(server.url, register(server.url, "C2"))
    r = c2.post("/sales", sale(CUSTOMER, counter_id="C2", **forged))
    assert r.status_code == 201 and r.json()["review"] == "purchase_count_gap"
    held = store.customer(CUSTOMER)
    assert held is not None and (held.purchase_count, held.card_serial) == (1, real_serial)
    service.run_round()  # the pull
    counter.to_meter(card)
    outcome = counter.sell(card, 3000)
    assert outcome.sale.purchase_count == 2
    service.run_round()
    held = store.customer(CUSTOMER)
    assert held is not None and held.purchase_count == 2
    service.client.close()


# --------------------------------------------------------------------------- account events


def account_event(
    customer_no: str, kind: str, counter_id: str = "C1", **over: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "customer_no": customer_no,
        "kind": kind,
        "operator_id": "t01",
        "created_at": LATER,
    }
    return event("account-events", counter_id, **{**fields, **over})


def test_a_meter_change_moves_the_archive_and_other_counters_pull_it(
    store: CentralStore, c1: Api, c2: Api
) -> None:
    _, cursor = c2.pull("/customers")
    r = c1.post("/account-events", account_event(CARD, "meter_change", new_meter_no="990000000001"))
    assert r.status_code == 201, r.text
    held = store.customer(CARD)
    assert held is not None and held.meter_no == "990000000001"
    changed, _ = c2.pull("/customers", after=cursor)
    assert [(x["customer_no"], x["meter_no"]) for x in changed] == [(CARD, "990000000001")]


def test_a_meter_change_to_a_meter_another_customer_holds_is_refused(
    store: CentralStore, c1: Api
) -> None:
    first = store.customer(FIRST)
    assert first is not None
    refused(
        c1.post(
            "/account-events", account_event(CARD, "meter_change", new_meter_no=first.meter_no)
        ),
        409,
        "meter_taken",
    )
    # two changes in one batch to the same new meter: the first takes it
    pair = [
        account_event(CARD, "meter_change", new_meter_no="990000000002"),
        account_event(FIRST, "meter_change", new_meter_no="990000000002"),
    ]
    r = c1.post("/account-events/batch", {"items": pair})
    assert batch_codes(r) == [("created", None), ("rejected", "meter_taken")]
    card, first = store.customer(CARD), store.customer(FIRST)
    assert card is not None and card.meter_no == "990000000002"
    assert first is not None and first.meter_no != "990000000002"


def test_close_pause_and_resume_set_the_status_and_a_later_sale_is_reviewed(
    store: CentralStore, c1: Api, n1: Api
) -> None:
    assert (
        c1.post("/account-events", account_event(CARD, "pause", reason="vacant")).status_code == 201
    )
    held = store.customer(CARD)
    assert held is not None and held.status == "paused"
    assert c1.post("/account-events", account_event(CARD, "resume")).status_code == 201
    held = store.customer(CARD)
    assert held is not None and held.status == "active"
    r = c1.post("/account-events", account_event(CARD, "close", refund=1500))
    assert r.status_code == 201, r.text
    held = store.customer(CARD)
    assert held is not None and held.status == "closed"
    # a sale an offline counter made after the close is taken and flagged, as before
    r = c1.post("/sales", sale(CARD))
    assert r.status_code == 201 and r.json()["review"] == "customer_closed"
    # another office's counter may not touch the customer
    refused(n1.post("/account-events", account_event(CARD, "pause", "N1")), 403, "other_office")
