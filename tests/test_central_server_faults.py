"""The reference central server under bad input and faults, over real HTTP on a free loopback port
(``requests``), on SQLite and, where a server is reachable, on PostgreSQL (a schema per test): input
it must refuse with a 400 (never a 500) or store as sent, concurrent writers, the faults it injects
when asked, and a stop and restart on the same port."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests

from app.services import demo
from sync import contract as c
from sync.central import CentralServer
from tests.rigs.central import FIRST
from tests.rigs.central import REMOTE
from tests.rigs.central import Api
from tests.rigs.central import event
from tests.rigs.central import register
from tests.rigs.central import sale

# --------------------------------------------------------------------------- fixtures
# the fixtures store, server and api: tests/rigs/central.py


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_400_never_500(api: Api, server: CentralServer) -> None:
    url = api.base + "/sales"
    key = {"Idempotency-Key": "bad-json-1", "Content-Type": "application/json"}
    r = api.http.post(url, data=b"{not json", headers=key, timeout=5)
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    r = api.http.post(url, data=b"", headers=key, timeout=5)
    assert r.status_code == 400
    r = api.post("/sales", {**sale(), "amount": "100"})  # strict: no strings for numbers
    assert r.status_code == 400 and "amount" in r.json()["message"]
    r = api.post("/sales", {**sale(), "surprise": 1})
    assert r.status_code == 400 and "surprise" in r.json()["message"]
    r = api.post("/sales", {**sale(), "created_at": "2026-03-01T09:00:00"})  # no offset
    assert r.status_code == 400
    r = api.post("/sales/batch", {"items": []})
    assert r.status_code == 400
    r = api.post("/sales/batch", {"items": [sale() for _ in range(c.MAX_BATCH + 1)]})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    r = api.put("/counters/me/audit-head", [1, 2])
    assert r.status_code == 400
    r = api.http.post(
        api.base + "/counters/register",
        data="\ufeff{}".encode(),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert r.status_code == 400
    assert api.get("/no/such/path").status_code == 404
    assert requests.get(server.url + "/elsewhere", timeout=5).status_code == 404
    r = api.http.delete(url, timeout=5)
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    r = requests.get(server.url + "/api/v1/health", headers={"Content-Length": "x"}, timeout=5)
    assert r.status_code == 400
    assert server.store.count("sales") == 0
    assert api.get("/health").status_code == 200  # still serving


def test_odd_but_valid_text_is_stored(api: Api, server: CentralServer) -> None:
    """NUL characters, which PostgreSQL refuses in text columns, and numbers written as 10.0."""
    r = requests.post(
        api.base + "/counters/register",
        json={"counter_id": "NUL2", "office_code": "DEMO", "name": "a\x00b"},
        timeout=5,
    )
    assert r.status_code == 200
    # a ref with a NUL cannot be held: refused, and no query sent to PostgreSQL with it
    nul_ref = sale(settled_refs=["x\x00y"])
    r = api.post("/sales", nul_ref)
    assert r.status_code == 422 and r.json()["code"] == "unknown_ref", r.text
    body = sale(card_serial="AB\x00CD", settled_refs=[f"DEMO-A-{FIRST}"])
    raw = json.dumps(body).replace('"amount": 10000', '"amount": 10000.0').encode()
    r = api.http.post(
        api.base + "/sales",
        data=raw,
        headers={"Idempotency-Key": "nul-key-1", "Content-Type": "application/json"},
        timeout=5,
    )
    assert r.status_code == 201, r.text
    held = server.store.sale(body["id"])
    assert held is not None and held.sale.card_serial == "AB\x00CD" and held.sale.amount == 10_000
    customer = server.store.customer(FIRST)
    assert customer is not None and customer.card_serial == "ABCD"
    assert [a.ref for a in customer.arrears] == [f"DEMO-F-{FIRST}"]
    sms = event(
        "sms",
        customer_no=FIRST,
        template="low_balance",
        params={"text": "\x00"},
        created_at="2026-03-01T18:00:00+08:00",
    )
    assert api.post("/sms", sms).status_code == 201


def test_concurrent_writers_get_distinct_ordered_seqs(server: CentralServer) -> None:
    tokens = {f"T{i}": register(server.url, f"T{i}") for i in range(4)}
    errors: list[str] = []

    def counter(counter_id: str) -> None:
        a = Api(server.url, tokens[counter_id])
        for n in range(10):
            body = {"items": [sale(counter_id=counter_id), sale(REMOTE, counter_id=counter_id)]}
            r = a.post("/sales/batch", body, key=f"{counter_id}-batch-{n}")
            if r.status_code != 200:
                errors.append(r.text)
            if n % 3 == 0:
                a.post(
                    "/sales",
                    sale(FIRST, counter_id=counter_id, purchase_count=n // 3 + 1),
                    key=f"{counter_id}-one-{n}",
                )

    threads = [threading.Thread(target=counter, args=(cid,)) for cid in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    seqs: list[int] = []
    for cid, token in tokens.items():
        items, _ = Api(server.url, token).pull("/counters/me/sales", limit=7)
        assert len(items) == 24
        assert all(s["sale"]["counter_id"] == cid for s in items)
        seqs += [s["seq"] for s in items]
    assert sorted(seqs) == list(range(1, 97))
    customers, _ = Api(server.url, tokens["T0"]).pull("/customers", limit=5000)
    assert len({x["seq"] for x in customers}) == len(customers) == demo.CUSTOMERS
    first = next(x for x in customers if x["customer_no"] == FIRST)
    assert first["purchase_count"] == 4  # 1..4 from whichever counter came first


# --------------------------------------------------------------------------- faults


def test_faults(api: Api, server: CentralServer) -> None:
    faults = server.url + "/_test/faults"
    # 503 with Retry-After, nothing done
    assert requests.post(faults, json={"error_5xx": 1, "retry_after": 7}, timeout=5).ok
    body = sale()
    r = api.post("/sales", body, key="fault-key-1")
    assert r.status_code == 503 and r.headers["Retry-After"] == "7"
    assert server.store.sale(body["id"]) is None
    assert api.post("/sales", body, key="fault-key-1").status_code == 201  # only the next one

    # dropped before: the connection closes, nothing done
    server.faults.arm(drop_before=1)
    body = sale()
    with pytest.raises(requests.ConnectionError):
        api.post("/sales", body, key="fault-key-2")
    assert server.store.sale(body["id"]) is None

    # dropped after the commit: no answer, but it is there; the retry replays
    server.faults.arm(drop_after_commit=1, path="/api/v1/sales")
    assert api.get("/tariffs").status_code == 200  # another path is not touched
    body = sale()
    with pytest.raises(requests.ConnectionError):
        api.post("/sales", body, key="fault-key-3")
    assert server.store.sale(body["id"]) is not None
    r = api.post("/sales", body, key="fault-key-3")
    assert r.status_code == 201 and r.headers.get("Idempotent-Replayed") == "true"

    # malformed: done, then 200 with a body that is not JSON, then JSON of the wrong shape
    server.faults.arm(malformed=2)
    body = sale()
    r = api.post("/sales", body, key="fault-key-4")
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    assert server.store.sale(body["id"]) is not None
    r = api.get("/customers", limit=1)
    assert r.status_code == 200 and "items" not in r.json()
    assert api.get("/customers", limit=1).json()["items"]

    # latency while armed, until cleared
    requests.post(faults, json={"latency_ms": 300, "path": "/api/v1/health"}, timeout=5)
    start = time.monotonic()
    assert api.get("/health").status_code == 200
    assert time.monotonic() - start >= 0.3
    state = requests.get(faults, timeout=5).json()
    assert state["injected"] == {
        "drop_before": 1,
        "error_5xx": 1,
        "drop_after_commit": 1,
        "malformed": 2,
    }
    assert requests.delete(faults, timeout=5).json()["rules"] == []
    start = time.monotonic()
    api.get("/health")
    assert time.monotonic() - start < 0.3
    bad = requests.post(faults, json={"error_5xx": -1}, timeout=5)
    assert bad.status_code == 400


def test_stop_and_restart_on_the_same_port(api: Api, server: CentralServer) -> None:
    url = server.url
    assert api.get("/health").status_code == 200  # a keep-alive connection is open now
    server.stop()
    with pytest.raises(requests.ConnectionError):
        api.get("/health")
    server.start()
    assert server.url == url
    assert api.get("/tariffs").status_code == 200  # the token is still known


def test_faults_are_off_unless_asked(tmp_path: Path) -> None:
    with CentralServer(str(tmp_path / "nofaults.db")) as srv:
        r = requests.post(srv.url + "/_test/faults", json={"error_5xx": 5}, timeout=5)
        assert r.status_code == 404
        with pytest.raises(RuntimeError):
            srv.faults.arm(error_5xx=1)
        assert requests.get(srv.url + "/api/v1/health", timeout=5).status_code == 200
