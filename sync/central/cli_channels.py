"""``cardvend central channels add|list|revoke|reconcile|statement``: the station's payment
channels (:mod:`sync.central.channels`) and their daily reconciliation
(:mod:`sync.central.channel_reconcile`).

``add`` prints the channel's token alone on stdout (scripts read it; it is shown this once, only
its hash is kept) and what to do with it on stderr.  ``reconcile`` exits 3 when it finds a
difference (like ``cardvend sync reconcile``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from app.cli import command_group
from app.context import AppContext
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import _
from app.presenters.stats import date_arg
from sync.central.cli import invalid_input
from sync.central.cli import iso_seconds
from sync.central.cli import on_station_db
from sync.central.cli import opened_store
from sync.central.cli import print_json
from sync.central.cli import print_rows
from sync.central.cli import revoke
from sync.central.cli import revoked_state

if TYPE_CHECKING:
    from sync.central.channel_reconcile import Reconciliation
    from sync.central.store import CentralStore

DIFFERENCES_EXIT = 3
MAX_FILE = 256 * 1024 * 1024


def _known_channel(store: CentralStore, channel_id: str) -> None:
    from sync.central.channels import channel_exists

    if not channel_exists(store, channel_id):
        raise ValidationError(N_("no payment channel {channel}"), channel=channel_id)


def cmd_add(ctx: AppContext, args: argparse.Namespace) -> int:
    from sync.central.channels import add_channel

    refused = N_("cannot add payment channel {channel}: {detail}")
    with opened_store(ctx, args) as store:
        with invalid_input(refused, channel=args.channel_id):
            token = add_channel(store, args.channel_id, args.name, args.office, args.all_offices)
    print(token, flush=True)
    served = _("all offices") if args.all_offices else ", ".join(sorted(set(args.office)))
    print(
        _(
            "Payment channel {channel} added for {offices}. Hand the channel this token safely: "
            "it is shown this once. It sends 'Authorization: Bearer TOKEN' to "
            "/api/v1/channel/payments.",
            channel=args.channel_id,
            offices=served,
        ),
        file=sys.stderr,
    )
    return 0


def cmd_list(ctx: AppContext, args: argparse.Namespace) -> int:
    from sync.central.channels import list_channels

    with opened_store(ctx, args) as store:
        found = list_channels(store)
    return print_rows(found, args.json, _("No payment channels."), _channel_line)


def _channel_line(chan: Mapping[str, Any]) -> str:
    return _(
        "{channel}\t{name}\toffices: {offices}\tadded {added}\t{state}",
        channel=chan["id"],
        name=chan["name"],
        offices=_("all offices") if chan["all_offices"] else ", ".join(chan["offices"]),
        added=iso_seconds(chan["created_at"]),
        state=revoked_state(chan),
    )


def cmd_revoke(ctx: AppContext, args: argparse.Namespace) -> int:
    from sync.central.channels import revoke_channel

    return revoke(
        ctx,
        args,
        lambda store: revoke_channel(store, args.channel_id),
        N_("no payment channel {channel}"),
        N_(
            "Payment channel {channel} revoked: its token no longer works. The payments it took "
            "stay and still count."
        ),
        channel=args.channel_id,
    )


def _read_channel_file(path: str) -> str:
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE:
            raise ValidationError(N_("the file {path} is too large"), path=path)
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValidationError(N_("the file {path} is not UTF-8 text"), path=path) from None
    except OSError as exc:
        raise ValidationError(
            N_("cannot read {path}: {detail}"), path=path, detail=exc.strerror or str(exc)
        ) from None


def _show(report: Reconciliation) -> None:
    names = {
        "matched": _("matched"),
        "missing_at_station": _("missing at the station"),
        "missing_at_channel": _("missing at the channel"),
        "amount_differs": _("amount differs"),
        "customer_differs": _("customer differs"),
    }
    print(
        _(
            "Channel {channel}, {day}: station {station} fen, channel file {file} fen.",
            channel=report.channel_id,
            day=report.day,
            station=report.station_fen,
            file=report.channel_fen,
        )
    )
    for kind, n in report.counts.items():
        print(f"  {names[kind]}: {n}")
    for f in report.findings:
        print(
            _(
                "{kind}\t{txn}\tcustomer {customer}\tstation {station}\tchannel {channel}",
                kind=names[f.kind],
                txn=f.txn_id,
                customer=f.channel_customer or f.customer_no,
                station="-" if f.station_fen is None else f.station_fen,
                channel="-" if f.channel_fen is None else f.channel_fen,
            )
        )
    if report.differences:
        print(
            _(
                "{n} differences: post what is missing at the station again (the same txn_id "
                "is taken once), and settle the rest with the channel.",
                n=report.differences,
            )
        )


def cmd_reconcile(ctx: AppContext, args: argparse.Namespace) -> int:
    from sync.central.channel_reconcile import FileError
    from sync.central.channel_reconcile import read_file
    from sync.central.channel_reconcile import reconcile

    text = _read_channel_file(args.file)
    try:
        lines = read_file(text)
    except FileError as exc:
        raise ValidationError(
            N_("{path}, line {line}: {detail}"), path=args.file, line=exc.line, detail=exc.detail
        ) from None
    with opened_store(ctx, args) as store:
        _known_channel(store, args.channel)
        report = reconcile(store, args.channel, args.date, lines)
    if args.json:
        print_json(report.to_json())
    else:
        _show(report)
    return DIFFERENCES_EXIT if report.differences else 0


def cmd_statement(ctx: AppContext, args: argparse.Namespace) -> int:
    from app.files import check_output
    from app.files import save_output
    from sync.central.channel_reconcile import statement_csv
    from sync.central.channels import day_payments

    target = check_output(args.out, force=args.force)
    with opened_store(ctx, args) as store:
        _known_channel(store, args.channel)
        payments = day_payments(store, args.channel, args.date)
    save_output(target, statement_csv(payments), force=args.force)
    print(
        _(
            "{n} payments of channel {channel} on {day} ({fen} fen) written to {path}.",
            n=len(payments),
            channel=args.channel,
            day=args.date.isoformat(),
            fen=sum(p.amount_fen for p in payments),
            path=str(target),
        )
    )
    return 0


def register(csub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = command_group(
        csub, "channels", _("payment channels (a bank, an app, an agent) and their reconciliation")
    )
    r = sub.add_parser("add", help=_("add a payment channel; prints its token once"))
    r.add_argument("channel_id", metavar="CHANNEL_ID")
    r.add_argument("--name", default="", help=_("the channel's name"))
    r.add_argument("--office", action="append", default=[], metavar="CODE",
                   help=_("an office whose customers it may take payments for (repeatable)"))  # fmt: skip
    r.add_argument("--all-offices", action="store_true",
                   help=_("it may take payments for every office's customers"))  # fmt: skip
    on_station_db(r, cmd_add)
    r = sub.add_parser("list", help=_("list the payment channels"))
    on_station_db(r, cmd_list, json=True)
    r = sub.add_parser("revoke", help=_("revoke a payment channel: its token stops working"))
    r.add_argument("channel_id", metavar="CHANNEL_ID")
    on_station_db(r, cmd_revoke)
    r = sub.add_parser(
        "reconcile", help=_("compare a channel's file of a day with what the station holds")
    )
    r.add_argument("--channel", required=True, metavar="ID", help=_("the channel"))
    r.add_argument("--date", required=True, type=date_arg, metavar="YYYY-MM-DD",
                   help=_("the day (Asia/Shanghai)"))  # fmt: skip
    r.add_argument("--file", required=True, metavar="F",
                   help=_("the channel's CSV: txn_id,customer_no,amount_fen,paid_at"))  # fmt: skip
    on_station_db(r, cmd_reconcile, json=True)
    r = sub.add_parser("statement", help=_("write the station's file of a channel's day"))
    r.add_argument("--channel", required=True, metavar="ID", help=_("the channel"))
    r.add_argument("--date", required=True, type=date_arg, metavar="YYYY-MM-DD",
                   help=_("the day (Asia/Shanghai)"))  # fmt: skip
    r.add_argument("--out", required=True, metavar="F", help=_("the CSV file to write"))
    r.add_argument("--force", action="store_true", help=_("replace the file if it exists"))
    on_station_db(r, cmd_statement)
