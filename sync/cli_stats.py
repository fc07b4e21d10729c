"""``cardvend stats [--region CODE] [--from D --to D] [--plan P] [--state S] [--json]``: the
station's charge-control statistics for this counter's office, or the city or province it is
in (the station refuses any other region).  Exit 1 with one line when the station refuses or
cannot be reached."""

from __future__ import annotations

import argparse
from contextlib import closing

from app.cli import answer
from app.cli import json_arg
from app.context import AppContext
from app.errors import ValidationError
from app.i18n import _
from app.presenters.stats import CONTROL_STATES
from app.presenters.stats import date_arg
from app.presenters.stats import stats_lines
from sync.service import make_client


def cmd_stats(ctx: AppContext, args: argparse.Namespace) -> int:
    if args.date_from and args.date_to and args.date_from > args.date_to:
        raise ValidationError(
            detail=_(
                "--from {date_from} is after --to {date_to}",
                date_from=args.date_from.isoformat(),
                date_to=args.date_to.isoformat(),
            )
        )
    with closing(make_client(ctx)) as client:
        found = client.stats(
            region=args.region,
            date_from=args.date_from,
            date_to=args.date_to,
            plan=args.plan,
            state=args.state,
        )
    data = found.model_dump(mode="json")
    return answer(args.json, data, *stats_lines(data))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "stats", help=_("charge-control statistics of this office, its city or its province")
    )
    p.add_argument(
        "--region",
        metavar="CODE",
        help=_(
            "this office (the default), city or province (the ones this office is in), or "
            "city:NAME, province:NAME"
        ),
    )
    p.add_argument("--from", dest="date_from", type=date_arg, metavar="D", help=_("first day"))
    p.add_argument("--to", dest="date_to", type=date_arg, metavar="D", help=_("last day"))
    p.add_argument("--plan", metavar="P", help=_("only customers on this tariff plan"))
    p.add_argument(
        "--state", choices=CONTROL_STATES, help=_("only customers in this control state")
    )
    json_arg(p)
    p.set_defaults(func=cmd_stats)
