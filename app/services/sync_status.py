"""What the counter knows about its link to the central system, from its own database only: the
sync status the UI and ``cardvend sync status`` show, and what the offline limits use.

The sync package (``sync/``) writes these settings after every round; the outbox rows are
written by the services with the facts they report.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import Clock, aware
from app.persistence.db import Database
from app.persistence.models import OutboxEntry, Sale, Setting

LAST_SUCCESS = "sync.last_success"
LAST_ATTEMPT = "sync.last_attempt"
LAST_ERROR = "sync.last_error"
ONLINE = "sync.online"


@dataclass(frozen=True)
class SyncStatus:
    online: bool
    pending: int  # outbox records not yet accepted by the central system
    pending_amount: int  # fen they carry
    oldest_pending_age_s: int | None
    last_success: dt.datetime | None
    last_attempt: dt.datetime | None
    last_error: str
    refused: int  # records the central system refused (conflict or rejected): need support
    review: int  # sales flagged for a supervisor's review

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("last_success", "last_attempt"):
            value = data[key]
            data[key] = value.isoformat() if value else None
        return data


def _get(session: Session, key: str) -> str | None:
    row = session.get(Setting, key)
    return row.value if row else None


def _when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def sync_status(db: Database, clock: Clock) -> SyncStatus:
    with db.read() as session:
        count, amount, oldest = session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(OutboxEntry.amount), 0),
                func.min(OutboxEntry.created_at),
            ).where(OutboxEntry.sent_at.is_(None))
        ).one()
        refused = session.scalar(
            select(func.count())
            .select_from(OutboxEntry)
            .where(OutboxEntry.sent_at.is_(None), OutboxEntry.last_error != "")
        )
        review = session.scalar(
            select(func.count()).select_from(Sale).where(Sale.review.is_not(None))
        )
        last_success = _when(_get(session, LAST_SUCCESS))
        last_attempt = _when(_get(session, LAST_ATTEMPT))
        last_error = _get(session, LAST_ERROR) or ""
        online = _get(session, ONLINE) == "1"
    age = None
    if oldest is not None:
        age = max(0, int((clock.now() - aware(oldest)).total_seconds()))
    return SyncStatus(
        online=online,
        pending=int(count),
        pending_amount=int(amount),
        oldest_pending_age_s=age,
        last_success=last_success,
        last_attempt=last_attempt,
        last_error=last_error,
        refused=int(refused or 0),
        review=int(review or 0),
    )


@dataclass(frozen=True)
class PendingRecord:
    """One outbox record the central system has not accepted yet (for the sync screen)."""

    id: int
    kind: str  # sale, reversal, card_bound, ...
    ref_id: str
    amount_fen: int
    created_at: dt.datetime
    attempts: int
    last_error: str  # "" until a send failed or was refused

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


def pending_records(db: Database, limit: int = 200) -> list[PendingRecord]:
    """The oldest ``limit`` records still waiting for the central system, oldest first (read
    only; the count of all of them is :attr:`SyncStatus.pending`)."""
    with db.read() as session:
        rows = session.execute(
            select(
                OutboxEntry.id,
                OutboxEntry.kind,
                OutboxEntry.ref_id,
                OutboxEntry.amount,
                OutboxEntry.created_at,
                OutboxEntry.attempts,
                OutboxEntry.last_error,
            )
            .where(OutboxEntry.sent_at.is_(None))
            .order_by(OutboxEntry.created_at, OutboxEntry.id)
            .limit(max(0, limit))
        ).all()
    return [
        PendingRecord(
            id=int(rid),
            kind=kind,
            ref_id=ref,
            amount_fen=int(amount or 0),
            created_at=aware(created),
            attempts=int(attempts or 0),
            last_error=error or "",
        )
        for rid, kind, ref, amount, created, attempts, error in rows
    ]
