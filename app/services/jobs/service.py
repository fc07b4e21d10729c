"""The jobs' rules: listing for the office, take and release, the audit of every step."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.clock import aware
from app.domain import ids
from app.domain.card import WrongCardKind
from app.domain.permissions import Action
from app.errors import CardVendError
from app.errors import Conflict
from app.errors import NotFound
from app.i18n import N_
from app.i18n import Msg
from app.persistence.db import Database
from app.persistence.models import MgmtJob
from app.services import audit
from app.services.auth import Principal
from app.services.jobs.errors import JobCardOut
from app.services.jobs.errors import JobError
from app.services.jobs.errors import JobNotOpen
from app.services.jobs.errors import JobNotTaken
from app.services.jobs.errors import JobOfOtherOffice
from app.services.jobs.errors import JobTakenByOther
from app.services.jobs.views import JobView
from app.services.jobs.views import _names
from app.services.jobs.views import _view


def _allow(
    db: Database, actor: Principal, clock: Clock, action: Action, step: str, target: str
) -> None:
    """The permission; a refusal is audited before it is raised."""
    audit.authorize_or_record(db, actor, clock, action, step, target)


def _audit(
    session: Session,
    actor: Principal,
    clock: Clock,
    step: str,
    target: str,
    *,
    result: str = "ok",
    **detail: Any,
) -> None:
    audit.Actor.of(actor, clock).record(session, step, target, result=result, detail=detail)


def _refuse(
    db: Database, actor: Principal, clock: Clock, step: str, target: str, error: CardVendError
) -> CardVendError:
    """Audit a refused step (in its own transaction) and give the error back to raise."""
    audit.Actor.of(actor, clock).record_alone(
        db, step, target, result="failed", detail={"code": error.code}
    )
    return error


def office_job(session: Session, job_id: str, office_code: str, *, lock: bool = True) -> MgmtJob:
    """The job ``job_id`` (a UUID, matched whole) of this counter's office, row-locked unless
    ``lock`` is False (a read unit of work)."""
    ids.UUID.check(job_id, N_("job id"))
    query = select(MgmtJob).where(MgmtJob.id == job_id)
    job = session.scalar(query.with_for_update() if lock else query)
    if job is None:
        raise NotFound(what=N_("Job"), key=job_id)
    if job.office_code != office_code:
        raise JobOfOtherOffice(job_id=job_id, office=job.office_code, own=office_code)
    return job


def _guarded(
    db: Database,
    actor: Principal,
    clock: Clock,
    step: str,
    job_id: str,
    work: Any,
) -> Any:
    """Run ``work(session)`` in one write transaction; a typed refusal is audited and raised."""
    try:
        with db.write() as session:
            return work(session)
    except (JobError, NotFound, WrongCardKind, Conflict) as exc:
        raise _refuse(db, actor, clock, step, job_id, exc) from None


def list_jobs(
    db: Database,
    actor: Principal,
    clock: Clock,
    *,
    office_code: str,
    overdue_days: int = 7,
    include_closed: bool = False,
) -> list[JobView]:
    """The office's open jobs and the actor's own (taken, card out), oldest first; closed ones
    too with ``include_closed``."""
    actor.authorize(Action.PROGRAM_MANAGEMENT_CARD, clock)
    ids.OFFICE_CODE.check(office_code)
    now = clock.now()
    with db.read() as session:
        query = select(MgmtJob).where(MgmtJob.office_code == office_code)
        if not include_closed:
            query = query.where(or_(MgmtJob.status == "open", MgmtJob.card_state == "issued"))
        rows = list(session.scalars(query.order_by(MgmtJob.created_at, MgmtJob.id)))
        names = _names(session, sorted({r.customer_no for r in rows}))
        return [_view(r, names.get(r.customer_no), now, overdue_days) for r in rows]


def my_jobs(views: list[JobView], operator_id: str) -> list[JobView]:
    return [v for v in views if v.taken_by == operator_id]


def get_job(
    db: Database,
    actor: Principal,
    clock: Clock,
    job_id: str,
    *,
    office_code: str,
    overdue_days: int = 7,
) -> JobView:
    actor.authorize(Action.PROGRAM_MANAGEMENT_CARD, clock)
    with db.read() as session:
        job = office_job(session, job_id, office_code, lock=False)
        names = _names(session, [job.customer_no])
        return _view(job, names.get(job.customer_no), clock.now(), overdue_days)


def take(db: Database, actor: Principal, clock: Clock, job_id: str, *, office_code: str) -> JobView:
    """The job becomes the actor's until returned or released; taking one's own again is a
    no-op."""
    _allow(db, actor, clock, Action.PROGRAM_MANAGEMENT_CARD, "job_take", job_id)

    def work(session: Session) -> JobView:
        job = office_job(session, job_id, office_code)
        if job.taken_by is not None and job.taken_by != actor.operator_id:
            raise JobTakenByOther(job_id=job_id, holder=job.taken_by)
        if job.status != "open":
            raise JobNotOpen(job_id=job_id, status=Msg(job.status))  # a status is a msgid
        if job.taken_by is None:
            job.taken_by = actor.operator_id
            job.taken_at = clock.now()
            job.updated_at = clock.now()
            _audit(session, actor, clock, "job_take", job_id, kind=job.kind)
        return _view(job, None, clock.now(), 0)

    result: JobView = _guarded(db, actor, clock, "job_take", job_id, work)
    return result


def release(
    db: Database, actor: Principal, clock: Clock, job_id: str, *, office_code: str
) -> JobView:
    """Give the job back to the office.  Not while its card is out (return it first)."""
    _allow(db, actor, clock, Action.PROGRAM_MANAGEMENT_CARD, "job_release", job_id)

    def work(session: Session) -> JobView:
        job = office_job(session, job_id, office_code)
        if job.taken_by != actor.operator_id:
            raise JobNotTaken(job_id=job_id)
        if job.card_state == "issued":
            raise JobCardOut(job_id=job_id, issued_at=aware(job.issued_at).isoformat()
                             if job.issued_at else "-")  # fmt: skip
        job.taken_by = None
        job.taken_at = None
        job.updated_at = clock.now()
        _audit(session, actor, clock, "job_release", job_id, kind=job.kind)
        return _view(job, None, clock.now(), 0)

    result: JobView = _guarded(db, actor, clock, "job_release", job_id, work)
    return result
