"""The exceptions queue (seed 3.14): opening, the workflow, its history, what a counter sees.

States and the moves between them (:data:`MOVES`)::

    new ──assign──▶ assigned ──explain──▶ explained   (closed: the cause is explained)
     │                │   ╰──resolve──▶ resolved       (closed, final)
     ╰──escalate──▶ escalated ◀──escalate──╯
                      ├──assign──▶ assigned            (taken up again)
                      ╰──resolve──▶ resolved

``assigned`` may be assigned again (to another operator).  ``explained`` and ``resolved`` are
final: a cause that comes back opens a new exception (one *open* exception per customer and
kind, :data:`OPEN_STATES`, as the control loop has always counted them).  Each exception carries
its customer's office; a counter sees and acts on its office's only (another office's id is
unknown to it).  Every step is a row of ``central_exception_events`` (who, which counter, when,
the note), opening included.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from sync import contract as c
from sync.central import models as m
from sync.central.base import Counter
from sync.central.base import Reply
from sync.central.base import RequestRefused
from sync.central.base import StoreBase
from sync.central.base import Tx
from sync.central.base import keyed_reply
from sync.central.base import problem_json

OPEN_STATES = ("new", "assigned", "escalated")
STATES = ("new", "assigned", "explained", "resolved", "escalated")
# action -> (the states it may start from, the state it leads to)
MOVES: dict[str, tuple[tuple[str, ...], str]] = {
    "assign": (("new", "assigned", "escalated"), "assigned"),
    "explain": (("assigned",), "explained"),
    "resolve": (("assigned", "escalated"), "resolved"),
    "escalate": (("new", "assigned"), "escalated"),
}
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
LIST_MAX = 500


class ExceptionError(RequestRefused):
    """A step of the exceptions queue refused (see :class:`RequestRefused`)."""


def open_exception(conn: Connection, now: Any, customer_no: str, kind: str, detail: str) -> int:
    """Open an exception unless one of this kind is open for the customer (1 if opened), with
    its customer's office and its "opened" history entry."""
    ex = m.exceptions.c
    open_one = conn.execute(
        select(ex.id).where(
            ex.customer_no == customer_no, ex.kind == kind, ex.state.in_(OPEN_STATES)
        )
    ).first()
    if open_one is not None:
        return 0
    office = conn.execute(
        select(m.customers.c.office_code).where(m.customers.c.customer_no == customer_no)
    ).scalar()
    exc_id = str(uuid.uuid4())
    conn.execute(
        insert(m.exceptions).values(
            id=exc_id,
            customer_no=customer_no,
            kind=kind,
            detail=detail[:300],
            state="new",
            office_code=office or "",
            note="",
            created_at=now,
            updated_at=now,
        )
    )
    conn.execute(
        insert(m.exception_events).values(
            exception_id=exc_id, action="opened", from_state=None, to_state="new", note="", at=now
        )
    )
    return 1


def _item(row: Any) -> c.ExceptionItem:
    return c.ExceptionItem.model_validate(row, from_attributes=True)


def _find(conn: Connection, counter: Counter, exc_id: str, *, lock: bool = False) -> Any:
    """The exception ``exc_id`` of the counter's office; a malformed, unknown or foreign id is
    the same 404 (another office's exceptions do not exist for this counter)."""
    if not isinstance(exc_id, str) or _ID.fullmatch(exc_id) is None:
        raise ExceptionError(404, "not_found", f"no exception {exc_id[:64]!r}")
    ex = m.exceptions.c
    stmt = select(m.exceptions).where(ex.id == exc_id, ex.office_code == counter.office_code)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise ExceptionError(404, "not_found", f"no exception {exc_id}")
    return row


def list_exceptions(
    store: StoreBase, counter: Counter, state: str | None = None, limit: int = 100
) -> c.ExceptionList:
    """The office's exceptions, newest first (``state``: one state, or ``open``)."""
    ex = m.exceptions.c
    stmt = select(m.exceptions).where(ex.office_code == counter.office_code)
    if state == "open":
        stmt = stmt.where(ex.state.in_(OPEN_STATES))
    elif state is not None:
        stmt = stmt.where(ex.state == state)
    stmt = stmt.order_by(ex.created_at.desc(), ex.id).limit(min(max(limit, 1), LIST_MAX))
    with store._reading() as conn:
        return c.ExceptionList(items=[_item(r) for r in conn.execute(stmt)])


def _detail(conn: Connection, row: Any) -> c.ExceptionDetail:
    ev = m.exception_events.c
    history = [
        c.ExceptionEvent.model_validate(e, from_attributes=True)
        for e in conn.execute(
            select(m.exception_events).where(ev.exception_id == row.id).order_by(ev.id)
        )
    ]
    return c.ExceptionDetail(**_item(row).model_dump(), history=history)


def show_exception(store: StoreBase, counter: Counter, exc_id: str) -> c.ExceptionDetail:
    with store._reading() as conn:
        return _detail(conn, _find(conn, counter, exc_id))


def _move(tx: Tx, counter: Counter, exc_id: str, req: c.ExceptionAction) -> c.ExceptionDetail:
    row = _find(tx.conn, counter, exc_id, lock=True)
    starts, target = MOVES[req.action]
    if row.state not in starts:
        raise ExceptionError(
            409,
            "illegal_transition",
            f"cannot {req.action} an exception in state {row.state} "
            f"(only from {', '.join(starts)})",
        )
    if req.action == "assign" and not req.assignee:
        raise ExceptionError(400, "bad_request", "assign needs the assignee")
    assignee = req.assignee if req.action == "assign" else row.assignee
    tx.conn.execute(
        update(m.exceptions)
        .where(m.exceptions.c.id == row.id)
        .values(
            state=target,
            assignee=assignee,
            updated_by=req.operator_id,
            note=req.note,
            updated_at=tx.now,
        )
    )
    tx.conn.execute(
        insert(m.exception_events).values(
            exception_id=row.id,
            action=req.action,
            from_state=row.state,
            to_state=target,
            operator_id=req.operator_id,
            counter_id=counter.counter_id,
            note=req.note,
            at=tx.now,
        )
    )
    return _detail(tx.conn, _find(tx.conn, counter, exc_id))


def act(
    store: StoreBase,
    counter: Counter,
    exc_id: str,
    req: c.ExceptionAction,
    *,
    key: str,
    request_hash: str,
) -> Reply:
    """One step of the workflow under an Idempotency-Key: the answer (a refusal too) is kept with
    the key in the step's transaction and replayed for the same request; the same key with
    another request is a 409 conflict."""

    def answer(tx: Tx) -> tuple[int, bytes]:
        nested = tx.conn.begin_nested()
        try:
            body = _move(tx, counter, exc_id, req).model_dump_json().encode()
            nested.commit()
        except ExceptionError as err:
            nested.rollback()
            return err.status, problem_json(err.code, err.message)
        return 200, body

    def work(tx: Tx) -> Reply:
        return keyed_reply(tx, counter.counter_id, key, request_hash, lambda: answer(tx))

    return store.write(work, (), (counter.office_code,))
