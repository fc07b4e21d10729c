"""The audit log: appending inside the caller's unit of work, verifying the hash chain, the head
that sync sends, and a CSV export.

Verification streams the rows in ``seq`` order page by page (keyset pagination, constant memory)
inside one read transaction that also reads the head row, so the rows and the head are one
consistent snapshot (PostgreSQL: REPEATABLE READ; SQLite: a WAL read transaction).  A row deleted
from the end, a row appended beyond the head and a last row rewritten with a recomputed hash are
caught against the head; anything else against the chain itself (app/domain/audit.py).

The same snapshot then checks the ledger against the log (the sale seals of app/domain/audit.py):
each sale, page by page in id order, against the latest of its sealing rows (found through the
index on ``(target, seq)``), then every sealing row against a sale that still exists.  An edited,
inserted or deleted sale makes verification fail and names the sale.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import exists
from sqlalchemy import select
from sqlalchemy import type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.orm import aliased

from app import csvsafe
from app.clock import Clock
from app.domain.audit import GENESIS
from app.domain.audit import HEAD_MISSING
from app.domain.audit import SALE_CHANGED
from app.domain.audit import SALE_DELETED
from app.domain.audit import SALE_UNSEALED
from app.domain.audit import SEAL_ACTIONS
from app.domain.audit import SEAL_KEY
from app.domain.audit import SEALED_FIELDS
from app.domain.audit import AuditRow
from app.domain.audit import VerifyResult
from app.domain.audit import canonical_detail
from app.domain.audit import row_hash
from app.domain.audit import sale_seal
from app.domain.audit import seal_of_values
from app.domain.audit import verify_rows
from app.domain.permissions import Action
from app.domain.permissions import PermissionDenied
from app.errors import CardVendError
from app.fileio import replacing
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.persistence.models import AuditHead
from app.persistence.models import Sale

if TYPE_CHECKING:
    from app.services.auth import Principal

log = logging.getLogger(__name__)

RESULTS = ("ok", "denied", "failed", "locked", "error")
HEAD_HELD = "cardvend_audit_head_held"  # Session.info: this unit of work holds the head


def holds_head(session: Session) -> bool:
    """Whether this unit of work appended to the audit log, so holds the head's lock until it
    ends: it should then lock no more rows that others lock before they append (a customer's
    row for a sale), or the two could wait on each other."""
    return bool(session.info.get(HEAD_HELD))


def lock_head(session: Session) -> None:
    """Hold the chain's head from now to the end of the unit of work: one that decides from what
    it reads whether to write (the first administrator, which counters sharing a database may
    create at the same moment) takes it before reading, so such units of work run one after
    the other (SQLite: ``BEGIN IMMEDIATE`` does that already)."""
    session.execute(select(AuditHead.id).where(AuditHead.id == 1).with_for_update())
    session.info[HEAD_HELD] = True


class _Acting(Protocol):
    """Anything that names who acted and where: a signed-in principal, a reversal's request..."""

    @property
    def operator_id(self) -> str | None: ...
    @property
    def counter_id(self) -> str: ...


