"""Lifting a remote customer's fee control and putting it back (seed 3.6: control input and
cancellation), as a counter of the customer's office asks (``PUT
/customers/{customer_no}/control-lift``, :class:`sync.contract.ControlLift`).

A lift needs the supervisor who approved it at the counter (the counter's approvals, action
``lift_control``; here: an approver who is not the operator).  The station then marks the
customer lifted (``central_control.lifted_at``; the control loop makes no decisions for it),
sets its state back to normal, drops the commands still waiting and queues a close permit and
an alarm release, which the next run sends.  A resume clears the mark and has the control
parameters issued again; the next run's decision trips or alarms as the balance says.  Each
request is kept in ``central_events`` (kind ``control_lift``: who asked, who approved, why),
idempotent by its id: a retry changes nothing more.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Final

from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from sync import contract as c
from sync.central import models as m
from sync.central.base import Counter
from sync.central.base import RequestRefused
from sync.central.base import StoreBase
from sync.central.base import Tx

KIND: Final = "control_lift"


class LiftRefused(RequestRefused):
    """A lift or resume the station refuses: an HTTP status, a stable code and a message (see
    :class:`RequestRefused`)."""


def apply_lift(store: StoreBase, counter: Counter, customer_no: str, rec: c.ControlLift) -> bool:
    """Lift or resume ``customer_no``'s control for ``counter``; False when the customer is not
    one of the counter's office under control (a 404, like an unknown one)."""
    if rec.action == "lift" and (not rec.approver_id or rec.approver_id == rec.operator_id):
        raise LiftRefused(
            422, "approver_is_operator", "a lift needs a supervisor other than the operator"
        )

    def work(tx: Tx) -> bool:
        co, cu, ev = m.control.c, m.customers.c, m.events.c
        found = tx.conn.execute(
            select(co.customer_no)
            .join(m.customers, cu.customer_no == co.customer_no)
            .where(co.customer_no == customer_no, cu.office_code == counter.office_code)
        ).first()
        if found is None:
            return False
        seen = tx.conn.execute(select(ev.id).where(ev.kind == KIND, ev.id == rec.id)).first()
        if seen is not None:
            return True  # a retry: done already
        body = rec.model_dump(mode="json")
        tx.conn.execute(
            insert(m.events).values(
                kind=KIND, id=rec.id, subject=customer_no, counter_id=counter.counter_id,
                body=body, body_hash=_hash(body), received_at=tx.now,
            )
        )  # fmt: skip
        if rec.action == "lift":
            _lift(tx, customer_no, rec.id)
        else:
            tx.conn.execute(
                update(m.control)
                .where(co.customer_no == customer_no, co.lifted_at.is_not(None))
                .values(lifted_at=None, lift_event=rec.id, params_at=None, updated_at=tx.now)
            )
        return True

    return store.write(work, ())


def _lift(tx: Tx, customer_no: str, event_id: str) -> None:
    co, cm = m.control.c, m.commands.c
    done = tx.conn.execute(
        update(m.control)
        .where(co.customer_no == customer_no, co.lifted_at.is_(None))
        .values(lifted_at=tx.now, lift_event=event_id, state="normal", state_since=tx.now,
                updated_at=tx.now)
    ).rowcount  # fmt: skip
    if not done:
        return  # lifted already
    tx.conn.execute(
        update(m.commands)
        .where(cm.customer_no == customer_no, cm.status == "pending")
        .values(status="dropped", done_at=tx.now)
    )
    meter_no = tx.conn.execute(
        select(co.meter_no).where(co.customer_no == customer_no)
    ).scalar_one()
    tx.conn.execute(
        insert(m.commands),
        [
            {
                "id": str(uuid.uuid4()), "customer_no": customer_no, "meter_no": meter_no,
                "command": command, "reason": "lifted", "status": "pending", "attempts": 0,
                "next_at": tx.now, "last_error": "",
                "created_at": tx.now + dt.timedelta(microseconds=i),
            }
            for i, command in enumerate(("close", "release"))
        ],
    )  # fmt: skip


def _hash(body: object) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


__all__ = ["KIND", "LiftRefused", "apply_lift"]
