"""The one way to show a time to a person: in the office's time zone (the ``time_zone`` setting),
never the PC's.  Times are stored in UTC; a naive time read back from SQLite is UTC."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from app.clock import aware
from app.errors import ValidationError
from app.i18n import N_

MINUTES = "%Y-%m-%d %H:%M"


def zone(tz: str) -> ZoneInfo:
    """The office's time zone by its IANA name."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            N_("Unknown time zone {tz}; use an IANA name like Asia/Shanghai."), tz=tz
        ) from exc


def local(value: dt.datetime | str, tz: str | dt.tzinfo) -> dt.datetime:
    """``value`` (aware, naive UTC, or ISO text) as the office's local time (``tz``: its IANA
    name or its zone)."""
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return aware(when).astimezone(tz if isinstance(tz, dt.tzinfo) else zone(tz))


def local_time(value: dt.datetime | str, tz: str | dt.tzinfo, fmt: str = MINUTES) -> str:
    """``value`` formatted in the office's time zone ``tz`` (default ``2026-04-01 08:30``)."""
    return local(value, tz).strftime(fmt)
