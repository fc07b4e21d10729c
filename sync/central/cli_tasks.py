"""``cardvend central tasks add|list|remove``: the measurement tasks (:mod:`sync.central.tasks`)
that say which customers' meters the control loop reads, how often and which registers."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from app.cli import command_group
from app.context import AppContext
from app.i18n import _
from sync.central import tasks
from sync.central.cli import on_station_db
from sync.central.cli import opened_store
from sync.central.cli import print_rows


def _every(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise tasks.BadInterval(every=text, most=tasks.MAX_EVERY_MIN) from None


def cmd_tasks_add(ctx: AppContext, args: argparse.Namespace) -> int:
    with opened_store(ctx, args) as store:
        task = tasks.add_task(
            store,
            args.name,
            _every(args.every),
            office=args.office,
            plan=args.plan,
            registers=args.registers,
        )
    print(
        _(
            "Task {name} added: its customers' meters are read every {every} minutes "
            "({registers}).",
            name=task["name"],
            every=task["every_min"],
            registers=",".join(task["registers"]),
        )
    )
    return 0


def cmd_tasks_list(ctx: AppContext, args: argparse.Namespace) -> int:
    with opened_store(ctx, args) as store:
        found = tasks.list_tasks(store)
    none = _("No measurement tasks: every controlled meter is read each run.")
    return print_rows(found, args.json, none, _task_line)


def _task_line(t: Mapping[str, Any]) -> str:
    return _(
        "{name}\toffice {office}\tplan {plan}\tevery {every} min\t{registers}",
        name=t["name"],
        office=t["office"] or _("(any)"),
        plan=t["plan"] or _("(any)"),
        every=t["every_min"],
        registers=",".join(t["registers"]),
    )


def cmd_tasks_remove(ctx: AppContext, args: argparse.Namespace) -> int:
    with opened_store(ctx, args) as store:
        tasks.remove_task(store, args.name)
    print(_("Task {name} removed.", name=args.name))
    return 0


def register(csub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tsub = command_group(
        csub, "tasks", _("measurement tasks: whose meters are read, how often, which registers")
    )
    r = tsub.add_parser("add", help=_("add a measurement task for a group of customers"))
    r.add_argument("name", metavar="NAME")
    r.add_argument(
        "--every", required=True, metavar="MINUTES", help=_("read their meters this often")
    )
    r.add_argument("--office", metavar="CODE", help=_("only this office's customers"))
    r.add_argument("--plan", metavar="PLAN", help=_("only customers on this tariff plan"))
    r.add_argument(
        "--registers",
        metavar="LIST",
        help=_("what to read, of energy,status,clock (default all; energy and clock always)"),
    )
    on_station_db(r, cmd_tasks_add)
    r = tsub.add_parser("list", help=_("list the measurement tasks"))
    on_station_db(r, cmd_tasks_list, json=True)
    r = tsub.add_parser("remove", help=_("remove a measurement task"))
    r.add_argument("name", metavar="NAME")
    on_station_db(r, cmd_tasks_remove)
