"""Account lifecycle commands at the counter: ``cardvend close-account|pause-account|
resume-account --customer NO ... [--json]``.

``close-account`` signs in ``--operator`` and, on the spot, ``--approver`` (the ``close_account``
approval), reads the card in ``--reader NAME`` / ``--image FILE`` (or the configured reader),
settles and closes the account, and saves the settlement statement with ``--statement FILE.pdf``.
``--no-card`` closes without the card (lost or unreadable: it is blacklisted; the meter's last
write-back counts, or ``--meter-remaining YUAN --meter-count N`` read from the meter);
``--keep-card`` leaves the card with the customer, blacklisted, instead of erasing it.  A remote
fee-control customer has no card: the meter's remaining balance counts.
"""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager
from contextlib import nullcontext

from app.cli import answer
from app.cli import approver_arg
from app.cli import card_args
from app.cli import cli_login
from app.cli import emit_json
from app.cli import open_db
from app.cli import operator_json_args
from app.cli import print_lines
from app.cli import save_after
from app.cli_sales import CUSTOMER_NO_ARG
from app.cli_sales import approve_here
from app.cli_sales import card_terminal
from app.context import AppContext
from app.domain import settlement as st
from app.domain.customers import MeterKind
from app.domain.permissions import Action
from app.errors import ValidationError
from app.files import check_output
from app.i18n import N_
from app.i18n import _
from app.money import parse_yuan
from app.ports import CardTerminal
from app.presenters.accounts import AccountWork
from app.presenters.accounts import CloseRequest
from app.presenters.accounts import closed_line
from app.presenters.accounts import paused_line
from app.presenters.accounts import resumed_line
from app.presenters.accounts import settlement_lines
from app.services.auth import Principal
from app.services.customers import customer_view
from app.services.lifecycle.account import MeterRead


def _meter_read(args: argparse.Namespace) -> MeterRead | None:
    if args.meter_remaining is None and args.meter_count is None:
        return None
    if args.meter_remaining is None or args.meter_count is None:
        raise ValidationError(N_("--meter-remaining and --meter-count go together"))
    text = args.meter_remaining.strip()
    negative = text.startswith("-")
    fen = parse_yuan(text.lstrip("-"), allow_zero=True)
    return MeterRead(-fen if negative else fen, args.meter_count)


def _terminal(
    ctx: AppContext, args: argparse.Namespace, meter_kind: str
) -> AbstractContextManager[CardTerminal | None]:
    if args.no_card or meter_kind != MeterKind.CARD:
        if args.reader or args.image:
            raise ValidationError(N_("--no-card and a remote customer take no --reader or --image"))
        return nullcontext(None)
    return card_terminal(ctx, args)


def cmd_close_account(ctx: AppContext, args: argparse.Namespace) -> int:
    if args.statement:
        check_output(args.statement)
    meter_read = _meter_read(args)
    actor = cli_login(ctx, args.operator)
    db = open_db(ctx)
    meter_kind = customer_view(db, args.customer).meter_kind
    approval = approve_here(
        ctx,
        args,
        actor,
        Action.CLOSE_ACCOUNT,
        args.customer,
        payload={"customer_no": args.customer},
    )
    work = AccountWork.of(ctx, db)
    with _terminal(ctx, args, meter_kind) as terminal:
        request = CloseRequest(
            args.customer, st.KEEP if args.keep_card else st.ERASE, meter_read=meter_read
        )
        done = work.close_account(terminal, actor, request, approval.id, reason=args.reason or "")
    saved = _save_statement(ctx, args, done, work.statement_language())
    if args.json:
        emit_json({**done.to_json(), "approval_id": approval.id, "statement": saved})
        return 0
    print_lines([closed_line(done), *settlement_lines(done)])
    if saved:
        print(_("Settlement statement saved to {path}.", path=saved))
    return 0


def _save_statement(
    ctx: AppContext, args: argparse.Namespace, done: st.Settlement, language: str
) -> str | None:
    """The statement saved to ``--statement``; a failure is told, the close stands."""
    if not args.statement:
        return None

    def render() -> bytes:
        if ctx.report_renderer is None:
            raise ValidationError(N_("no report renderer is configured"))
        return ctx.report_renderer.report_pdf(done, language=language)

    return save_after(
        args.statement,
        render,
        N_("The account is closed, but its settlement statement was not saved ({detail})."),
    )


def _status_approval(ctx: AppContext, args: argparse.Namespace, actor: Principal) -> str | None:
    """An approval signed here by ``--approver`` when one is given (a ``pause_account`` rule
    asks for it; without a rule nobody is asked)."""
    if not args.approver:
        return None
    view = approve_here(
        ctx,
        args,
        actor,
        Action.PAUSE_ACCOUNT,
        args.customer,
        payload={"customer_no": args.customer},
    )
    return view.id


def cmd_pause_account(ctx: AppContext, args: argparse.Namespace) -> int:
    actor = cli_login(ctx, args.operator)
    request = _status_approval(ctx, args, actor)
    view = AccountWork.of(ctx, open_db(ctx)).pause(actor, args.customer, args.reason, request)
    return answer(args.json, view.to_json(), paused_line(view))


def cmd_resume_account(ctx: AppContext, args: argparse.Namespace) -> int:
    actor = cli_login(ctx, args.operator)
    request = _status_approval(ctx, args, actor)
    view = AccountWork.of(ctx, open_db(ctx)).resume(
        actor, args.customer, args.reason or "", request
    )
    return answer(args.json, view.to_json(), resumed_line(view))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = sub.add_parser(
        "close-account",
        help=_("settle and close a customer's account: refund or credit note (approval)"),
    )
    q.add_argument("--customer", required=True, metavar="NO", type=CUSTOMER_NO_ARG)
    q.add_argument("--reason", help=_("why the account is closed"))
    q.add_argument(
        "--keep-card",
        action="store_true",
        help=_("the customer keeps the card; it is blacklisted instead of erased"),
    )
    q.add_argument(
        "--no-card",
        action="store_true",
        help=_("close without the card (lost or unreadable); it is blacklisted"),
    )
    q.add_argument(
        "--meter-remaining", metavar="YUAN", help=_("the meter's remaining balance as read")
    )
    q.add_argument("--meter-count", type=int, metavar="N", help=_("the meter's purchase count"))
    q.add_argument("--statement", metavar="FILE.pdf", help=_("save the settlement statement"))
    operator_json_args(q)
    card_args(q)
    approver_arg(q, required=True)
    q.set_defaults(func=cmd_close_account)

    q = sub.add_parser("pause-account", help=_("pause an account: no sales until it is resumed"))
    q.add_argument("--customer", required=True, metavar="NO", type=CUSTOMER_NO_ARG)
    q.add_argument("--reason", required=True, help=_("why (shown when a sale is refused)"))
    operator_json_args(q)
    approver_arg(q, required=False)  # when a pause_account rule asks for an approval
    q.set_defaults(func=cmd_pause_account)

    q = sub.add_parser("resume-account", help=_("resume a paused account"))
    q.add_argument("--customer", required=True, metavar="NO", type=CUSTOMER_NO_ARG)
    q.add_argument("--reason", help=_("why it is resumed"))
    operator_json_args(q)
    approver_arg(q, required=False)
    q.set_defaults(func=cmd_resume_account)
