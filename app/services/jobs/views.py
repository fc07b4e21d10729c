"""JobView: a job as the CLI and the page show it, with its overdue flag."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import aware
from app.i18n import N_
from app.i18n import translate
from app.persistence.models import Customer
from app.persistence.models import MgmtJob
from app.services.jobs.model import CARD_OF_JOB
from app.services.jobs.model import STATE_NAMES


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


def what_to_set(view: JobView) -> str:
    """The job's content in one line (``key=value``, sorted)."""
    return ", ".join(f"{k}={val}" for k, val in sorted(view.params.items()))


def state_text(view: JobView) -> str:
    """Where the job's card stands, translated (``open`` before a card is programmed)."""
    return translate(STATE_NAMES[view.card_state] if view.card_state else N_("open"))
