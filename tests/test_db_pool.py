"""The pool of a server database (PostgreSQL): a connection idle a while is pinged before use
and replaced when the database has closed it; one in steady use is not pinged, and the
database's loss shows once on its next statement, after which the pool has recovered."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.persistence.db import make_engine
from tests.rigs.pg import PG_URL
from tests.rigs.pg import pg_available

pytestmark = pytest.mark.skipif(not pg_available(), reason=f"no PostgreSQL server at {PG_URL}")


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(pid: int) -> None:
    admin = make_engine(PG_URL)
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    finally:
        admin.dispose()
    time.sleep(0.2)  # the backend is gone; the pooled connection does not know yet


def test_an_idle_connection_the_database_closed_is_replaced_before_use() -> None:
    engine = make_engine(PG_URL, ping_after=0.0, pool_size=1, max_overflow=0)
    try:
        first = backend_pid(engine)
        terminate(first)
        again = backend_pid(engine)  # no error: the ping found it dead, the pool reconnected
        assert again != first
        assert backend_pid(engine) == again  # and keeps the new one
    finally:
        engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged_and_the_pool_recovers_after_one_error() -> None:
    engine = make_engine(PG_URL, ping_after=3600.0, pool_size=1, max_overflow=0)
    try:
        first = backend_pid(engine)
        terminate(first)
        with pytest.raises(DBAPIError) as failed:
            backend_pid(engine)  # no ping: its next statement finds the connection closed
        assert failed.value.connection_invalidated
        assert backend_pid(engine) not in (first, 0)
    finally:
        engine.dispose()
