"""What an accepted event changes in the archive (applied by :mod:`sync.central.apply` after
the rules let the event in): reversals take sales back and the purchase count with them, a meter
change or a status step moves the customer, a replacement or a binding the card serial, control
reports the latest write-back, job results the job's status."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from sync import contract as c
from sync.central import models as m
from sync.central import rules
from sync.central.base import Tx
from sync.central.base import chunks
from sync.central.rules import Refusal


def reverse_sales(tx: Tx, reversals: Sequence[c.ReversalRecord]) -> None:
    """Each reversal takes a sales seq (as when applied one by one); the sales it reverses
    (held and not reversed yet; the rules let only their own counter reverse them) get it.  A
    reversal that comes before its sale is found by the sale when it arrives."""
    s = m.sales.c
    state: dict[str, tuple[bool, str, str | None, dict[str, Any]]] = {}
    for part in chunks(list(dict.fromkeys(r.sale_id for r in reversals))):
        for r in tx.conn.execute(
            select(s.id, s.reversed, s.customer_no, s.review, s.body).where(s.id.in_(part))
        ):
            state[r.id] = (bool(r.reversed), r.customer_no, r.review, r.body)
    seqs = tx.seqs("sales", len(reversals))
    rows: list[dict[str, Any]] = []
    back: list[dict[str, Any]] = []  # the customer's latest card purchase was reversed
    for seq, rev in zip(seqs, reversals, strict=True):
        held = state.get(rev.sale_id)
        if held is None or held[0]:
            continue
        _, customer_no, review, body = held
        state[rev.sale_id] = (True, customer_no, review, body)
        rows.append({"b_id": rev.sale_id, "b_seq": seq})
        count = body.get("purchase_count")
        if body.get("kind") == "card" and body.get("state") == "completed":
            if isinstance(count, int):
                back.append({"b_no": customer_no, "b_count": count, "b_before": count - 1})
    if not rows:
        return
    tx.conn.execute(
        update(m.sales)
        .where(s.id == bindparam("b_id"), s.reversed.is_(False))
        .values(reversed=True, seq=bindparam("b_seq")),
        rows,
    )
    # the whole amount went back to the customer: what the sale paid off is owed again
    ar = m.arrears_items.c
    for part in chunks([r["b_id"] for r in rows]):
        owing = list(
            dict.fromkeys(
                tx.conn.scalars(select(ar.customer_no).where(ar.settled_by_sale.in_(part)))
            )
        )
        if owing:
            tx.conn.execute(
                update(m.arrears_items)
                .where(ar.settled_by_sale.in_(part))
                .values(settled_by_sale=None)
            )
            for customer_no in owing:
                tx.touch_customer(customer_no)
    # the card holds the purchase before again: so does the archive, unless another purchase
    # with that count stands (a sale again after the reversal, sent before it)
    cu = m.customers.c
    for row in back:
        standing = tx.conn.scalars(
            select(s.body).where(
                s.customer_no == row["b_no"],
                s.reversed.is_(False),
                s.state == "completed",
                s.kind == "card",
            )
        )
        if any(other.get("purchase_count") == row["b_count"] for other in standing):
            continue
        done = tx.conn.execute(
            update(m.customers)
            .where(cu.customer_no == row["b_no"], cu.purchase_count == row["b_count"])
            .values(purchase_count=row["b_before"])
        )
        if done.rowcount:
            tx.touch_customer(row["b_no"])


def meter_taken(tx: Tx, event: c.AccountEventRecord, claimed: dict[str, str]) -> Refusal | None:
    """A meter change to a meter number another customer holds (or takes in this batch)."""
    meter = event.new_meter_no
    if event.kind != "meter_change" or not meter:
        return None
    cu = m.customers.c
    holder = claimed.get(meter) or tx.conn.scalar(
        select(cu.customer_no).where(cu.meter_no == meter)
    )
    if holder is not None and holder != event.customer_no:
        return Refusal(rules.METER_TAKEN, f"meter {meter} belongs to customer {holder}")
    claimed[meter] = event.customer_no
    return None


_STATUS_AFTER = {"close": "closed", "pause": "paused", "resume": "active"}


def apply_account_event(tx: Tx, event: c.AccountEventRecord) -> None:
    """The archive follows the counter's lifecycle step: the new meter number, or the status;
    the other counters see it in their next pull."""
    values: dict[str, Any] = {}
    if event.kind == "meter_change" and event.new_meter_no:
        values["meter_no"] = event.new_meter_no
    elif event.kind in _STATUS_AFTER:
        values["status"] = _STATUS_AFTER[event.kind]
    if not values:
        return
    done = tx.conn.execute(
        update(m.customers).where(m.customers.c.customer_no == event.customer_no).values(values)
    )
    if event.kind == "close":
        _settle_by_close(tx, event)
    if done.rowcount:
        tx.touch_customer(event.customer_no)


def _settle_by_close(tx: Tx, event: c.AccountEventRecord) -> None:
    """The arrears and fees a close paid (``settled_refs``, ``settled_refs_2``, ... in its
    detail, comma-separated) are settled by it."""
    refs = [
        ref
        for key, value in sorted(event.detail.items())
        if key.startswith("settled_refs") and isinstance(value, str)
        for ref in value.split(",")
        if ref
    ]
    ar = m.arrears_items.c
    for part in chunks(refs):
        tx.conn.execute(
            update(m.arrears_items)
            .where(
                ar.ref.in_(part),
                ar.customer_no == event.customer_no,
                ar.settled_by_sale.is_(None),
            )
            .values(settled_by_sale=event.id)
        )


def set_card_serial(tx: Tx, customer_no: str, serial: str | None) -> None:
    if serial is None:
        return
    done = tx.conn.execute(
        update(m.customers)
        .where(
            m.customers.c.customer_no == customer_no,
            (m.customers.c.card_serial.is_(None)) | (m.customers.c.card_serial != serial),
        )
        .values(card_serial=serial)
    )
    if done.rowcount:
        tx.touch_customer(customer_no)


def record_control_reports(tx: Tx, reports: Sequence[c.ControlReport]) -> None:
    """The latest write-back per customer wins (a report older than the one held is kept as an
    event only)."""
    cs = m.control_status.c
    last: dict[str, dt.datetime] = {}
    for part in chunks(list(dict.fromkeys(r.customer_no for r in reports))):
        for r in tx.conn.execute(
            select(cs.customer_no, cs.last_report_at).where(cs.customer_no.in_(part))
        ):
            last[r.customer_no] = r.last_report_at
    held = set(last)
    latest: dict[str, c.ControlReport] = {}
    for rep in reports:
        before = last.get(rep.customer_no)
        if before is None or rep.seen_at > before:
            last[rep.customer_no] = rep.seen_at
            latest[rep.customer_no] = rep
    rows = {
        no: {
            "customer_no": no,
            "meter_remaining": rep.meter_remaining,
            "meter_purchase_count": rep.meter_purchase_count,
            "last_report_at": rep.seen_at,
        }
        for no, rep in latest.items()
    }
    fresh = [row for no, row in rows.items() if no not in held]
    if fresh:
        tx.conn.execute(insert(m.control_status), fresh)
    # the rows held already are updated in place; bind parameters may not take column names
    newer = [{f"b_{k}": v for k, v in row.items()} for no, row in rows.items() if no in held]
    if newer:
        changed = ("meter_remaining", "meter_purchase_count", "last_report_at")
        tx.conn.execute(
            update(m.control_status)
            .where(cs.customer_no == bindparam("b_customer_no"))
            .values({name: bindparam(f"b_{name}", type_=cs[name].type) for name in changed}),
            newer,
        )


def close_jobs(tx: Tx, outcomes: Sequence[c.JobResultRecord]) -> None:
    """Each job result takes a jobs seq (as when applied one by one); a held job whose status
    it changes gets it."""
    j = m.jobs.c
    status: dict[str, str] = {}
    for part in chunks(list(dict.fromkeys(r.job_id for r in outcomes))):
        for r in tx.conn.execute(select(j.id, j.status).where(j.id.in_(part))):
            status[r.id] = r.status
    seqs = tx.seqs("jobs", len(outcomes))
    rows: list[dict[str, Any]] = []
    for seq, res in zip(seqs, outcomes, strict=True):
        now = status.get(res.job_id)
        if now is not None and now != res.outcome:
            status[res.job_id] = res.outcome
            rows.append({"b_id": res.job_id, "b_status": res.outcome, "b_seq": seq})
    if rows:
        tx.conn.execute(
            update(m.jobs)
            .where(j.id == bindparam("b_id"), j.status != bindparam("b_status"))
            .values(status=bindparam("b_status"), seq=bindparam("b_seq")),
            rows,
        )
