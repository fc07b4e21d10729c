"""What a counter knows about its link to the central system, from its own database only: the
sync status the UI and ``cardvend sync status`` show, what the offline limits use, and the way
out for records the central system (or the contract check before sending) refused.

Counters may share one database (an office's PostgreSQL, or one SQLite file): the outbox rows
carry the counter they belong to, and the ``sync.*`` settings below are kept per counter
(:func:`counter_key`). The sync package (``sync/``) writes them after every round; the outbox
rows are written by the services with the facts they report.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any
from typing import TypeVar

from sqlalchemy import func
from sqlalchemy import null
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm import defer

from app.clock import Clock
from app.clock import aware
from app.domain.audit import AuditAction
from app.domain.permissions import Action
from app.errors import NotFound
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import translate
from app.persistence.db import Database
from app.persistence.models import OutboxEntry
from app.persistence.models import Sale
from app.persistence.models import Setting
from app.services import audit
from app.services.auth import Principal

LAST_SUCCESS = "sync.last_success"
LAST_ATTEMPT = "sync.last_attempt"
LAST_ERROR = "sync.last_error"
ONLINE = "sync.online"
AUDIT_DIVERGED = "sync.audit_diverged"  # JSON {"since", "seq", "message"} while it lasts

# refusal codes (outbox.refused_code): the contract check on this counter, or the central
# system's answer ("rejected" with its reason, "conflict": it holds the id with another body)
REFUSED_INVALID = "invalid"
REFUSED_CONFLICT = "conflict"
REFUSED_REJECTED = "rejected"
ADVICE = {
    REFUSED_INVALID: N_(
        "The record fails the contract check on this counter, so it was not sent. Correct the "
        "data the reason names (for example an operator id or a customer number), then "
        "re-send it: cardvend sync retry {record} --operator ID"
    ),
    REFUSED_CONFLICT: N_(
        "The central system holds another record under the same id. Do not re-send it: run "
        "cardvend sync reconcile and call the central system's support with the record id."
    ),
    REFUSED_REJECTED: N_(
        "The central system refused it for the reason shown. Ask the central system's "
        "administrator; once the cause is fixed, re-send it: cardvend sync retry {record} "
        "--operator ID"
    ),
}


def counter_key(key: str, counter_id: str) -> str:
    """The settings key of ``key`` for one counter (counters may share a database)."""
    return f"{key}@{counter_id}"


def _get(session: Session, key: str) -> str | None:
    row = session.get(Setting, key)
    return row.value if row else None


def counter_setting(session: Session, key: str, counter_id: str) -> str | None:
    """This counter's value of ``key``; a database written before settings were kept per
    counter has only the shared key, which stands in until this counter writes its own."""
    value = _get(session, counter_key(key, counter_id))
    return value if value is not None else _get(session, key)


def put_counter_setting(session: Session, key: str, counter_id: str, value: str | None) -> None:
    """Set (or, with None, remove) this counter's ``key``."""
    full = counter_key(key, counter_id)
    row = session.get(Setting, full)
    if value is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(Setting(key=full, value=value))
    else:
        row.value = value


def _when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def mine(counter_id: str) -> Any:
    """The outbox rows of one counter, and those nobody could be named for (written before rows
    carried their counter): the first counter that syncs takes them (sync/outbox.py)."""
    return OutboxEntry.counter_id.in_((counter_id, ""))


def unsent(counter_id: str) -> tuple[Any, ...]:
    """Rows of this counter the central system has not accepted (waiting or refused)."""
    return (mine(counter_id), OutboxEntry.sent_at.is_(None))


@dataclass(frozen=True)
class SyncState:
    """What the offline limits look at: this counter's records the central system has not
    accepted (waiting and refused) and its last successful sync."""

    pending: int
    pending_amount: int
    oldest_pending: dt.datetime | None
    last_success: dt.datetime | None

    def age_hours(self, now: dt.datetime) -> float:
        """How long this counter has sold without the central system seeing it: since the last
        successful sync (or, never synced, since the oldest record); 0 with nothing waiting."""
        since = self.last_success or self.oldest_pending
        if since is None or self.pending == 0:
            return 0.0
        return (now - since).total_seconds() / 3600


