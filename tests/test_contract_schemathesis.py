"""Schemathesis against the running reference central server: every operation of the published
OpenAPI document, with generated valid and invalid requests, must answer what the document says
(status codes, content types, bodies) and never a 5xx."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings
from pydantic import AwareDatetime
from pydantic import TypeAdapter
from pydantic import ValidationError

from sync import contract as c
from sync.central import CentralServer
from sync.central.api import openapi_document
from sync.central.seed import seed_demo

COUNTER = "st-" + uuid.uuid4().hex[:28]  # longer than what gets generated: no re-register
OFFICE = "DEMO"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The document is loaded when the tests are collected (the eager ``schema.parametrize`` makes one
# test per operation); the server starts later, on a port chosen now.  ``central`` checks that
# the server publishes this very document.
PORT = _free_port()
BASE = f"http://127.0.0.1:{PORT}"
CONFIG = schemathesis.Config.from_dict(
    {
        "base-url": BASE,
        "request-timeout": 10,
        # a batch of more than MAX_BATCH items is refused with the 413 the document declares
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 404, 405, 409, 413, 415, 422]
            },
            # a schema-valid record may still be outside the counter's lane (403) or not hold
            # together (422: sums, refs, a time in the future): rules JSON Schema cannot say
            "positive_data_acceptance": {"expected-statuses": ["2xx", 401, 403, 404, 409, 422]},
        },
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)
TOKEN = secrets.token_urlsafe(32)  # given to the counter registered in ``central``


@schema.auth()
class CounterToken:
    """The bearer token of the counter registered when the server starts (schemathesis leaves
    it out where it tests a missing token).  Cases are built when the tests are collected, so
    the token is fixed now."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralServer]:
    db = Path(tmp_path_factory.mktemp("schemathesis")) / "central.db"
    with CentralServer(str(db), port=PORT) as server:
        seed_demo(server.store, dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
        published = requests.get(BASE + c.API_PREFIX + "/openapi.json", timeout=10).json()
        assert published == openapi_document()
        server.store.register(
            c.RegisterRequest(counter_id=COUNTER, office_code=OFFICE), token=TOKEN
        )
        yield server


_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,32}\Z")
_WHEN = TypeAdapter(AwareDatetime)
_PAST = "2026-03-01T09:00:00+08:00"
_MONEY = ("arrears", "fees", "credit")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == int(value)


def _ours(body: Any) -> Any:
    """A generated record carries a random counter_id, a random time and random sums; to get
    past the rules (and exercise what comes after them) it must be this counter's, not in the
    future, and a sale must add up.  Only valid values are replaced, by other valid ones, so a
    case stays as valid or invalid as it was generated."""
    if isinstance(body, dict):
        body = dict(body)
        if isinstance(body.get("counter_id"), str) and _CODE.match(body["counter_id"]):
            body["counter_id"] = COUNTER
        for name in ("created_at", "seen_at", "done_at"):
            try:
                _WHEN.validate_python(body.get(name))
            except ValidationError:
                continue
            body[name] = _PAST
        if all(_number(body.get(name)) and body[name] >= 0 for name in _MONEY):
            total = sum(int(body[name]) for name in _MONEY)
            if _number(body.get("amount")) and 0 < total <= 10**12:
                body["amount"] = total
                if _number(body.get("cash_received")):
                    body["cash_received"] = total
        if isinstance(body.get("items"), list):
            body["items"] = [_ours(item) for item in body["items"]]
    return body


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_contract(case: schemathesis.Case, central: CentralServer) -> None:
    if case.operation.method.upper() == "POST" and case.operation.path != "/counters/register":
        case.body = _ours(case.body)
    case.call_and_validate()
