"""The PostgreSQL server tests and benchmarks use (``CARDVEND_TEST_PG_URL``, default
postgresql://127.0.0.1:5432/test): whether it answers, and schemas of their own in it."""

from __future__ import annotations

import os
import uuid
from typing import Any

from sqlalchemy import text

from app.persistence.db import make_engine

PG_URL = os.environ.get("CARDVEND_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
_pg_state: dict[str, bool] = {}


def pg_available() -> bool:
    """Whether the server answers (asked once per process)."""
    if "ok" not in _pg_state:
        try:
            engine = make_engine(PG_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            _pg_state["ok"] = True
        except Exception:
            _pg_state["ok"] = False
    return _pg_state["ok"]


def create_pg_schema(prefix: str = "t_") -> str:
    """A new empty schema (a test's own database there); drop it with :func:`drop_pg_schema`."""
    schema = prefix + uuid.uuid4().hex[:12]
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return schema


def drop_pg_schema(schema: str) -> None:
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def in_schema(schema: str) -> dict[str, Any]:
    """Engine arguments that put a connection's tables in ``schema``."""
    return {"connect_args": {"options": f"-csearch_path={schema}"}}


def schema_url(schema: str) -> str:
    """A database URL whose connections work in ``schema`` (for a server in another process)."""
    url = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{url}?options=-csearch_path%3D{schema}"
