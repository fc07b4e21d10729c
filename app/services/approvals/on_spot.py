"""An approver signing in at the counter for one decision: the one way to do it (the CLI's
``--approver``, the GUI's approval dialog and the sale page's offline override)."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from app.clock import Clock
from app.domain.permissions import Action
from app.persistence.db import Database
from app.services import auth
from app.services.approvals.model import ApprovalView
from app.services.approvals.workflow import approve_on_spot
from app.settings import Settings


def sign_in_and_approve(
    db: Database,
    *,
    approver_id: str,
    password: str,
    actor: auth.Principal,
    action: Action | str,
    target: str,
    clock: Clock,
    settings: Settings,
    payload: Mapping[str, Any] | None = None,
    distinct_from: Iterable[str] = (),
) -> ApprovalView:
    """Sign in ``approver_id`` at the actor's counter under the configured lockout policy
    (:class:`auth.SecurityPolicy` from ``settings``; a wrong password counts towards the
    approver's lockout), then sign ``action`` on ``target`` for ``actor`` at once.

    Raises :class:`auth.LoginFailed` when the sign-in fails (audited), and the approval errors of
    :func:`approve_on_spot` (:class:`ApprovalDenied` for an approver who may not sign,
    :class:`ApprovalStateError` when no approval is needed or the rule has several steps)."""
    approver = auth.login(
        db,
        approver_id,
        password,
        counter_id=actor.counter_id,
        clock=clock,
        policy=auth.SecurityPolicy.from_settings(settings),
    )
    return approve_on_spot(
        db,
        action=action,
        target=target,
        payload=payload,
        operator_id=actor.operator_id,
        counter_id=actor.counter_id,
        approver_id=approver.operator_id,
        approver_role=approver.role,
        clock=clock,
        distinct_from=distinct_from,
    )