def _outbox_totals(session: Session, *where: Any) -> tuple[int, int, dt.datetime | None]:
    """How many outbox rows match ``where``, the fen they carry, and when the oldest was made."""
    count, amount, oldest = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(OutboxEntry.amount), 0),
            func.min(OutboxEntry.created_at),
        ).where(*where)
    ).one()
    return int(count), int(amount), oldest


def sync_state(session: Session, counter_id: str) -> SyncState:
    """This counter's records the central system has not accepted yet (waiting, and refused:
    money it has not seen either way) and its last successful sync. Counters sharing a
    database each have their own limits."""
    count, amount, oldest = _outbox_totals(session, *unsent(counter_id))
    last = _when(counter_setting(session, LAST_SUCCESS, counter_id))
    return SyncState(count, amount, aware(oldest) if oldest is not None else None, last)


@dataclass(frozen=True)
class SyncStatus:
    online: bool
    pending: int  # outbox records waiting to be sent (not refused)
    pending_amount: int  # fen they carry
    oldest_pending_age_s: int | None
    last_success: dt.datetime | None
    last_attempt: dt.datetime | None
    last_error: str
    refused: int  # records set aside as refused (contract check or central system)
    refused_amount: int  # fen they carry
    review: int  # this counter's sales flagged for a supervisor's review
    audit_diverged: str  # "" or why the central system holds another audit history

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("last_success", "last_attempt"):
            value = data[key]
            data[key] = value.isoformat() if value else None
        return data


def sync_status(db: Database, clock: Clock, counter_id: str) -> SyncStatus:
    with db.read() as session:
        count, amount, oldest = _outbox_totals(
            session, *unsent(counter_id), OutboxEntry.refused_at.is_(None)
        )
        refused, refused_amount, _ = _outbox_totals(
            session, *unsent(counter_id), OutboxEntry.refused_at.is_not(None)
        )
        review = session.scalar(
            select(func.count())
            .select_from(Sale)
            .where(Sale.counter_id == counter_id, Sale.review.is_not(None))
        )
        last_success = _when(counter_setting(session, LAST_SUCCESS, counter_id))
        last_attempt = _when(counter_setting(session, LAST_ATTEMPT, counter_id))
        last_error = counter_setting(session, LAST_ERROR, counter_id) or ""
        online = counter_setting(session, ONLINE, counter_id) == "1"
        diverged = _get(session, counter_key(AUDIT_DIVERGED, counter_id))
    age = None
    if oldest is not None:
        age = max(0, int((clock.now() - aware(oldest)).total_seconds()))
    return SyncStatus(
        online=online,
        pending=count,
        pending_amount=amount,
        oldest_pending_age_s=age,
        last_success=last_success,
        last_attempt=last_attempt,
        last_error=last_error,
        refused=refused,
        refused_amount=refused_amount,
        review=int(review or 0),
        audit_diverged=str(json.loads(diverged).get("message", "")) if diverged else "",
    )


def _record_fields(row: OutboxEntry) -> dict[str, Any]:
    """What every listed outbox record shows: which record, of what, for how much, since when."""
    return {
        "id": int(row.id),
        "kind": row.kind,
        "ref_id": row.ref_id,
        "amount_fen": int(row.amount or 0),
        "created_at": aware(row.created_at),
    }


