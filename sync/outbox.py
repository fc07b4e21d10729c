"""Pushing the outbox: what the counter did, sent to the central system exactly once.

The outbox row is written in the same transaction as the fact it reports (app/services), with
the counter it belongs to: counters that share a database each send only their own rows. Here:

1. *freeze*: in one write transaction, every unsent row whose fact is settled gets its contract
   body built, checked against the contract and stored (``outbox.body``); a sale is settled
   when it is completed, failed or reversed — a pending or in-doubt sale waits (it still counts
   as pending for the offline limits). Every retry after that sends the same body, so the
   central side sees either a new record or a ``duplicate`` — never a ``conflict`` caused by
   us. A row whose body cannot be built or fails the contract (an operator id ``t02\n`` put
   into the ledger by hand, a full-width customer number) is *refused* (``invalid``) on its
   own: it keeps no body and the others go on.
2. *send* in batches per resource (card bindings, sales, replacements, rewrites, reversals, in
   that order, so a reversal never arrives before its sale); the batch's Idempotency-Key comes
   from its ids, so a batch resent after a crash is recognised. When the central side refuses
   a request as a whole (400, 409, 413, 422), the batch is split until the record it refuses
   is alone.
3. *mark*: ``created`` and ``duplicate`` rows get ``sent_at``; a sale the central system flagged
   gets ``review``; a ``conflict`` or ``rejected`` row is *refused* with the central system's
   reason.

A refused row (``refused_at``, ``refused_code``, ``refused_reason``) is audited
(``sync_refused``), shown by ``cardvend sync status`` and on the central-link page with what to
do, and is not sent again until a person re-queues it (``cardvend sync retry``,
app/services/sync_status.py ``requeue_refused``) once the cause is fixed; its body is then
built again from the ledger (the central side never applied it, so nothing can double).

A crash between 2 and 3 re-sends the batch next time: the central side answers ``duplicate`` by
the record's UUID (a UNIQUE constraint there), so the effect is exactly once.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import NamedTuple
from typing import TypeVar
from typing import cast

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import null
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.clock import Clock
from app.clock import aware
from app.domain.audit import AuditAction
from app.persistence.db import Database
from app.persistence.models import AccountEvent
from app.persistence.models import ArrearsItem
from app.persistence.models import Customer
from app.persistence.models import FeePayment
from app.persistence.models import OutboxEntry
from app.persistence.models import Reversal
from app.persistence.models import Sale
from app.persistence.models import TariffPlan
from app.persistence.models import TariffVersion
from app.services import audit
from app.services.sync_status import REFUSED_INVALID
from sync import contract as c
from sync.client import CentralClient
from sync.errors import CentralRejected

log = logging.getLogger(__name__)
M = TypeVar("M")
NAMESPACE = uuid.UUID("5d1c1f0e-8c7a-4f4e-9a53-c0a7d0e1e001")
# outbox kind -> contract resource; the order is the order of sending
RESOURCE_OF = {
    "card_bound": "card-bindings",
    "sale": "sales",
    "remote": "sales",
    "replacement": "replacements",
    "rewrite": "rewrites",
    "reversal": "reversals",
    "job_result": "job-results",  # app/services/jobs.py
    "account_event": "account-events",  # app/services/lifecycle/
}
# a close or meter change after the sales it settled; a resume's later sales may arrive before it
# (the central system takes sales to a paused customer)
SEND_ORDER = (
    "card-bindings",
    "sales",
    "replacements",
    "rewrites",
    "reversals",
    "job-results",
    "account-events",
)
SETTLED_SALE_STATES = {"completed": "completed", "reversed": "completed", "failed": "failed"}


def record_id(kind: str, ref_id: str) -> str:
    """The record's UUID: the outbox ref when it is one, else derived from it, stably."""
    try:
        return str(uuid.UUID(ref_id))
    except ValueError:
        return str(uuid.uuid5(NAMESPACE, f"{kind}:{ref_id}"))


def _iso(value: dt.datetime) -> str:
    return aware(value).isoformat()


