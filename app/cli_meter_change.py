"""``cardvend change-meter``: the customer's meter replaced, its credit carried on the card.

    cardvend change-meter --customer NO --new-meter NO
        [--from-card | --remaining YUAN --purchase-count N [--reading KWH] | --read-meter WHERE]
        --operator ID [--approver ID] --reader NAME|--image FILE [--slip FILE.pdf] [--json]

The old meter's state comes from the card's write-back (``--from-card``, the default), a DL/T
645 read of the old meter at ``--read-meter`` (a serial port or a terminal's ``HOST:PORT``; needs
``read_meter``), or values typed from its display (``--remaining``, negative for an overdraft,
and ``--purchase-count``), which ``--approver`` signs on the spot (password from
``CARDVEND_APPROVER_PASSWORD`` or a prompt).  ``--slip`` saves the meter change slip (PDF, in
the receipt language); a slip that cannot be saved is one line on stderr and the change stands.
Running the command again after a card write that failed finishes it.
"""

from __future__ import annotations

import argparse

from app.cli import approver_arg
from app.cli import card_args
from app.cli import cli_login
from app.cli import emit_json
from app.cli import id_arg
from app.cli import open_db
from app.cli import operator_json_args
from app.cli import print_lines
from app.cli import save_after
from app.cli_sales import approve_here
from app.cli_sales import card_terminal
from app.context import AppContext
from app.domain import ids
from app.domain.permissions import Action
from app.errors import ValidationError
from app.files import check_output
from app.i18n import N_
from app.i18n import _
from app.money import parse_yuan
from app.presenters.cardwork import approver_of
from app.presenters.meter_change import MeterChangeWork
from app.presenters.meter_change import meter_change_lines
from app.services import meter_reading
from app.services.auth import Principal
from app.services.lifecycle import meter_change as mc
from app.services.meter_reading import MeterReading

WH_PER_KWH = 1000


def _kwh(text: str | None) -> int | None:
    """kWh text with at most two decimals (``12345.67``) as Wh."""
    if text is None:
        return None
    return parse_yuan(text, allow_zero=True) * WH_PER_KWH // 100


def _source(args: argparse.Namespace) -> str:
    if args.remaining is not None or args.purchase_count is not None:
        if args.remaining is None or args.purchase_count is None:
            raise ValidationError(N_("--remaining and --purchase-count go together"))
        if not args.approver:
            raise ValidationError(N_("values typed from the old meter need --approver ID"))
        return mc.SOURCE_TYPED
    if args.reading is not None:
        raise ValidationError(N_("--reading goes with --remaining and --purchase-count"))
    return mc.SOURCE_READ if args.read_meter else mc.SOURCE_CARD


def _read_old_meter(
    ctx: AppContext, args: argparse.Namespace, actor: Principal, old_meter_no: str
) -> MeterReading:
    if ctx.meter_reader is None:
        raise ValidationError(N_("no meter line is set up here"))
    return meter_reading.read_for(
        open_db(ctx),
        actor,
        ctx.clock,
        ctx.meter_reader,
        args.read_meter,
        old_meter_no,
    )


def _save_slip(
    args: argparse.Namespace, work: MeterChangeWork, change: mc.MeterChange
) -> str | None:
    """The slip saved to ``--slip``; a failure is told, the meter change stands."""
    if not args.slip:
        return None
    return save_after(
        args.slip,
        lambda: work.slip_pdf(change),
        N_("The meter is changed, but its slip was not saved ({detail})."),
    )


def cmd_change_meter(ctx: AppContext, args: argparse.Namespace) -> int:
    source = _source(args)
    if args.slip:
        check_output(args.slip)
    actor = cli_login(ctx, args.operator)
    db = open_db(ctx)
    work = MeterChangeWork.of(ctx, db)
    approval = None
    if source == mc.SOURCE_TYPED:
        approval = approve_here(
            ctx,
            args,
            actor,
            Action.CHANGE_METER,
            args.customer,
            payload={"customer_no": args.customer, "new_meter_no": args.new_meter},
        )
    reading = None
    if source == mc.SOURCE_READ:
        from app.services.customers import customer_view

        reading = _read_old_meter(ctx, args, actor, customer_view(db, args.customer).meter_no)
    with card_terminal(ctx, args) as terminal:
        request = mc.MeterChangeRequest(
            args.customer,
            args.new_meter,
            source=source,
            remaining_fen=None
            if args.remaining is None
            else parse_yuan(args.remaining, allow_zero=True, allow_negative=True),
            purchase_count=args.purchase_count,
            reading=reading,
            energy_wh=_kwh(args.reading),
        )
        change = work.change(terminal, actor, request, approval.id if approval else None)
    saved = _save_slip(args, work, change)
    if args.json:
        approval_id = approval.id if approval else None
        emit_json({**change.to_json(), "approval_id": approval_id, "slip": saved})
        return 0
    print_lines(meter_change_lines(change))
    if approval is not None:
        print(_("Approved by {approver}.", approver=approver_of(approval)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = sub.add_parser(
        "change-meter",
        help=_("replace a customer's meter, carrying its credit on the card (换表)"),
    )
    q.add_argument("--customer", required=True, metavar="NO", type=id_arg(ids.CUSTOMER_NO))
    q.add_argument("--new-meter", required=True, metavar="NO", type=id_arg(ids.METER_NO))
    g = q.add_mutually_exclusive_group()
    g.add_argument(
        "--from-card",
        action="store_true",
        help=_("take the old meter's state from the card's write-back (the default)"),
    )
    g.add_argument(
        "--remaining",
        metavar="YUAN",
        help=_("the remaining balance typed from the old meter (negative: overdraft; approval)"),
    )
    g.add_argument(
        "--read-meter",
        metavar="WHERE",
        help=_("read the old meter over DL/T 645 at a serial port or HOST:PORT"),
    )
    q.add_argument("--purchase-count", type=int, metavar="N", help=_("the old meter's count"))
    q.add_argument("--reading", metavar="KWH", help=_("the old meter's final reading in kWh"))
    q.add_argument("--slip", metavar="FILE.pdf", help=_("save the meter change slip"))
    approver_arg(q, required=False)
    operator_json_args(q)
    card_args(q)
    q.set_defaults(func=cmd_change_meter)
