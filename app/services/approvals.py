"""Approvals: the configurable sign-off some actions need before they may be done.

A rule (table ``approval_rules``) gives, per action kind, an ordered list of steps; each step
names the role that signs it and whether the signer must be a *distinct* person: someone other
than the operator who asked, the people the caller named in ``distinct_from`` (for a reversal:
the teller who made the sale) and whoever signed the earlier steps.  An empty list means the
action needs no approval.  Migration 0002 seeds reverse, replace_card, override_offline_limit
and reprint with one distinct supervisor step and a 60-minute time limit.

The life of a request (table ``approval_requests``)::

    request ──> pending ──approve (last step)──> approved ──use──> used
                   │  └──reject──> rejected         │
                   └──time limit passes──> expired <┘

* :func:`request` puts a request in the queue; :func:`pending` is the queue (it first expires
  whatever is past its time); :func:`approve` signs the next step, in order, and the last
  signature makes the request *approved*; :func:`reject` ends it with a reason.
* :func:`approve_on_spot` is the supervisor who signs in at the counter: request and signature
  in one unit of work, for single-step rules only (a multi-step rule goes through the queue).
* :func:`use` consumes an approved request once, for exactly the action and target it was
  given for, by the operator who asked for it.  A service that performs the action calls
  :func:`require_approval` (or :func:`consume`) inside its own unit of work instead, so that the
  approval is used up in the same transaction as the action it allowed.
* One time limit: ``expires_at = requested_at + ttl_minutes``; an approved request must also be
  used before it.  A request is expired from ``expires_at`` on (``now >= expires_at``).

Decisions (the rules a reviewer should know):

* **Exact role match.** A step is signed only by an operator of exactly the step's role; an
  admin does *not* stand in for a supervisor (admins manage the system, they do not work the
  counter).  The signer must also hold :attr:`Action.APPROVE`, except on an admin step (admins do
  not hold APPROVE; an admin step is the way to ask for an administrator's sign-off).
* **Which roles a rule may name** (:func:`set_rule`): roles allowed :attr:`Action.APPROVE`
  (today: supervisor) and admin.  Teller, technician and auditor steps are refused.
* **Roles are checked against the database too**: the caller has authenticated the approver,
  but if the operator's stored role differs from the one given (changed since sign-in) or the
  operator is disabled, the signature is refused.
* **Reject** needs the same signer as the current step (role, permission, distinctness): a
  person who may not approve may not decide the other way either.
* **Refused signatures are audited** (``result="denied"``) and committed before the error is
  raised; so is the expiry found while trying to approve, reject or use an expired request.
* The request keeps a copy of its rule (steps and excluded people) in ``payload["_approval"]``,
  so an admin changing a rule does not change requests already in the queue.  The caller's own
  payload is everything else; :class:`ApprovalView` shows it without the reserved key.
* Asking for an approval does not check that the requester may do the action itself: the
  service that performs the action checks that (a teller may ask a supervisor to override an
  offline limit that the teller may not override alone).

Audit actions: ``approval.rule``, ``approval.request``, ``approval.approve``,
``approval.reject``, ``approval.expire``, ``approval.use``; the audit target is the request id
(the rule's action for ``approval.rule``); the detail names the action and target approved.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.operators import Role
from app.domain.permissions import Action, PermissionDenied, allowed, require
from app.errors import CardVendError, Conflict, NotFound, ValidationError
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import ApprovalRequest, ApprovalRule
from app.services import audit
from app.services.operators import require_operator

PENDING, APPROVED, REJECTED, EXPIRED, USED = "pending", "approved", "rejected", "expired", "used"
DEFAULT_TTL_MINUTES = 60
MAX_TTL_MINUTES = 7 * 24 * 60
MAX_STEPS = 5
MAX_REASON = 500
TARGET_LENGTH = 120  # approval_requests.target
META_KEY = "_approval"  # reserved payload key: the rule copy and the excluded people

# names a person reads (role and state values are passed to messages, which translate them)
_ROLE_NAMES = {
    Role.TELLER: N_("teller"),
    Role.SUPERVISOR: N_("supervisor"),
    Role.TECHNICIAN: N_("technician"),
    Role.ADMIN: N_("admin"),
    Role.AUDITOR: N_("auditor"),
}
_STATE_NAMES = {
    PENDING: N_("pending"),
    APPROVED: N_("approved"),
    REJECTED: N_("rejected"),
    EXPIRED: N_("expired"),
    USED: N_("used"),
}


# --------------------------------------------------------------------------- errors


class ApprovalRequired(CardVendError):
    code = "approval_required"
    template = N_(
        "To {action} you need the approval of a {role}. Ask a {role} to sign in here "
        "or to approve your request from the approval queue."
    )


class ApprovalNotFound(NotFound):
    code = "approval_not_found"
    template = N_("Approval request {request} was not found. Check it or ask for a new approval.")


class ApprovalExpired(CardVendError):
    code = "approval_expired"
    template = N_("Approval request {request} to {action} has expired. Ask for a new approval.")


class ApprovalDenied(PermissionDenied):
    """The operator may not sign (or use) this approval: wrong role, or the same person."""

    code = "approval_denied"
    template = N_(
        "Operator {operator} ({role}) cannot sign step {step} of this approval: "
        "it needs a {needed}. Ask a {needed}."
    )


class ApprovalStateError(Conflict):
    code = "approval_state"
    template = N_("Approval request {request} is {state}; it cannot be approved or rejected now.")


_T_SAME_PERSON = N_(
    "Operator {operator} may not sign this approval: it must be someone other than the person "
    "who asked, the people involved and the earlier approvers. Ask another {needed}."
)
_T_NO_APPROVE = N_("Operator {operator} ({role}) may not approve. Ask a {needed}.")
_T_ROLE_CHANGED = N_(
    "Operator {operator} is no longer a {role}. Sign in again and retry, or ask a {needed}."
)
_T_OTHER_USER = N_(
    "Approval request {request} was given to {requester}; only {requester} may use it."
)
_T_NOT_APPROVED_YET = N_(
    "Approval request {request} is not approved yet. Wait for the approval, "
    "or ask a supervisor to sign in here."
)
_T_CANNOT_USE = N_("Approval request {request} is {state} and cannot be used. Ask for a new one.")
_T_MISMATCH = N_(
    "Approval request {request} was given for another action or target. "
    "Ask for an approval for this one."
)
_T_NOT_NEEDED = N_("No approval is needed to {action}; go ahead.")
_T_MULTI_STEP = N_(
    "To {action} {steps} approvals are needed one after the other. "
    "Send the request to the approval queue."
)


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class ApprovalStep:
    role: str
    distinct: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "distinct": self.distinct}


@dataclass(frozen=True)
class ApprovalRuleView:
    action: str
    steps: tuple[ApprovalStep, ...]
    ttl_minutes: int

    @property
    def needs_approval(self) -> bool:
        return bool(self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "steps": [s.to_json() for s in self.steps],
            "ttl_minutes": self.ttl_minutes,
        }


@dataclass(frozen=True)
class Signature:
    operator: str
    role: str
    at: str
    step: int  # 1-based

    def to_json(self) -> dict[str, Any]:
        return {"operator": self.operator, "role": self.role, "at": self.at, "step": self.step}


@dataclass(frozen=True)
class ApprovalView:
    id: str
    action: str
    target: str
    payload: dict[str, Any] = field(hash=False, compare=False)
    requested_by: str
    counter_id: str
    requested_at: str
    expires_at: str
    state: str
    steps: tuple[ApprovalStep, ...]
    approvals: tuple[Signature, ...]
    distinct_from: tuple[str, ...]
    decided_at: str | None
    used_at: str | None
    reason: str

    @property
    def next_step(self) -> ApprovalStep | None:
        """The step waiting for a signature (None unless pending)."""
        if self.state != PENDING or len(self.approvals) >= len(self.steps):
            return None
        return self.steps[len(self.approvals)]

    def to_json(self) -> dict[str, Any]:
        nxt = self.next_step
        return {
            "id": self.id,
            "action": self.action,
            "target": self.target,
            "payload": json.loads(json.dumps(self.payload)),
            "requested_by": self.requested_by,
            "counter_id": self.counter_id,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
            "state": self.state,
            "steps": [s.to_json() for s in self.steps],
            "approvals": [a.to_json() for a in self.approvals],
            "distinct_from": list(self.distinct_from),
            "next_role": nxt.role if nxt else None,
            "decided_at": self.decided_at,
            "used_at": self.used_at,
            "reason": self.reason,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _meta(req: ApprovalRequest) -> dict[str, Any]:
    meta = (req.payload or {}).get(META_KEY)
    return meta if isinstance(meta, dict) else {}


def _steps_of(session: Session | None, req: ApprovalRequest) -> tuple[ApprovalStep, ...]:
    meta = _meta(req)
    if "steps" in meta:
        return _parse_steps(meta["steps"])
    if session is None:  # pragma: no cover - every request made here carries its rule copy
        return ()
    return get_rule(session, req.action).steps


def _view(req: ApprovalRequest, steps: tuple[ApprovalStep, ...]) -> ApprovalView:
    meta = _meta(req)
    return ApprovalView(
        id=req.id,
        action=req.action,
        target=req.target,
        payload={k: v for k, v in (req.payload or {}).items() if k != META_KEY},
        requested_by=req.requested_by,
        counter_id=req.counter_id,
        requested_at=req.requested_at.isoformat(),
        expires_at=req.expires_at.isoformat(),
        state=req.state,
        steps=steps,
        approvals=tuple(
            Signature(str(a["operator"]), str(a["role"]), str(a["at"]), int(a["step"]))
            for a in req.approvals or []
        ),
        distinct_from=tuple(str(x) for x in meta.get("distinct_from", [])),
        decided_at=_iso(req.decided_at),
        used_at=_iso(req.used_at),
        reason=req.reason or "",
    )


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
        if role is not Role.ADMIN and not allowed(role, Action.APPROVE):
            raise ValidationError(
                N_(
                    "Approval step {step}: a {role} may not approve. Choose a supervisor or "
                    "an admin."
                ),
                step=number,
                role=_ROLE_NAMES[role],
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
        audit.record(
            session,
            action="approval.rule",
            operator_id=admin_id,
            counter_id=counter_id,
            clock=clock,
            target=act.value,
            detail={"before": before, "after": {"steps": stored, "ttl_minutes": ttl_minutes}},
        )
        return ApprovalRuleView(act.value, checked, ttl_minutes)


# --------------------------------------------------------------------------- helpers


def _load(session: Session, request_id: str) -> ApprovalRequest:
    if not isinstance(request_id, str) or not request_id:
        raise ApprovalNotFound(request=str(request_id))
    req = session.scalar(
        select(ApprovalRequest).where(ApprovalRequest.id == request_id).with_for_update()
    )
    if req is None:
        raise ApprovalNotFound(request=request_id)
    return req


def _detail(req: ApprovalRequest, **extra: Any) -> dict[str, Any]:
    return {"action": req.action, "target": req.target, **extra}


def _expire(session: Session, req: ApprovalRequest, clock: Clock) -> None:
    was = req.state
    req.state = EXPIRED
    session.flush()
    audit.record(
        session,
        action="approval.expire",
        operator_id=None,
        counter_id=req.counter_id,
        clock=clock,
        target=req.id,
        detail=_detail(req, was=was, expires_at=req.expires_at.isoformat()),
    )


def _is_due(req: ApprovalRequest, clock: Clock) -> bool:
    return req.state in (PENDING, APPROVED) and clock.now() >= req.expires_at


def _expired_error(req: ApprovalRequest) -> ApprovalExpired:
    return ApprovalExpired(request=req.id, action=_action_label(req.action))


def _role_name(role: str) -> str:
    try:
        return _ROLE_NAMES[Role(role)]
    except ValueError:  # pragma: no cover - rules name known roles (check_steps)
        return role


def _action_label(action: str) -> str:
    try:
        return Action(action).label
    except ValueError:  # pragma: no cover - requests are made for Action values only
        return action


def _excluded(req: ApprovalRequest) -> set[str]:
    people = {req.requested_by, *(str(x) for x in _meta(req).get("distinct_from", []))}
    people.update(str(a["operator"]) for a in req.approvals or [])
    return people


def _signer_problem(
    session: Session,
    step: ApprovalStep,
    number: int,
    approver_id: str,
    approver_role: Role | str,
    excluded: set[str],
) -> ApprovalDenied | None:
    """Why ``approver_id`` may not sign ``step`` (1-based ``number``), or None."""
    needed = _role_name(step.role)
    try:
        role = Role(approver_role)
    except ValueError:
        return ApprovalDenied(
            operator=approver_id, role=str(approver_role), step=number, needed=needed
        )
    op = require_operator(session, approver_id)  # unknown or disabled: raises
    if op.role != role.value:
        return ApprovalDenied(
            _T_ROLE_CHANGED, operator=approver_id, role=_ROLE_NAMES[role], needed=needed
        )
    if role.value != step.role:
        return ApprovalDenied(
            operator=approver_id, role=_ROLE_NAMES[role], step=number, needed=needed
        )
    if role is not Role.ADMIN and not allowed(role, Action.APPROVE):
        return ApprovalDenied(
            _T_NO_APPROVE, operator=approver_id, role=_ROLE_NAMES[role], needed=needed
        )
    if step.distinct and approver_id in excluded:
        return ApprovalDenied(_T_SAME_PERSON, operator=approver_id, needed=needed)
    return None


def _audit_denied(
    session: Session,
    *,
    audit_action: str,
    error: CardVendError,
    approver_id: str,
    counter_id: str,
    clock: Clock,
    target: str,
    detail: Mapping[str, Any],
) -> None:
    audit.record(
        session,
        action=audit_action,
        operator_id=approver_id,
        counter_id=counter_id,
        clock=clock,
        target=target,
        result="denied",
        detail={**detail, "why": str(error)},
    )


def _clean_target(target: str) -> str:
    if not isinstance(target, str) or not target.strip() or len(target) > TARGET_LENGTH:
        raise ValidationError(
            N_("The approval target must be 1 to {max} characters."), max=TARGET_LENGTH
        )
    return target


def _clean_people(distinct_from: Iterable[str] | str) -> list[str]:
    people = [distinct_from] if isinstance(distinct_from, str) else list(distinct_from)
    out: list[str] = []
    for p in people:
        if not isinstance(p, str) or not p:
            raise ValidationError(N_("Name the people who may not approve by operator id."))
        if p not in out:
            out.append(p)
    return out


def _create(
    session: Session,
    *,
    rule: ApprovalRuleView,
    target: str,
    payload: Mapping[str, Any] | None,
    operator_id: str,
    counter_id: str,
    clock: Clock,
    distinct_from: list[str],
    on_spot: bool,
) -> ApprovalRequest:
    data = dict(payload or {})
    if META_KEY in data:
        raise ValidationError(N_("The approval details may not use the key {key}."), key=META_KEY)
    try:
        json.dumps(data)
    except (TypeError, ValueError):
        raise ValidationError(N_("The approval details must be plain JSON data.")) from None
    require_operator(session, operator_id)
    now = clock.now()
    data[META_KEY] = {
        "steps": [s.to_json() for s in rule.steps],
        "distinct_from": distinct_from,
        "ttl_minutes": rule.ttl_minutes,
        "on_spot": on_spot,
    }
    req = ApprovalRequest(
        id=str(uuid.uuid4()),
        action=rule.action,
        target=target,
        payload=data,
        requested_by=operator_id,
        counter_id=counter_id,
        requested_at=now,
        expires_at=now + dt.timedelta(minutes=rule.ttl_minutes),
        state=PENDING,
        approvals=[],
        decided_at=None,
        used_at=None,
        reason="",
    )
    session.add(req)
    session.flush()
    audit.record(
        session,
        action="approval.request",
        operator_id=operator_id,
        counter_id=counter_id,
        clock=clock,
        target=req.id,
        detail=_detail(
            req,
            steps=[s.to_json() for s in rule.steps],
            distinct_from=distinct_from,
            on_spot=on_spot,
        ),
    )
    return req


def _sign(
    session: Session,
    req: ApprovalRequest,
    steps: tuple[ApprovalStep, ...],
    *,
    approver_id: str,
    role: str,
    counter_id: str,
    clock: Clock,
) -> None:
    number = len(req.approvals or []) + 1
    now = clock.now()
    req.approvals = [
        *(req.approvals or []),
        {"operator": approver_id, "role": role, "at": now.isoformat(), "step": number},
    ]
    if number >= len(steps):
        req.state = APPROVED
        req.decided_at = now
    session.flush()
    audit.record(
        session,
        action="approval.approve",
        operator_id=approver_id,
        counter_id=counter_id,
        clock=clock,
        target=req.id,
        detail=_detail(req, step=number, of=len(steps), role=role, state=req.state),
    )


def _decision_gate(
    session: Session,
    req: ApprovalRequest,
    *,
    audit_action: str,
    approver_id: str,
    approver_role: Role | str,
    counter_id: str,
    clock: Clock,
) -> tuple[tuple[ApprovalStep, ...], CardVendError | None]:
    """Check that the request waits for a decision by this approver. Expiry found here and
    refused signers are recorded (to be committed) and returned as the error to raise."""
    steps = _steps_of(session, req)
    if req.state == PENDING and _is_due(req, clock):
        _expire(session, req, clock)
        return steps, _expired_error(req)
    if req.state == EXPIRED:
        return steps, _expired_error(req)
    if req.state != PENDING:
        return steps, ApprovalStateError(request=req.id, state=_STATE_NAMES[req.state])
    number = len(req.approvals or []) + 1
    if number > len(steps):  # pragma: no cover - a pending request always has a step left
        return steps, ApprovalStateError(request=req.id, state=_STATE_NAMES[req.state])
    problem = _signer_problem(
        session, steps[number - 1], number, approver_id, approver_role, _excluded(req)
    )
    if problem is not None:
        _audit_denied(
            session,
            audit_action=audit_action,
            error=problem,
            approver_id=approver_id,
            counter_id=counter_id,
            clock=clock,
            target=req.id,
            detail=_detail(req, step=number),
        )
    return steps, problem


# --------------------------------------------------------------------------- the workflow


def request(
    db: Database,
    *,
    action: Action | str,
    target: str,
    payload: Mapping[str, Any] | None,
    operator_id: str,
    counter_id: str,
    clock: Clock,
    distinct_from: Iterable[str] = (),
) -> ApprovalView:
    """Put a request for ``action`` on ``target`` (a sale id, a customer number...) in the queue.
    ``distinct_from`` names people who may not sign a distinct step besides the requester."""
    target = _clean_target(target)
    people = _clean_people(distinct_from)
    with db.write() as session:
        rule = get_rule(session, action)
        if not rule.needs_approval:
            raise ApprovalStateError(_T_NOT_NEEDED, action=_action_label(rule.action))
        req = _create(
            session,
            rule=rule,
            target=target,
            payload=payload,
            operator_id=operator_id,
            counter_id=counter_id,
            clock=clock,
            distinct_from=people,
            on_spot=False,
        )
        return _view(req, rule.steps)


def approve(
    db: Database,
    request_id: str,
    *,
    approver_id: str,
    approver_role: Role | str,
    counter_id: str,
    clock: Clock,
) -> ApprovalView:
    """Sign the next step of a pending request; the last step makes it approved."""
    with db.write() as session:
        req = _load(session, request_id)
        steps, failure = _decision_gate(
            session,
            req,
            audit_action="approval.approve",
            approver_id=approver_id,
            approver_role=approver_role,
            counter_id=counter_id,
            clock=clock,
        )
        if failure is None:
            _sign(
                session,
                req,
                steps,
                approver_id=approver_id,
                role=Role(approver_role).value,
                counter_id=counter_id,
                clock=clock,
            )
        view = _view(req, steps)
    if failure is not None:
        raise failure
    return view


def reject(
    db: Database,
    request_id: str,
    *,
    approver_id: str,
    approver_role: Role | str,
    counter_id: str,
    clock: Clock,
    reason: str,
) -> ApprovalView:
    """End a pending request with a reason; only someone who could sign its next step may."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError(N_("Give a reason for rejecting the approval."))
    reason = reason.strip()[:MAX_REASON]
    with db.write() as session:
        req = _load(session, request_id)
        steps, failure = _decision_gate(
            session,
            req,
            audit_action="approval.reject",
            approver_id=approver_id,
            approver_role=approver_role,
            counter_id=counter_id,
            clock=clock,
        )
        if failure is None:
            req.state = REJECTED
            req.decided_at = clock.now()
            req.reason = reason
            session.flush()
            audit.record(
                session,
                action="approval.reject",
                operator_id=approver_id,
                counter_id=counter_id,
                clock=clock,
                target=req.id,
                detail=_detail(req, step=len(req.approvals or []) + 1, reason=reason),
            )
        view = _view(req, steps)
    if failure is not None:
        raise failure
    return view


