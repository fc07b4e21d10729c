"""What the reports share: one consistent snapshot, local days, the office's name."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.localtime import zone
from app.persistence.db import Database
from app.persistence.models import Office
from app.persistence.models import Shift
from app.services.shifts import open_shift_id


def day_bounds(day: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """Local midnight of ``day`` and of the next day in ``tz`` (aware)."""
    z = zone(tz)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=z)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=z)
    return start, end


def _int(value: Any) -> int:
    return int(value or 0)  # PostgreSQL sums BIGINT into NUMERIC


def _office_name(session: Session, office_code: str | None) -> str | None:
    if office_code is None:
        return None
    office = session.get(Office, office_code)
    return office.name if office is not None else office_code


def current_shift_id(db: Database, counter_id: str) -> str | None:
    """The open shift of ``counter_id``, else its last closed one, else None."""
    with db.read() as session:
        open_id = open_shift_id(session, counter_id)
        if open_id is not None:
            return open_id
        return session.scalar(
            select(Shift.id)
            .where(Shift.counter_id == counter_id)
            .order_by(Shift.closed_at.desc(), Shift.opened_at.desc())
            .limit(1)
        )
