"""Pushing the outbox: what the counter did, sent to the central system exactly once.

The outbox row is written in the same transaction as the fact it reports (app/services). Here:

1. *freeze*: in one write transaction, every unsent row whose fact is settled gets its contract
   body built and stored (``outbox.body``); a sale is settled when it is completed, failed or
   reversed — a pending or in-doubt sale waits (it still counts as pending for the offline
   limits). Every retry after that sends the same body, so the central side sees either a new
   record or a ``duplicate`` — never a ``conflict`` caused by us.
2. *send* in batches per resource (card bindings, sales, replacements, rewrites, reversals, in
   that order, so a reversal never arrives before its sale); the batch's Idempotency-Key comes
   from its ids, so a batch resent after a crash is recognised.
3. *mark*: ``created`` and ``duplicate`` rows get ``sent_at``; a sale the central system flagged
   gets ``review``; a ``conflict`` or ``rejected`` row stays unsent with ``last_error`` (shown in
   the sync status) and is never retried blindly into something else.

A crash between 2 and 3 re-sends the batch next time: the central side answers ``duplicate`` by
the record's UUID (a UNIQUE constraint there), so the effect is exactly once.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from app.clock import Clock, aware
from app.persistence.db import Database
from app.persistence.models import (
    ArrearsItem,
    Customer,
    FeePayment,
    OutboxEntry,
    Reversal,
    Sale,
    TariffPlan,
    TariffVersion,
)
from app.services import audit
from sync import contract as c
from sync.client import CentralClient

log = logging.getLogger(__name__)
NAMESPACE = uuid.UUID("5d1c1f0e-8c7a-4f4e-9a53-c0a7d0e1e001")
# outbox kind -> contract resource; the order is the order of sending
RESOURCE_OF = {
    "card_bound": "card-bindings",
    "sale": "sales",
    "remote": "sales",
    "replacement": "replacements",
    "rewrite": "rewrites",
    "reversal": "reversals",
}
SEND_ORDER = ("card-bindings", "sales", "replacements", "rewrites", "reversals")
SETTLED_SALE_STATES = {"completed": "completed", "reversed": "completed", "failed": "failed"}


def record_id(kind: str, ref_id: str) -> str:
    """The record's UUID: the outbox ref when it is one, else derived from it, stably."""
    try:
        return str(uuid.UUID(ref_id))
    except ValueError:
        return str(uuid.uuid5(NAMESPACE, f"{kind}:{ref_id}"))


def _iso(value: dt.datetime) -> str:
    return aware(value).isoformat()


class _SaleFacts:
    """What the sale bodies of one batch of rows need, loaded with a few IN queries."""

    def __init__(self, session: Session, sale_ids: Sequence[str]) -> None:
        self.sales: dict[str, Sale] = {}
        self.refs: dict[str, list[str]] = {}
        for i in range(0, len(sale_ids), 500):
            chunk = list(sale_ids[i : i + 500])
            self.sales.update(
                {s.id: s for s in session.scalars(select(Sale).where(Sale.id.in_(chunk)))}
            )
            for sale_id, ref in session.execute(
                select(ArrearsItem.settled_by_sale_id, ArrearsItem.ref)
                .where(ArrearsItem.settled_by_sale_id.in_(chunk), ArrearsItem.ref.is_not(None))
                .order_by(ArrearsItem.ref)
            ):
                self.refs.setdefault(str(sale_id), []).append(str(ref))
        customer_ids = {s.customer_id for s in self.sales.values()}
        version_ids = {s.tariff_version_id for s in self.sales.values()}
        self.customer_no: dict[int, str] = {}
        ids = list(customer_ids)
        for i in range(0, len(ids), 500):
            rows = session.execute(
                select(Customer.id, Customer.customer_no).where(Customer.id.in_(ids[i : i + 500]))
            ).all()
            self.customer_no.update({cid: cno for cid, cno in rows})
        self.version: dict[int, tuple[str, int]] = {
            vid: (code, no)
            for vid, code, no in session.execute(
                select(TariffVersion.id, TariffPlan.code, TariffVersion.version_no)
                .join(TariffPlan, TariffPlan.id == TariffVersion.plan_id)
                .where(TariffVersion.id.in_(list(version_ids)))
            ).all()
        }


