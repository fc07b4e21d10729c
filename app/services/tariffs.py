"""Tariff plans and their dated versions.

A plan (``RES-FLAT``) has versions; each version is in force from its switch-over time
(``effective_from``) until the next version starts.  Versions are append-only: a new version
must start after the latest one, so the price a past sale was valued at never changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.clock import aware
from app.domain.pricing import TariffSpec
from app.domain.pricing import TariffSpecError
from app.errors import Conflict
from app.errors import NotFound
from app.errors import ValidationError
from app.i18n import N_
from app.persistence.models import TariffPlan
from app.persistence.models import TariffVersion

# keys a tariff document may leave out
SPEC_DEFAULTS: dict[str, Any] = {
    "flat_rate": None,
    "periods": [],
    "schedule": [],
    "tiers": [],
    "reset_month": 1,
    "reset_day": 1,
}


@dataclass(frozen=True)
class TariffVersionView:
    id: int
    plan_code: str
    version_no: int
    kind: str
    effective_from: dt.datetime
    spec: TariffSpec

    def to_json(self, *, in_force: bool | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "plan": self.plan_code,
            "version_no": self.version_no,
            "kind": self.kind,
            "effective_from": self.effective_from.isoformat(),
            "spec": self.spec.to_dict(),
        }
        if in_force is not None:
            data["in_force"] = in_force
        return data


def _view(plan: TariffPlan, v: TariffVersion) -> TariffVersionView:
    return TariffVersionView(
        v.id, plan.code, v.version_no, v.kind, aware(v.effective_from), TariffSpec.from_dict(v.spec)
    )


def get_plan(session: Session, code: str) -> TariffPlan:
    plan = session.scalar(select(TariffPlan).where(TariffPlan.code == code))
    if plan is None:
        raise NotFound(what=N_("Tariff plan"), key=code)
    return plan


def ensure_plan(session: Session, code: str, name: str) -> TariffPlan:
    plan = session.scalar(select(TariffPlan).where(TariffPlan.code == code))
    if plan is None:
        if not code or len(code) > 32:
            raise ValidationError(
                N_("tariff plan code {code!r} must be 1 to 32 characters"), code=code
            )
        plan = TariffPlan(code=code, name=name)
        session.add(plan)
        session.flush()
    return plan


def add_version(
    session: Session,
    plan_code: str,
    spec: TariffSpec | dict[str, Any],
    effective_from: dt.datetime,
    clock: Clock,
) -> TariffVersionView:
    if effective_from.tzinfo is None:
        raise ValidationError(N_("a switch-over time must carry its time zone"))
    if isinstance(spec, dict):
        try:
            spec = TariffSpec.from_dict({**SPEC_DEFAULTS, **spec})
        except TariffSpecError as exc:
            raise ValidationError(N_("the tariff is not valid: {detail}"), detail=str(exc)) from exc
    plan = get_plan(session, plan_code)
    latest = session.scalar(
        select(TariffVersion)
        .where(TariffVersion.plan_id == plan.id)
        .order_by(TariffVersion.version_no.desc())
        .limit(1)
        .with_for_update()
    )
    if latest is not None and aware(latest.effective_from) >= effective_from:
        raise Conflict(
            N_("A new version of {plan} must start after {latest}; versions cannot be rewritten."),
            plan=plan_code,
            latest=aware(latest.effective_from).isoformat(),
        )
    v = TariffVersion(
        plan_id=plan.id,
        version_no=(latest.version_no + 1) if latest else 1,
        kind=spec.kind,
        effective_from=effective_from.astimezone(dt.UTC),
        spec=spec.to_dict(),
        created_at=clock.now(),
    )
    session.add(v)
    session.flush()
    return _view(plan, v)


def version_in_force(session: Session, plan_id: int, at: dt.datetime) -> TariffVersionView:
    """The version whose switch-over time is the latest at or before ``at``."""
    row = session.execute(
        select(TariffPlan, TariffVersion)
        .join(TariffVersion, TariffVersion.plan_id == TariffPlan.id)
        .where(TariffPlan.id == plan_id, TariffVersion.effective_from <= at.astimezone(dt.UTC))
        .order_by(TariffVersion.effective_from.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFound(
            N_("No tariff version of plan {key} is in force at {when}."),
            key=plan_id,
            when=at.isoformat(),
        )
    return _view(row[0], row[1])


def next_version(session: Session, plan_id: int, at: dt.datetime) -> TariffVersionView | None:
    """The first version whose switch-over time is after ``at`` (a price already decided but
    not yet due), or None."""
    row = session.execute(
        select(TariffPlan, TariffVersion)
        .join(TariffVersion, TariffVersion.plan_id == TariffPlan.id)
        .where(TariffPlan.id == plan_id, TariffVersion.effective_from > at.astimezone(dt.UTC))
        .order_by(TariffVersion.effective_from)
        .limit(1)
    ).first()
    return None if row is None else _view(row[0], row[1])


def list_plans(session: Session, at: dt.datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for plan in session.scalars(select(TariffPlan).order_by(TariffPlan.code)):
        views = [_view(plan, v) for v in plan.versions]
        current = max(
            (v for v in views if v.effective_from <= at),
            key=lambda v: v.effective_from,
            default=None,
        )
        out.append(
            {
                "code": plan.code,
                "name": plan.name,
                "in_force": current.version_no if current else None,
                "versions": [v.to_json(in_force=v is current) for v in views],
            }
        )
    return out