class SaleFacts:
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
    session: Session, sale: Sale, office_code: str, facts: SaleFacts | None = None
) -> dict[str, Any] | None:
    """The SaleRecord of a settled sale, or None while it is pending or in doubt."""
    state = SETTLED_SALE_STATES.get(sale.state)
    if state is None:
        return None
    facts = facts or SaleFacts(session, [sale.id])
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
    session: Session, row: OutboxEntry, office_code: str, facts: SaleFacts | None = None
) -> dict[str, Any] | None:
    """The contract body of an outbox row, or None if its fact is not settled yet."""
    p = row.payload or {}
    rid = record_id(row.kind, row.ref_id)
    created = _iso(row.created_at)
    if row.kind in ("sale", "remote"):
        facts = facts or SaleFacts(session, [row.ref_id])
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
        rewritten = _in_ledger(session, Sale, p["sale_id"], "rewritten sale")
        return {
            "id": rid,
            "sale_id": p["sale_id"],
            "rewrite_no": int(p.get("rewrite_no") or row.ref_id.rsplit("-r", 1)[-1]),
            "operator_id": p.get("operator_id", rewritten.operator_id),
            "counter_id": p.get("counter_id") or rewritten.counter_id,
            "created_at": created,
        }
    if row.kind == "replacement":
        fee = _in_ledger(session, FeePayment, row.ref_id, "fee payment")
        return {
            "id": rid,
            "customer_no": p["customer_no"],
            "old_serial": p.get("old"),
            "new_serial": p["new"],
            "fee": fee.amount,
            "operator_id": fee.operator_id,
            "counter_id": fee.counter_id,
            "created_at": created,
            "mode": p.get("mode", "lost"),
        }
    if row.kind == "card_bound":
        return {
            "id": rid,
            "customer_no": p["customer_no"],
            "serial": p["serial"],
            "operator_id": p.get("operator_id", "-"),
            "counter_id": p.get("counter_id") or row.counter_id,
            "created_at": created,
        }
    if row.kind == "account_event":
        event = _in_ledger(session, AccountEvent, row.ref_id, "account event")
        return {
            "id": rid,
            "customer_no": p["customer_no"],
            "kind": event.kind,
            "reason": event.reason,
            "new_meter_no": p.get("new_meter_no"),
            "refund": event.refund,
            "detail": event.detail,
            "operator_id": event.operator_id,
            "approver_id": event.approver_id,
            "counter_id": event.counter_id,
            "created_at": _iso(event.created_at),
        }
    if row.kind == "job_result":  # the payload is the record, written when the card came back
        return {"id": rid, **{k: p[k] for k in _JOB_RESULT_FIELDS if k in p}}
    raise ValueError(f"unknown outbox kind {row.kind}")


def _in_ledger(session: Session, model: type[M], key: str, what: str) -> M:
    """The ledger row an outbox row reports; a missing one is a body that cannot be built."""
    found = session.get(model, key)
    if found is None:
        raise ValueError(f"the {what} {key} is not in the ledger")
    return found


_JOB_RESULT_FIELDS = (
    "job_id",
    "outcome",
    "technician_id",
    "counter_id",
    "done_at",
    "write_back",
    "note",
)


# --------------------------------------------------------------------------- push


class _Row(NamedTuple):
    id: int
    kind: str
    ref_id: str
    body: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Refusal:
    """A record set aside in this round: by the contract check here, or by the central side."""

    row_id: int
    kind: str
    ref_id: str
    code: str  # invalid | rejected | conflict
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PushReport:
    sent: int = 0  # newly created on the central side
    duplicates: int = 0  # already there (a resend)
    failed: int = 0  # refused in this round (see ``refusals``): set aside, the rest went on
    refusals: list[Refusal] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)  # sale ids the central side flagged
    waiting: int = 0  # unsettled facts (pending or in-doubt sales)
    requests: int = 0


def contract_problem(exc: Exception) -> str:
    """One line naming what the contract check found wrong, with the offending values."""
    if isinstance(exc, PydanticValidationError):
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ())) or "record"
            parts.append(f"{where}: {err.get('msg', '')} (got {err.get('input')!r})")
        return "; ".join(parts)[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def _refuse(
    session: Session,
    clock: Clock,
    counter_id: str,
    row: OutboxEntry,
    code: str,
    reason: str,
    report: PushReport,
    *,
    attempted: bool,
) -> None:
    """Set ``row`` aside as refused (no longer sent each round; sync status shows it)."""
    row.refused_at = clock.now()
    row.refused_code = code
    row.refused_reason = reason[:500]
    row.last_error = f"{code}: {reason}"[:500]
    if attempted:
        row.attempts += 1
    report.failed += 1
    report.refusals.append(Refusal(row.id, row.kind, row.ref_id, code, reason[:500]))
    log.warning(
        "outbox record %s (%s %s) refused: %s %s", row.id, row.kind, row.ref_id, code, reason
    )
    audit.Actor(None, counter_id, clock).record(
        session,
        AuditAction.SYNC_REFUSED,
        row.ref_id,
        result="failed",
        detail={"record": row.id, "kind": row.kind, "status": code, "message": reason[:500]},
    )


def _claim_unowned(session: Session, counter_id: str) -> None:
    """Rows nobody could be named for (written before rows carried their counter, with no
    trace of it) go with the first counter that syncs."""
    session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.counter_id == "", OutboxEntry.sent_at.is_(None))
        .values(counter_id=counter_id)
    )