def approve_on_spot(
    db: Database,
    *,
    action: Action | str,
    target: str,
    payload: Mapping[str, Any] | None,
    operator_id: str,
    counter_id: str,
    approver_id: str,
    approver_role: Role | str,
    clock: Clock,
    distinct_from: Iterable[str] = (),
) -> ApprovalView:
    """A request signed at once by the approver present at the counter (single-step rules).
    A refused approver leaves no request behind, only a ``denied`` audit row."""
    target = _clean_target(target)
    people = _clean_people(distinct_from)
    failure: CardVendError | None = None
    with db.write() as session:
        rule = get_rule(session, action)
        label = _action_label(rule.action)
        if not rule.needs_approval:
            raise ApprovalStateError(_T_NOT_NEEDED, action=label)
        if len(rule.steps) > 1:
            raise ApprovalStateError(_T_MULTI_STEP, action=label, steps=len(rule.steps))
        require_operator(session, operator_id)
        failure = _signer_problem(
            session, rule.steps[0], 1, approver_id, approver_role, {operator_id, *people}
        )
        if failure is not None:
            _audit_denied(
                session,
                audit_action="approval.approve",
                error=failure,
                approver_id=approver_id,
                counter_id=counter_id,
                clock=clock,
                target=rule.action,
                detail={"action": rule.action, "target": target, "step": 1, "on_spot": True},
            )
            view = None
        else:
            req = _create(
                session,
                rule=rule,
                target=target,
                payload=payload,
                operator_id=operator_id,
                counter_id=counter_id,
                clock=clock,
                distinct_from=people,
                on_spot=True,
            )
            _sign(
                session,
                req,
                rule.steps,
                approver_id=approver_id,
                role=Role(approver_role).value,
                counter_id=counter_id,
                clock=clock,
            )
            view = _view(req, rule.steps)
    if failure is not None:
        raise failure
    assert view is not None
    return view


