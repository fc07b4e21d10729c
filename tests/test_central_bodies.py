"""A posted record is dumped once: its canonical text is hashed, kept as the row's body and
hashed again into the request's Idempotency-Key hash, which stays the one earlier servers kept
(a key kept before an upgrade replays after it)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.persistence.db import JsonText
from app.persistence.db import dump_json
from sync import contract as c
from sync.central import CentralStore
from sync.central import Counter
from sync.central import models as m
from sync.central.base import Dumped
from sync.central.base import canonical_json
from sync.central.base import request_hash
from sync.central.base import sha256_hex
from tests.rigs.central import REMOTE
from tests.rigs.central import sale

C1 = Counter("C1", "DEMO")


def _records(n: int) -> list[c.SaleRecord]:
    return [
        c.SaleRecord.model_validate(sale(REMOTE, kind="remote", amount=1000 + i, credit=1000 + i))
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [0, 1, 3])
def test_the_request_hash_is_the_hash_of_the_records_canonical_list(n: int) -> None:
    records = _records(n)
    line = "POST /api/v1/sales/batch"
    before = sha256_hex(f"{line}\n{canonical_json([r.model_dump(mode='json') for r in records])}")
    assert request_hash(line, [Dumped.of(r) for r in records]) == before
    other = request_hash("POST /api/v1/sales", [Dumped.of(r) for r in records])
    assert other != before  # the request line is part of it


def test_a_dumped_record_holds_its_value_its_canonical_text_and_that_texts_hash() -> None:
    (record,) = _records(1)
    d = Dumped.of(record)
    assert d.value == record.model_dump(mode="json")
    assert json.loads(d.text) == d.value
    assert d.text == canonical_json(d.value)
    assert d.hash == sha256_hex(d.text)


def test_the_json_encoder_keeps_json_text_as_it_is() -> None:
    assert dump_json(JsonText('{"b":1,"a":[2]}')) == '{"b":1,"a":[2]}'
    assert dump_json({"b": 1, "a": "x"}) == json.dumps({"b": 1, "a": "x"})
    assert dump_json("text") == '"text"'  # a plain string is a JSON string, not JSON text


def test_a_posted_sale_is_stored_as_its_canonical_text_and_reads_back_as_its_value(
    store: CentralStore,
) -> None:
    (record,) = _records(1)
    assert [r.status for r in store.post("sales", C1, [record])] == ["created"]
    s = m.sales.c
    with store.engine.connect() as conn:
        stored = conn.execute(select(s.body, s.body_hash).where(s.id == record.id)).one()
        raw = conn.exec_driver_sql(
            "SELECT CAST(body AS TEXT) FROM central_sales WHERE id = %s"
            if store.dialect == "postgresql"
            else "SELECT body FROM central_sales WHERE id = ?",
            (record.id,),
        ).scalar_one()
    value = record.model_dump(mode="json")
    assert stored.body == value
    assert raw == canonical_json(value)
    assert stored.body_hash == sha256_hex(raw)
    # the same record again is a duplicate: the hash compares equal
    assert [r.status for r in store.post("sales", C1, [record])] == ["duplicate"]