def freeze(
    db: Database,
    clock: Clock,
    office_code: str,
    counter_id: str,
    limit: int,
    report: PushReport | None = None,
) -> tuple[int, int]:
    """Build, check against the contract and store the body of every sendable unsent row of
    this counter not frozen yet; (rows frozen now, rows still waiting for their fact to
    settle). A row whose body cannot be built or fails the contract is refused (``invalid``)
    and keeps no body, so a retry builds it again from the corrected ledger. Nothing to freeze
    takes no write lock."""
    report = report if report is not None else PushReport()
    todo_where = (
        OutboxEntry.counter_id.in_((counter_id, "")),
        OutboxEntry.sent_at.is_(None),
        OutboxEntry.body.is_(None),
        OutboxEntry.refused_at.is_(None),
    )
    with db.read() as session:
        if session.scalar(select(OutboxEntry.id).where(*todo_where).limit(1)) is None:
            return 0, 0
    with db.write() as session:
        _claim_unowned(session, counter_id)
        todo = session.scalars(
            select(OutboxEntry).where(*todo_where).order_by(OutboxEntry.id).limit(limit)
        ).all()
        facts = SaleFacts(session, [r.ref_id for r in todo if r.kind in ("sale", "remote")])
        bodies = []
        waiting = 0
        for row in todo:
            try:
                body = build_body(session, row, office_code, facts)
                if body is not None:
                    c.POSTED[RESOURCE_OF[row.kind]].model_validate(body)
            except (ValueError, KeyError, TypeError) as exc:  # ValidationError is a ValueError
                _refuse(session, clock, counter_id, row, REFUSED_INVALID, contract_problem(exc),
                        report, attempted=False)  # fmt: skip
                continue
            if body is None:
                waiting += 1
            else:
                bodies.append({"b_id": row.id, "body": body})
        if bodies:
            session.flush()
            table = cast(Table, OutboxEntry.__table__)
            session.connection().execute(
                update(table).where(table.c.id == bindparam("b_id")).values(body=bindparam("body")),
                bodies,
            )
    return len(bodies), waiting


def _ready(db: Database, counter_id: str, limit: int) -> list[_Row]:
    with db.read() as session:
        rows = session.execute(
            select(
                OutboxEntry.id,
                OutboxEntry.kind,
                OutboxEntry.ref_id,
                OutboxEntry.body,
                OutboxEntry.attempts,
            )
            .where(
                OutboxEntry.counter_id == counter_id,
                OutboxEntry.sent_at.is_(None),
                OutboxEntry.body.is_not(None),
                OutboxEntry.refused_at.is_(None),
            )
            .order_by(OutboxEntry.id)
            .limit(limit)
        ).all()
    return [_Row(r[0], r[1], r[2], r[3], int(r[4] or 0)) for r in rows]


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _key_id(row: _Row) -> str:
    """What the Idempotency-Key is made of for this row: its record id, and, once the central
    side answered for it (it refused it, and a person re-queued it), the number of answers, so
    the re-sent record is not answered with the kept refusal."""
    rid = record_id(row.kind, row.ref_id)
    return f"{rid}~{row.attempts}" if row.attempts else rid


# the central side refuses the request as a whole (a record its own checks refuse, a body over
# its size limit, an Idempotency-Key it holds for another request): split the batch until the
# record it refuses is alone, and refuse that one
_WHOLE_REQUEST_REFUSED = frozenset({400, 409, 413, 422})