def _due(clock: Clock) -> tuple[ColumnElement[bool], ...]:
    return (
        ApprovalRequest.state.in_((PENDING, APPROVED)),
        ApprovalRequest.expires_at <= clock.now(),
    )


def _expire_due(session: Session, clock: Clock) -> list[ApprovalRequest]:
    due = list(
        session.scalars(
            select(ApprovalRequest)
            .where(*_due(clock))
            .order_by(ApprovalRequest.expires_at, ApprovalRequest.id)
            .with_for_update()
        )
    )
    for req in due:
        _expire(session, req, clock)
    return due


def expire_due(db: Database, clock: Clock) -> list[ApprovalView]:
    """Mark every pending or approved-but-unused request past its time expired (audited)."""
    with db.write() as session:
        return [_view(r, _steps_of(session, r)) for r in _expire_due(session, clock)]


def pending(db: Database, *, clock: Clock, role: Role | str | None = None) -> list[ApprovalView]:
    """The queue, oldest first; with ``role``, only requests whose next step that role signs.
    Whatever is past its time is expired first; the queue is polled, so the write lock is taken
    only when something is due."""
    wanted = Role(role).value if role is not None else None
    with db.read() as session:
        due = session.scalar(select(ApprovalRequest.id).where(*_due(clock)).limit(1))
    if due is not None:
        expire_due(db, clock)
    with db.read() as session:
        rows = session.scalars(
            select(ApprovalRequest)
            .where(ApprovalRequest.state == PENDING)
            .order_by(ApprovalRequest.requested_at, ApprovalRequest.id)
        )
        views = [_view(r, _steps_of(session, r)) for r in rows]
    if wanted is None:
        return views
    return [v for v in views if (s := v.next_step) is not None and s.role == wanted]


