"""The field technician's management-card jobs: list, take, release, program, return.

The central system sends the jobs it could not issue remotely (``sync/pull.py`` puts them in
``mgmt_jobs``): a price adjustment (``price``: a tariff plan version), purchase parameters
(``purchase_params``: thresholds and limits) or a meter reading day (``reading_day``).  A
technician of the counter's office takes a job (it is theirs until returned or released),
programs the matching management card -- its content built from the job and the archive, never
typed -- carries it to the meter and brings it back.  The meter writes its write-back onto the
card; :func:`return_card` reads it, records the result (``applied``; ``refused`` with the
meter's reason; ``wrong_meter``), closes the job and queues the result in the outbox, in the
same transaction, so it reaches the central system exactly once (``job-results``, idempotent by
the result's UUID).

The card's lifecycle: ``issued`` (programmed) -> ``applied`` on site (the meter's write-back
time) -> ``returned`` -> ``closed``.  A card still out longer than ``overdue_days`` after it was
programmed is flagged overdue (:attr:`JobView.overdue`).

Rules: a counter acts only on its own office's jobs; ids are ASCII and matched whole
(``app.domain.ids``); the permission ``program_management_card`` for every step (and
``read_meter`` to read a check card); every step is audited, refusals too.

A check card (:func:`read_check_card`) collects a meter's write-back on site; what it brings
back is stored on the customer's archive row (``meter_remaining``, ``meter_purchase_count``,
``write_back_seen_at``) and sent by the next sync round as a control report.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.clock import Clock, aware
from app.domain import ids
from app.domain.card import (
    ANY_METER,
    CardContents,
    CardKind,
    CardWrite,
    JobKind,
    JobRecord,
    ParameterRecord,
    TariffRecord,
    UpdateFlags,
    UserCardType,
    WriteBack,
    WriteBackStatus,
    WrongCardKind,
)
from app.domain.permissions import Action, PermissionDenied
from app.domain.pricing import TariffSpec
from app.errors import CardVendError, Conflict, NotFound
from app.i18n import N_, translate
from app.persistence.db import Database
from app.persistence.models import Customer, MgmtJob, OutboxEntry, TariffPlan, TariffVersion
from app.ports import CardTerminal
from app.services import audit
from app.services.auth import Principal

OUTBOX_KIND = "job_result"  # sync/outbox.py sends it as a JobResultRecord to job-results

# job kind (the contract's) -> the management card that does it
CARD_OF_JOB: dict[str, CardKind] = {
    "price": CardKind.TARIFF,
    "purchase_params": CardKind.PARAMETERS,
    "reading_day": CardKind.READING_DAY,
}
_JOB_KIND: dict[str, JobKind] = {
    "price": JobKind.TARIFF,
    "purchase_params": JobKind.PARAMETERS,
    "reading_day": JobKind.READING_DAY,
}
RESULT_APPLIED = "applied"
RESULT_REFUSED = "refused"
RESULT_WRONG_METER = "wrong_meter"
# the meter's reason when it took the card but did not apply its job (neither JOB_APPLIED
# nor MISMATCH in the write-back status): the job file was missing, of another kind or invalid
REASON_JOB_NOT_USABLE = "job_not_usable"
CARD_STATES = ("issued", "applied", "returned", "closed")
# what a person reads of a job (the CLI and the technician's page)
KIND_NAMES = {
    "price": N_("price adjustment"),
    "purchase_params": N_("purchase parameters"),
    "reading_day": N_("meter reading day"),
}
RESULT_NAMES = {
    RESULT_APPLIED: N_("applied by the meter"),
    RESULT_REFUSED: N_("refused by the meter"),
    RESULT_WRONG_METER: N_("inserted into the wrong meter"),
}
STATE_NAMES = {
    "issued": N_("card out"),
    "applied": N_("applied on site"),
    "returned": N_("card returned"),
    "closed": N_("job closed"),
}
NO_CUSTOMER = "000000000000"


# --------------------------------------------------------------------------- errors


class JobError(CardVendError):
    code = "job"
    template = N_("{detail}")


class JobOfOtherOffice(JobError):
    code = "job_other_office"
    template = N_(
        "Job {job_id} belongs to office {office}, not to this counter's office {own}. "
        "Only that office's technicians can do it."
    )


class JobTakenByOther(JobError):
    code = "job_taken"
    template = N_(
        "Job {job_id} is taken by technician {holder}. It is theirs until they return or "
        "release it."
    )


class JobNotTaken(JobError):
    code = "job_not_taken"
    template = N_("Job {job_id} is not taken by you. Take it first (cardvend jobs take).")


class JobNotOpen(JobError):
    code = "job_not_open"
    template = N_("Job {job_id} is {status}; only an open job can be taken or programmed.")


class JobCardOut(JobError):
    code = "job_card_out"
    template = N_(
        "The card of job {job_id} is out (programmed {issued_at}). Bring the card back and "
        "return it before releasing the job."
    )


class JobCardNotProgrammed(JobError):
    code = "job_card_not_programmed"
    template = N_("No card was programmed for job {job_id}. Program a card first.")


class JobCardNotUsed(JobError):
    code = "job_card_not_used"
    template = N_(
        "The meter has not written on the card of job {job_id} since it was programmed. "
        "Take the card to meter {meter_no} and insert it, then return it."
    )


class CheckCardEmpty(JobError):
    code = "check_card_empty"
    template = N_(
        "Check card {serial} holds no meter reading yet. Insert it into a meter, then read it."
    )


class JobCardInUse(JobError):
    code = "job_card_in_use"
    template = N_(
        "Card {serial} is out for job {job_id} and has not been returned. Return it first, or "
        "use another card."
    )


class JobCardForged(JobError):
    code = "job_card_forged"
    template = N_(
        "The write-back on card {serial} does not carry a genuine meter signature. Nothing was "
        "recorded; keep the card and call a supervisor."
    )


class JobCardMismatch(JobError):
    code = "job_card_mismatch"
    template = N_(
        "Card {serial} is not the card programmed for job {job_id} ({expected}). Return the "
        "card that was programmed for it."
    )


class JobContentMissing(JobError):
    code = "job_content_missing"
    template = N_(
        "Job {job_id} cannot be put on a card: {reason}. Sync with the central system and try "
        "again."
    )


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class JobView:
    id: str
    kind: str
    customer_no: str
    customer_name: str | None
    meter_no: str
    office_code: str
    params: dict[str, Any]
    status: str
    created_at: dt.datetime
    taken_by: str | None
    taken_at: dt.datetime | None
    card_kind: str  # the management card it needs
    card_serial: str | None
    card_state: str | None
    issued_at: dt.datetime | None
    applied_at: dt.datetime | None
    returned_at: dt.datetime | None
    closed_at: dt.datetime | None
    result: str | None
    result_reason: str
    result_id: str | None
    write_back: dict[str, Any] | None
    overdue: bool

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = value.isoformat() if isinstance(value, dt.datetime) else value
        return out


def _opt(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else aware(value)


def _is_overdue(job: MgmtJob, now: dt.datetime, overdue_days: int) -> bool:
    if job.card_state != "issued" or job.issued_at is None:
        return False
    return now - aware(job.issued_at) > dt.timedelta(days=overdue_days)


def _view(job: MgmtJob, name: str | None, now: dt.datetime, overdue_days: int) -> JobView:
    return JobView(
        id=job.id,
        kind=job.kind,
        customer_no=job.customer_no,
        customer_name=name,
        meter_no=job.meter_no,
        office_code=job.office_code,
        params=dict(job.params or {}),
        status=job.status,
        created_at=aware(job.created_at),
        taken_by=job.taken_by,
        taken_at=_opt(job.taken_at),
        card_kind=CARD_OF_JOB[job.kind].name.lower() if job.kind in CARD_OF_JOB else "",
        card_serial=job.card_serial,
        card_state=job.card_state,
        issued_at=_opt(job.issued_at),
        applied_at=_opt(job.applied_at),
        returned_at=_opt(job.returned_at),
        closed_at=_opt(job.closed_at),
        result=job.result,
        result_reason=job.result_reason or "",
        result_id=job.result_id,
        write_back=job.write_back,
        overdue=_is_overdue(job, now, overdue_days),
    )


def _names(session: Session, customer_nos: list[str]) -> dict[str, str]:
    if not customer_nos:
        return {}
    rows = session.execute(
        select(Customer.customer_no, Customer.name).where(Customer.customer_no.in_(customer_nos))
    ).all()
    return {no: name for no, name in rows}


# --------------------------------------------------------------------------- helpers


def _allow(
    db: Database, actor: Principal, clock: Clock, action: Action, step: str, target: str
) -> None:
    """The permission; a refusal is audited before it is raised."""
    try:
        actor.authorize(action, clock)
    except PermissionDenied:
        with db.write() as session:
            _audit(session, actor, clock, step, target, result="denied", role=str(actor.role))
        raise


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
    audit.record(
        session,
        action=step,
        operator_id=actor.operator_id,
        counter_id=actor.counter_id,
        clock=clock,
        target=target,
        result=result,
        detail=detail,
    )


def _refuse(
    db: Database, actor: Principal, clock: Clock, step: str, target: str, error: CardVendError
) -> CardVendError:
    """Audit a refused step (in its own transaction) and give the error back to raise."""
    with db.write() as session:
        _audit(session, actor, clock, step, target, result="failed", code=error.code)
    return error


def _own_job(
    db: Database,
    session: Session,
    actor: Principal,
    clock: Clock,
    job_id: str,
    office_code: str,
    step: str,
) -> MgmtJob:
    """The job ``job_id`` (a UUID, matched whole) of this counter's office, row-locked."""
    ids.UUID.check(job_id, "job id")
    job = session.scalar(select(MgmtJob).where(MgmtJob.id == job_id).with_for_update())
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


