"""``cardvend central stats [--region R] [--from D --to D] [--plan P] [--state S] [--json]``:
the station's charge-control statistics for any region (``all`` by default, ``province:NAME``,
``city:NAME`` or ``city:PROVINCE/NAME``, an office code), read straight from its database."""

from __future__ import annotations

import argparse

from app.cli import answer
from app.context import AppContext
from app.i18n import _
from app.presenters.stats import CONTROL_STATES
from app.presenters.stats import date_arg
from app.presenters.stats import stats_lines
from sync.central import stats
from sync.central.cli import on_station_db
from sync.central.cli import opened_store
from sync.central.cli import print_json


def cmd_central_stats(ctx: AppContext, args: argparse.Namespace) -> int:
    with opened_store(ctx, args) as store:
        found = stats.for_region(
            store, args.region, args.date_from, args.date_to, args.plan, args.state
        )
    return answer(args.json, found, *stats_lines(found), dump=print_json)


def register(csub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = csub.add_parser("stats", help=_("charge-control statistics by region"))
    q.add_argument(
        "--region",
        metavar="R",
        help=_("all (the default), province:NAME, city:NAME, city:PROVINCE/NAME or an office code"),
    )
    q.add_argument("--from", dest="date_from", type=date_arg, metavar="D", help=_("first day"))
    q.add_argument("--to", dest="date_to", type=date_arg, metavar="D", help=_("last day"))
    q.add_argument("--plan", metavar="P", help=_("only customers on this tariff plan"))
    q.add_argument(
        "--state", choices=CONTROL_STATES, help=_("only customers in this control state")
    )
    on_station_db(q, cmd_central_stats, json=True)
