"""Rows for upgrade tests, made from the schema as it is at a revision (reflected, not the
current models: old schemas differ): :func:`fill` puts one row in every table, :func:`check`
finds each row again after an upgrade, with its values, and the columns added since filled.

Values follow the column's type; a ``CHECK (col IN (...))`` gives the allowed value; a foreign
key takes the parent row's value; :data:`OVERRIDES` holds the few values a generic guess cannot
meet (money that must add up, single-row tables).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import types as sat

WHEN = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
OVERRIDES: dict[str, dict[str, Any]] = {
    "sales": {"amount": 300, "credit": 100, "arrears": 100, "fees": 100},
    "audit_head": {"id": 1},
}
SKIP = {"alembic_version", "central_alembic_version"}
_IN_LIST = re.compile(r"\b(\w+)\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
# PostgreSQL answers an IN list as: kind::text = ANY (ARRAY['a'::character varying, ...
_ANY_ARRAY = re.compile(r"\(?(\w+)\)?::text\s*=\s*ANY\s*\(\(?ARRAY\[([^\]]*)\]")


@dataclass
class Filled:
    """What :func:`fill` wrote: each table's row (column -> value) and the columns there were."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    columns: dict[str, set[str]] = field(default_factory=dict)


def _allowed(inspector: sa.Inspector, table: str) -> dict[str, str]:
    allowed: dict[str, str] = {}
    for check in inspector.get_check_constraints(table):
        text = check["sqltext"]
        for column, values in _IN_LIST.findall(text) + _ANY_ARRAY.findall(text):
            first = re.search(r"'([^']*)'", values)
            if first:
                allowed.setdefault(column, first.group(1))
    return allowed


def _value(column: sa.Column[Any], n: int) -> Any:
    kind = column.type
    if isinstance(kind, sat.Boolean):
        return False
    if isinstance(kind, sat.Integer | sat.Numeric):
        return n
    if isinstance(kind, sat.DateTime):
        return WHEN if getattr(kind, "timezone", False) else WHEN.replace(tzinfo=None)
    if isinstance(kind, sat.Date):
        return WHEN.date()
    if isinstance(kind, sat.JSON):
        return {"n": n}
    if isinstance(kind, sat.LargeBinary):
        return bytes([n % 256]) * 4
    text = f"{column.name[:6]}{n}"
    length = getattr(kind, "length", None)
    return text[-length:] if length else text


def _row(table: sa.Table, allowed: dict[str, str], filled: Filled, n: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column in table.columns:
        parents = [fk for fk in column.foreign_keys if fk.column.table.name in filled.rows]
        if parents:
            row[column.name] = filled.rows[parents[0].column.table.name][parents[0].column.name]
        elif column.name in allowed:
            row[column.name] = allowed[column.name]
        else:
            row[column.name] = _value(column, n)
    row.update({k: v for k, v in OVERRIDES.get(table.name, {}).items() if k in table.columns})
    return row


def fill(engine: sa.Engine, filled: Filled | None = None) -> Filled:
    """One row in every table that has none (foreign keys to the rows made before), added to
    ``filled``."""
    filled = filled or Filled()
    meta = sa.MetaData()
    meta.reflect(engine)
    inspector = sa.inspect(engine)
    with engine.begin() as conn:
        for n, table in enumerate(meta.sorted_tables, start=1):
            if table.name in SKIP:
                continue
            existing = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            if existing:  # rows a migration put there (a single-row table): keep them
                continue
            row = _row(table, _allowed(inspector, table.name), filled, n)
            conn.execute(table.insert().values(row))
            filled.rows[table.name] = row
            filled.columns[table.name] = {c.name for c in table.columns}
    return filled


def _same(stored: Any, written: Any) -> bool:
    if isinstance(written, dt.datetime) and isinstance(stored, str):
        return stored.startswith(written.strftime("%Y-%m-%d %H:%M:%S"))
    if isinstance(written, dt.datetime) and isinstance(stored, dt.datetime):
        return stored.replace(tzinfo=None) == written.replace(tzinfo=None)
    if isinstance(written, bool):
        return bool(stored) == written
    return bool(stored == written)


def check(engine: sa.Engine, filled: Filled) -> list[str]:
    """What is wrong: rows lost or changed, new NOT NULL columns left empty ([] when none)."""
    problems: list[str] = []
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for name, written in filled.rows.items():
            if name not in meta.tables:
                continue  # a table a migration dropped (none does today)
            table = meta.tables[name]
            key = [c for c in table.primary_key.columns if c.name in written] or [
                c for c in table.columns if c.name in written
            ][:1]
            where = [c == written[c.name] for c in key]
            stored = conn.execute(sa.select(table).where(*where)).mappings().first()
            if stored is None:
                problems.append(f"{name}: the row is gone")
                continue
            for column, value in written.items():
                if column in stored and not _same(stored[column], value):
                    problems.append(f"{name}.{column}: {value!r} became {stored[column]!r}")
            for column in table.columns:
                added = column.name not in filled.columns[name]
                if added and not column.nullable and stored[column.name] is None:
                    problems.append(f"{name}.{column.name}: added without a value")
    return problems
