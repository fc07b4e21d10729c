"""Measurement tasks (seed 3.5): which controlled customers' meters the control loop reads, how
often, and which registers (``central_measurement_tasks``; ``central tasks`` administers them).

A task selects a group of customers by office and/or tariff plan (neither: every customer) and
says how often (``every_min``) and which registers (:data:`REGISTERS`, default all; ``energy``,
the total and by rate, and ``clock``, the meter's time, are always read: billing needs the energy,
and the jump check and the tier year go by the meter's clock; ``status``, the relay and status
words, is optional: a reading without it leaves the relay last read as it was).  The registers
are those of the most frequent task that matches (ties: by name).  A customer that several tasks match is read as the
most frequent of them says; one that no task matches is read every run, as is everyone when
there is no task at all (so adding a task can only make reading less frequent for its group).

The control loop asks :func:`due_clause` for the customers due now: never read, or last read at
least their interval ago (``read_at + every <= now``, time from ``store.now()``), chosen in one
SELECT on SQLite and PostgreSQL alike (the few distinct intervals become bound cut-off times).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from typing import Final

from sqlalchemy import ColumnElement
from sqlalchemy import and_
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import true
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict
from app.errors import NotFound
from app.errors import ValidationError
from app.i18n import N_
from sync.central import models as m
from sync.central.base import StoreBase

ENERGY: Final = "energy"
REGISTERS: Final = (ENERGY, "status", "clock")
MANDATORY: Final = frozenset({ENERGY, "clock"})
MAX_EVERY_MIN: Final = 31 * 24 * 60  # a month
NAME_LEN: Final = 32


class BadInterval(ValidationError):
    code = "bad_interval"
    template = N_("The interval {every} is not valid: give whole minutes from 1 to {most}.")


class UnknownRegister(ValidationError):
    code = "unknown_register"
    template = N_("Unknown register {register}: use energy, status or clock.")


class UnknownOffice(NotFound):
    code = "unknown_office"
    template = N_("No office {office}: add it with 'central offices add' first.")


class BadTaskName(ValidationError):
    code = "bad_task_name"
    template = N_("The task name {name} is not valid: 1 to 32 characters, no spaces.")


class DuplicateTask(Conflict):
    code = "duplicate_task"
    template = N_("A measurement task named {name} exists already.")


class NoSuchTask(NotFound):
    code = "no_such_task"
    template = N_("No measurement task named {name}.")


def parse_registers(text: str | Iterable[str] | None) -> list[str]:
    """The registers a task reads, in :data:`REGISTERS` order (None: all), :data:`MANDATORY`
    always among them."""
    if text is None:
        return list(REGISTERS)
    items = text.split(",") if isinstance(text, str) else list(text)
    wanted = set(MANDATORY)
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        if name not in REGISTERS:
            raise UnknownRegister(register=item.strip())
        wanted.add(name)
    return [r for r in REGISTERS if r in wanted]


def add_task(
    store: StoreBase,
    name: str,
    every_min: int,
    *,
    office: str | None = None,
    plan: str | None = None,
    registers: str | Iterable[str] | None = None,
) -> dict[str, Any]:
    """Add a task; answers it as :func:`list_tasks` shows it."""
    if not name or len(name) > NAME_LEN or any(ch.isspace() for ch in name):
        raise BadTaskName(name=name)
    if isinstance(every_min, bool) or not isinstance(every_min, int):
        raise BadInterval(every=every_min, most=MAX_EVERY_MIN)
    if not 1 <= every_min <= MAX_EVERY_MIN:
        raise BadInterval(every=every_min, most=MAX_EVERY_MIN)
    regs = parse_registers(registers)
    of = m.offices.c
    row = {
        "name": name,
        "office_code": office or None,
        "tariff_plan": plan or None,
        "every_min": every_min,
        "registers": regs,
        "created_at": store.now(),
    }
    try:
        with store.begin() as conn:
            if office and conn.execute(select(of.code).where(of.code == office)).first() is None:
                raise UnknownOffice(office=office)
            conn.execute(insert(m.measurement_tasks).values(**row))
    except IntegrityError as exc:
        raise DuplicateTask(name=name) from exc
    return _view(row)


def _view(row: Any) -> dict[str, Any]:
    return {
        "name": row["name"],
        "office": row["office_code"],
        "plan": row["tariff_plan"],
        "every_min": int(row["every_min"]),
        "registers": list(row["registers"]),
        "created_at": row["created_at"].isoformat(),
    }


def list_tasks(store: StoreBase) -> list[dict[str, Any]]:
    t = m.measurement_tasks.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(m.measurement_tasks).order_by(t.name)).mappings().all()
    return [_view(r) for r in rows]


def remove_task(store: StoreBase, name: str) -> None:
    t = m.measurement_tasks.c
    with store.begin() as conn:
        if not conn.execute(delete(m.measurement_tasks).where(t.name == name)).rowcount:
            raise NoSuchTask(name=name)


def _matching(cust: Any) -> Any:
    """The tasks that match the customer row ``cust`` (a correlated WHERE)."""
    t = m.measurement_tasks.c
    return and_(
        or_(t.office_code.is_(None), t.office_code == cust.office_code),
        or_(t.tariff_plan.is_(None), t.tariff_plan == cust.tariff_plan),
    )


def every_of(cust: Any) -> Any:
    """The interval in minutes a customer is read at (NULL: no task matches: every run)."""
    t = m.measurement_tasks.c
    return select(func.min(t.every_min)).where(_matching(cust)).scalar_subquery()


def registers_of(cust: Any) -> Any:
    """The registers a customer's meter is read for (NULL: no task matches: all): those of
    the most frequent task that matches."""
    t = m.measurement_tasks.c
    return (
        select(t.registers)
        .where(_matching(cust))
        .order_by(t.every_min, t.name)
        .limit(1)
        .scalar_subquery()
    )


def due_clause(conn: Connection, now: dt.datetime) -> ColumnElement[bool]:
    """A condition on ``central_control`` joined with ``central_customers``: the customer's
    meter is due to be read at ``now`` (always true when there is no task)."""
    t, co, cu = m.measurement_tasks.c, m.control.c, m.customers.c
    intervals = [int(x) for x in conn.execute(select(t.every_min).distinct()).scalars()]
    if not intervals:
        return true()
    every = every_of(cu)
    return or_(
        every.is_(None),
        co.read_at.is_(None),
        *(and_(every == v, co.read_at <= now - dt.timedelta(minutes=v)) for v in sorted(intervals)),
    )


__all__ = [
    "REGISTERS",
    "BadInterval",
    "BadTaskName",
    "DuplicateTask",
    "NoSuchTask",
    "UnknownOffice",
    "UnknownRegister",
    "add_task",
    "due_clause",
    "every_of",
    "list_tasks",
    "parse_registers",
    "registers_of",
    "remove_task",
]
