"""Programming a job's management card from the job and the archive, and taking the card back with the meter's result."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.clock import aware
from app.domain import ids
from app.domain.card import CardKind
from app.domain.card import CardWrite
from app.domain.card import JobRecord
from app.domain.card import ParameterRecord
from app.domain.card import TariffRecord
from app.domain.card import UpdateFlags
from app.domain.card import UserCardType
from app.domain.card import WriteBack
from app.domain.card import WriteBackStatus
from app.domain.card import WrongCardKind
from app.domain.permissions import Action
from app.domain.pricing import TariffSpec
from app.errors import CardVendError
from app.i18n import N_
from app.i18n import Msg
from app.persistence.db import Database
from app.persistence.models import MgmtJob
from app.persistence.models import OutboxEntry
from app.persistence.models import TariffPlan
from app.persistence.models import TariffVersion
from app.ports import CardTerminal
from app.services.auth import Principal
from app.services.customers import customer_or_none
from app.services.jobs.errors import JobCardForged
from app.services.jobs.errors import JobCardInUse
from app.services.jobs.errors import JobCardMismatch
from app.services.jobs.errors import JobCardNotProgrammed
from app.services.jobs.errors import JobCardNotUsed
from app.services.jobs.errors import JobContentMissing
from app.services.jobs.errors import JobNotOpen
from app.services.jobs.errors import JobNotTaken
from app.services.jobs.model import _JOB_KIND
from app.services.jobs.model import CARD_OF_JOB
from app.services.jobs.model import NO_CUSTOMER
from app.services.jobs.model import OUTBOX_KIND
from app.services.jobs.model import REASON_JOB_NOT_USABLE
from app.services.jobs.model import RESULT_APPLIED
from app.services.jobs.model import RESULT_REFUSED
from app.services.jobs.model import RESULT_WRONG_METER
from app.services.jobs.service import _allow
from app.services.jobs.service import _audit
from app.services.jobs.service import _guarded
from app.services.jobs.service import _refuse
from app.services.jobs.service import office_job
from app.services.jobs.views import JobView
from app.services.jobs.views import _view


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
    customer = customer_or_none(session, job.customer_no)
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
    elif job.kind in ("purchase_params", "onsite_control"):
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
        job = office_job(session, job_id, office_code, lock=False)
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
        job = office_job(session, job_id, office_code)
        if job.taken_by != actor.operator_id:
            raise JobNotTaken(job_id=job_id)
        if job.status != "open":
            raise JobNotOpen(job_id=job_id, status=Msg(job.status))  # a status is a msgid
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
        _refuse(db, actor, clock, "job_program", job_id, exc)
        raise
    serial = written.serial.hex().upper()
    wb_mac = card.write_back.mac.hex() if card.write_back is not None else None

    def mark(session: Session) -> JobView:
        job = office_job(session, job_id, office_code)
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
        ids.UUID.check(job_id, N_("job id"))
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
        job = office_job(session, wanted, office_code)
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