def _send(
    client: CentralClient,
    resource: str,
    rows: Sequence[_Row],
    items: Sequence[c.Model],
    single: bool,
    report: PushReport,
) -> list[c.ItemResult]:
    keys = [_key_id(r) for r in rows]
    before = client.requests
    try:
        try:
            if single:
                return [client.post_one(resource, items[0], key_id=keys[0])]
            return list(client.post_batch(resource, items, key_ids=keys).results)
        finally:  # the client's own halves and retries are requests too
            report.requests += client.requests - before
    except CentralRejected as exc:
        status = exc.params.get("status")
        if status not in _WHOLE_REQUEST_REFUSED:
            raise
        if len(rows) == 1:
            return [
                c.ItemResult(
                    id=record_id(rows[0].kind, rows[0].ref_id),
                    status="rejected",
                    message=f"HTTP {status}: {exc.params.get('detail', '')}",
                )
            ]
        half = len(rows) // 2
        return _send(client, resource, rows[:half], items[:half], single, report) + _send(
            client, resource, rows[half:], items[half:], single, report
        )


def push(
    db: Database,
    client: CentralClient,
    clock: Clock,
    office_code: str,
    counter_id: str,
    *,
    batch_size: int = 500,
    limit: int = 100_000,
    single: bool = False,
) -> PushReport:
    """Send every settled unsent outbox row of this counter (``single``: one request per
    record, for comparison in the benchmark). A record the contract check or the central side
    refuses is set aside with its reason; the others go on."""
    report = PushReport()
    _, report.waiting = freeze(db, clock, office_code, counter_id, limit, report)
    by_resource: dict[str, list[_Row]] = {}
    for row in _ready(db, counter_id, limit):
        by_resource.setdefault(RESOURCE_OF[row.kind], []).append(row)
    for resource in SEND_ORDER:
        model = c.POSTED[resource]
        for chunk in _chunks(by_resource.get(resource, []), 1 if single else batch_size):
            rows: list[_Row] = []
            items: list[c.Model] = []
            invalid: list[tuple[_Row, str]] = []
            for row in chunk:
                try:
                    items.append(model.model_validate(row.body))
                    rows.append(row)
                except PydanticValidationError as exc:  # frozen before the contract got stricter
                    invalid.append((row, contract_problem(exc)))
            if invalid:
                _refuse_frozen(db, clock, counter_id, invalid, report)
            if rows:
                results = _send(client, resource, rows, items, single, report)
                _mark(db, clock, counter_id, rows, results, report)
    return report


def _refuse_frozen(
    db: Database,
    clock: Clock,
    counter_id: str,
    invalid: Sequence[tuple[_Row, str]],
    report: PushReport,
) -> None:
    """Frozen bodies that fail the contract: the central side can never have accepted them
    (it checks the same contract), so the body goes and is built again at a retry."""
    with db.write() as session:
        for row, reason in invalid:
            entry = session.get(OutboxEntry, row.id)
            if entry is None:
                continue
            session.execute(  # SQL NULL, not JSON null
                update(OutboxEntry).where(OutboxEntry.id == row.id).values(body=null())
            )
            _refuse(session, clock, counter_id, entry, REFUSED_INVALID, reason, report,
                    attempted=False)  # fmt: skip


def _mark(
    db: Database,
    clock: Clock,
    counter_id: str,
    chunk: Sequence[_Row],
    results: Sequence[c.ItemResult],
    report: PushReport,
) -> None:
    now = clock.now()
    table = cast(Table, OutboxEntry.__table__)
    accepted: list[dict[str, Any]] = []
    with db.write() as session:
        for row, result in zip(chunk, results, strict=True):
            if result.status in ("created", "duplicate"):
                accepted.append({"b_id": row.id})
                if result.status == "created":
                    report.sent += 1
                else:
                    report.duplicates += 1
                if result.review and row.kind in ("sale", "remote"):
                    _flag(session, row.ref_id, result.review, clock)
                    report.flagged.append(row.ref_id)
                continue
            entry = session.get(OutboxEntry, row.id)
            if entry is None:
                continue
            code = getattr(result, "code", None)  # the central side's problem code, if it says
            reason = f"[{code}] {result.message}" if code else result.message
            _refuse(session, clock, counter_id, entry, result.status, reason or result.status,
                    report, attempted=True)  # fmt: skip
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
    audit.Actor(None, sale.counter_id, clock).record(
        session, AuditAction.SALE_REVIEW, sale_id, result="ok", detail={"reason": reason}
    )
