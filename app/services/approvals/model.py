"""Approvals: states, limits, errors and the views a caller gets."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from app.domain.permissions import PermissionDenied
from app.errors import CardVendError
from app.errors import Conflict
from app.errors import NotFound
from app.i18n import N_
from app.persistence.models import ApprovalRequest

PENDING, APPROVED, REJECTED, EXPIRED, USED = "pending", "approved", "rejected", "expired", "used"
WITHDRAWN = "withdrawn"  # the requester cancelled while waiting
DEFAULT_TTL_MINUTES = 60
MAX_TTL_MINUTES = 7 * 24 * 60
MAX_STEPS = 5
MAX_REASON = 500
TARGET_LENGTH = 120  # approval_requests.target
META_KEY = "_approval"  # reserved payload key: the rule copy and the excluded people

# names a person reads (role and state values are passed to messages, which translate them)
_STATE_NAMES = {
    PENDING: N_("pending"),
    APPROVED: N_("approved"),
    REJECTED: N_("rejected"),
    EXPIRED: N_("expired"),
    USED: N_("used"),
    WITHDRAWN: N_("withdrawn"),
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
    def approver(self) -> str | None:
        """Who signed last (the approver a record names), or None: nobody signed."""
        return self.approvals[-1].operator if self.approvals else None

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
