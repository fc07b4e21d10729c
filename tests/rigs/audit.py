"""Deterministic audit hash chains: the i-th row a pure function of i (with Chinese text),
built in memory (:func:`make_chain`) and bulk-inserted into an empty audit log
(:func:`load_chain`); used by tests/test_audit.py and tests/bench/bench_audit.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import insert
from sqlalchemy import update

from app.domain.audit import GENESIS
from app.domain.audit import AuditRow
from app.domain.audit import canonical_detail
from app.domain.audit import row_hash
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.persistence.models import AuditHead
from app.services import audit

START = dt.datetime(2026, 3, 1, 1, 0, tzinfo=dt.UTC)
ACTIONS = (
    "login",
    "login_failed",
    "sale_begin",
    "sale_complete",
    "sale_reversed",
    "customer_update",
    "shift_open",
    "shift_close",
)
NAMES = ("王小明", "李秀英", "张伟", "刘洋", "陈静", "欧阳娜娜")


def chain_fields(i: int) -> tuple[dt.datetime, str | None, str, str, str, str, str]:
    """The content of the i-th row (0-based), a pure function of i: at, operator_id, counter_id,
    action, target, result, detail (canonical JSON text, with Chinese)."""
    at = START + dt.timedelta(seconds=37 * i, microseconds=(i * 7919) % 1_000_000)
    operator_id = None if i % 13 == 0 else f"t{i % 7:02d}"  # None: a system action
    name = NAMES[i % len(NAMES)]
    target = f"客户 {100_000_000_000 + i} {name}"
    detail = canonical_detail(
        {"金额": (i % 500) * 100, "备注": f"第{i}次 购电", "柜台": "营业厅一号窗口", "n": i}
    )
    result = audit.RESULTS[i % len(audit.RESULTS)]
    return at, operator_id, f"C{i % 3 + 1:02d}", ACTIONS[i % len(ACTIONS)], target, result, detail


def make_chain(n: int) -> list[AuditRow]:
    """A valid chain of ``n`` rows, seq 1..n, each hashed from its predecessor."""
    rows: list[AuditRow] = []
    prev = GENESIS
    for i in range(n):
        fields = chain_fields(i)
        digest = row_hash(prev, i + 1, *fields)
        rows.append(AuditRow(i + 1, *fields, prev_hash=prev, hash=digest))
        prev = digest
    return rows


def _values(rows: list[AuditRow]) -> Iterator[dict[str, Any]]:
    for r in rows:
        yield {
            "seq": r.seq,
            "at": r.at,
            "operator_id": r.operator_id,
            "counter_id": r.counter_id,
            "action": r.action,
            "target": r.target,
            "result": r.result,
            "detail": r.detail,
            "prev_hash": r.prev_hash,
            "hash": r.hash,
        }


def load_chain(db: Database, rows: list[AuditRow], *, batch: int = 5000) -> None:
    """Bulk-insert ``rows`` into an empty audit log (executemany, one transaction) and set the
    head to the last of them."""
    with db.write() as session:
        for k in range(0, len(rows), batch):
            session.execute(insert(AuditEntry), list(_values(rows[k : k + batch])))
        last = (rows[-1].seq, rows[-1].hash) if rows else (0, GENESIS)
        session.execute(
            update(AuditHead).where(AuditHead.id == 1).values(seq=last[0], hash=last[1])
        )
