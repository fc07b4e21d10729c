"""The approval rules as a person reads them: one row per approvable action, for the CLI
(``cardvend approvals rules list``) and the administration page alike.

Labels are in the current language when a row is made; :meth:`RuleRow.to_json` keeps the raw
values (action and role values, ``distinct``) next to them so a script need not parse text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.domain.operators import Role
from app.domain.permissions import Action
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.persistence.db import Database
from app.services import approvals
from app.services.approvals import ApprovalRuleView
from app.services.approvals import ApprovalStep

# how a ``--step`` (and the editor's check box) says whether the signer must be another person
SAME, DISTINCT = "same", "distinct"


def role_label(role: str) -> str:
    try:
        return translate(Role(role).label)
    except ValueError:  # pragma: no cover - rules name known roles (check_steps)
        return role


def action_label(action: str) -> str:
    try:
        return translate(Action(action).label)
    except ValueError:  # pragma: no cover - rules are kept for Action values only
        return action


def step_text(number: int, step: ApprovalStep) -> str:
    """``1. supervisor (another person)``: who signs step ``number`` and whether it may be the
    person who asked (or someone involved, or an earlier signer)."""
    role = role_label(step.role)
    if step.distinct:
        return _("{number}. {role} (another person)", number=number, role=role)
    return _("{number}. {role} (may be the same person)", number=number, role=role)


def ttl_text(minutes: int) -> str:
    return _("{minutes} minutes", minutes=minutes)


@dataclass(frozen=True)
class RuleRow:
    action: str
    label: str
    steps: tuple[ApprovalStep, ...]
    ttl_minutes: int

    @classmethod
    def of(cls, rule: ApprovalRuleView) -> RuleRow:
        return cls(rule.action, action_label(rule.action), rule.steps, rule.ttl_minutes)

    @property
    def needs_approval(self) -> bool:
        return bool(self.steps)

    @property
    def asked_for(self) -> bool:
        """Whether the action's flow consults the rule (otherwise the rule changes nothing)."""
        return Action(self.action) in approvals.ASKED_FOR

    @property
    def always(self) -> bool:
        """Whether the action's flow cannot go on without an approval (at least one step)."""
        return Action(self.action) in approvals.ALWAYS_APPROVED

    def steps_text(self) -> str:
        if not self.steps:
            return _("no approval needed")
        text = "; ".join(step_text(i, s) for i, s in enumerate(self.steps, start=1))
        if not self.asked_for:
            text += " " + _("(the counter does not ask for this approval yet)")
        return text

    def limit_text(self) -> str:
        """The time limit, or nothing when no approval is needed (it would not apply)."""
        return ttl_text(self.ttl_minutes) if self.steps else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "label": self.label,
            "needs_approval": self.needs_approval,
            "steps": [
                {**s.to_json(), "role_label": role_label(s.role), "number": i}
                for i, s in enumerate(self.steps, start=1)
            ],
            "ttl_minutes": self.ttl_minutes,
            "asked_for": self.asked_for,
            "always": self.always,
            "summary": self.steps_text(),
        }


def rule_rows(db: Database) -> list[RuleRow]:
    """Every approvable action with its rule (no row: no approval needed)."""
    return [RuleRow.of(rule) for rule in approvals.all_rules(db)]


def parse_step(text: str) -> ApprovalStep:
    """``ROLE``, ``ROLE:distinct`` or ``ROLE:same`` as typed after ``--step``; the role itself is
    checked by :func:`approvals.check_steps` (it names the roles that may sign)."""
    role, sep, mode = text.strip().partition(":")
    mode = mode.strip().lower() if sep else DISTINCT
    if mode not in (SAME, DISTINCT):
        raise ValidationError(
            N_(
                "Approval step {step}: after the role write :distinct (another person signs) "
                "or :same (the person who asked may sign)."
            ),
            step=text,
        )
    return ApprovalStep(role.strip().lower(), mode == DISTINCT)