def get_request(db: Database, request_id: str) -> ApprovalView:
    """One request as stored (a counter waiting for the queue polls this)."""
    with db.read() as session:
        if not isinstance(request_id, str) or not request_id:
            raise ApprovalNotFound(request=str(request_id))
        req = session.get(ApprovalRequest, request_id)
        if req is None:
            raise ApprovalNotFound(request=request_id)
        return _view(req, _steps_of(session, req))


def consume(
    session: Session,
    request_id: str,
    *,
    action: Action | str,
    target: str,
    operator_id: str,
    clock: Clock,
    counter_id: str | None = None,
) -> ApprovalView:
    """Use an approved request inside the caller's unit of work (it commits or rolls back with
    the action it allowed). Raises without changing anything when it cannot be used."""
    req = _load(session, request_id)
    act = str(action.value if isinstance(action, Action) else action)
    if req.action != act or req.target != target:
        raise ApprovalStateError(_T_MISMATCH, request=req.id)
    if req.requested_by != operator_id:
        raise ApprovalDenied(_T_OTHER_USER, request=req.id, requester=req.requested_by)
    if req.state == EXPIRED or _is_due(req, clock):
        raise _expired_error(req)
    if req.state == PENDING:
        raise ApprovalStateError(_T_NOT_APPROVED_YET, request=req.id)
    if req.state != APPROVED:
        raise ApprovalStateError(_T_CANNOT_USE, request=req.id, state=_STATE_NAMES[req.state])
    req.state = USED
    req.used_at = clock.now()
    session.flush()
    audit.record(
        session,
        action="approval.use",
        operator_id=operator_id,
        counter_id=counter_id or req.counter_id,
        clock=clock,
        target=req.id,
        detail=_detail(req),
    )
    return _view(req, _steps_of(session, req))