# --------------------------------------------------------------------------- queries


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
    ids.UUID.check(job_id, "job id")
    with db.read() as session:
        job = session.get(MgmtJob, job_id)
        if job is None:
            raise NotFound(what=N_("Job"), key=job_id)
        if job.office_code != office_code:
            raise JobOfOtherOffice(job_id=job_id, office=job.office_code, own=office_code)
        names = _names(session, [job.customer_no])
        return _view(job, names.get(job.customer_no), clock.now(), overdue_days)


# --------------------------------------------------------------------------- take, release


def take(db: Database, actor: Principal, clock: Clock, job_id: str, *, office_code: str) -> JobView:
    """The job becomes the actor's until returned or released; taking one's own again is a
    no-op."""
    _allow(db, actor, clock, Action.PROGRAM_MANAGEMENT_CARD, "job_take", job_id)

    def work(session: Session) -> JobView:
        job = _own_job(db, session, actor, clock, job_id, office_code, "job_take")
        if job.taken_by is not None and job.taken_by != actor.operator_id:
            raise JobTakenByOther(job_id=job_id, holder=job.taken_by)
        if job.status != "open":
            raise JobNotOpen(job_id=job_id, status=job.status)
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
        job = _own_job(db, session, actor, clock, job_id, office_code, "job_release")
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


