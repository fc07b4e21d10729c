"""Injected time. Anything that decides by time takes a :class:`Clock`."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock for tests and simulations: it only moves when told to."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware start time")
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, **delta: float) -> dt.datetime:
        self._now = self._now + dt.timedelta(**delta)
        return self._now

    def set(self, when: dt.datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FixedClock needs timezone-aware times")
        self._now = when


def aware(value: dt.datetime) -> dt.datetime:
    """Treat a naive datetime read back from a database as UTC (SQLite stores no offset)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
