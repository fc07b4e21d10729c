"""Arrears control (seed 3.9): customers with overdue arrears get reminders until they pay.

An arrears item is overdue when it is open (``settled_by_sale`` NULL) and its ``due_at`` lies
more than the grace (:attr:`ArrearsControl.grace`, ``--arrears-grace-days``, default 30) in the
past; an item without a due date is never judged overdue.  Each run, set-based:

1. customers with overdue arrears come under arrears control (``central_arrears_control``,
   state ``active``; a customer lifted before comes back with a new count);
2. every active customer whose last reminder is at least the interval old
   (``--arrears-interval-h``, default 24) gets one: an ``alarm`` command to the remote meter of
   a customer under fee control, and an ``arrears`` SMS with the overdue amount;
3. an active customer with nothing overdue any more (paid) is lifted, and an alarm ``release``
   goes to the meter when the balance state is normal (a low balance keeps its own alarm).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from typing import Final

from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection

from sync.central import models as m
from sync.central import sms
from sync.central.base import StoreBase
from sync.central.base import chunks

ACTIVE, LIFTED = "active", "lifted"
GRACE_DAYS: Final = 30
INTERVAL_H: Final = 24


class ArrearsControl:
    """The arrears step of the control loop (runs before the commands are sent)."""

    def __init__(
        self, store: StoreBase, *, grace_days: float = GRACE_DAYS, interval_h: float = INTERVAL_H
    ) -> None:
        if grace_days < 0 or interval_h <= 0:
            raise ValueError("the arrears grace cannot be negative nor the interval zero")
        self.store = store
        self.grace = dt.timedelta(days=grace_days)
        self.interval = dt.timedelta(hours=interval_h)
        self.last: dict[str, int] = {}  # what the last run did (``central control run --json``)

    def before_send(self) -> None:
        self.last = self.run()

    def after_send(self) -> None:
        pass

    def run(self) -> dict[str, int]:
        """One pass; how many came under control, were reminded and were lifted."""
        now = self.store.now()
        with self.store.begin() as conn:
            overdue = self._overdue(conn, now)
            came = self._enter(conn, set(overdue), now)
            reminded = self._remind(conn, overdue, now)
            lifted = self._lift(conn, set(overdue), now)
        return {"entered": came, "reminded": reminded, "lifted": lifted}

    def _overdue(self, conn: Connection, now: dt.datetime) -> dict[str, int]:
        """Customer -> the amount of their overdue arrears."""
        ar, cu = m.arrears_items.c, m.customers.c
        rows = conn.execute(
            select(ar.customer_no, func.sum(ar.amount))
            .join(m.customers, cu.customer_no == ar.customer_no)
            .where(
                ar.settled_by_sale.is_(None),
                ar.due_at.is_not(None),
                ar.due_at <= now - self.grace,
                cu.status == "active",
            )
            .group_by(ar.customer_no)
        ).all()
        return {str(r[0]): int(r[1]) for r in rows}

    def _enter(self, conn: Connection, overdue: set[str], now: dt.datetime) -> int:
        ac = m.arrears_control.c
        known = dict(conn.execute(select(ac.customer_no, ac.state)).all())
        back = [c for c in overdue if known.get(c) == LIFTED]
        new = [c for c in overdue if c not in known]
        for part in chunks(back):
            conn.execute(
                update(m.arrears_control)
                .where(ac.customer_no.in_(part))
                .values(state=ACTIVE, since=now, reminders=0, last_reminder_at=None, lifted_at=None)
            )
        if new:
            conn.execute(
                insert(m.arrears_control),
                [{"customer_no": c, "state": ACTIVE, "since": now, "reminders": 0} for c in new],
            )
        return len(back) + len(new)

    def _remind(self, conn: Connection, overdue: dict[str, int], now: dt.datetime) -> int:
        ac, co = m.arrears_control.c, m.control.c
        due = conn.execute(
            select(ac.customer_no, ac.since, ac.reminders, co.meter_no)
            .outerjoin(m.control, co.customer_no == ac.customer_no)
            .where(
                ac.state == ACTIVE,
                (ac.last_reminder_at.is_(None)) | (ac.last_reminder_at <= now - self.interval),
            )
        ).all()
        due = [r for r in due if r[0] in overdue]
        if not due:
            return 0
        _commands(conn, [(r[0], r[3]) for r in due if r[3] is not None], "alarm", "arrears", now)
        notices = [
            {
                "customer_no": number,
                "kind": "arrears",
                "cause": f"{number}:{since.timestamp():.0f}:{reminders + 1}",
                "owed": overdue[number],
            }
            for number, since, reminders, _ in due
        ]
        sms.queue(conn, notices, now)
        for part in chunks([r[0] for r in due]):
            conn.execute(
                update(m.arrears_control)
                .where(ac.customer_no.in_(part))
                .values(reminders=ac.reminders + 1, last_reminder_at=now)
            )
        return len(due)

    def _lift(self, conn: Connection, overdue: set[str], now: dt.datetime) -> int:
        ac, co = m.arrears_control.c, m.control.c
        paid = conn.execute(
            select(ac.customer_no, co.meter_no, co.state)
            .outerjoin(m.control, co.customer_no == ac.customer_no)
            .where(ac.state == ACTIVE)
        ).all()
        paid = [r for r in paid if r[0] not in overdue]
        if not paid:
            return 0
        normal = [(r[0], r[1]) for r in paid if r[1] is not None and r[2] == "normal"]
        _commands(conn, normal, "release", "arrears paid", now)
        for part in chunks([r[0] for r in paid]):
            conn.execute(
                update(m.arrears_control)
                .where(ac.customer_no.in_(part))
                .values(state=LIFTED, lifted_at=now)
            )
        return len(paid)


def _commands(
    conn: Connection, meters: list[tuple[str, str]], command: str, reason: str, now: dt.datetime
) -> None:
    """Queue ``command`` for each (customer, meter); the loop's send step delivers them."""
    rows: list[dict[str, Any]] = [
        {
            "id": str(uuid.uuid4()),
            "customer_no": customer_no,
            "meter_no": meter_no,
            "command": command,
            "reason": reason,
            "status": "pending",
            "attempts": 0,
            "next_at": now,
            "last_error": "",
            "created_at": now,
        }
        for customer_no, meter_no in meters
    ]
    for part in chunks(rows, 5000):
        conn.execute(insert(m.commands), list(part))


__all__ = ["ArrearsControl"]