# --------------------------------------------------------------------------- program


@dataclass(frozen=True)
class CardPlan:
    """What programming a job writes onto its management card (shown before writing)."""

    job_id: str
    card_kind: CardKind
    write: CardWrite

    def to_json(self) -> dict[str, Any]:
        w = self.write
        p = w.parameters
        out: dict[str, Any] = {"job_id": self.job_id, "card_kind": self.card_kind.name.lower()}
        if p is not None:
            out["meter_no"] = p.meter_no
            if self.card_kind == CardKind.PARAMETERS:
                for key in ("alarm1", "alarm2", "overdraft_limit", "credit_ceiling"):
                    out[f"{key}_fen"] = getattr(p, key)
                out["ct_ratio"], out["pt_ratio"] = p.ct_ratio, p.pt_ratio
        for name in ("current_tariff", "backup_tariff"):
            t: TariffRecord | None = getattr(w, name)
            if t is not None:
                when = t.effective_from.isoformat() if t.effective_from else None
                out[name] = {"version_no": t.version_no, "effective_from": when, "spec": t.spec}
        if w.job is not None and self.card_kind == CardKind.READING_DAY:
            out["reading_day"], out["reading_hour"] = w.job.reading_day, w.job.reading_hour
        return out


def _int_param(job: MgmtJob, key: str, default: int | None, lo: int, hi: int) -> int:
    value = (job.params or {}).get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise JobContentMissing(
            job_id=job.id, reason=N_("the job's {key} is missing or out of range"), key=key
        )
    return value


