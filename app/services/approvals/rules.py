"""Approval rules: which actions need whose sign-off, set by an administrator."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.operators import Role
from app.domain.permissions import Action
from app.domain.permissions import allowed
from app.domain.permissions import require
from app.errors import ValidationError
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import ApprovalRequest
from app.persistence.models import ApprovalRule
from app.services import audit
from app.services.approvals.model import DEFAULT_TTL_MINUTES
from app.services.approvals.model import MAX_STEPS
from app.services.approvals.model import MAX_TTL_MINUTES
from app.services.approvals.model import ApprovalRuleView
from app.services.approvals.model import ApprovalStep
from app.services.approvals.model import _meta
from app.services.operators import require_operator

if TYPE_CHECKING:
    from app.services.auth import Principal

# --------------------------------------------------------------------------- rules


def _action(action: Action | str) -> Action:
    try:
        value = Action(action)
    except ValueError:
        value = None
    if value is None or value is Action.APPROVE:
        raise ValidationError(
            N_("{action} is not an action that approvals can be set for."), action=str(action)
        )
    return value


# the actions whose flows consult their rule (require_approval, consume, needs_approval); a rule
# for any other action is kept but changes nothing until its flow asks for it
ASKED_FOR = frozenset(
    {
        Action.REVERSE,
        Action.REPLACE_CARD,
        Action.OVERRIDE_OFFLINE_LIMIT,
        Action.REPRINT,
        Action.ERASE_CARD,
        Action.CHANGE_METER,
        Action.CLOSE_ACCOUNT,
        Action.PAUSE_ACCOUNT,
        Action.EXCHANGE_CARD,
        Action.LIFT_CONTROL,
    }
)
# the flows that cannot go on without an approval (they take the signed request as an input):
# "no approval needed" would stop them, so their rule keeps at least one step (a close hands
# back cash; a meter change from typed values carries credit on a person's word)
ALWAYS_APPROVED = frozenset(
    {
        Action.REVERSE,
        Action.REPLACE_CARD,
        Action.OVERRIDE_OFFLINE_LIMIT,
        Action.CLOSE_ACCOUNT,
        Action.CHANGE_METER,
        Action.LIFT_CONTROL,  # no alarm or trip for the customer until it is resumed
    }
)


def approvable_actions() -> tuple[Action, ...]:
    """Every action a rule may be set for: all but signing an approval itself."""
    return tuple(a for a in Action if a is not Action.APPROVE)


def may_sign(role: Role | str) -> bool:
    """Whether a rule may name ``role`` for a step: roles allowed APPROVE, and admin."""
    return Role(role) is Role.ADMIN or allowed(role, Action.APPROVE)


def approver_roles() -> tuple[Role, ...]:
    """The roles a step may name (the choices an editor offers)."""
    return tuple(r for r in Role if may_sign(r))


def _parse_steps(raw: Sequence[Any]) -> tuple[ApprovalStep, ...]:
    """Steps as stored (lenient: ``distinct`` defaults to true, the safe side)."""
    return tuple(
        ApprovalStep(str(s["role"]), bool(s.get("distinct", True)))
        for s in raw
        if isinstance(s, Mapping) and "role" in s
    )


def check_steps(steps: Iterable[ApprovalStep | Mapping[str, Any]]) -> tuple[ApprovalStep, ...]:
    """Validate steps given by an administrator (see the module docstring for the roles)."""
    if isinstance(steps, str | bytes | Mapping):
        raise ValidationError(N_("Approval steps must be a list of steps."))
    result: list[ApprovalStep] = []
    for number, raw in enumerate(steps, start=1):
        if isinstance(raw, ApprovalStep):
            role_value: Any = raw.role
            distinct: Any = raw.distinct
        elif isinstance(raw, Mapping) and set(raw) <= {"role", "distinct"} and "role" in raw:
            role_value, distinct = raw["role"], raw.get("distinct", True)
        else:
            raise ValidationError(
                N_(
                    "Approval step {step} must give a role and whether the signer must be "
                    "another person."
                ),
                step=number,
            )
        if not isinstance(distinct, bool):
            raise ValidationError(
                N_("Approval step {step}: 'distinct' must be true or false."), step=number
            )
        try:
            role = Role(role_value)
        except ValueError:
            raise ValidationError(
                N_("Approval step {step}: there is no role {role}."), step=number, role=role_value
            ) from None
        if not may_sign(role):
            raise ValidationError(
                N_(
                    "Approval step {step}: a {role} may not approve. Choose a supervisor or "
                    "an admin."
                ),
                step=number,
                role=Role(role).label,
            )
        result.append(ApprovalStep(role.value, distinct))
    if len(result) > MAX_STEPS:
        raise ValidationError(N_("An approval may have at most {max} steps."), max=MAX_STEPS)
    return tuple(result)


def get_rule(session: Session, action: Action | str) -> ApprovalRuleView:
    """The rule for ``action``; no row means no approval needed (empty steps)."""
    act = _action(action)
    row = session.get(ApprovalRule, act.value)
    if row is None:
        return ApprovalRuleView(act.value, (), DEFAULT_TTL_MINUTES)
    return ApprovalRuleView(act.value, _parse_steps(row.steps or []), row.ttl_minutes)


def needs_approval(session: Session, action: Action | str) -> bool:
    return get_rule(session, action).needs_approval


def list_rules(db: Database) -> list[ApprovalRuleView]:
    with db.read() as session:
        rows = session.scalars(select(ApprovalRule).order_by(ApprovalRule.action))
        return [
            ApprovalRuleView(r.action, _parse_steps(r.steps or []), r.ttl_minutes) for r in rows
        ]


def all_rules(db: Database) -> list[ApprovalRuleView]:
    """The rule of every approvable action, in :class:`Action` order; an action without a row
    needs no approval (no steps, the default time limit)."""
    stored = {r.action: r for r in list_rules(db)}
    return [
        stored.get(a.value) or ApprovalRuleView(a.value, (), DEFAULT_TTL_MINUTES)
        for a in approvable_actions()
    ]


def change_rule(
    db: Database,
    principal: Principal,
    action: Action | str,
    steps: Iterable[ApprovalStep | Mapping[str, Any]],
    ttl_minutes: int,
    clock: Clock,
) -> ApprovalRuleView:
    """:func:`set_rule` by a signed-in administrator at their counter (the CLI and the
    administration page): the sign-in must still be active."""
    principal.authorize(Action.CHANGE_SETTINGS, clock)
    return set_rule(
        db,
        admin_id=principal.operator_id,
        admin_role=principal.role,
        action=action,
        steps=steps,
        ttl_minutes=ttl_minutes,
        counter_id=principal.counter_id,
        clock=clock,
    )


def set_rule(
    db: Database,
    *,
    admin_id: str,
    admin_role: Role | str,
    action: Action | str,
    steps: Iterable[ApprovalStep | Mapping[str, Any]],
    ttl_minutes: int,
    counter_id: str,
    clock: Clock,
) -> ApprovalRuleView:
    """Create or replace the rule of ``action`` (admin only; audited). Empty ``steps`` = the
    action needs no approval (the row is kept, so the decision is on record)."""
    require(admin_id, admin_role, Action.CHANGE_SETTINGS)
    act = _action(action)
    checked = check_steps(steps)
    if not checked and act in ALWAYS_APPROVED:
        raise ValidationError(
            N_("To {action} an approval is always needed: give at least one approval step."),
            action=act.label,
        )
    if (
        isinstance(ttl_minutes, bool)
        or not isinstance(ttl_minutes, int)
        or not (1 <= ttl_minutes <= MAX_TTL_MINUTES)
    ):
        raise ValidationError(
            N_("The approval time limit must be 1 to {max} minutes, not {value}."),
            max=MAX_TTL_MINUTES,
            value=ttl_minutes,
        )
    with db.write() as session:
        require_operator(session, admin_id)
        row = session.get(ApprovalRule, act.value, with_for_update=True)
        before = None if row is None else {"steps": row.steps, "ttl_minutes": row.ttl_minutes}
        stored = [s.to_json() for s in checked]
        if row is None:
            row = ApprovalRule(action=act.value, steps=stored, ttl_minutes=ttl_minutes)
            session.add(row)
        else:
            row.steps, row.ttl_minutes = stored, ttl_minutes
        session.flush()
        audit.Actor(admin_id, counter_id, clock).record(
            session,
            AuditAction.APPROVAL_RULE,
            act.value,
            detail={"before": before, "after": {"steps": stored, "ttl_minutes": ttl_minutes}},
        )
        return ApprovalRuleView(act.value, checked, ttl_minutes)


def _steps_of(session: Session | None, req: ApprovalRequest) -> tuple[ApprovalStep, ...]:
    meta = _meta(req)
    if "steps" in meta:
        return _parse_steps(meta["steps"])
    if session is None:  # pragma: no cover - every request made here carries its rule copy
        return ()
    return get_rule(session, req.action).steps
