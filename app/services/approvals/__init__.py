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
``approval.reject``, ``approval.expire``, ``approval.use``, ``approval.withdraw`` (the
requester cancelled); the audit target is the request id
(the rule's action for ``approval.rule``); the detail names the action and target approved.
"""

from app.services.approvals.model import APPROVED
from app.services.approvals.model import DEFAULT_TTL_MINUTES
from app.services.approvals.model import EXPIRED
from app.services.approvals.model import MAX_REASON
from app.services.approvals.model import MAX_STEPS
from app.services.approvals.model import MAX_TTL_MINUTES
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
from app.services.approvals.model import Signature
from app.services.approvals.on_spot import sign_in_and_approve
from app.services.approvals.rules import ALWAYS_APPROVED
from app.services.approvals.rules import ASKED_FOR
from app.services.approvals.rules import all_rules
from app.services.approvals.rules import approvable_actions
from app.services.approvals.rules import approver_roles
from app.services.approvals.rules import change_rule
from app.services.approvals.rules import check_steps
from app.services.approvals.rules import get_rule
from app.services.approvals.rules import list_rules
from app.services.approvals.rules import may_sign
from app.services.approvals.rules import needs_approval
from app.services.approvals.rules import set_rule
from app.services.approvals.workflow import approve
from app.services.approvals.workflow import approve_on_spot
from app.services.approvals.workflow import consume
from app.services.approvals.workflow import consume_by
from app.services.approvals.workflow import decide_as
from app.services.approvals.workflow import expire_due
from app.services.approvals.workflow import get_request
from app.services.approvals.workflow import pending
from app.services.approvals.workflow import reject
from app.services.approvals.workflow import request
from app.services.approvals.workflow import require_approval
from app.services.approvals.workflow import require_by
from app.services.approvals.workflow import use
from app.services.approvals.workflow import withdraw

__all__ = [
    "ALWAYS_APPROVED",
    "APPROVED",
    "ASKED_FOR",
    "DEFAULT_TTL_MINUTES",
    "EXPIRED",
    "MAX_REASON",
    "MAX_STEPS",
    "MAX_TTL_MINUTES",
    "META_KEY",
    "PENDING",
    "REJECTED",
    "TARGET_LENGTH",
    "USED",
    "WITHDRAWN",
    "ApprovalDenied",
    "ApprovalExpired",
    "ApprovalNotFound",
    "ApprovalRequired",
    "ApprovalRuleView",
    "ApprovalStateError",
    "ApprovalStep",
    "ApprovalView",
    "Signature",
    "all_rules",
    "approvable_actions",
    "approve",
    "approve_on_spot",
    "approver_roles",
    "change_rule",
    "check_steps",
    "consume",
    "consume_by",
    "decide_as",
    "expire_due",
    "get_request",
    "get_rule",
    "list_rules",
    "may_sign",
    "needs_approval",
    "pending",
    "reject",
    "request",
    "require_approval",
    "require_by",
    "set_rule",
    "sign_in_and_approve",
    "use",
    "withdraw",
]
