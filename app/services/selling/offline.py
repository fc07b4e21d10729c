"""The offline limits: how long and how much a counter may sell without the central system."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.permissions import Action
from app.persistence.db import Database
from app.persistence.models import (
    OutboxEntry,
)
from app.services import approvals, audit, sync_status
from app.services.auth import Principal
from app.services.selling.errors import (
    OfflineLimitReached,
)
from app.services.sync_status import LAST_SUCCESS
from app.settings import (
    OFFLINE_MAX_AMOUNT,
    OFFLINE_MAX_HOURS,
    OFFLINE_MAX_SALES,
    Settings,
)


@dataclass(frozen=True)
class SyncState:
    pending: int
    pending_amount: int
    oldest_pending: dt.datetime | None
    last_success: dt.datetime | None

    def age_hours(self, now: dt.datetime) -> float:
        since = self.last_success or self.oldest_pending
        if since is None or self.pending == 0:
            return 0.0
        return (now - since).total_seconds() / 3600


def sync_state(session: Session, counter_id: str) -> SyncState:
    """This counter's records the central system has not accepted yet (waiting, and refused:
    money it has not seen either way) and its last successful sync. Counters sharing a
    database each have their own limits."""
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(OutboxEntry.amount), 0),
            func.min(OutboxEntry.created_at),
        ).where(*sync_status.unsent(counter_id))
    ).one()
    value = sync_status.counter_setting(session, LAST_SUCCESS, counter_id)
    last = dt.datetime.fromisoformat(value) if value else None
    oldest = row[2]
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    return SyncState(int(row[0]), int(row[1]), oldest, last)


def offline_problem(
    state: SyncState, settings: Settings, now: dt.datetime, extra_amount: int
) -> str | None:
    max_hours = int(settings.get(OFFLINE_MAX_HOURS.key))
    if state.age_hours(now) > max_hours:
        return f"no sync for more than {max_hours} hours"
    max_amount = int(settings.get(OFFLINE_MAX_AMOUNT.key))
    if state.pending_amount + extra_amount > max_amount:
        return f"more than {max_amount} fen would wait unsynced"
    max_sales = int(settings.get(OFFLINE_MAX_SALES.key))
    if state.pending + 1 > max_sales:
        return f"more than {max_sales} records would wait unsynced"
    return None


def check_offline_limits(
    db: Database,
    actor: Principal,
    amount: int,
    clock: Clock,
    settings: Settings,
    override_request: str | None = None,
) -> None:
    with db.read() as session:
        state = sync_state(session, actor.counter_id)
        if offline_problem(state, settings, clock.now(), amount) is None:
            return
    with db.write() as session:
        state = sync_state(session, actor.counter_id)
        problem = offline_problem(state, settings, clock.now(), amount)
        if problem is None:
            return
        if override_request is None:
            audit.record(
                session,
                action="offline_limit",
                operator_id=actor.operator_id,
                counter_id=actor.counter_id,
                clock=clock,
                result="denied",
                detail={"problem": problem},
            )
        else:
            approvals.consume(
                session,
                override_request,
                action=Action.OVERRIDE_OFFLINE_LIMIT.value,
                target=actor.counter_id,
                operator_id=actor.operator_id,
                clock=clock,
            )
            audit.record(
                session,
                action="offline_override",
                operator_id=actor.operator_id,
                counter_id=actor.counter_id,
                clock=clock,
                detail={"problem": problem, "approval": override_request},
            )
            return
    raise OfflineLimitReached(detail=problem)


# --------------------------------------------------------------------------- sale