def management_parameters(
    kind: CardKind,
    utility_code: str,
    meter_no: str,
    *,
    limits: tuple[int, int, int, int] = (0, 0, 0, 0),
    ratios: tuple[int, int] = (1, 1),
    flags: UpdateFlags = UpdateFlags.NONE,
    param_version: int = 0,
) -> ParameterRecord:
    """The parameter file of a management card for ``meter_no`` (or every meter):
    ``limits`` are alarm1, alarm2, overdraft limit and credit ceiling in fen."""
    alarm1, alarm2, overdraft, ceiling = limits
    return ParameterRecord(
        card_kind=kind,
        utility_code=utility_code,
        user_card_type=UserCardType.NONE,
        customer_no=NO_CUSTOMER,
        meter_no=meter_no,
        alarm1=alarm1,
        alarm2=alarm2,
        overdraft_limit=overdraft,
        credit_ceiling=ceiling,
        ct_ratio=ratios[0],
        pt_ratio=ratios[1],
        update_flags=flags,
        param_version=param_version,
    )


def plan_card(session: Session, job: MgmtJob, utility_code: str, now: dt.datetime) -> CardPlan:
    """The card content of ``job``, from the job and the archive."""
    if job.kind not in CARD_OF_JOB:
        raise JobContentMissing(job_id=job.id, reason=N_("a job kind this counter does not know"))
    customer = session.scalar(select(Customer).where(Customer.customer_no == job.customer_no))
    if customer is None:
        raise JobContentMissing(job_id=job.id, reason=N_("its customer is not in the archive"))
    kind = CARD_OF_JOB[job.kind]
    flags = UpdateFlags.NONE
    current = backup = None
    reading_day = reading_hour = 0
    alarm1, alarm2 = customer.alarm1, customer.alarm2
    overdraft, ceiling = customer.overdraft_limit, customer.credit_ceiling
    ct, pt = customer.ct_ratio, customer.pt_ratio
    if job.kind == "price":
        code = (job.params or {}).get("plan_code")
        version_no = _int_param(job, "version_no", None, 1, 65535)
        version = session.scalar(
            select(TariffVersion)
            .join(TariffPlan, TariffPlan.id == TariffVersion.plan_id)
            .where(TariffPlan.code == code, TariffVersion.version_no == version_no)
        )
        if version is None:
            raise JobContentMissing(
                job_id=job.id, reason=N_("the tariff version it names is not here")
            )
        spec = TariffSpec.from_dict(version.spec).to_dict()
        record = TariffRecord(version.version_no, aware(version.effective_from), spec)
        if aware(version.effective_from) > now:  # the meter switches over at its time
            backup, flags = record, UpdateFlags.BACKUP_TARIFF
        else:
            current, flags = record, UpdateFlags.CURRENT_TARIFF
    elif job.kind == "purchase_params":
        limit = 2**32 - 1
        alarm1 = _int_param(job, "alarm1", alarm1, 0, limit)
        alarm2 = _int_param(job, "alarm2", alarm2, 0, limit)
        overdraft = _int_param(job, "overdraft_limit", overdraft, 0, limit)
        ceiling = _int_param(job, "credit_ceiling", ceiling, 0, limit)
        ct = _int_param(job, "ct_ratio", ct, 1, limit)
        pt = _int_param(job, "pt_ratio", pt, 1, limit)
        flags = UpdateFlags.PARAMETERS
    else:
        reading_day = _int_param(job, "reading_day", None, 1, 28)
        reading_hour = _int_param(job, "reading_hour", 0, 0, 23)
    params = management_parameters(
        kind,
        utility_code,
        job.meter_no,
        limits=(alarm1, alarm2, overdraft, ceiling),
        ratios=(ct, pt),
        flags=flags,
        param_version=min(customer.param_version, 0xFFFF),
    )
    record_job = JobRecord(uuid.UUID(job.id).bytes, _JOB_KIND[job.kind], reading_day, reading_hour)
    return CardPlan(
        job.id,
        kind,
        CardWrite(parameters=params, current_tariff=current, backup_tariff=backup, job=record_job),
    )


