"""``cardvend control lift CUSTOMER_NO --reason TEXT --operator ID (--approver ID | --approval
REQUEST)`` and ``cardvend control resume CUSTOMER_NO --operator ID``: lift a remote customer's
fee control with a supervisor's approval, or put it back, at the charge-control station
(:mod:`app.services.control_lift`; the station's side is :mod:`sync.central.control_lift`).
:func:`control_line` is the status line every ``cardvend control`` command that answers with a
status prints."""

from __future__ import annotations

import argparse
import uuid
from contextlib import closing

from app.cli import answer
from app.cli import approver_arg
from app.cli import cli_login
from app.cli import id_arg
from app.cli import json_arg
from app.cli import open_db
from app.cli import operator_arg
from app.cli_approvals import REQUEST_ID
from app.cli_sales import approve_here
from app.context import AppContext
from app.domain import ids
from app.domain.permissions import Action
from app.i18n import _
from app.presenters.control import status_line
from app.services import control_lift
from sync import contract as c
from sync.service import make_client


def _run(ctx: AppContext, args: argparse.Namespace, action: str) -> int:
    actor = cli_login(ctx, args.operator)
    customer_no = args.customer_no
    with closing(make_client(ctx)) as client:

        def send(approver: str | None, approval_id: str | None) -> c.ControlStatus:
            record = c.ControlLift(
                id=str(uuid.uuid4()), action=action,  # type: ignore[arg-type]
                reason=getattr(args, "reason", "") or "", operator_id=actor.operator_id,
                approver_id=approver, approval_id=approval_id, created_at=ctx.clock.now(),
            )  # fmt: skip
            return client.control_lift(customer_no, record)

        db = open_db(ctx)
        if action == "lift":
            request = args.approval
            if args.approver:
                request = approve_here(
                    ctx, args, actor, Action.LIFT_CONTROL, customer_no,
                    payload={"customer_no": customer_no, "reason": args.reason},
                ).id  # fmt: skip
            status = control_lift.lift(
                db, actor, ctx.clock, customer_no, args.reason, request, send
            )
        else:
            status = control_lift.resume(db, actor, ctx.clock, customer_no, send)
    return answer(
        args.json,
        status.model_dump(mode="json"),
        _("Fee control is lifted.") if status.lifted_at else _("Fee control is in force."),
        control_line(status),
    )


def control_line(status: c.ControlStatus) -> str:
    """The line the counter's ``control status``, ``lift`` and ``resume`` print: the station's
    balance, or the card's write-back where the station keeps none (not under its control)."""
    remaining = status.remaining_fen if status.remaining_fen is not None else status.meter_remaining
    return status_line(
        status.customer_no, status.state, remaining, status.relay, status.last_reading_at,
        status.close_permit_sent_at,
    )  # fmt: skip


def cmd_lift(ctx: AppContext, args: argparse.Namespace) -> int:
    return _run(ctx, args, "lift")


def cmd_resume(ctx: AppContext, args: argparse.Namespace) -> int:
    return _run(ctx, args, "resume")


def register(ksub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``lift`` and ``resume`` under ``cardvend control``."""
    q = ksub.add_parser(
        "lift", help=_("lift a customer's fee control at the station (a supervisor approves)")
    )
    q.add_argument("customer_no", metavar="CUSTOMER_NO", type=id_arg(ids.CUSTOMER_NO))
    q.add_argument("--reason", required=True, help=_("why the fee control is lifted"))
    operator_arg(q)
    approver_arg(q, required=False)  # or --approval
    q.add_argument("--approval", metavar="REQUEST", type=id_arg(REQUEST_ID),
                   help=_("an approved request from the queue"))  # fmt: skip
    json_arg(q)
    q.set_defaults(func=cmd_lift)
    q = ksub.add_parser("resume", help=_("put a customer back under fee control"))
    q.add_argument("customer_no", metavar="CUSTOMER_NO", type=id_arg(ids.CUSTOMER_NO))
    operator_arg(q)
    json_arg(q)
    q.set_defaults(func=cmd_resume)
