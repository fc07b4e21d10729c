"""The offline limits: one object says both whether a sale is refused and whether the banner warns,
from the same sync state, so the banner can never say all is well while selling is blocked."""

from __future__ import annotations

import datetime as dt

from app.services.selling import OfflineLimits
from app.services.sync_status import SyncState

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
LIMITS = OfflineLimits(max_hours=72, max_amount=100_000, max_sales=10)


def state(
    pending: int = 1,
    amount: int = 1_000,
    oldest_h: float | None = 1,
    last_success_h: float | None = None,
) -> SyncState:
    def ago(hours: float | None) -> dt.datetime | None:
        return None if hours is None else NOW - dt.timedelta(hours=hours)

    return SyncState(pending, amount, ago(oldest_h), ago(last_success_h))


def test_nothing_waiting_is_neither_near_nor_refused() -> None:
    quiet = state(pending=0, amount=0, oldest_h=None, last_success_h=500)
    assert LIMITS.problem(quiet, NOW) is None
    assert not LIMITS.near(quiet, NOW)


def test_a_long_time_since_the_last_sync_refuses_and_warns_though_the_oldest_record_is_new() -> (
    None
):
    """The defect of the old banner: it measured the oldest pending record (one hour) while the
    sale measured the time since the last successful sync (a hundred hours)."""
    stale = state(oldest_h=1, last_success_h=100)
    assert LIMITS.problem(stale, NOW) == "no sync for more than 72 hours"
    assert LIMITS.near(stale, NOW)


def test_near_from_eighty_percent_of_any_limit() -> None:
    assert not LIMITS.near(state(amount=79_999, last_success_h=57), NOW)
    assert LIMITS.near(state(amount=80_000), NOW)
    assert LIMITS.near(state(pending=8), NOW)
    assert LIMITS.near(state(last_success_h=57.6), NOW)


def test_every_refusal_is_near() -> None:
    for s, extra in (
        (state(amount=100_000), 1),
        (state(pending=10), 0),
        (state(last_success_h=73), 0),
    ):
        assert LIMITS.problem(s, NOW, extra) is not None
        assert LIMITS.near(s, NOW) or LIMITS.problem(s, NOW) is None
