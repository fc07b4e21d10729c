"""The reference SMS gateway (``cardvend central sms-gateway``) as a process of its own, what it
received, and a customer's phone number in the station's store: for the SMS notice tests."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from sync.central import models as m
from sync.central.store import CentralStore
from tests.rigs.processes import home_env
from tests.rigs.processes import start
from tests.rigs.processes import stop

ENGLISH = "100000000030"  # a remote customer who reads English
OPTED_OUT = "100000000040"  # a remote customer who wants no SMS


@contextlib.contextmanager
def sms_gateway(tmp_path: Path, *args: str) -> Iterator[tuple[str, Path]]:
    """The gateway with ``args`` (``--fail N``), writing what it receives to
    ``tmp_path / "sms.jsonl"``: (its URL, that file); stopped afterwards."""
    out = tmp_path / "sms.jsonl"
    proc, line = start(
        ["central", "sms-gateway", "--port", "0", "--out", str(out), *args],
        home_env(tmp_path / "gw-home"),
        "sms gateway listening on http://",
    )
    try:
        yield line.split(" on ", 1)[1].strip(), out
    finally:
        stop([proc])


def received(out: Path) -> list[dict[str, Any]]:
    """The messages the gateway received, in order."""
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def phone_of(store: CentralStore, customer_no: str) -> str:
    cu = m.customers.c
    with store.engine.connect() as conn:
        return str(conn.execute(select(cu.phone).where(cu.customer_no == customer_no)).scalar_one())
