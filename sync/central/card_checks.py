"""Balance comparison of card customers (seed 3.5): each write-back a counter reports is checked
against what the station expects, inside the transaction that applies the reports.

- **balance**: the station expects the meter to hold at most what was loaded onto it: the credit
  of the completed, unreversed card sales whose purchase count the meter has reached, less the
  consumption the station knows of (none yet for card meters: they are not read remotely, so
  consumption only ever lowers the meter's balance below the expectation).  A meter holding more
  than that by over :data:`BALANCE_TOLERANCE_FEN` opens ``balance_mismatch``.
- **purchase count**: the meter's count is the archive's (the last card loaded) or one less (a
  card sold and not yet inserted); anything else opens ``purchase_count_gap``.
- **illegal inserts**: a write-back whose illegal-insert count is higher than the last one
  reported (0 before any) opens ``illegal_insert``.

One open exception per customer and kind (:func:`~sync.central.exceptions.open_exception`).
Each customer's checks run in a savepoint: one that fails is logged and skipped, the rest and
the reports themselves are applied.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy import update

from sync import contract as c
from sync.central import models as m
from sync.central.base import Tx
from sync.central.base import chunks
from sync.central.exceptions import open_exception

log = logging.getLogger(__name__)

BALANCE_TOLERANCE_FEN = 100  # 1 yuan: rounding on the meter, a partly loaded last purchase


def compare_write_backs(tx: Tx, reports: Sequence[c.ControlReport]) -> int:
    """Check each customer's report that is now the one held (``reports``: the ones just
    applied; an older one than the station held is not compared); the exceptions opened."""
    if not reports:
        return 0
    nos = list(dict.fromkeys(r.customer_no for r in reports))
    cu, cs, s = m.customers.c, m.control_status.c, m.sales.c
    archive: dict[str, Any] = {}
    illegal_before: dict[str, int] = {}
    latest: dict[str, Any] = {}  # the write-back the station holds now (the newest seen)
    sold: dict[str, list[tuple[int, int]]] = {}  # customer -> [(purchase count, credit)]
    for part in chunks(nos):
        for cust in tx.conn.execute(
            select(cu.customer_no, cu.meter_kind, cu.purchase_count).where(cu.customer_no.in_(part))
        ):
            archive[cust.customer_no] = cust
        for held in tx.conn.execute(
            select(cs.customer_no, cs.illegal_insert_count, cs.last_report_at).where(
                cs.customer_no.in_(part)
            )
        ):
            illegal_before[held.customer_no] = int(held.illegal_insert_count or 0)
            latest[held.customer_no] = held.last_report_at
        for row in tx.conn.execute(
            select(s.customer_no, s.credit, s.body).where(
                s.customer_no.in_(part),
                s.kind == "card",
                s.state == "completed",
                s.reversed.is_(False),
            )
        ):
            count = (row.body or {}).get("purchase_count")
            if isinstance(count, int):
                sold.setdefault(row.customer_no, []).append((count, int(row.credit)))
    opened = 0
    done: set[str] = set()
    for rep in reports:
        found = archive.get(rep.customer_no)
        if found is None or found.meter_kind == "remote" or rep.customer_no in done:
            continue
        if latest.get(rep.customer_no) != rep.seen_at:
            continue  # an older write-back than the one held: kept as an event only
        done.add(rep.customer_no)
        savepoint = tx.conn.begin_nested()
        try:
            opened += _check(tx, rep, found, sold.get(rep.customer_no, []), illegal_before)
            savepoint.commit()
        except Exception:
            savepoint.rollback()
            log.exception("write-back of customer %s not compared", rep.customer_no)
    return opened


def _check(
    tx: Tx,
    rep: c.ControlReport,
    cust: Any,
    sold: list[tuple[int, int]],
    illegal_before: dict[str, int],
) -> int:
    no, opened = rep.customer_no, 0
    loaded = sum(credit for count, credit in sold if count <= rep.meter_purchase_count)
    consumed = 0  # the station reads no card meter: it knows of no consumption
    expected = loaded - consumed
    if rep.meter_remaining - expected > BALANCE_TOLERANCE_FEN:
        opened += open_exception(
            tx.conn, tx.now, no, "balance_mismatch",
            f"the meter holds {rep.meter_remaining} fen, the station expects at most {expected} "
            f"(loaded {loaded} over {rep.meter_purchase_count} purchases), seen "
            f"{rep.seen_at.isoformat()}",
        )  # fmt: skip
    held = int(cust.purchase_count)
    if not held - 1 <= rep.meter_purchase_count <= held:
        opened += open_exception(
            tx.conn, tx.now, no, "purchase_count_gap",
            f"the meter's purchase count is {rep.meter_purchase_count}, the archive's {held}",
        )  # fmt: skip
    if rep.illegal_insert_count is not None:
        before = illegal_before.get(no, 0)
        if rep.illegal_insert_count > before:
            opened += open_exception(
                tx.conn, tx.now, no, "illegal_insert",
                f"illegal inserts {before} -> {rep.illegal_insert_count}",
            )  # fmt: skip
        tx.conn.execute(
            update(m.control_status)
            .where(m.control_status.c.customer_no == no)
            .values(illegal_insert_count=max(before, rep.illegal_insert_count))
        )
        illegal_before[no] = max(before, rep.illegal_insert_count)
    return opened
