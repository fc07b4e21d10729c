"""Whether this counter may sell now, said as soon as a card is read (before an amount is typed):
who is signed in and what their role may do, the counter's shift, the offline limits."""

from __future__ import annotations

from dataclasses import dataclass

from app.clock import Clock
from app.domain.operators import Role
from app.domain.permissions import Action
from app.domain.permissions import allowed
from app.i18n import _
from app.persistence.db import Database
from app.services.auth import Principal
from app.services.selling.errors import OfflineLimitReached
from app.services.selling.offline import offline_outlook
from app.services.shifts import open_shift_id
from app.settings import Settings


@dataclass(frozen=True)
class Readiness:
    """``blocked``: why no sale can be made here now (None: a sale may be made);
    ``needs_override``: the offline limit a sale would pass, which a supervisor may override."""

    blocked: str | None
    needs_override: str | None = None


def sale_readiness(
    db: Database, actor: Principal | None, clock: Clock, settings: Settings
) -> Readiness:
    """What stands between this counter and a sale, in the teller's language."""
    if actor is None:
        return Readiness(_("Sign in to sell."))
    if not allowed(actor.role, Action.SELL):
        return Readiness(
            _(
                "Your role ({role}) may not sell electricity; a teller or supervisor sells.",
                role=Role(actor.role).label,
            )
        )
    with db.read() as session:
        shift = open_shift_id(session, actor.counter_id)
    if shift is None:
        return Readiness(_("No shift is open on this counter: press F4 to open one."))
    outlook = offline_outlook(db, actor.counter_id, clock, settings)
    if outlook.refused is not None:
        return Readiness(None, OfflineLimitReached(detail=outlook.refused).localized())
    return Readiness(None)