def preview(
    db: Database,
    actor: Principal,
    clock: Clock,
    job_id: str,
    *,
    office_code: str,
    utility_code: str,
) -> CardPlan:
    """What :func:`program` would write, for the technician to see first."""
    actor.authorize(Action.PROGRAM_MANAGEMENT_CARD, clock)
    with db.read() as session:
        job = session.get(MgmtJob, ids.UUID.check(job_id, "job id"))
        if job is None:
            raise NotFound(what=N_("Job"), key=job_id)
        if job.office_code != office_code:
            raise JobOfOtherOffice(job_id=job_id, office=job.office_code, own=office_code)
        return plan_card(session, job, utility_code, clock.now())


def program(
    db: Database,
    actor: Principal,
    clock: Clock,
    job_id: str,
    terminal: CardTerminal,
    *,
    office_code: str,
    utility_code: str,
) -> JobView:
    """Write the job's content onto the management card in ``terminal`` (an issued card of the
    job's kind) and mark the card issued.  The job must be the actor's and open."""
    _allow(db, actor, clock, Action.PROGRAM_MANAGEMENT_CARD, "job_program", job_id)

    def check(session: Session) -> CardPlan:
        job = _own_job(db, session, actor, clock, job_id, office_code, "job_program")
        if job.taken_by != actor.operator_id:
            raise JobNotTaken(job_id=job_id)
        if job.status != "open":
            raise JobNotOpen(job_id=job_id, status=job.status)
        return plan_card(session, job, utility_code, clock.now())

    plan: CardPlan = _guarded(db, actor, clock, "job_program", job_id, check)
    try:
        card = terminal.read()
        if card.kind != plan.card_kind:
            raise WrongCardKind(found=card.kind.label, expected=plan.card_kind.label)
        with db.read() as session:
            other = session.scalar(
                select(MgmtJob.id).where(
                    MgmtJob.card_serial == card.serial_hex,
                    MgmtJob.card_state == "issued",
                    MgmtJob.id != job_id,
                )
            )
        if other is not None:  # its result would be lost
            raise JobCardInUse(serial=card.serial_hex, job_id=other)
        written = terminal.write(plan.write, expect_serial=card.serial)
    except CardVendError as exc:
        with db.write() as session:
            _audit(session, actor, clock, "job_program", job_id, result="failed", code=exc.code)
        raise
    serial = written.serial.hex().upper()
    wb_mac = card.write_back.mac.hex() if card.write_back is not None else None

    def mark(session: Session) -> JobView:
        job = _own_job(db, session, actor, clock, job_id, office_code, "job_program")
        if job.taken_by != actor.operator_id:  # released and taken by someone meanwhile
            raise JobNotTaken(job_id=job_id)
        now = clock.now()
        job.card_serial = serial
        job.card_state = "issued"
        job.issued_at = now
        job.issued_wb_mac = wb_mac
        job.applied_at = job.returned_at = job.closed_at = None
        job.updated_at = now
        _audit(
            session,
            actor,
            clock,
            "job_program",
            job_id,
            serial=serial,
            card_kind=plan.card_kind.name.lower(),
            files=list(written.files),
            content=plan.to_json(),
        )
        return _view(job, None, now, 0)

    result: JobView = _guarded(db, actor, clock, "job_program", job_id, mark)
    return result