def use(
    db: Database,
    request_id: str,
    *,
    action: Action | str,
    target: str,
    operator_id: str,
    clock: Clock,
    counter_id: str | None = None,
) -> ApprovalView:
    """Consume an approved, unexpired request for exactly ``action`` and ``target``, once.
    An approved request found past its time is marked expired (committed) and refused."""
    failure: ApprovalExpired | None = None
    with db.write() as session:
        try:
            return consume(
                session,
                request_id,
                action=action,
                target=target,
                operator_id=operator_id,
                clock=clock,
                counter_id=counter_id,
            )
        except ApprovalExpired as exc:
            req = _load(session, request_id)
            if _is_due(req, clock):
                _expire(session, req, clock)
            failure = exc
    assert failure is not None
    raise failure


def require_approval(
    session: Session,
    *,
    action: Action | str,
    target: str,
    operator_id: str,
    clock: Clock,
    request_id: str | None,
    counter_id: str | None = None,
) -> ApprovalView | None:
    """The one call a service makes before an action that may need approval, inside its own unit
    of work: None when the rule needs no approval, else the consumed request; raises
    :class:`ApprovalRequired` when an approval is needed and none is given."""
    rule = get_rule(session, action)
    if not rule.needs_approval:
        return None
    if not request_id:
        first = rule.steps[0].role
        raise ApprovalRequired(
            action=_action_label(rule.action),
            role=_role_name(first),
        )
    return consume(
        session,
        request_id,
        action=rule.action,
        target=target,
        operator_id=operator_id,
        clock=clock,
        counter_id=counter_id,
    )
