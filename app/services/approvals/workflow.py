"""The life of an approval request: request, approve, reject, expire, use."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.operators import Role
from app.domain.permissions import Action
from app.domain.permissions import allowed
from app.errors import CardVendError
from app.errors import ValidationError
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import ApprovalRequest
from app.services import audit
from app.services.approvals.model import _STATE_NAMES
from app.services.approvals.model import _T_CANNOT_USE
from app.services.approvals.model import _T_MISMATCH
from app.services.approvals.model import _T_MULTI_STEP
from app.services.approvals.model import _T_NO_APPROVE
from app.services.approvals.model import _T_NOT_APPROVED_YET
from app.services.approvals.model import _T_NOT_NEEDED
from app.services.approvals.model import _T_OTHER_USER
from app.services.approvals.model import _T_ROLE_CHANGED
from app.services.approvals.model import _T_SAME_PERSON
from app.services.approvals.model import APPROVED
from app.services.approvals.model import EXPIRED
from app.services.approvals.model import MAX_REASON
from app.services.approvals.model import META_KEY
from app.services.approvals.model import PENDING
from app.services.approvals.model import REJECTED
from app.services.approvals.model import TARGET_LENGTH
from app.services.approvals.model import USED
from app.services.approvals.model import WITHDRAWN
from app.services.approvals.model import ApprovalDenied
from app.services.approvals.model import ApprovalExpired
from app.services.approvals.model import ApprovalNotFound
from app.services.approvals.model import ApprovalRequired
from app.services.approvals.model import ApprovalRuleView
from app.services.approvals.model import ApprovalStateError
from app.services.approvals.model import ApprovalStep
from app.services.approvals.model import ApprovalView
from app.services.approvals.model import _meta
from app.services.approvals.model import _view
from app.services.approvals.rules import _steps_of
from app.services.approvals.rules import get_rule
from app.services.operators import require_operator

if TYPE_CHECKING:
    from app.services.auth import Principal

# --------------------------------------------------------------------------- helpers


def _load(session: Session, request_id: str, *, lock: bool = True) -> ApprovalRequest:
    """The request ``request_id``, row-locked unless ``lock`` is False (a read unit of work)."""
    if not isinstance(request_id, str) or not request_id:
        raise ApprovalNotFound(request=str(request_id))
    query = select(ApprovalRequest).where(ApprovalRequest.id == request_id)
    req = session.scalar(query.with_for_update() if lock else query)
    if req is None:
        raise ApprovalNotFound(request=request_id)
    return req


def _detail(req: ApprovalRequest, **extra: Any) -> dict[str, Any]:
    return {"action": req.action, "target": req.target, **extra}


def _expire(session: Session, req: ApprovalRequest, clock: Clock) -> None:
    was = req.state
    req.state = EXPIRED
    session.flush()
    audit.Actor(None, req.counter_id, clock).record(
        session,
        AuditAction.APPROVAL_EXPIRE,
        req.id,
        detail=_detail(req, was=was, expires_at=req.expires_at.isoformat()),
    )


def _is_due(req: ApprovalRequest, clock: Clock) -> bool:
    return req.state in (PENDING, APPROVED) and clock.now() >= req.expires_at


def _expired_error(req: ApprovalRequest) -> ApprovalExpired:
    return ApprovalExpired(request=req.id, action=_action_label(req.action))


def _role_name(role: str) -> str:
    try:
        return Role(role).label
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
            _T_ROLE_CHANGED, operator=approver_id, role=Role(role).label, needed=needed
        )
    if role.value != step.role:
        return ApprovalDenied(
            operator=approver_id, role=Role(role).label, step=number, needed=needed
        )
    if role is not Role.ADMIN and not allowed(role, Action.APPROVE):
        return ApprovalDenied(
            _T_NO_APPROVE, operator=approver_id, role=Role(role).label, needed=needed
        )
    if step.distinct and approver_id in excluded:
        return ApprovalDenied(_T_SAME_PERSON, operator=approver_id, needed=needed)
    return None


def _audit_denied(
    session: Session,
    *,
    audit_action: str,
    error: CardVendError,
    approver: audit.Actor,
    target: str,
    detail: Mapping[str, Any],
) -> None:
    approver.record(
        session, audit_action, target, result="denied", detail={**detail, "why": str(error)}
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
    rule: ApprovalRuleView,
    target: str,
    payload: Mapping[str, Any] | None,
    requester: audit.Actor,
    distinct_from: list[str],
    *,
    on_spot: bool,
) -> ApprovalRequest:
    data = dict(payload or {})
    if META_KEY in data:
        raise ValidationError(N_("The approval details may not use the key {key}."), key=META_KEY)
    try:
        json.dumps(data)
    except (TypeError, ValueError):
        raise ValidationError(N_("The approval details must be plain JSON data.")) from None
    operator_id = requester.operator_id or ""  # "": unknown, refused just below
    require_operator(session, operator_id)
    now = requester.clock.now()
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
        counter_id=requester.counter_id,
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
    requester.record(
        session,
        AuditAction.APPROVAL_REQUEST,
        req.id,
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
    approver: audit.Actor,
    role: Role | str,
) -> None:
    number = len(req.approvals or []) + 1
    now = approver.clock.now()
    role = Role(role).value
    req.approvals = [
        *(req.approvals or []),
        {"operator": approver.operator_id, "role": role, "at": now.isoformat(), "step": number},
    ]
    if number >= len(steps):
        req.state = APPROVED
        req.decided_at = now
    session.flush()
    approver.record(
        session,
        AuditAction.APPROVAL_APPROVE,
        req.id,
        detail=_detail(req, step=number, of=len(steps), role=role, state=req.state),
    )


def _decision_gate(
    session: Session,
    req: ApprovalRequest,
    *,
    audit_action: str,
    approver: audit.Actor,
    approver_role: Role | str,
) -> tuple[tuple[ApprovalStep, ...], CardVendError | None]:
    """Check that the request waits for a decision by this approver. Expiry found here and
    refused signers are recorded (to be committed) and returned as the error to raise."""
    steps = _steps_of(session, req)
    if req.state == PENDING and _is_due(req, approver.clock):
        _expire(session, req, approver.clock)
        return steps, _expired_error(req)
    if req.state == EXPIRED:
        return steps, _expired_error(req)
    if req.state != PENDING:
        return steps, ApprovalStateError(request=req.id, state=_STATE_NAMES[req.state])
    number = len(req.approvals or []) + 1
    if number > len(steps):  # pragma: no cover - a pending request always has a step left
        return steps, ApprovalStateError(request=req.id, state=_STATE_NAMES[req.state])
    approver_id = approver.operator_id or ""
    problem = _signer_problem(
        session, steps[number - 1], number, approver_id, approver_role, _excluded(req)
    )
    if problem is not None:
        _audit_denied(
            session,
            audit_action=audit_action,
            error=problem,
            approver=approver,
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
    requester = audit.Actor(operator_id, counter_id, clock)
    with db.write() as session:
        rule = get_rule(session, action)
        if not rule.needs_approval:
            raise ApprovalStateError(_T_NOT_NEEDED, action=_action_label(rule.action))
        req = _create(session, rule, target, payload, requester, people, on_spot=False)
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
    approver = audit.Actor(approver_id, counter_id, clock)

    def sign(session: Session, req: ApprovalRequest, steps: tuple[ApprovalStep, ...]) -> None:
        _sign(session, req, steps, approver, approver_role)

    return _decide(db, request_id, AuditAction.APPROVAL_APPROVE, approver, approver_role, sign)


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
    approver = audit.Actor(approver_id, counter_id, clock)

    def end(session: Session, req: ApprovalRequest, steps: tuple[ApprovalStep, ...]) -> None:
        req.state = REJECTED
        req.decided_at = clock.now()
        req.reason = reason
        session.flush()
        approver.record(
            session,
            AuditAction.APPROVAL_REJECT,
            req.id,
            detail=_detail(req, step=len(req.approvals or []) + 1, reason=reason),
        )

    return _decide(db, request_id, AuditAction.APPROVAL_REJECT, approver, approver_role, end)


def withdraw(
    db: Database, request_id: str, *, operator_id: str, counter_id: str, clock: Clock
) -> ApprovalView:
    """The requester cancels a request not used yet (pending or approved): it leaves the queue
    and can no longer be used. A request already ended is left as it is."""
    with db.write() as session:
        req = _load(session, request_id)
        if req.requested_by != operator_id:
            raise ApprovalDenied(_T_OTHER_USER, request=req.id, requester=req.requested_by)
        if req.state in (PENDING, APPROVED):
            req.state = WITHDRAWN
            req.decided_at = clock.now()
            session.flush()
            audit.Actor(operator_id, counter_id, clock).record(
                session, AuditAction.APPROVAL_WITHDRAW, req.id, detail=_detail(req)
            )
        return _view(req, _steps_of(session, req))


def decide_as(
    db: Database, request_id: str, approver: Principal, *, clock: Clock, reason: str | None = None
) -> ApprovalView:
    """The signed-in ``approver`` signs the next step of a pending request (:func:`approve`), or
    rejects it with ``reason`` (:func:`reject`): the decision as both front ends make it."""
    signer: dict[str, Any] = {
        "approver_id": approver.operator_id,
        "approver_role": approver.role,
        "counter_id": approver.counter_id,
        "clock": clock,
    }
    if reason is None:
        return approve(db, request_id, **signer)
    return reject(db, request_id, reason=reason, **signer)


def _decide(
    db: Database,
    request_id: str,
    audit_action: AuditAction,
    approver: audit.Actor,
    approver_role: Role | str,
    decide: Callable[[Session, ApprovalRequest, tuple[ApprovalStep, ...]], None],
) -> ApprovalView:
    """A decision on a pending request: the gate checks the signer (a refusal is audited and
    committed, then raised), then ``decide`` acts, in one unit of work."""
    with db.write() as session:
        req = _load(session, request_id)
        steps, failure = _decision_gate(
            session, req, audit_action=audit_action, approver=approver, approver_role=approver_role
        )
        if failure is None:
            decide(session, req, steps)
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
        approver = audit.Actor(approver_id, counter_id, clock)
        requester = audit.Actor(operator_id, counter_id, clock)
        if failure is not None:
            _audit_denied(
                session,
                audit_action=AuditAction.APPROVAL_APPROVE,
                error=failure,
                approver=approver,
                target=rule.action,
                detail={"action": rule.action, "target": target, "step": 1, "on_spot": True},
            )
            view = None
        else:
            req = _create(session, rule, target, payload, requester, people, on_spot=True)
            _sign(session, req, rule.steps, approver, approver_role)
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
        req = _load(session, request_id, lock=False)
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
    audit.Actor(operator_id, counter_id or req.counter_id, clock).record(
        session, AuditAction.APPROVAL_USE, req.id, detail=_detail(req)
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


def consume_by(
    session: Session,
    actor: Principal,
    request_id: str,
    *,
    action: Action | str,
    target: str,
    clock: Clock,
) -> ApprovalView:
    """:func:`consume` by the signed-in ``actor`` (the operator who asked for it), audited at
    the actor's counter: how a service uses the approval its action was given."""
    return consume(
        session,
        request_id,
        action=action,
        target=target,
        operator_id=actor.operator_id,
        clock=clock,
        counter_id=actor.counter_id,
    )


def require_by(
    session: Session,
    actor: Principal,
    request_id: str | None,
    *,
    action: Action | str,
    target: str,
    clock: Clock,
) -> ApprovalView | None:
    """:func:`require_approval` for the signed-in ``actor``, at the actor's counter."""
    return require_approval(
        session,
        action=action,
        target=target,
        operator_id=actor.operator_id,
        clock=clock,
        request_id=request_id,
        counter_id=actor.counter_id,
    )
