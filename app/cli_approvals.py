"""Approvals at a terminal: ``cardvend approvals rules list|set`` (the rules an administrator
sets) and ``approvals pending|approve|reject`` (the queue a supervisor works through).

``rules list`` needs no sign-in (the rules are no secret: a teller may look up what needs a
supervisor); every other command signs in ``--operator`` (password from ``CARDVEND_PASSWORD`` or a
prompt).  ``rules set`` is for administrators; the rule applies to the next request at once,
while requests already filed keep the steps they were filed under (app/services/approvals).
"""

from __future__ import annotations

import argparse

from app.cli import answer
from app.cli import cli_login
from app.cli import command_group
from app.cli import id_arg
from app.cli import json_arg
from app.cli import open_db
from app.cli import operator_json_args
from app.context import AppContext
from app.domain import ids
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import _
from app.localtime import local_time
from app.presenters.approval_rules import RuleRow
from app.presenters.approval_rules import action_label
from app.presenters.approval_rules import parse_step
from app.presenters.approval_rules import role_label
from app.presenters.approval_rules import rule_rows
from app.presenters.approval_rules import step_text
from app.services import approvals
from app.services.approvals import ApprovalStep
from app.services.approvals import ApprovalView
from app.settings import TIME_ZONE

REQUEST_ID = ids.IdFormat(N_("approval request id"), ids.UUID.pattern, ids.UUID.rule)


def _rule_line(row: RuleRow) -> str:
    limit = row.limit_text()
    tail = f"  [{_('time limit')} {limit}]" if limit else ""
    return f"{row.action:26} {row.label}: {row.steps_text()}{tail}"


def cmd_rules_list(ctx: AppContext, args: argparse.Namespace) -> int:
    rows = rule_rows(open_db(ctx))
    return answer(args.json, [r.to_json() for r in rows], *map(_rule_line, rows))


def _steps_of(args: argparse.Namespace) -> list[ApprovalStep]:
    if args.none and args.step:
        raise ValidationError(N_("Give either --step or --none, not both."))
    if not args.none and not args.step:
        raise ValidationError(
            N_("Give the approval steps (--step ROLE[:same|:distinct], once per step) or --none.")
        )
    return [] if args.none else [parse_step(text) for text in args.step]


def cmd_rules_set(ctx: AppContext, args: argparse.Namespace) -> int:
    steps = _steps_of(args)  # a typing mistake is said before the password is asked
    admin = cli_login(ctx, args.operator)
    db = open_db(ctx)
    ttl = args.ttl
    if ttl is None:  # keep the time limit the action has (the default when it has none)
        with db.read() as session:
            ttl = approvals.get_rule(session, args.action).ttl_minutes
    rule = approvals.change_rule(db, admin, args.action, steps, ttl, ctx.clock)
    row = RuleRow.of(rule)
    return answer(
        args.json,
        row.to_json(),
        _("Approval rule saved; it applies to the next request."),
        _rule_line(row),
    )


def _request_line(view: ApprovalView, tz: str) -> str:
    nxt = view.next_step
    waiting = (
        _(
            "step {number} of {steps}: {role}",
            number=len(view.approvals) + 1,
            steps=len(view.steps),
            role=role_label(nxt.role),
        )
        if nxt is not None
        else ""
    )
    return (
        f"{view.id}  {action_label(view.action)}  {view.target}  {view.requested_by}  "
        f"{waiting}  {_('until')} {local_time(view.expires_at, tz)}"
    )


def _request_lines(view: ApprovalView, tz: str) -> list[str]:
    """A waiting request: its line, then a line a step of its rule."""
    steps = ["    " + step_text(number, step) for number, step in enumerate(view.steps, start=1)]
    return [_request_line(view, tz), *steps]


def cmd_pending(ctx: AppContext, args: argparse.Namespace) -> int:
    me = cli_login(ctx, args.operator)
    role = None if args.all else me.role
    views = approvals.pending(open_db(ctx), clock=ctx.clock, role=role)
    tz = str(ctx.settings.value(TIME_ZONE))
    lines = [line for view in views for line in _request_lines(view, tz)]
    none = _("No approval requests are waiting.")
    return answer(args.json, [v.to_json() for v in views], *(lines or [none]))


def _decided(view: ApprovalView) -> str:
    if view.state == approvals.APPROVED:
        return _("Approval request {request} is approved.", request=view.id)
    if view.state == approvals.REJECTED:
        return _("Approval request {request} is rejected.", request=view.id)
    nxt = view.next_step
    return _(
        "Step {number} of approval request {request} is signed; it now waits for a {role}.",
        number=len(view.approvals),
        request=view.id,
        role=role_label(nxt.role) if nxt else "?",
    )


def _decide(ctx: AppContext, args: argparse.Namespace, reason: str | None = None) -> int:
    """``approve`` / ``reject`` (with ``reason``): ``--operator`` signs in and decides on the
    request as the signer of its next step; the request as it is now is printed."""
    me = cli_login(ctx, args.operator)
    view = approvals.decide_as(open_db(ctx), args.request, me, clock=ctx.clock, reason=reason)
    return answer(args.json, view.to_json(), _decided(view))


def cmd_approve(ctx: AppContext, args: argparse.Namespace) -> int:
    return _decide(ctx, args)


def cmd_reject(ctx: AppContext, args: argparse.Namespace) -> int:
    if not args.reason.strip():  # said before the password is asked
        raise ValidationError(N_("Give a reason for rejecting the approval."))
    return _decide(ctx, args, reason=args.reason)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    asub = command_group(sub, "approvals", _("approval rules and the approval queue"))

    rsub = command_group(asub, "rules", _("which actions need whose approval"))
    q = rsub.add_parser("list", help=_("every approvable action and its rule"))
    json_arg(q)
    q.set_defaults(func=cmd_rules_list)
    actions = ", ".join(a.value for a in approvals.approvable_actions())
    q = rsub.add_parser(
        "set", help=_("set the rule of one action (an administrator; applies at once)")
    )
    q.add_argument("action", metavar="ACTION", help=_("one of: {actions}", actions=actions))
    q.add_argument(
        "--step",
        action="append",
        default=[],
        metavar="ROLE[:same|:distinct]",
        help=_(
            "one approval step, in order (repeat for more): the role that signs "
            "({roles}); :distinct (the default) means someone other than the person who "
            "asked, the people involved and the earlier signers; :same allows the person "
            "who asked",
            roles=", ".join(r.value for r in approvals.approver_roles()),
        ),
    )
    q.add_argument(
        "--ttl",
        type=int,
        metavar="MINUTES",
        help=_("time limit of a request in minutes (default: keep the current one)"),
    )
    q.add_argument("--none", action="store_true", help=_("the action needs no approval"))
    operator_json_args(q)
    q.set_defaults(func=cmd_rules_set)

    q = asub.add_parser("pending", help=_("the requests waiting for your signature"))
    q.add_argument("--all", action="store_true", help=_("every waiting request, for any role"))
    operator_json_args(q)
    q.set_defaults(func=cmd_pending)

    q = asub.add_parser("approve", help=_("sign the next step of a request"))
    q.add_argument("request", metavar="ID", type=id_arg(REQUEST_ID))
    operator_json_args(q)
    q.set_defaults(func=cmd_approve)

    q = asub.add_parser("reject", help=_("reject a request, with a reason"))
    q.add_argument("request", metavar="ID", type=id_arg(REQUEST_ID))
    q.add_argument("--reason", required=True, metavar="TEXT", help=_("why it is rejected"))
    operator_json_args(q)
    q.set_defaults(func=cmd_reject)
