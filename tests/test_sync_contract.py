"""The contract document: generated from the models, committed, self-consistent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from sync import contract as c
from sync.central.api import openapi_text


def test_committed_document_is_the_generated_one() -> None:
    assert c.OPENAPI_FILE.read_text(encoding="utf-8") == openapi_text(), (
        "sync/openapi.json is stale: run python -m sync.contract --write"
    )


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves_and_every_posted_record_has_a_batch() -> None:
    doc = json.loads(openapi_text())
    schemas = doc["components"]["schemas"]
    missing = {r for r in _refs(doc) if r.removeprefix("#/components/schemas/") not in schemas}
    assert not missing
    for resource in c.POSTED:
        path = f"{c.API_PREFIX}/{resource}"
        assert path in doc["paths"] and f"{path}/batch" in doc["paths"]
        post = doc["paths"][f"{path}/batch"]["post"]
        assert any(p["name"] == "Idempotency-Key" and p["required"] for p in post["parameters"])


SALE = {
    "id": "0b7c2f9e-6f0e-4d7a-9a51-3f0f3c9d2a11",
    "kind": "card",
    "state": "completed",
    "customer_no": "100000000002",
    "purchase_count": 2,
    "amount": 5000,
    "arrears": 0,
    "fees": 0,
    "credit": 5000,
    "energy_wh": 94_000,
    "tariff_plan": "RES-TOU",
    "tariff_version_no": 1,
    "operator_id": "t01",
    "counter_id": "C01",
    "office_code": "DEMO",
    "shift_id": "6c1a0a3e-7d2b-4c55-8b0e-2b8d2f3c4d5e",
    "created_at": "2026-03-01T09:00:00+00:00",
}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"amount": 12.5}, "money is integer fen"),
        ({"amount": 0}, "a sale carries money"),
        ({"created_at": "2026-03-01T09:00:00"}, "times carry their offset"),
        ({"customer_no": "12345"}, "customer numbers have 12 digits"),
        ({"id": "not-a-uuid"}, "ids are UUIDs"),
        ({"surprise": 1}, "unknown fields are refused"),
        ({"state": "pending"}, "only settled sales are posted"),
    ],
)
def test_sale_record_refuses_what_the_contract_does_not_allow(
    change: dict[str, Any], why: str
) -> None:
    c.SaleRecord.model_validate(SALE)  # the base record is valid
    with pytest.raises(ValidationError):
        c.SaleRecord.model_validate({**SALE, **change})


# --------------------------------------------------------------------------- client x server


def _examples() -> dict[str, c.Model]:
    """One valid record of every posted resource, for the demo archive."""
    now = "2026-03-01T09:00:00+00:00"
    ids = iter(f"00000000-0000-4000-8000-{i:012d}" for i in range(1, 100))
    return {
        "sales": c.SaleRecord.model_validate(
            {**SALE, "id": next(ids), "kind": "remote", "purchase_count": None,
             "customer_no": "100000000010", "tariff_plan": "RES-TIER"}
        ),
        "reversals": c.ReversalRecord(id=next(ids), sale_id=SALE["id"], amount=100,
                                      operator_id="t01", approver_id="s01", counter_id="C01",
                                      created_at=now),
        "rewrites": c.RewriteRecord(id=next(ids), sale_id=SALE["id"], rewrite_no=1,
                                    operator_id="t01", counter_id="C01", created_at=now),
        "replacements": c.ReplacementRecord(id=next(ids), customer_no="100000000003",
                                            old_serial="AA", new_serial="BB", fee=2000,
                                            operator_id="t01", counter_id="C01", created_at=now),
        "card-bindings": c.CardBindingRecord(id=next(ids), customer_no="100000000004",
                                             serial="CC", operator_id="t01", counter_id="C01",
                                             created_at=now),
        "control-reports": c.ControlReport(id=next(ids), customer_no="100000000002",
                                           meter_remaining=900, meter_purchase_count=1,
                                           seen_at=now, counter_id="C01"),
        "sms": c.SmsRequest(id=next(ids), customer_no="100000000002", template="low_balance",
                            params={"remaining_fen": 900}, counter_id="C01", created_at=now),
        "job-results": c.JobResultRecord(id=next(ids), job_id=next(ids), outcome="done",
                                         technician_id="f01", counter_id="C01", done_at=now),
        "account-events": c.AccountEventRecord(id=next(ids), customer_no="100000000011",
                                               kind="pause", reason="vacant house",
                                               operator_id="t01", counter_id="C01",
                                               created_at=now),
    }  # fmt: skip


def test_client_and_server_agree_on_every_resource(tmp_path: Any) -> None:
    import datetime as dt

    from sync.central.seed import seed_demo
    from sync.central.server import CentralServer
    from sync.client import CentralClient

    server = CentralServer(f"sqlite:///{tmp_path / 'central.db'}")
    seed_demo(server.store, dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    server.start()
    try:
        client = CentralClient(server.url)
        assert client.health().contract == c.CONTRACT_VERSION
        client.token = client.register(
            c.RegisterRequest(counter_id="C01", office_code="DEMO"), None
        ).token
        examples = _examples()
        assert set(examples) == set(c.POSTED)  # every posted resource has its example
        for resource, item in examples.items():
            assert client.post_one(resource, item).status == "created", resource
            again = client.post_batch(resource, [item]).results
            assert [r.status for r in again] == ["duplicate"], resource
        assert {t.plan_code for t in client.tariffs(0).items} == {"RES-FLAT", "RES-TOU", "RES-TIER"}
        page = client.customers(0, 300)
        assert len(page.items) == 300 and page.has_more and page.next_cursor == page.items[-1].seq
        assert client.customers(page.next_cursor, 5000).items[0].seq > page.next_cursor
        statuses = client.remote_statuses(0).items
        assert [(s.sale_id, s.status) for s in statuses] == [(examples["sales"].id, "issued")]
        assert len(client.jobs(0).items) == 3
        held = client.counter_sales(0).items
        assert [h.sale.id for h in held] == [examples["sales"].id]
        status = client.control_status("100000000002")
        assert (status.state, status.meter_remaining) == ("alarm2", 900)
        head = c.AuditHead(seq=5, hash="a" * 64, at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
        assert client.put_audit_head(head).seq == 5
        client.close()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customer_no", "１０００００００００02"),  # full-width
        ("customer_no", "١٠٠٠٠٠٠٠٠٠٠٢"),  # Arabic-Indic
        ("customer_no", "100000000002\n"),  # a trailing newline
        ("customer_no", "10000000000²"),  # a superscript
        ("operator_id", "t01\n"),
        ("operator_id", "ｔ01"),
        ("counter_id", "C01\n"),
        ("office_code", "ＤＥＭＯ"),
        ("id", "-" * 36),  # 36 characters of 0-9 a-f and dashes, but no UUID
        ("id", "0B7C2F9E-6F0E-4D7A-9A51-3F0F3C9D2A11"),  # ids are written in lower case
        ("shift_id", "6c1a0a3e7d2b4c558b0e2b8d2f3c4d5e----"),
    ],
)
def test_contract_ids_are_ascii_and_whole(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        c.SaleRecord.model_validate({**SALE, field: value})


def test_contract_ids_use_the_one_set_of_formats() -> None:
    """The document tells other parties the same formats the counter checks."""
    from app.domain import ids

    props = c.SaleRecord.model_json_schema()["properties"]
    assert props["customer_no"]["pattern"] == ids.CUSTOMER_NO.pattern
    assert props["id"]["pattern"] == props["shift_id"]["pattern"] == ids.UUID.pattern
    assert props["operator_id"]["pattern"] == props["counter_id"]["pattern"] == ids.CODE.pattern