def sale_body(
    session: Session, sale: Sale, office_code: str, facts: _SaleFacts | None = None
) -> dict[str, Any] | None:
    """The SaleRecord of a settled sale, or None while it is pending or in doubt."""
    state = SETTLED_SALE_STATES.get(sale.state)
    if state is None:
        return None
    facts = facts or _SaleFacts(session, [sale.id])
    plan_code, version_no = facts.version[sale.tariff_version_id]
    return {
        "id": sale.id,
        "kind": sale.kind,
        "state": state,
        "customer_no": facts.customer_no[sale.customer_id],
        "purchase_count": sale.purchase_count,
        "amount": sale.amount,
        "arrears": sale.arrears,
        "fees": sale.fees,
        "credit": sale.credit,
        "energy_wh": sale.energy_wh,
        "tariff_plan": plan_code,
        "tariff_version_no": version_no,
        "settled_refs": facts.refs.get(sale.id, []),
        "operator_id": sale.operator_id,
        "counter_id": sale.counter_id,
        "office_code": office_code,
        "shift_id": sale.shift_id,
        "card_serial": sale.card_serial,
        "cash_received": sale.cash_received,
        "created_at": _iso(sale.created_at),
    }


def build_body(
    session: Session, row: OutboxEntry, office_code: str, facts: _SaleFacts | None = None
) -> dict[str, Any] | None:
    """The contract body of an outbox row, or None if its fact is not settled yet."""
    p = row.payload or {}
    rid = record_id(row.kind, row.ref_id)
    created = _iso(row.created_at)
    if row.kind in ("sale", "remote"):
        facts = facts or _SaleFacts(session, [row.ref_id])
        sale = facts.sales.get(row.ref_id)
        return None if sale is None else sale_body(session, sale, office_code, facts)
    if row.kind == "reversal":
        rev = session.get(Reversal, row.ref_id)
        if rev is None or rev.state != "completed":
            return None
        return {
            "id": rid,
            "sale_id": rev.sale_id,
            "amount": rev.amount,
            "operator_id": rev.operator_id,
            "approver_id": rev.approver_id,
            "counter_id": rev.counter_id,
            "created_at": _iso(rev.completed_at or rev.created_at),
        }
    if row.kind == "rewrite":
        rewritten = session.get(Sale, p["sale_id"])
        assert rewritten is not None
        return {
            "id": rid,
            "sale_id": p["sale_id"],
            "rewrite_no": int(p.get("rewrite_no") or row.ref_id.rsplit("-r", 1)[-1]),
            "operator_id": p.get("operator_id", rewritten.operator_id),
            "counter_id": p.get("counter_id", rewritten.counter_id),
            "created_at": created,
        }
    if row.kind == "replacement":
        fee = session.get(FeePayment, row.ref_id)
        assert fee is not None
        return {
            "id": rid,
            "customer_no": p["customer_no"],
            "old_serial": p.get("old"),
            "new_serial": p["new"],
            "fee": fee.amount,
            "operator_id": fee.operator_id,
            "counter_id": fee.counter_id,
            "created_at": created,
        }
    if row.kind == "card_bound":
        return {
            "id": rid,
            "customer_no": p["customer_no"],
            "serial": p["serial"],
            "operator_id": p.get("operator_id", "-"),
            "counter_id": p.get("counter_id", "-"),
            "created_at": created,
        }
    raise ValueError(f"unknown outbox kind {row.kind}")


@dataclass
class PushReport:
    sent: int = 0  # newly created on the central side
    duplicates: int = 0  # already there (a resend)
    failed: int = 0  # conflict or rejected: left unsent with the reason
    flagged: list[str] = field(default_factory=list)  # sale ids the central side flagged
    waiting: int = 0  # unsettled facts (pending or in-doubt sales)
    requests: int = 0


