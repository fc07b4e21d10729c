"""Applying what counters post: idempotent inserts by record UUID, the trust rules
(:mod:`sync.central.rules`), and what each record changes (arrears settled, purchase counts and
card serials, remote issuing, reversals, control status, jobs).

A batch is applied set-wise: a few queries for the whole batch (what is held already, the
customers, refs, tariffs, sales it refers to), the rules per item in Python, one executemany per
table.  The outcome is exactly that of applying the items one after another: an id twice in the
batch is created once and then a duplicate (or a conflict); a refused item is not held, so a
later item with its id is judged afresh.  Every refusal is written to ``central_refusals`` in the
same transaction.

Purchase counts: a completed card sale whose purchase count follows the customer's last one
(last + 1) moves the archive's count and card serial.  Any other count is accepted but flagged
``purchase_count_gap`` and moves nothing by itself; when the count reaches the one before it
later (the missing sale arrives, or a reversal takes the count back), the flagged sales that now
follow are applied in order.  A reversal of the customer's latest card purchase takes the count
back by one, as the counter's own ledger does (unless another purchase holds that count: the
sale made again after the reversal, sent before it).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import cast

from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from app.persistence.db import JsonText
from sync import contract as c
from sync.central import effects
from sync.central import models as m
from sync.central import rules
from sync.central.base import AmongList
from sync.central.base import Counter
from sync.central.base import Dumped
from sync.central.base import Tx
from sync.central.base import chunks
from sync.central.base import clean
from sync.central.card_checks import compare_write_backs
from sync.central.rules import CustomerFacts
from sync.central.rules import Refusal

# the streams a post may allocate sequence numbers from (declared: see base.Tx.seqs)
STREAMS_OF: dict[str, tuple[str, ...]] = {
    "sales": ("customers", "remote", "sales"),
    "reversals": ("customers", "sales"),
    "rewrites": (),
    "replacements": ("customers",),
    "card-bindings": ("customers",),
    "control-reports": (),
    "sms": (),
    "job-results": ("jobs",),
    "account-events": ("customers",),
}
# what an event is about (the column ``subject``)
_SUBJECT: dict[str, str] = {
    "reversals": "sale_id",
    "rewrites": "sale_id",
    "replacements": "customer_no",
    "card-bindings": "customer_no",
    "control-reports": "customer_no",
    "sms": "customer_no",
    "job-results": "job_id",
    "account-events": "customer_no",
}
_BY_CUSTOMER = ("replacements", "card-bindings", "control-reports", "sms", "account-events")


# the sales' statements, built once (see the note in store.py); "ids", "nos", "plans" and
# "refs" take a list (see AmongList)
_sa, _cu, _tv = m.sales.c, m.customers.c, m.tariff_versions.c
_ev, _ar = m.events.c, m.arrears_items.c
_HELD_SALES = AmongList(
    lambda among: select(_sa.id, _sa.body_hash, _sa.review).where(among(_sa.id, "ids"))
)
_CUSTOMER_FACTS = AmongList(
    lambda among: select(
        _cu.customer_no,
        _cu.office_code,
        _cu.status,
        _cu.meter_kind,
        _cu.purchase_count,
        _cu.card_serial,
    ).where(among(_cu.customer_no, "nos"))
)
_TARIFF_VERSIONS = AmongList(
    lambda among: select(_tv.plan_code, _tv.version_no).where(among(_tv.plan_code, "plans"))
)
_REVERSED_BEFORE = AmongList(
    lambda among: select(_ev.subject).where(
        _ev.kind == "reversals",
        among(_ev.subject, "ids"),
        _ev.counter_id == bindparam("counter"),
    )
)
_NAMED_REFS = AmongList(
    lambda among: select(_ar.ref, _ar.customer_no, _ar.settled_by_sale).where(
        among(_ar.ref, "refs")
    )
)
_INSERT_SALES = insert(m.sales)
_INSERT_REMOTE = insert(m.remote_status)
_SETTLE = (
    update(m.arrears_items)
    .where(
        _ar.ref == bindparam("b_ref"),
        _ar.customer_no == bindparam("b_customer"),
        _ar.settled_by_sale.is_(None),
    )
    .values(settled_by_sale=bindparam("b_sale"))
)
_GAP_SALES = AmongList(
    lambda among: select(_sa.customer_no, _sa.body).where(
        among(_sa.customer_no, "nos"),
        m.SALE_WAITS_FOR_COUNT,  # a literal: the partial index ix_central_sales_gaps
        _sa.reversed.is_(False),
        _sa.state == "completed",
        _sa.kind == "card",
    )
)
assert m.REVIEW_GAP == rules.REVIEW_PURCHASE_COUNT_GAP
_CARD_COUNTS = AmongList(
    lambda among: select(_cu.customer_no, _cu.purchase_count, _cu.card_serial).where(
        among(_cu.customer_no, "nos")
    )
)


@functools.cache
def _card_update(names: tuple[str, ...]) -> Any:
    """The update of these card columns of a customer (``b_no``, ``b_<name>``), built once."""
    return (
        update(m.customers)
        .where(_cu.customer_no == bindparam("b_no"))
        .values({name: bindparam(f"b_{name}") for name in names})
    )


@dataclass(slots=True)
class Posted:
    """A posted record of this counter: its place in the batch, its body (dumped once: the
    value the rules read, the canonical text stored) and the hash of that text."""

    index: int
    id: str
    item: c.Model
    body: dict[str, Any]
    text: JsonText
    hash: str


class _Batch:
    """Results and refusals of one posted batch."""

    def __init__(self, tx: Tx, resource: str, counter: Counter, n: int) -> None:
        self.tx = tx
        self.resource = resource
        self.counter = counter
        self.results: list[c.ItemResult | None] = [None] * n
        self.refusals: list[dict[str, Any]] = []

    def reject(self, index: int, item_id: str, refusal: Refusal) -> None:
        self.results[index] = c.ItemResult(
            id=item_id, status="rejected", code=refusal.code, message=refusal.message
        )
        self.refusals.append(
            {
                "index": index,
                "counter_id": self.counter.counter_id,
                "resource": self.resource,
                "record_id": (clean(item_id) or "")[:64],
                "code": refusal.code,
                "message": (clean(refusal.message) or "")[:300],
                "at": self.tx.now,
            }
        )

    def repeat(
        self, index: int, item_id: str, old_hash: str, new_hash: str, review: str | None = None
    ) -> None:
        if old_hash == new_hash:
            self.results[index] = c.ItemResult(id=item_id, status="duplicate", review=review)
        else:
            self.results[index] = c.ItemResult(
                id=item_id,
                status="conflict",
                review=review,
                code="conflict",
                message=f"{item_id} is already held with another body",
            )

    def done(self) -> list[c.ItemResult]:
        if self.refusals:
            rows = sorted(self.refusals, key=lambda r: int(r["index"]))
            self.tx.conn.execute(
                insert(m.refusals), [{k: v for k, v in r.items() if k != "index"} for r in rows]
            )
        results = [r for r in self.results if r is not None]
        assert len(results) == len(self.results)
        return results


def apply_all(
    tx: Tx,
    resource: str,
    counter: Counter,
    items: Sequence[c.Model | Dumped],
    skew: dt.timedelta,
) -> list[c.ItemResult]:
    """Apply posted records of ``counter`` in one transaction: one result per item, in order
    (a record the caller dumped already, for the request's hash, is not dumped again)."""
    model = c.POSTED[resource]
    records = [item if isinstance(item, Dumped) else Dumped.of(item) for item in items]
    for record in records:
        if not isinstance(record.item, model):
            raise TypeError(f"{resource} takes {model.__name__}, not {type(record.item).__name__}")
    batch = _Batch(tx, resource, counter, len(records))
    posted: list[Posted] = []
    for index, record in enumerate(records):
        body = record.value
        item_id = str(body["id"])
        refused = rules.own_counter(str(body["counter_id"]), counter.counter_id)
        if refused is not None:
            batch.reject(index, item_id, refused)
            continue
        posted.append(Posted(index, item_id, record.item, body, record.text, record.hash))
    if posted:
        if resource == "sales":
            _apply_sales(batch, posted, skew)
        else:
            _apply_events(batch, posted, skew)
    return batch.done()


# --------------------------------------------------------------------------- sales


def _customers(tx: Tx, numbers: Iterable[str]) -> dict[str, CustomerFacts]:
    found: dict[str, CustomerFacts] = {}
    for part in chunks(list(dict.fromkeys(numbers))):
        for r in tx.conn.execute(_CUSTOMER_FACTS.on(tx.conn), {"nos": part}):
            found[r.customer_no] = CustomerFacts(
                r.office_code, r.status, r.meter_kind, int(r.purchase_count), r.card_serial
            )
    return found


@dataclass(slots=True)
class _SaleWorld:
    """What the new sales of a batch refer to, read with a query each (the customers' purchase
    count and card serial and the open arrears are followed in memory as the batch runs)."""

    custs: dict[str, CustomerFacts]
    tariffs: set[tuple[str, int]]
    reversed_before: set[str]  # reversals of this counter that came before their sale
    refs: dict[str, str]  # every named ref the central system holds -> its customer
    open_refs: set[str]  # those still open


@dataclass(slots=True)
class _SaleRows:
    sales: list[dict[str, Any]]
    remote: list[dict[str, Any]]
    settle: list[dict[str, Any]]
    changed: dict[str, set[str]]  # customer -> the columns a card sale changed


def _apply_sales(batch: _Batch, posted: Sequence[Posted], skew: dt.timedelta) -> None:
    conn = batch.tx.conn
    # what is held already: id -> (body_hash, review); accepted sales of the batch join it
    held: dict[str, tuple[str, str | None]] = {}
    for part in chunks(list(dict.fromkeys(p.id for p in posted))):
        for r in conn.execute(_HELD_SALES.on(conn), {"ids": part}):
            held[r.id] = (r.body_hash, r.review)
    todo = [cast(c.SaleRecord, p.item) for p in posted if p.id not in held]
    if not todo:
        for p in posted:
            old_hash, old_review = held[p.id]
            batch.repeat(p.index, p.id, old_hash, p.hash, old_review)
        return
    world = _sale_world(batch, todo)
    rows = _SaleRows([], [], [], {})
    for p in posted:
        kept = held.get(p.id)
        if kept is not None:
            batch.repeat(p.index, p.id, kept[0], p.hash, kept[1])
            continue
        sale = cast(c.SaleRecord, p.item)
        cust = world.custs.get(sale.customer_no)
        refused = rules.vet_sale(
            sale,
            cust,
            world.refs,
            batch.counter.office_code,
            batch.tx.now,
            skew,
        )
        if refused is not None:
            batch.reject(p.index, p.id, refused)
            continue
        review = _take_sale(batch.tx, sale, cust, world, rows)
        rows.sales.append(_sale_row(batch.tx, p, sale, review, sale.id in world.reversed_before))
        if sale.kind == "remote" and sale.state == "completed":
            status, reason = _remote_status(cust, review)
            rows.remote.append(
                {
                    "sale_id": sale.id,
                    "status": status,
                    "reason": reason,
                    "counter_id": sale.counter_id,
                }
            )
        held[p.id] = (p.hash, review)
        batch.results[p.index] = c.ItemResult(id=sale.id, status="created", review=review)
    if rows.sales:
        _write_sales(batch.tx, rows, world.custs)


def _sale_world(batch: _Batch, todo: Sequence[c.SaleRecord]) -> _SaleWorld:
    conn = batch.tx.conn
    custs = _customers(batch.tx, (sale.customer_no for sale in todo))
    tariffs: set[tuple[str, int]] = set()
    for part in chunks(list(dict.fromkeys(sale.tariff_plan for sale in todo))):
        tariffs.update(
            (r.plan_code, int(r.version_no))
            for r in conn.execute(_TARIFF_VERSIONS.on(conn), {"plans": part})
        )
    reversed_before: set[str] = set()
    for part in chunks(list(dict.fromkeys(sale.id for sale in todo))):
        reversed_before.update(
            conn.scalars(
                _REVERSED_BEFORE.on(conn), {"ids": part, "counter": batch.counter.counter_id}
            )
        )
    names = list(
        dict.fromkeys(ref for sale in todo for ref in sale.settled_refs if "\x00" not in ref)
    )
    refs: dict[str, str] = {}
    open_refs: set[str] = set()
    for part in chunks(names):
        for a in conn.execute(_NAMED_REFS.on(conn), {"refs": part}):
            refs[a.ref] = a.customer_no
            if a.settled_by_sale is None:
                open_refs.add(a.ref)
    return _SaleWorld(custs, tariffs, reversed_before, refs, open_refs)


def _take_sale(
    tx: Tx, sale: c.SaleRecord, cust: CustomerFacts | None, world: _SaleWorld, rows: _SaleRows
) -> str | None:
    """What an accepted sale changes (arrears it settles, the card's purchase count and
    serial), and its review code."""
    review: str | None = None
    if cust is None:
        return rules.REVIEW_UNKNOWN_CUSTOMER
    # a sale reversed before it arrived paid nothing off: its money went back
    if sale.state == "completed" and sale.id not in world.reversed_before:
        settled = [ref for ref in dict.fromkeys(sale.settled_refs) if ref in world.open_refs]
        for ref in settled:
            world.open_refs.discard(ref)
            rows.settle.append({"b_ref": ref, "b_customer": sale.customer_no, "b_sale": sale.id})
        if settled:
            tx.touch_customer(sale.customer_no)
        if sale.kind == "card" and sale.purchase_count is not None:
            if rules.purchase_follows(sale, cust.purchase_count):
                columns = {"purchase_count"}
                cust.purchase_count = sale.purchase_count
                serial = clean(sale.card_serial)
                if serial and serial != cust.card_serial:
                    cust.card_serial = serial
                    columns.add("card_serial")
                rows.changed.setdefault(sale.customer_no, set()).update(columns)
                tx.touch_customer(sale.customer_no)
            else:
                review = rules.REVIEW_PURCHASE_COUNT_GAP
    if review is None:
        if cust.status == "closed":
            review = rules.REVIEW_CUSTOMER_CLOSED
        elif (sale.tariff_plan, sale.tariff_version_no) not in world.tariffs:
            review = rules.REVIEW_UNKNOWN_TARIFF
    return review


def _sale_row(
    tx: Tx, p: Posted, sale: c.SaleRecord, review: str | None, early: bool
) -> dict[str, Any]:
    return {
        "id": sale.id,
        "counter_id": sale.counter_id,
        "customer_no": sale.customer_no,
        "kind": sale.kind,
        "state": sale.state,
        "credit": sale.credit,
        "body": p.text,
        "body_hash": p.hash,
        "received_at": tx.now,
        "review": review,
        "reversed": early,
    }


def _remote_status(cust: CustomerFacts | None, review: str | None) -> tuple[str, str]:
    """Whether a completed remote purchase is issued to the meter, and why not."""
    if cust is None:
        return "failed", "unknown customer"
    if cust.meter_kind != "remote":
        return "failed", "the customer's meter is not a remote fee-control meter"
    if cust.status != "active":
        return "failed", f"the customer is {cust.status}"
    if review is not None:
        return "failed", review.replace("_", " ")
    return "issued", ""


def _write_sales(tx: Tx, rows: _SaleRows, custs: dict[str, CustomerFacts]) -> None:
    conn = tx.conn
    tx.number_rows("sales", rows.sales)
    # the UNIQUE id is the last guard: a sale a concurrent writer inserted meanwhile ends
    # this transaction in an IntegrityError, and the store's write() retries it
    conn.execute(_INSERT_SALES, rows.sales)
    if rows.remote:
        tx.number_rows("remote", rows.remote)
        conn.execute(_INSERT_REMOTE, rows.remote)
    if rows.settle:
        conn.execute(_SETTLE, rows.settle)
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for no, columns in rows.changed.items():
        names = tuple(sorted(columns))
        cust = custs[no]
        by_columns.setdefault(names, []).append(
            {"b_no": no, **{f"b_{name}": getattr(cust, name) for name in names}}
        )
    for names, update_rows in by_columns.items():
        conn.execute(_card_update(names), update_rows)
    advance_purchase_counts(tx, rows.changed)


def advance_purchase_counts(tx: Tx, customer_nos: Iterable[str]) -> None:
    """The archive's purchase count of these customers moved: the sales flagged
    ``purchase_count_gap`` that follow it now (completed card sales, not reversed) are applied
    in order, with their card serial."""
    numbers = list(dict.fromkeys(customer_nos))
    if not numbers:
        return
    cu = m.customers.c
    waiting: dict[str, dict[int, str | None]] = {}  # customer -> count -> card serial
    for part in chunks(numbers):
        for r in tx.conn.execute(_GAP_SALES.on(tx.conn), {"nos": part}):
            count = r.body.get("purchase_count")
            if isinstance(count, int):
                waiting.setdefault(r.customer_no, {})[count] = r.body.get("card_serial")
    if not waiting:
        return
    for cust_no, (count, serial) in _counts(tx, list(waiting)).items():
        moved = False
        follows = waiting[cust_no]
        while count + 1 in follows:
            count += 1
            serial = clean(follows[count]) or serial
            moved = True
        if moved:
            tx.conn.execute(
                update(m.customers)
                .where(cu.customer_no == cust_no)
                .values(purchase_count=count, card_serial=serial)
            )
            tx.touch_customer(cust_no)


def _counts(tx: Tx, numbers: Sequence[str]) -> dict[str, tuple[int, str | None]]:
    found: dict[str, tuple[int, str | None]] = {}
    for part in chunks(numbers):
        for r in tx.conn.execute(_CARD_COUNTS.on(tx.conn), {"nos": part}):
            found[r.customer_no] = (int(r.purchase_count), r.card_serial)
    return found


# --------------------------------------------------------------------------- other records


def _apply_events(batch: _Batch, posted: Sequence[Posted], skew: dt.timedelta) -> None:
    tx, conn, resource, counter = batch.tx, batch.tx.conn, batch.resource, batch.counter
    e = m.events.c
    held: dict[str, str] = {}  # id -> body_hash; the batch's accepted events join it below
    for part in chunks(list(dict.fromkeys(p.id for p in posted))):
        for r in conn.execute(select(e.id, e.body_hash).where(e.kind == resource, e.id.in_(part))):
            held[r.id] = r.body_hash
    subject = _SUBJECT[resource]
    subjects = [str(getattr(p.item, subject)) for p in posted if p.id not in held]
    # what the rules need to know of the subjects
    sales: dict[str, tuple[str, int]] = {}  # sale id -> (its counter, its amount)
    offices: dict[str, str] = {}  # customer or job -> its office
    if resource in ("reversals", "rewrites"):
        s = m.sales.c
        for part in chunks(list(dict.fromkeys(subjects))):
            for sr in conn.execute(select(s.id, s.counter_id, s.body).where(s.id.in_(part))):
                sales[sr.id] = (sr.counter_id, int(sr.body["amount"]))
    elif resource in _BY_CUSTOMER:
        offices = {no: cust.office_code for no, cust in _customers(tx, subjects).items()}
    elif resource == "job-results":
        j = m.jobs.c
        for part in chunks(list(dict.fromkeys(subjects))):
            for jr in conn.execute(select(j.id, j.office_code).where(j.id.in_(part))):
                offices[jr.id] = jr.office_code

    fresh: list[Posted] = []
    claimed: dict[str, str] = {}  # meter numbers this batch's meter changes take -> customer
    for p in posted:
        old = held.get(p.id)
        if old is not None:
            batch.repeat(p.index, p.id, old, p.hash)
            continue
        refused = _vet_event(resource, p.item, sales, offices, counter, tx.now, skew)
        if refused is None and resource == "account-events":
            refused = effects.meter_taken(tx, cast(c.AccountEventRecord, p.item), claimed)
        if refused is not None:
            batch.reject(p.index, p.id, refused)
            continue
        held[p.id] = p.hash
        fresh.append(p)
        batch.results[p.index] = c.ItemResult(id=p.id, status="created")
    if not fresh:
        return
    conn.execute(
        insert(m.events),
        [
            {
                "kind": resource,
                "id": p.id,
                "subject": str(getattr(p.item, subject)),
                "counter_id": str(p.body["counter_id"]),
                "body": p.text,
                "body_hash": p.hash,
                "received_at": tx.now,
            }
            for p in fresh
        ],
    )
    if resource == "reversals":
        effects.reverse_sales(tx, [cast(c.ReversalRecord, p.item) for p in fresh])
    elif resource == "replacements":
        for p in fresh:
            rep = cast(c.ReplacementRecord, p.item)
            effects.set_card_serial(tx, rep.customer_no, clean(rep.new_serial) or None)
    elif resource == "card-bindings":
        # a binding changes the card serial, never the purchase count
        for p in fresh:
            bind = cast(c.CardBindingRecord, p.item)
            effects.set_card_serial(tx, bind.customer_no, clean(bind.serial) or None)
    elif resource == "control-reports":
        effects.record_control_reports(tx, [cast(c.ControlReport, p.item) for p in fresh])
        compare_write_backs(tx, [cast(c.ControlReport, p.item) for p in fresh])
    elif resource == "job-results":
        effects.close_jobs(tx, [cast(c.JobResultRecord, p.item) for p in fresh])
    elif resource == "account-events":
        for p in fresh:
            effects.apply_account_event(tx, cast(c.AccountEventRecord, p.item))


def _vet_event(
    resource: str,
    item: c.Model,
    sales: dict[str, tuple[str, int]],
    offices: dict[str, str],
    counter: Counter,
    now: dt.datetime,
    skew: dt.timedelta,
) -> Refusal | None:
    if resource == "reversals":
        rev = cast(c.ReversalRecord, item)
        return rules.vet_reversal(rev, sales.get(rev.sale_id), counter.counter_id, now, skew)
    if resource == "rewrites":
        rw = cast(c.RewriteRecord, item)
        held = sales.get(rw.sale_id)
        refused = rules.own_sale(rw.sale_id, None if held is None else held[0], counter.counter_id)
    else:
        if resource == "job-results":
            what, key = "job", cast(c.JobResultRecord, item).job_id
        else:  # customer_no is not on every model
            what, key = "customer", str(getattr(item, "customer_no"))  # noqa: B009
        office = offices.get(key)
        refused = None
        if office is not None and office != counter.office_code:
            refused = Refusal(
                rules.OTHER_OFFICE,
                f"{what} {key} does not belong to office {counter.office_code!r}",
            )
    return refused or rules.vet_time(item, now, skew)