@dataclass(frozen=True)
class PendingRecord:
    """One outbox record waiting for the central system (for the sync screen)."""

    id: int
    kind: str  # sale, reversal, card_bound, ...
    ref_id: str
    amount_fen: int
    created_at: dt.datetime
    attempts: int
    last_error: str  # "" until a send failed

    @classmethod
    def of(cls, row: OutboxEntry) -> PendingRecord:
        return cls(
            **_record_fields(row),
            attempts=int(row.attempts or 0),
            last_error=row.last_error or "",
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


_T = TypeVar("_T")


def _unsent_entries(
    db: Database, counter_id: str, *, refused: bool, limit: int, build: Callable[[OutboxEntry], _T]
) -> list[_T]:
    """This counter's unsent outbox rows, either the refused or the waiting ones (bodies not
    loaded), each made into what ``build`` makes of it inside the read unit."""
    order: tuple[Any, ...]
    if refused:
        which = OutboxEntry.refused_at.is_not(None)
        order = (OutboxEntry.refused_at.desc(), OutboxEntry.id.desc())
    else:
        which = OutboxEntry.refused_at.is_(None)
        order = (OutboxEntry.created_at, OutboxEntry.id)
    with db.read() as session:
        rows = session.scalars(
            select(OutboxEntry)
            .options(defer(OutboxEntry.body))
            .where(*unsent(counter_id), which)
            .order_by(*order)
            .limit(max(0, limit))
        )
        return [build(row) for row in rows]


def pending_records(db: Database, counter_id: str, limit: int = 200) -> list[PendingRecord]:
    """The oldest ``limit`` records of this counter waiting to be sent, oldest first (read
    only; the count of all of them is :attr:`SyncStatus.pending`; refused records are listed
    by :func:`refused_records`)."""
    return _unsent_entries(db, counter_id, refused=False, limit=limit, build=PendingRecord.of)


@dataclass(frozen=True)
class RefusedRecord:
    """An outbox record set aside as refused: why, and what a person does about it."""

    id: int
    kind: str
    ref_id: str
    amount_fen: int
    created_at: dt.datetime
    refused_at: dt.datetime
    code: str  # invalid (the contract check here), rejected or conflict (the central system)
    reason: str

    @classmethod
    def of(cls, row: OutboxEntry) -> RefusedRecord:
        return cls(
            **_record_fields(row),
            refused_at=aware(row.refused_at or row.created_at),
            code=row.refused_code or REFUSED_REJECTED,
            reason=row.refused_reason or "",
        )

    @property
    def advice(self) -> str:
        """What to do, in the current language."""
        template = ADVICE.get(self.code, ADVICE[REFUSED_REJECTED])
        return translate(template).format(record=self.id)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["refused_at"] = self.refused_at.isoformat()
        data["advice"] = self.advice
        return data


def refused_records(db: Database, counter_id: str, limit: int = 200) -> list[RefusedRecord]:
    """This counter's refused records, the most recently refused first."""
    return _unsent_entries(db, counter_id, refused=True, limit=limit, build=RefusedRecord.of)


class NoRefusedRecord(NotFound):
    code = "no_refused_record"
    template = N_(
        "This counter has no refused record {record}. 'cardvend sync status' lists the "
        "refused records with their ids."
    )


def requeue_refused(
    db: Database,
    actor: Principal,
    clock: Clock,
    records: Sequence[str] = (),
    *,
    all_refused: bool = False,
) -> list[int]:
    """Put refused records of the actor's counter back in the queue, once the cause is fixed
    (audited as ``sync_retry``); the ids of the records re-queued.

    ``records`` are outbox ids or the references shown with them (a sale id, ...). The body
    is built again from the ledger at the next round (the cause may have been data corrected
    here) and checked against the contract again. That cannot double anything: the central
    system never applied a record it refused, and one it holds with another body (``conflict``)
    answers ``conflict`` again. A record the central side answered for goes under a new
    Idempotency-Key, so its kept refusal is not replayed."""
    if not records and not all_refused:
        raise ValidationError(N_("name the records to re-send, or give --all-refused"))
    actor.authorize(Action.RETRY_SYNC, clock)
    counter = actor.counter_id
    refused = (*unsent(counter), OutboxEntry.refused_at.is_not(None))
    with db.write() as session:
        if all_refused:
            rows = list(session.scalars(select(OutboxEntry).where(*refused)))
        else:
            rows = []
            for ref in records:
                match = OutboxEntry.ref_id == ref
                if ref.isascii() and ref.isdigit():
                    match = or_(match, OutboxEntry.id == int(ref))
                found = session.scalars(select(OutboxEntry).where(*refused, match)).all()
                if not found:
                    raise NoRefusedRecord(record=ref)
                rows.extend(r for r in found if r not in rows)
        ids = sorted(r.id for r in rows)
        if ids:  # SQL NULL, not JSON null: the body is built again
            session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id.in_(ids))
                .values(
                    body=null(), refused_at=None, refused_code="", refused_reason="", last_error=""
                )
            )
        audit.Actor(actor.operator_id, counter, clock).record(
            session,
            AuditAction.SYNC_RETRY,
            "all" if all_refused else ",".join(records)[:120],
            detail={"records": ids, "refs": sorted(r.ref_id for r in rows)[:100]},
        )
    return ids
