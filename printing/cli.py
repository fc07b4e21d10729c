"""Printing commands: ``cardvend receipt SALE_ID --out FILE.pdf`` (a reprint),
``cardvend print SALE_ID`` (a reprint on the configured printer) and ``cardvend report
shift|daily|stats --out FILE.pdf|FILE.csv``.

Every print after the sale's own receipt is a reprint: it needs the reprint permission and,
where the approval rules ask (by default), ``--approver`` (a supervisor other than the asker,
password from CARDVEND_APPROVER_PASSWORD or a prompt). It is counted and marked 副本 / COPY n,
once it is written (or printed): a bad ``--out`` or a printer fault counts nothing.  ``receipt``
refuses to replace an existing file without ``--force``; ``report`` replaces one.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from app.cli import cli_login
from app.cli import emit_json
from app.cli import id_arg
from app.cli import json_arg
from app.cli import open_db
from app.cli import operator_arg
from app.cli_sales import approve_here
from app.context import AppContext
from app.domain import ids
from app.domain.permissions import Action
from app.domain.receipt import ReceiptData
from app.errors import ValidationError
from app.files import check_output
from app.files import save_output
from app.i18n import N_
from app.i18n import _
from app.localtime import local
from app.presenters.stats import date_arg
from app.services import receipts
from app.services import reports as report_service
from app.settings import RECEIPT_LANGUAGE
from app.settings import RECEIPT_SIZE
from app.settings import TIME_ZONE


def _language(ctx: AppContext, args: argparse.Namespace) -> str:
    return str(getattr(args, "receipt_lang", None) or ctx.settings.value(RECEIPT_LANGUAGE))


def _reprint(
    ctx: AppContext, args: argparse.Namespace, deliver: Callable[[ReceiptData], None]
) -> ReceiptData:
    """Sign in, approve on the spot if asked, and have the copy delivered; it is counted only
    once ``deliver`` returned (app/services/receipts.py)."""
    actor = cli_login(ctx, args.operator)
    db = open_db(ctx)
    request_id = None
    if args.approver:
        request_id = approve_here(
            ctx, args, actor, Action.REPRINT, args.sale_id, distinct_from=(actor.operator_id,)
        ).id
    return receipts.reprint(
        db,
        actor=actor,
        sale_id=args.sale_id,
        settings=ctx.settings,
        key=ctx.receipt_key(),
        clock=ctx.clock,
        approval_request=request_id,
        deliver=deliver,
    )


def cmd_receipt(ctx: AppContext, args: argparse.Namespace) -> int:
    from printing.receipt import render_receipt_pdf

    out = check_output(args.out, force=args.force)  # before anyone signs anything
    size = args.size or ctx.settings.value(RECEIPT_SIZE)

    def save(copy: ReceiptData) -> None:
        pdf = render_receipt_pdf(copy, size=size, language=_language(ctx, args))
        save_output(out, pdf, force=args.force)

    receipt = _reprint(ctx, args, save)
    if args.json:
        emit_json({"sale_id": receipt.sale_id, "copy_no": receipt.copy_no, "out": args.out})
    else:
        print(_("copy {copy_no} of the receipt saved to {path}", copy_no=receipt.copy_no,
                path=args.out))  # fmt: skip
    return 0


def cmd_print(ctx: AppContext, args: argparse.Namespace) -> int:
    printer = ctx.printer_factory() if ctx.printer_factory is not None else None
    if printer is None:
        raise ValidationError(
            N_("no printer is configured (setting printer); use 'cardvend receipt' for a PDF")
        )
    receipt = _reprint(
        ctx, args, lambda copy: printer.print_receipt(copy, language=_language(ctx, args))
    )
    print(_("copy {copy_no} of the receipt printed", copy_no=receipt.copy_no))
    return 0


def _day(day: dt.date | None, ctx: AppContext) -> dt.date:
    """``--day`` (checked by :func:`date_arg`), else today in the office's time zone."""
    return day or local(ctx.clock.now(), ctx.settings.value(TIME_ZONE)).date()