# --------------------------------------------------------------------------- return


def write_back_json(wb: WriteBack) -> dict[str, Any]:
    """A write-back as the job result carries it (at most 32 entries, contract)."""
    return {
        "meter_no": wb.meter_no,
        "remaining_fen": wb.remaining,
        "overdraft_used_fen": wb.overdraft_used,
        "purchase_count": wb.purchase_count,
        "total_energy_wh": wb.total_energy_wh,
        "status_bits": int(wb.status),
        "job_applied": bool(wb.status & WriteBackStatus.JOB_APPLIED),
        "mismatch": bool(wb.status & WriteBackStatus.MISMATCH),
        "tripped": bool(wb.status & WriteBackStatus.TRIPPED),
        "illegal_insert_count": wb.illegal_insert_count,
        "meter_time": wb.time.isoformat() if wb.time else None,
        "param_version": wb.param_version,
    }


def judge(job_meter_no: str, wb: WriteBack) -> tuple[str, str]:
    """(result, reason) of a genuine write-back on a returned job card."""
    if wb.meter_no != job_meter_no or wb.status & WriteBackStatus.MISMATCH:
        return RESULT_WRONG_METER, "meter_no"
    if wb.status & WriteBackStatus.JOB_APPLIED:
        return RESULT_APPLIED, ""
    return RESULT_REFUSED, REASON_JOB_NOT_USABLE


def return_card(
    db: Database,
    actor: Principal,
    clock: Clock,
    terminal: CardTerminal,
    *,
    office_code: str,
    job_id: str | None = None,
    note: str = "",
) -> JobView:
    """Read the returned card, record the meter's result, close the job and queue the result
    for the central system (one transaction).  ``job_id``, when given, must be the card's."""
    target = job_id or "-"
    _allow(db, actor, clock, Action.PROGRAM_MANAGEMENT_CARD, "job_return", target)
    if job_id is not None:
        ids.UUID.check(job_id, "job id")
    try:
        card = terminal.read()
        if not card.kind.is_management or card.kind == CardKind.CHECK:
            raise WrongCardKind(found=card.kind.label, expected=N_("management card of a job"))
    except CardVendError as exc:
        raise _refuse(db, actor, clock, "job_return", target, exc) from None
    serial = card.serial_hex
    card_job = str(uuid.UUID(bytes=card.job.job_id)) if card.job is not None else None

    def work(session: Session) -> JobView:
        wanted = job_id or card_job
        if wanted is None:
            raise JobCardNotProgrammed(job_id="-")
        job = _own_job(db, session, actor, clock, wanted, office_code, "job_return")
        if job.taken_by != actor.operator_id:
            raise JobNotTaken(job_id=job.id)
        if job.card_state != "issued" or job.card_serial is None:
            raise JobCardNotProgrammed(job_id=job.id)
        if card_job != job.id or serial != job.card_serial:
            raise JobCardMismatch(serial=serial, job_id=job.id, expected=job.card_serial)
        wb = card.write_back
        if wb is None or (job.issued_wb_mac is not None and wb.mac.hex() == job.issued_wb_mac):
            raise JobCardNotUsed(job_id=job.id, meter_no=job.meter_no)
        if card.write_back_genuine is not True:
            raise JobCardForged(serial=serial)
        result, reason = judge(job.meter_no, wb)
        now = clock.now()
        job.applied_at = wb.time if result == RESULT_APPLIED else None
        job.returned_at = now
        job.closed_at = now
        job.card_state = "closed"
        job.result = result
        job.result_reason = reason
        job.write_back = write_back_json(wb)
        job.status = "done" if result == RESULT_APPLIED else "failed"
        job.result_id = str(uuid.uuid4())
        job.updated_at = now
        payload = {
            "job_id": job.id,
            "outcome": job.status,
            "technician_id": actor.operator_id,
            "counter_id": actor.counter_id,
            "done_at": now.isoformat(),
            "write_back": {**job.write_back, "result": result, "reason": reason},
            "note": note[:200],
        }
        session.add(
            OutboxEntry(
                kind=OUTBOX_KIND,
                ref_id=job.result_id,
                counter_id=actor.counter_id,
                payload=payload,
                amount=0,
                created_at=now,
                attempts=0,
                last_error="",
            )
        )
        _audit(
            session,
            actor,
            clock,
            "job_return",
            job.id,
            serial=serial,
            outcome=result,
            reason=reason,
            result_id=job.result_id,
            write_back=job.write_back,
        )
        return _view(job, None, now, 0)

    view: JobView = _guarded(db, actor, clock, "job_return", target, work)
    return view


