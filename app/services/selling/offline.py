"""The offline limits: how long and how much a counter may sell without the central system.

One object, :class:`OfflineLimits`, answers both questions about the same
:class:`~app.services.sync_status.SyncState`: is the next sale *refused*
(:meth:`OfflineLimits.problem`, used by every sale), and is a limit *near*
(:meth:`OfflineLimits.near`, the banner's warning). :func:`offline_outlook` gives the banner both
at once, so the banner and the sale cannot disagree: a counter whose sale would be refused is
always shown as near.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.permissions import Action
from app.i18n import _
from app.money import format_yuan
from app.persistence.db import Database
from app.services import approvals
from app.services import audit
from app.services.auth import Principal
from app.services.selling.errors import OfflineLimitReached
from app.services.sync_status import SyncState
from app.services.sync_status import sync_state
from app.settings import OFFLINE_MAX_AMOUNT
from app.settings import OFFLINE_MAX_HOURS
from app.settings import OFFLINE_MAX_SALES
from app.settings import Settings

NEAR = 0.8  # a limit is "near" from 80 % of it


@dataclass(frozen=True)
class OfflineLimits:
    """The configured limits of selling without the central system."""

    max_hours: int
    max_amount: int  # fen
    max_sales: int
    near_fraction: float = NEAR

    @classmethod
    def from_settings(cls, settings: Settings) -> OfflineLimits:
        return cls(
            settings.value(OFFLINE_MAX_HOURS),
            settings.value(OFFLINE_MAX_AMOUNT),
            settings.value(OFFLINE_MAX_SALES),
        )

    def problem(self, state: SyncState, now: dt.datetime, extra_amount: int = 0) -> str | None:
        """Why one more record of ``extra_amount`` fen is refused, or None when it may go."""
        if state.age_hours(now) > self.max_hours:
            return _("no sync for more than {hours} hours", hours=self.max_hours)
        if state.pending_amount + extra_amount > self.max_amount:
            return _(
                "more than {amount} yuan would wait unsynced", amount=format_yuan(self.max_amount)
            )
        if state.pending + 1 > self.max_sales:
            return _("more than {count} records would wait unsynced", count=self.max_sales)
        return None

    def near(self, state: SyncState, now: dt.datetime) -> bool:
        """Whether a limit is near (or reached): records wait and one of them is at
        ``near_fraction`` of its limit, or the next sale would be refused."""
        if state.pending == 0:
            return False
        f = self.near_fraction
        return (
            state.age_hours(now) >= self.max_hours * f
            or state.pending_amount >= self.max_amount * f
            or state.pending >= self.max_sales * f
            or self.problem(state, now) is not None
        )


@dataclass(frozen=True)
class OfflineOutlook:
    """The offline limits as they stand now, for the banner."""

    state: SyncState
    limits: OfflineLimits
    age_hours: float
    near: bool
    refused: str | None  # why the next sale is refused (None: it may go)

    def warning(self) -> str | None:
        """The banner text when a limit is near or reached, else None (translated)."""
        if not self.near:
            return None
        return _(
            "Offline limits are near: {pending} records ({amount} fen) wait for the central "
            "system, the oldest for {hours} hours (limits: {max_sales} records, {max_amount} fen, "
            "{max_hours} hours). Check the network or call the office's IT; a supervisor can "
            "override a limit.",
            pending=self.state.pending,
            amount=self.state.pending_amount,
            hours=round(self.age_hours, 1),
            max_sales=self.limits.max_sales,
            max_amount=self.limits.max_amount,
            max_hours=self.limits.max_hours,
        )


def offline_outlook(
    db: Database, counter_id: str, clock: Clock, settings: Settings
) -> OfflineOutlook:
    """Where this counter stands against its offline limits: near, refused, and the figures."""
    limits = OfflineLimits.from_settings(settings)
    with db.read() as session:
        state = sync_state(session, counter_id)
    now = clock.now()
    return OfflineOutlook(
        state, limits, state.age_hours(now), limits.near(state, now), limits.problem(state, now)
    )


def check_offline_limits(
    db: Database,
    actor: Principal,
    amount: int,
    clock: Clock,
    settings: Settings,
    override_request: str | None = None,
) -> None:
    """Refuse a sale of ``amount`` fen beyond the offline limits (audited), unless
    ``override_request`` is an approved override, which this uses up."""
    limits = OfflineLimits.from_settings(settings)
    with db.read() as session:
        if limits.problem(sync_state(session, actor.counter_id), clock.now(), amount) is None:
            return
    with db.write() as session:
        problem = limits.problem(sync_state(session, actor.counter_id), clock.now(), amount)
        if problem is None:
            return
        if override_request is None:
            audit.Actor.of(actor, clock).record(
                session, AuditAction.OFFLINE_LIMIT, result="denied", detail={"problem": problem}
            )
        else:
            approvals.consume_by(
                session,
                actor,
                override_request,
                action=Action.OVERRIDE_OFFLINE_LIMIT,
                target=actor.counter_id,
                clock=clock,
            )
            audit.Actor.of(actor, clock).record(
                session,
                AuditAction.OFFLINE_OVERRIDE,
                detail={"problem": problem, "approval": override_request},
            )
            return
    raise OfflineLimitReached(detail=problem)