@dataclass(frozen=True)
class Actor:
    """Who did an audited action (``operator_id`` None: the counter itself), at which counter, on
    which clock: the three things every audit row is stamped with, named once per operation.
    Every row is appended through one: ``Actor.of(principal, clock)`` for what a signed-in
    principal (or a request naming who and where) did, the three fields themselves otherwise."""

    operator_id: str | None
    counter_id: str
    clock: Clock

    @classmethod
    def of(cls, principal: _Acting, clock: Clock) -> Actor:
        return cls(principal.operator_id, principal.counter_id, clock)

    def record(
        self,
        session: Session,
        action: str,
        target: str = "",
        *,
        result: str = "ok",
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one row stamped with this actor. The head row is locked, so appends are serial
        on every database; the row commits or rolls back with the action it records."""
        if result not in RESULTS:
            raise ValueError(f"audit result {result!r}")
        # populate_existing: a head this session loaded earlier must not hide a newer committed one
        head = session.scalar(
            select(AuditHead)
            .where(AuditHead.id == 1)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if head is None:  # pragma: no cover - created by migration 0002
            raise RuntimeError("the audit log has no head row; run cardvend init")
        seq = head.seq + 1
        at = self.clock.now()
        text = canonical_detail(detail)
        operator_id, counter_id = self.operator_id, self.counter_id
        digest = row_hash(
            head.hash, seq, at, operator_id, counter_id, action, target[:120], result, text
        )
        entry = AuditEntry(
            seq=seq,
            at=at,
            operator_id=operator_id,
            counter_id=counter_id,
            action=action,
            target=target[:120],
            result=result,
            detail=text,
            prev_hash=head.hash,
            hash=digest,
        )
        session.add(entry)
        head.seq, head.hash = seq, digest
        session.flush()
        session.info[HEAD_HELD] = True
        return entry

    def record_sale(
        self, session: Session, sale: Sale, action: str, detail: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        """Append the row of a change of ``sale`` (one of :data:`SEAL_ACTIONS`), sealed with the
        sale as it is now: call it after the change, in the unit of work that makes it."""
        if action not in SEAL_ACTIONS:
            raise ValueError(f"{action!r} is not a sale action")
        session.flush()  # ids and defaults as the database will hold them
        seal = sale_seal({name: getattr(sale, name) for name in SEALED_FIELDS})
        return self.record(session, action, sale.id, detail={**(detail or {}), SEAL_KEY: seal})

    def record_alone(
        self,
        db: Database,
        action: str,
        target: str = "",
        *,
        result: str = "ok",
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """:meth:`record` in a write unit of work of its own: the row of a step that changes
        nothing else, or of a refusal or failure that must be kept although the action is not
        done."""
        with db.write() as session:
            self.record(session, action, target, result=result, detail=detail)


def authorize_or_record(
    db: Database, actor: Principal, clock: Clock, permission: Action, action: str, target: str
) -> None:
    """``actor`` holds ``permission``; a refusal is audited as ``action`` on ``target``
    (``denied``, with the actor's role) in its own unit of work, then raised."""
    try:
        actor.authorize(permission, clock)
    except PermissionDenied:
        Actor.of(actor, clock).record_alone(
            db, action, target, result="denied", detail={"role": str(actor.role)}
        )
        raise


# --------------------------------------------------------------------------- verification

BATCH = 5000
CSV_HEADER = (
    "seq",
    "at",
    "operator_id",
    "counter_id",
    "action",
    "target",
    "result",
    "detail",
    "prev_hash",
    "hash",
)
# ``at`` is read as the stored value (SQLite: text), not through the column type, so that a value
# tampered into something unreadable is reported as a bad row instead of stopping the check
_COLUMNS = (
    AuditEntry.seq,
    type_coerce(AuditEntry.at, String),
    AuditEntry.operator_id,
    AuditEntry.counter_id,
    AuditEntry.action,
    AuditEntry.target,
    AuditEntry.result,
    AuditEntry.detail,
    AuditEntry.prev_hash,
    AuditEntry.hash,
)
_UNREADABLE_AT = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class AuditVerifyFailed(CardVendError):
    code = "audit_changed"
    template = N_(
        "The audit log was changed: row {seq} ({problem}). "
        "Report this to your supervisor; do not continue selling."
    )

    def __init__(self, result: VerifyResult) -> None:
        self.result = result
        if result.sale_id is not None:
            super().__init__(
                N_(
                    "The ledger was changed: sale {sale_id} ({problem}). "
                    "Report this to your supervisor; do not continue selling."
                ),
                sale_id=result.sale_id,
                problem=result.problem,
            )
        else:
            super().__init__(seq=result.first_bad_seq, problem=result.problem)


def _head(session: Session) -> tuple[int, str] | None:
    row = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).first()
    return None if row is None else (int(row[0]), str(row[1]))


def _pages(session: Session, batch: int) -> Iterator[Sequence[Any]]:
    """Every row in seq order, ``batch`` rows per query: ``WHERE seq > :last ORDER BY seq LIMIT``."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    conn = session.connection()  # Core rows: no ORM overhead per page
    last: int | None = None
    while True:
        stmt = select(*_COLUMNS).order_by(AuditEntry.seq).limit(batch)
        if last is not None:  # the first page has no lower bound: a seq tampered to 0 or less shows
            stmt = stmt.where(AuditEntry.seq > last)
        page = conn.execute(stmt).all()
        yield from page
        if len(page) < batch:
            return
        last = page[-1][0]


def _when(value: object) -> dt.datetime | None:
    if isinstance(value, str):  # SQLite's stored text, UTC without an offset
        try:
            return dt.datetime.fromisoformat(value + "+00:00")
        except ValueError:
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return None


def _row(values: Sequence[Any]) -> AuditRow:
    seq, at, operator_id, counter_id, action, target, result, detail, prev_hash, digest = values
    when = _when(at)
    if (
        when is not None
        and (operator_id is None or type(operator_id) is str)
        and type(counter_id) is str
        and type(action) is str
        and type(target) is str
        and type(result) is str
        and type(detail) is str
        and type(prev_hash) is str
        and type(digest) is str
    ):
        return AuditRow(
            seq, when, operator_id, counter_id, action, target, result, detail, prev_hash, digest
        )
    # a value of a type the application never writes (SQLite stores whatever it is given): the
    # row cannot be what was hashed; an empty hash makes verify_rows name this very row
    op, counter, act, tgt, res, det, prev = (
        v if v is None or type(v) is str else repr(v)
        for v in (operator_id, counter_id, action, target, result, detail, prev_hash)
    )
    return AuditRow(
        seq,
        when or _UNREADABLE_AT,
        op,
        str(counter),
        str(act),
        str(tgt),
        str(res),
        str(det),
        str(prev),
        hash="",
    )


# sales as stored: ``created_at`` as text and ``training`` as a number, so that a value tampered
# into something unreadable is reported as a changed sale instead of stopping the check
_SALE_COLUMNS = tuple(
    type_coerce(Sale.created_at, String)
    if name == "created_at"
    else type_coerce(Sale.training, Integer)
    if name == "training"
    else getattr(Sale, name)
    for name in SEALED_FIELDS
)
_N_SEALED = len(SEALED_FIELDS)
_AT = SEALED_FIELDS.index("created_at")
_IS_SEAL = (AuditEntry.action.in_(SEAL_ACTIONS), AuditEntry.detail.like(f'%"{SEAL_KEY}":%'))


def _sale_problem(session: Session, batch: int) -> tuple[str, int | None, str] | None:
    """The first sale that differs from its latest seal, has none, or was deleted while its
    seal remains: (sale id, seq of the seal or None, problem)."""
    conn = session.connection()
    seals = aliased(AuditEntry)
    latest = (
        select(seals.seq)
        .where(seals.target == Sale.id, seals.action.in_(SEAL_ACTIONS))
        .order_by(seals.seq.desc())
        .limit(1)
        .correlate(Sale)
        .scalar_subquery()
    )
    last: str | None = None
    while True:
        stmt = (
            select(*_SALE_COLUMNS, AuditEntry.seq, AuditEntry.detail)
            .select_from(Sale)
            .outerjoin(AuditEntry, AuditEntry.seq == latest)
            .order_by(Sale.id)
            .limit(batch)
        )
        if last is not None:
            stmt = stmt.where(Sale.id > last)
        page = conn.execute(stmt).all()
        for row in page:
            values = list(row[:_N_SEALED])
            seq, detail = row[_N_SEALED:]
            if seq is None:
                return str(values[0]), None, SALE_UNSEALED
            values[_AT] = _when(values[_AT]) or values[_AT]
            if _seal_in(detail) != seal_of_values(values):
                return str(values[0]), int(seq), SALE_CHANGED
        if len(page) < batch:
            break
        last = str(page[-1][0])
    orphan = conn.execute(
        select(AuditEntry.target, AuditEntry.seq)
        .where(*_IS_SEAL, ~exists().where(Sale.id == AuditEntry.target))
        .order_by(AuditEntry.seq)
        .limit(1)
    ).first()
    if orphan is not None:
        return str(orphan[0]), int(orphan[1]), SALE_DELETED
    return None


_SEAL_MARK = f'"{SEAL_KEY}":"'


def _seal_in(detail: object) -> str | None:
    """The seal in a sealing row's detail (canonical JSON: the key appears once, unescaped, only
    as the key itself; a quote inside a value is escaped and cannot imitate it)."""
    if not isinstance(detail, str):
        return None
    start = detail.find(_SEAL_MARK)
    if start < 0:
        return None
    start += len(_SEAL_MARK)
    end = detail.find('"', start)
    return detail[start:end] if end > 0 else None


def verify(db: Database, *, batch: int = BATCH) -> VerifyResult:
    """Check the whole chain and the head, then every sale against its seal, in one snapshot,
    streaming ``batch`` rows at a time."""
    started = time.perf_counter()
    with db.snapshot() as session:
        head = _head(session)
        rows = (_row(r) for r in _pages(session, batch))
        if head is None:  # the head row itself was removed: check the chain, then report that
            result = verify_rows(rows)
            if result.ok:
                result = VerifyResult(
                    False,
                    result.rows,
                    result.last_seq,
                    result.last_hash,
                    result.last_seq,
                    max(result.rows - 1, 0),
                    HEAD_MISSING,
                )
        else:
            result = verify_rows(rows, head=head)
        if result.ok:  # the seals are worth checking only in an intact log
            bad = _sale_problem(session, batch)
            if bad is not None:
                sale_id, seq, problem = bad
                result = VerifyResult(
                    False,
                    result.rows,
                    result.last_seq,
                    result.last_hash,
                    seq,
                    None,
                    problem,
                    sale_id,
                )
    seconds = time.perf_counter() - started
    if result.ok:
        log.info(
            "audit log verified: %d rows up to %d in %.2f s", result.rows, result.last_seq, seconds
        )
    elif result.sale_id is not None:
        log.error(
            "audit verification failed: sale %s (seal row %s): %s",
            result.sale_id,
            result.first_bad_seq,
            result.problem,
        )
    else:
        log.error(
            "audit log verification failed at row %s (position %s): %s",
            result.first_bad_seq,
            result.position,
            result.problem,
        )
    return result


def verify_or_raise(db: Database, *, batch: int = BATCH) -> VerifyResult:
    """:func:`verify`, raising :class:`AuditVerifyFailed` (a message for the teller) when bad."""
    result = verify(db, batch=batch)
    if not result.ok:
        raise AuditVerifyFailed(result)
    return result


def latest(db: Database) -> tuple[int, str]:
    """The head: the last row's seq and hash (0 and the genesis hash for an empty log).  This is
    what sync sends to the central system, which then holds what this log must go on from."""
    with db.read() as session:
        head = _head(session)
    if head is None:
        raise AuditVerifyFailed(VerifyResult(False, 0, 0, GENESIS, 0, 0, HEAD_MISSING))
    return head


def export_csv(db: Database, path: str | os.PathLike[str], *, batch: int = BATCH) -> int:
    """Write every row, in seq order, to ``path`` as CSV and return the number of rows.

    UTF-8 with a byte order mark (so Excel shows Chinese), the header :data:`CSV_HEADER`, ``at``
    in UTC exactly as hashed, ``detail`` the stored JSON text, an empty ``operator_id`` for none.
    A cell that a spreadsheet would run as a formula (a ``target`` typed as ``=1+1`` at the login)
    gets a leading ``'`` (:mod:`app.csvsafe`); :func:`app.csvsafe.unescape_cell` gives the stored
    text back, so the chain can still be checked from the file alone.
    Rows stream from one snapshot into a temporary file beside ``path`` that replaces it only when
    complete: a crash leaves the old file or the new one, never half of one."""
    count = 0
    with replacing(path, open_mode="w", encoding="utf-8-sig", newline="") as f:
        writer = csvsafe.writer(f)
        writer.writerow(CSV_HEADER)
        with db.snapshot() as session:
            for values in _pages(session, batch):
                when = _when(values[1])
                stamp = (
                    when.astimezone(dt.UTC).isoformat(timespec="microseconds")
                    if when is not None
                    else str(values[1])
                )
                writer.writerow((values[0], stamp, *values[2:]))
                count += 1
    return count