# --------------------------------------------------------------------------- check cards


@dataclass(frozen=True)
class CheckReading:
    serial: str
    meter_no: str
    customer_no: str | None  # None: no customer of this archive has that meter
    write_back: dict[str, Any]


def program_check_card(
    db: Database,
    actor: Principal,
    clock: Clock,
    terminal: CardTerminal,
    *,
    utility_code: str,
    meter_no: str | None = None,
) -> str:
    """Program the check card in ``terminal`` for one meter (or every meter); its serial."""
    _allow(db, actor, clock, Action.READ_METER, "check_card_program", meter_no or ANY_METER)
    target = ids.METER_NO.check(meter_no, "meter_no") if meter_no else ANY_METER
    card = terminal.read()
    if card.kind != CardKind.CHECK:
        raise _refuse(
            db,
            actor,
            clock,
            "check_card_program",
            target,
            WrongCardKind(found=card.kind.label, expected=CardKind.CHECK.label),
        )
    params = management_parameters(CardKind.CHECK, utility_code, target)
    job = JobRecord(uuid.uuid4().bytes, JobKind.CHECK)
    written = terminal.write(CardWrite(parameters=params, job=job), expect_serial=card.serial)
    serial = written.serial.hex().upper()
    with db.write() as session:
        _audit(session, actor, clock, "check_card_program", target, serial=serial)
    return serial


def read_check_card(
    db: Database, actor: Principal, clock: Clock, terminal: CardTerminal
) -> CheckReading:
    """Read what a check card brought back and store it on the customer of that meter, so the
    next sync round sends it to the central system as a control report."""
    _allow(db, actor, clock, Action.READ_METER, "check_card_read", "-")
    card: CardContents = terminal.read()
    serial = card.serial_hex
    wb = card.write_back
    error: CardVendError | None = None
    if card.kind != CardKind.CHECK:
        error = WrongCardKind(found=card.kind.label, expected=CardKind.CHECK.label)
    elif wb is None:
        error = CheckCardEmpty(serial=serial)
    elif card.write_back_genuine is not True:
        error = JobCardForged(serial=serial)
    if error is not None:
        raise _refuse(db, actor, clock, "check_card_read", serial, error)
    assert wb is not None
    data = write_back_json(wb)
    with db.write() as session:
        customer = session.scalar(
            select(Customer).where(Customer.meter_no == wb.meter_no).with_for_update()
        )
        customer_no = None
        if customer is not None:
            customer_no = customer.customer_no
            customer.meter_remaining = wb.remaining
            customer.meter_purchase_count = wb.purchase_count
            customer.write_back_seen_at = clock.now()
        _audit(
            session,
            actor,
            clock,
            "check_card_read",
            wb.meter_no,
            serial=serial,
            customer_no=customer_no,
            write_back=data,
        )
    return CheckReading(serial, wb.meter_no, customer_no, data)


def what_to_set(view: JobView) -> str:
    """The job's content in one line (``key=value``, sorted)."""
    return ", ".join(f"{k}={val}" for k, val in sorted(view.params.items()))


def state_text(view: JobView) -> str:
    """Where the job's card stands, translated (``open`` before a card is programmed)."""
    return translate(STATE_NAMES[view.card_state] if view.card_state else N_("open"))