def cmd_report(ctx: AppContext, args: argparse.Namespace) -> int:
    from printing import reports as report_render

    out = Path(args.out)
    as_csv = out.suffix.lower() == ".csv"
    if not as_csv and out.suffix.lower() != ".pdf":
        raise ValidationError(N_("the report file must end in .pdf or .csv, got {value}"),
                              value=out.name)  # fmt: skip
    check_output(out, force=True)  # a report is made again at will: an existing one is replaced
    actor = cli_login(ctx, args.operator)
    db = open_db(ctx)
    if as_csv:  # data for other systems: an export
        actor.authorize(Action.EXPORT_REPORTS, ctx.clock)
    language = _language(ctx, args)
    tz = ctx.settings.value(TIME_ZONE)
    data: bytes
    if args.kind == "shift":
        shift_id = args.shift or report_service.current_shift_id(db, ctx.counter_id)
        if shift_id is None:
            raise ValidationError(N_("this counter has no shift yet; give --shift ID"))
        shift = report_service.shift_report(db, shift_id, actor=actor, clock=ctx.clock, tz=tz)
        data = (
            report_render.shift_report_csv(shift).encode("utf-8")
            if as_csv
            else report_render.shift_report_pdf(shift, language=language)
        )
    elif args.kind == "daily":
        daily = report_service.daily_report(
            db, ctx.office_code, _day(args.day, ctx), tz, actor=actor, clock=ctx.clock
        )
        data = (
            report_render.daily_report_csv(daily).encode("utf-8")
            if as_csv
            else report_render.daily_report_pdf(daily, language=language)
        )
    else:
        stats = report_service.stats_report(db, ctx.office_code, ctx.clock, tz, actor=actor)
        data = (
            report_render.stats_report_csv(stats).encode("utf-8")
            if as_csv
            else report_render.stats_report_pdf(stats, language=language)
        )
    save_output(out, data, force=True)
    print(_("report saved to {path}", path=str(out)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def signed(q: argparse.ArgumentParser, approver: bool) -> None:
        operator_arg(q)
        if approver:
            q.add_argument("--approver", type=id_arg(ids.OPERATOR_ID),
                           help=_("supervisor who approves the reprint on the spot"))  # fmt: skip
        q.add_argument("--receipt-lang", choices=("zh_CN", "en"),
                       help=_("language of the receipt (default: setting receipt_language)"))  # fmt: skip

    q = sub.add_parser("receipt", help=_("reprint a sale's receipt into a PDF file (a copy)"))
    q.add_argument("sale_id", type=id_arg(ids.SALE_ID))
    q.add_argument("--out", required=True, metavar="FILE.pdf")
    q.add_argument("--force", action="store_true", help=_("replace an existing file"))
    q.add_argument("--size", choices=("80", "58", "a5", "a4"), help=_("receipt layout"))
    json_arg(q)
    signed(q, True)
    q.set_defaults(func=cmd_receipt)

    q = sub.add_parser("print", help=_("reprint a sale's receipt on the configured printer"))
    q.add_argument("sale_id", type=id_arg(ids.SALE_ID))
    signed(q, True)
    q.set_defaults(func=cmd_print)

    q = sub.add_parser("report", help=_("shift Z-report, daily office report, statistics"))
    q.add_argument("kind", choices=("shift", "daily", "stats"))
    q.add_argument("--out", required=True, metavar="FILE.pdf|FILE.csv")
    q.add_argument("--shift", metavar="ID", type=id_arg(ids.SHIFT_ID),
                   help=_("the shift (default: this counter's last)"))  # fmt: skip
    q.add_argument("--day", metavar="YYYY-MM-DD", type=date_arg, help=_("the day (default: today)"))
    signed(q, False)
    q.set_defaults(func=cmd_report)