def freeze(db: Database, clock: Clock, office_code: str, limit: int) -> tuple[int, int]:
    """Build and store the body of every sendable unsent row not frozen yet; (rows frozen now,
    rows still waiting for their fact to settle). Nothing to freeze takes no write lock."""
    unfrozen = OutboxEntry.sent_at.is_(None), OutboxEntry.body.is_(None)
    with db.read() as session:
        if session.scalar(select(OutboxEntry.id).where(*unfrozen).limit(1)) is None:
            return 0, 0
    with db.write() as session:
        todo = session.scalars(
            select(OutboxEntry).where(*unfrozen).order_by(OutboxEntry.id).limit(limit)
        ).all()
        facts = _SaleFacts(session, [r.ref_id for r in todo if r.kind in ("sale", "remote")])
        bodies = []
        for row in todo:
            body = build_body(session, row, office_code, facts)
            if body is not None:
                bodies.append({"b_id": row.id, "body": body})
        if bodies:
            table = cast(Table, OutboxEntry.__table__)
            session.connection().execute(
                update(table).where(table.c.id == bindparam("b_id")).values(body=bindparam("body")),
                bodies,
            )
    return len(bodies), len(todo) - len(bodies)


def _ready(db: Database, limit: int) -> list[tuple[int, str, str, dict[str, Any]]]:
    with db.read() as session:
        rows = session.execute(
            select(OutboxEntry.id, OutboxEntry.kind, OutboxEntry.ref_id, OutboxEntry.body)
            .where(OutboxEntry.sent_at.is_(None), OutboxEntry.body.is_not(None))
            .order_by(OutboxEntry.id)
            .limit(limit)
        ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def push(
    db: Database,
    client: CentralClient,
    clock: Clock,
    office_code: str,
    *,
    batch_size: int = 500,
    limit: int = 100_000,
    single: bool = False,
) -> PushReport:
    """Send every settled unsent outbox row (``single``: one request per record, for
    comparison in the benchmark)."""
    report = PushReport()
    _, report.waiting = freeze(db, clock, office_code, limit)
    rows = _ready(db, limit)
    by_resource: dict[str, list[tuple[int, str, str, dict[str, Any]]]] = {}
    for row in rows:
        by_resource.setdefault(RESOURCE_OF[row[1]], []).append(row)
    for resource in SEND_ORDER:
        model = c.POSTED[resource]
        for chunk in _chunks(by_resource.get(resource, []), 1 if single else batch_size):
            items = [model.model_validate(r[3]) for r in chunk]
            if single:
                results = [client.post_one(resource, items[0])]
            else:
                results = client.post_batch(resource, items).results
            report.requests += 1
            _mark(db, clock, chunk, results, report)
    return report


def _mark(
    db: Database,
    clock: Clock,
    chunk: Sequence[tuple[int, str, str, dict[str, Any]]],
    results: Sequence[c.ItemResult],
    report: PushReport,
) -> None:
    now = clock.now()
    table = cast(Table, OutboxEntry.__table__)
    accepted: list[dict[str, Any]] = []
    with db.write() as session:
        for (row_id, kind, ref_id, _body), result in zip(chunk, results, strict=True):
            if result.status in ("created", "duplicate"):
                accepted.append({"b_id": row_id})
                if result.status == "created":
                    report.sent += 1
                else:
                    report.duplicates += 1
                if result.review and kind in ("sale", "remote"):
                    _flag(session, ref_id, result.review, clock)
                    report.flagged.append(ref_id)
                continue
            row = session.get(OutboxEntry, row_id)
            assert row is not None
            row.attempts += 1
            row.last_error = f"{result.status}: {result.message}"[:500]
            report.failed += 1
            audit.record(
                session,
                action="sync_refused",
                operator_id=None,
                counter_id="-",
                clock=clock,
                target=ref_id,
                result="failed",
                detail={"kind": kind, "status": result.status, "message": result.message},
            )
        if accepted:
            session.flush()
            session.connection().execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(sent_at=now, attempts=table.c.attempts + 1, last_error=""),
                accepted,
            )


def _flag(session: Session, sale_id: str, reason: str, clock: Clock) -> None:
    sale = session.get(Sale, sale_id)
    if sale is None or sale.review == reason:
        return
    sale.review = reason
    audit.record(
        session,
        action="sale_review",
        operator_id=None,
        counter_id=sale.counter_id,
        clock=clock,
        target=sale_id,
        result="ok",
        detail={"reason": reason},
    )
