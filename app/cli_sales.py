"""Ledger commands at the counter: shifts, sales onto cards, rewrite, replacement, reversal,
recovery and the sales list (``cardvend shift|open-account|sell|rewrite|replace-card|reverse|
recover|sales``).

Every command signs in ``--operator`` (password from ``CARDVEND_PASSWORD`` or a prompt); a
command that needs a supervisor's sign-off signs in ``--approver`` too (password from
``CARDVEND_APPROVER_PASSWORD`` or a prompt) and records the approval on the spot
(:func:`app.services.approvals.approve_on_spot`), then hands the request id to the service,
which uses it up in the same transaction as the action.

The card is the one in ``--reader NAME`` (or the configured reader) or an emulated card image
``--image FILE`` used in-process.  Amounts are yuan text (``12.50``), parsed exactly into fen.

Decisions:

* ``sell`` on a remote fee-control customer (``meter_kind`` remote) records a remote payment
  (no card is opened; ``--reader``/``--image`` are not used); the central system issues it to
  the meter.
* ``--override --approver ID`` on ``sell``/``open-account`` is only used when the sale stops at
  an offline limit: the approver is then signed in and approves ``override_offline_limit`` for
  this counter, and the sale is tried once more with that approval.  ``open-account`` has
  opened the account by then, so its retry is a plain sale onto the new card.
* ``recover`` with a card decides what the card can decide (an unfinished sale, a pending
  reversal) and shows the card's situation; ``--at-start`` first turns this counter's pending
  sales into in-doubt ones (the process that wrote them is gone).  Either way it lists every
  sale still unresolved (the supervisor's list).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import ExitStack
from contextlib import contextmanager
from typing import Any
from typing import TypeVar

from app.cli import answer
from app.cli import approver_arg
from app.cli import card_args
from app.cli import cli_login
from app.cli import cli_secret
from app.cli import command_group
from app.cli import emit_json
from app.cli import id_arg
from app.cli import open_db
from app.cli import operator_json_args
from app.cli import print_lines
from app.cli import save_after
from app.context import AppContext
from app.domain import ids
from app.domain.customers import MeterKind
from app.domain.ledger import SaleState
from app.domain.ledger import Situation
from app.domain.permissions import Action
from app.errors import CardVendError
from app.errors import ValidationError
from app.files import check_output
from app.i18n import N_
from app.i18n import _
from app.money import check_cash_received
from app.money import format_yuan
from app.money import parse_yuan
from app.ports import CardTerminal
from app.presenters.cardwork import CardWork
from app.presenters.cardwork import approver_of
from app.presenters.cardwork import change_lines
from app.presenters.cardwork import collected_lines
from app.presenters.cardwork import erased_line
from app.presenters.cardwork import exchanged_lines
from app.presenters.cardwork import opened_line
from app.presenters.cardwork import purchase_line
from app.presenters.cardwork import read_old_card
from app.presenters.cardwork import replaced_lines
from app.presenters.cardwork import reversed_lines
from app.presenters.cardwork import rewritten_line
from app.services import approvals
from app.services import ledger
from app.services import receipts
from app.services import selling
from app.services import shifts
from app.services.auth import Principal
from app.services.customers import customer_view
from app.settings import RECEIPT_LANGUAGE

APPROVER_ENV = "CARDVEND_APPROVER_PASSWORD"

T = TypeVar("T")


def _state(value: str) -> str:
    return SaleState.text_of(value)


def _yuan(fen: int) -> str:
    return format_yuan(fen)


# --------------------------------------------------------------------------- helpers


def _amount(text: str | None, *, allow_zero: bool = False) -> int | None:
    return None if text is None else parse_yuan(text, allow_zero=allow_zero)


def _cash(args: argparse.Namespace, amount: int | None) -> int | None:
    cash = _amount(getattr(args, "cash", None))
    if cash is not None and amount is None:
        raise ValidationError(N_("--cash needs --amount"))
    check_cash_received(amount, cash)
    return cash


def _check_override(args: argparse.Namespace) -> None:
    if getattr(args, "override", False) and not args.approver:
        raise ValidationError(N_("--override needs --approver ID"))


def approve_here(
    ctx: AppContext,
    args: argparse.Namespace,
    actor: Principal,
    action: Action,
    target: str,
    *,
    payload: dict[str, Any] | None = None,
    distinct_from: tuple[str, ...] = (),
) -> approvals.ApprovalView:
    """``--approver`` signs in here (password from CARDVEND_APPROVER_PASSWORD or a prompt) and
    signs ``action`` on ``target`` for ``actor``; the approved request."""
    if not args.approver:
        raise ValidationError(N_("this command needs --approver ID"))
    password = cli_secret(APPROVER_ENV, _("Password for {operator}: ", operator=args.approver))
    return CardWork.of(ctx, open_db(ctx)).approve_on_the_spot(
        args.approver, password, actor, action, target, payload=payload, distinct_from=distinct_from
    )


def _with_override(
    ctx: AppContext,
    args: argparse.Namespace,
    actor: Principal,
    first: Callable[[], T],
    retry: Callable[[str], T],
) -> T:
    """``first()``; when it stops at an offline limit and ``--override`` was given, the approver
    signs the override on the spot and ``retry(request_id)`` runs once."""
    try:
        return first()
    except selling.OfflineLimitReached as exc:
        if not args.override:
            raise
        approval = approve_here(
            ctx,
            args,
            actor,
            Action.OVERRIDE_OFFLINE_LIMIT,
            actor.counter_id,
            payload={"problem": str(exc.params.get("detail", ""))},
        )
        if not args.json:
            print(
                _(
                    "Offline limit overridden by {approver}.",
                    approver=approver_of(approval),
                )
            )
        return retry(approval.id)


@contextmanager
def card_terminal(ctx: AppContext, args: argparse.Namespace) -> Iterator[CardTerminal]:
    terminal = ctx.open_terminal(args.reader, args.image)
    try:
        yield terminal
    finally:
        _close_terminal(terminal)


def _close_terminal(terminal: CardTerminal) -> None:
    close = getattr(getattr(terminal, "channel", None), "close", None)
    if callable(close):
        close()


def _has_card(args: argparse.Namespace) -> bool:
    return bool(args.reader or args.image)


def _print_sale(sale: ledger.SaleView) -> None:
    print(_("Sale {sale_id} is {state}.", sale_id=sale.sale_id, state=_state(sale.state)))
    print_lines([purchase_line(sale), *collected_lines(sale)])


def _print_change(change: int | None) -> None:
    print_lines(change_lines(change))


def _print_unresolved(views: list[ledger.SaleView]) -> None:
    if not views:
        print(_("No sale is unresolved."))
        return
    print(_("{count} sales are unresolved:", count=len(views)))
    for v in views:
        print(
            _(
                "Sale {sale_id}: customer {customer_no}, purchase {count}, {amount} yuan, "
                "{state}, counter {counter}.",
                sale_id=v.sale_id,
                customer_no=v.customer_no,
                count=v.purchase_count,
                amount=_yuan(v.amount_fen),
                state=_state(v.state),
                counter=v.counter_id,
            )
        )


# --------------------------------------------------------------------------- shifts


def cmd_shift_open(ctx: AppContext, args: argparse.Namespace) -> int:
    float_fen = parse_yuan(args.float, allow_zero=True)
    actor = cli_login(ctx, args.operator)
    view = shifts.open_shift(open_db(ctx), actor=actor, float_fen=float_fen, clock=ctx.clock)
    return answer(
        args.json,
        view.to_json(),
        _(
            "Shift {shift} opened on counter {counter} by {operator} with a float of {float} yuan.",
            shift=view.shift_id,
            counter=view.counter_id,
            operator=view.operator_id,
            float=_yuan(view.float_fen),
        ),
    )


def cmd_shift_close(ctx: AppContext, args: argparse.Namespace) -> int:
    counted = parse_yuan(args.counted, allow_zero=True)
    actor = cli_login(ctx, args.operator)
    view = shifts.close_shift(
        open_db(ctx), actor=actor, counted_fen=counted, clock=ctx.clock, reason=args.reason or ""
    )
    return answer(
        args.json,
        view.to_json(),
        _("Shift {shift} closed.", shift=view.shift_id),
        _("Expected cash: {amount} yuan.", amount=_yuan(view.expected_fen or 0)),
        _("Counted cash: {amount} yuan.", amount=_yuan(view.counted_fen or 0)),
        _("Variance: {amount} yuan.", amount=_yuan(view.variance_fen or 0)),
    )


# --------------------------------------------------------------------------- sales


def _check_receipt_path(args: argparse.Namespace) -> None:
    """A ``--receipt`` file that cannot be written is refused before the sale, not after."""
    if getattr(args, "receipt", None):
        check_output(args.receipt)


def _begin_sale(
    ctx: AppContext, args: argparse.Namespace, amount: int | None
) -> tuple[int | None, Principal, CardWork]:
    """What is checked before a sale touches anything (``--cash``, ``--override``,
    ``--receipt``), then ``--operator`` signs in: the cash received, the seller, the card work."""
    cash = _cash(args, amount)
    _check_override(args)
    _check_receipt_path(args)
    actor = cli_login(ctx, args.operator)
    return cash, actor, CardWork.of(ctx, open_db(ctx))


def cmd_open_account(ctx: AppContext, args: argparse.Namespace) -> int:
    amount = _amount(args.amount)
    cash, actor, work = _begin_sale(ctx, args, amount)
    with card_terminal(ctx, args) as terminal:

        def first() -> selling.SaleOutcome | None:
            return work.open_account(terminal, actor, args.customer, amount, cash)[1]

        def retry(request_id: str) -> selling.SaleOutcome | None:
            # the account is open by now: the first purchase is a plain sale onto the new card
            assert amount is not None
            return work.sell(terminal, actor, amount, cash, args.customer, request_id)

        outcome = _with_override(ctx, args, actor, first, retry)
    customer = customer_view(work.db, args.customer)
    saved = _save_receipt(ctx, args, outcome.sale.sale_id) if outcome is not None else None
    if args.json:
        emit_json(
            {
                "customer": customer.to_json(),
                "sale": outcome.to_json() if outcome is not None else None,
                "receipt": saved,
            }
        )
        return 0
    print(opened_line(customer))
    if outcome is not None:
        _print_sale(outcome.sale)
        _print_change(outcome.change_fen)
    return 0


def cmd_sell(ctx: AppContext, args: argparse.Namespace) -> int:
    amount = parse_yuan(args.amount)
    cash, actor, work = _begin_sale(ctx, args, amount)
    if customer_view(work.db, args.customer).meter_kind == MeterKind.REMOTE.value:
        sale = _with_override(
            ctx,
            args,
            actor,
            lambda: work.remote_payment(actor, args.customer, amount, cash),
            lambda request_id: work.remote_payment(actor, args.customer, amount, cash, request_id),
        )
        change = None if cash is None else cash - amount
        saved = _save_receipt(ctx, args, sale.sale_id)
        if args.json:
            emit_json({**sale.to_json(), "change_fen": change, "receipt": saved})
            return 0
        _print_sale(sale)
        print(_("The central system will issue it to the meter."))
        _print_change(change)
        return 0
    with card_terminal(ctx, args) as terminal:

        def attempt(request_id: str | None) -> selling.SaleOutcome:
            return work.sell(terminal, actor, amount, cash, args.customer, request_id)

        outcome = _with_override(ctx, args, actor, lambda: attempt(None), attempt)
    saved = _save_receipt(ctx, args, outcome.sale.sale_id)
    if args.json:
        emit_json({**outcome.to_json(), "receipt": saved})
        return 0
    _print_sale(outcome.sale)
    _print_change(outcome.change_fen)
    return 0


def _save_receipt(ctx: AppContext, args: argparse.Namespace, sale_id: str) -> str | None:
    """Save the original receipt where ``--receipt`` says. The sale stands whatever happens
    here: a failure is one line on stderr and the receipt can be reprinted."""
    if not args.receipt:
        return None

    def render() -> bytes:
        if ctx.receipt_renderer is None:
            raise RuntimeError("no receipt renderer was configured")
        data = receipts.original_receipt(
            open_db(ctx), sale_id, settings=ctx.settings, key=ctx.receipt_key()
        )
        language = ctx.settings.value(RECEIPT_LANGUAGE)
        return ctx.receipt_renderer.receipt_pdf(data, size=args.receipt_size, language=language)

    failed = N_(
        "The sale is recorded, but its receipt was not saved ({detail}). Reprint it "
        "with 'cardvend receipt {sale_id}'."
    )
    return save_after(args.receipt, render, failed, sale_id=sale_id)


def cmd_rewrite(ctx: AppContext, args: argparse.Namespace) -> int:
    actor = cli_login(ctx, args.operator)
    db = open_db(ctx)
    with card_terminal(ctx, args) as terminal:
        # the service rewrites whatever customer's card is presented: check it is the one asked
        params = terminal.read().parameters
        if params is None or params.customer_no != args.customer:
            raise selling.CardRefused(reason=N_("it belongs to another customer"))
        outcome = CardWork.of(ctx, db).rewrite(terminal, actor)
    return answer(args.json, outcome.to_json(), rewritten_line(outcome.sale))


def cmd_replace_card(ctx: AppContext, args: argparse.Namespace) -> int:
    if args.mode == "damaged":
        return _exchange_card(ctx, args)
    if args.old_image or args.old_reader:
        raise ValidationError(N_("--old-image and --old-reader go with --mode damaged"))
    actor = cli_login(ctx, args.operator)
    db = open_db(ctx)
    approval = approve_here(
        ctx,
        args,
        actor,
        Action.REPLACE_CARD,
        args.customer,
        payload={"customer_no": args.customer},
    )
    with card_terminal(ctx, args) as terminal:
        customer, fee = CardWork.of(ctx, db).replace_card(
            terminal, actor, args.customer, approval.id
        )
    return answer(
        args.json,
        {
            "customer": customer.to_json(),
            "card_serial": customer.card_serial,
            "fee_fen": fee,
            "approval_id": approval.id,
            "mode": "lost",
        },
        *replaced_lines(customer, fee, approver_of(approval)),
    )


def _exchange_card(ctx: AppContext, args: argparse.Namespace) -> int:
    """``--mode damaged``: the old card (``--old-image``/``--old-reader``; none: it cannot be
    read) is read, the blank card (``--image``/``--reader``) replaces it, then the old card is
    erased (it stays blacklisted when that fails)."""
    actor = cli_login(ctx, args.operator)
    db = open_db(ctx)
    cardwork = CardWork.of(ctx, db)
    approval = None
    if args.approver:  # needed only when a rule for exchange_card says so
        approval = approve_here(
            ctx,
            args,
            actor,
            Action.EXCHANGE_CARD,
            args.customer,
            payload={"customer_no": args.customer},
        )
    has_old = bool(args.old_image or args.old_reader)
    with ExitStack() as stack:
        old_terminal = None
        old_card = None
        if has_old:
            old_terminal = ctx.open_terminal(args.old_reader, args.old_image)
            stack.callback(_close_terminal, old_terminal)
            old_card = read_old_card(old_terminal)
        terminal = stack.enter_context(card_terminal(ctx, args))
        outcome = cardwork.exchange_card(
            terminal, actor, args.customer, old_card, approval.id if approval else None
        )
        erased: str | None = None
        if old_terminal is not None and outcome.old_serial is not None:
            try:
                erased = cardwork.erase_old_card(old_terminal, actor, args.customer)
            except CardVendError:
                erased = None
    if args.json:
        emit_json(
            {
                **outcome.to_json(),
                "approval_id": approval.id if approval else None,
                "old_erased": erased is not None,
                "mode": "damaged",
            }
        )
        return 0
    print_lines(exchanged_lines(outcome, approver_of(approval) if approval else None))
    if outcome.old_serial is not None:
        print(erased_line(erased))
    return 0


def cmd_reverse(ctx: AppContext, args: argparse.Namespace) -> int:
    actor = cli_login(ctx, args.operator)
    db = open_db(ctx)
    seller = ledger.get_sale(db, args.sale_id).operator_id
    approval = approve_here(
        ctx,
        args,
        actor,
        Action.REVERSE,
        args.sale_id,
        payload={"sale_id": args.sale_id},
        distinct_from=(seller,),
    )
    with card_terminal(ctx, args) as terminal:
        sale = CardWork.of(ctx, db).reverse_sale(terminal, actor, args.sale_id, approval.id)
    return answer(
        args.json,
        {**sale.to_json(), "approval_id": approval.id},
        *reversed_lines(sale, approver_of(approval)),
    )


def cmd_recover(ctx: AppContext, args: argparse.Namespace) -> int:
    actor = cli_login(ctx, args.operator)
    db = open_db(ctx)
    changes = args.at_start or _has_card(args)
    actor.authorize(Action.SELL if changes else Action.VIEW_REPORTS, ctx.clock)
    if args.at_start:
        selling.recover_at_start(db, actor.counter_id, ctx.clock)
    assessment = None
    if _has_card(args):
        with card_terminal(ctx, args) as terminal:
            assessment = selling.recover_with_card(
                db, terminal, clock=ctx.clock, settings=ctx.settings, actor=actor
            )
    left = selling.unresolved(db)
    if args.json:
        emit_json(
            {
                "assessment": assessment.to_json() if assessment is not None else None,
                "resolved": [s.to_json() for s in assessment.recovered] if assessment else [],
                "unresolved": [s.to_json() for s in left],
            }
        )
        return 0
    if assessment is not None:
        print(
            _(
                "Card {serial} of customer {customer_no}: {situation}.",
                serial=assessment.contents.serial_hex,
                customer_no=assessment.customer.customer_no,
                situation=Situation.text_of(assessment.situation),
            )
        )
        if not assessment.recovered:
            print(_("The card had nothing to decide."))
        for s in assessment.recovered:
            if s.state == SaleState.FAILED.value:
                print(
                    _(
                        "Sale {sale_id} failed: the card never got it; return {amount} yuan to "
                        "the customer.",
                        sale_id=s.sale_id,
                        amount=_yuan(s.amount_fen),
                    )
                )
            else:
                print(
                    _(
                        "Sale {sale_id} is now {state}.",
                        sale_id=s.sale_id,
                        state=_state(s.state),
                    )
                )
    _print_unresolved(left)
    return 0


def cmd_sales_list(ctx: AppContext, args: argparse.Namespace) -> int:
    limit = args.limit
    if limit < 1:
        raise ValidationError(N_("--limit must be at least 1"))
    actor = cli_login(ctx, args.operator)
    actor.authorize(Action.VIEW_REPORTS, ctx.clock)
    views = ledger.list_sales(
        open_db(ctx), customer_no=args.customer, state=args.state, limit=limit
    )
    lines = [_sale_row(v) for v in views] or [_("No sales.")]
    return answer(args.json, [v.to_json() for v in views], *lines)


def _sale_row(v: ledger.SaleView) -> str:
    count = "-" if v.purchase_count is None else str(v.purchase_count)
    return (
        f"{v.created_at[:19]}  {v.sale_id}  {v.customer_no}  {v.kind:6}  {count:>4}  "
        f"{_yuan(v.amount_fen):>12}  {_state(v.state)}  {v.operator_id}"
    )


# --------------------------------------------------------------------------- parser


def receipt_args(q: argparse.ArgumentParser) -> None:
    q.add_argument("--receipt", metavar="FILE.pdf", help=_("save the receipt (the original)"))
    q.add_argument(
        "--receipt-size", choices=("80", "58", "a5", "a4"), default="80", help=_("receipt layout")
    )


CUSTOMER_NO_ARG = id_arg(ids.CUSTOMER_NO)


def _override(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--override",
        action="store_true",
        help=_("if an offline limit stops the sale, let --approver override it"),
    )
    approver_arg(q, required=False)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_shift(sub)
    _register_card_work(sub)
    _register_sales(sub)


def _register_shift(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ssub = command_group(sub, "shift", _("open or close this counter's shift"))
    q = ssub.add_parser("open", help=_("open a shift with a cash float"))
    q.add_argument("--float", required=True, metavar="YUAN", help=_("cash float in yuan"))
    operator_json_args(q)
    q.set_defaults(func=cmd_shift_open)
    q = ssub.add_parser("close", help=_("close the shift with the counted cash"))
    q.add_argument("--counted", required=True, metavar="YUAN", help=_("counted cash in yuan"))
    q.add_argument(
        "--reason", help=_("why the counted cash differs from the expected (needed then)")
    )
    operator_json_args(q)
    q.set_defaults(func=cmd_shift_close)


def _paid_at_the_card(q: argparse.ArgumentParser) -> None:
    """What a command that takes cash and writes a card (open-account, sell) takes after its
    amount: the cash, the receipt, the operator and --json, the card, and an override of an
    offline limit."""
    q.add_argument("--cash", metavar="YUAN", help=_("cash received in yuan (change is shown)"))
    receipt_args(q)
    operator_json_args(q)
    card_args(q)
    _override(q)


def _register_card_work(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = sub.add_parser(
        "open-account", help=_("issue a blank card as a customer's first card, optionally sell")
    )
    q.add_argument("--customer", required=True, metavar="NO", type=CUSTOMER_NO_ARG)
    q.add_argument("--amount", metavar="YUAN", help=_("first purchase in yuan"))
    _paid_at_the_card(q)
    q.set_defaults(func=cmd_open_account)

    q = sub.add_parser(
        "sell",
        help=_(
            "sell electricity onto the customer's card (a remote fee-control customer: a "
            "remote payment, no card)"
        ),
    )
    q.add_argument("--customer", required=True, metavar="NO", type=CUSTOMER_NO_ARG)
    q.add_argument("--amount", required=True, metavar="YUAN", help=_("amount paid in yuan"))
    _paid_at_the_card(q)
    q.set_defaults(func=cmd_sell)

    q = sub.add_parser("rewrite", help=_("write the last purchase again onto a card behind"))
    q.add_argument("--customer", required=True, metavar="NO", type=CUSTOMER_NO_ARG)
    operator_json_args(q)
    card_args(q)
    q.set_defaults(func=cmd_rewrite)

    q = sub.add_parser(
        "replace-card", help=_("make a blank card the customer's replacement card (approval)")
    )
    q.add_argument("--customer", required=True, metavar="NO", type=CUSTOMER_NO_ARG)
    q.add_argument(
        "--mode",
        choices=("lost", "damaged"),
        default="lost",
        help=_(
            "lost: the card is gone and is blacklisted (approval); damaged: the customer "
            "brought the card, it is read when it can be and erased"
        ),
    )
    operator_json_args(q)
    card_args(q)
    old = q.add_mutually_exclusive_group()
    old.add_argument("--old-image", help=_("the damaged card as an emulated card image"))
    old.add_argument("--old-reader", help=_("the PC/SC reader that holds the damaged card"))
    approver_arg(q, required=False)
    q.set_defaults(func=cmd_replace_card)

    q = sub.add_parser("reverse", help=_("reverse a sale on its card (approval)"))
    q.add_argument("sale_id", metavar="SALE_ID", type=id_arg(ids.SALE_ID))
    operator_json_args(q)
    card_args(q)
    approver_arg(q, required=True)
    q.set_defaults(func=cmd_reverse)

    q = sub.add_parser(
        "recover",
        help=_("resolve what the presented card decides and list the unresolved sales"),
    )
    q.add_argument(
        "--at-start",
        action="store_true",
        help=_("first mark this counter's pending sales in doubt (after a crash)"),
    )
    operator_json_args(q)
    card_args(q)
    q.set_defaults(func=cmd_recover)


def _register_sales(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lsub = command_group(sub, "sales", _("the sales ledger"))
    q = lsub.add_parser("list", help=_("list sales, newest first"))
    q.add_argument("--customer", metavar="NO", type=CUSTOMER_NO_ARG)
    q.add_argument("--state", choices=[s.value for s in SaleState])
    q.add_argument("--limit", type=int, default=200)
    operator_json_args(q)
    q.set_defaults(func=cmd_sales_list)
