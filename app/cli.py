"""Command-line commands of the counter core (``cardvend init|demo|customers|tariffs``).

Each package registers its own commands with :func:`register`-style functions; main.py builds
the parser from them.  Handlers return the exit code; a :class:`~app.errors.CardVendError` is
turned into one clear line on stderr and exit code 1 by main.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.context import AppContext
from app.errors import DatabaseError
from app.i18n import N_, _
from app.money import format_yuan
from app.persistence.db import Database
from app.services import customers as customer_service
from app.services import demo as demo_service
from app.services import tariffs as tariff_service

Handler = Callable[[AppContext, argparse.Namespace], int]


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")


def open_db(ctx: AppContext, *, migrate: bool = False) -> Database:
    db = ctx.db
    if migrate:
        db.migrate()
    elif not db.is_initialized():
        raise DatabaseError(
            detail=N_("it has no CardVend tables yet; run 'cardvend init' (or 'cardvend demo')")
        )
    return db


def cmd_init(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx, migrate=True)
    print(
        _(
            "Database ready at revision {rev}: {url}",
            rev=db.current_revision(),
            url=db.url.render_as_string(hide_password=True),
        )
    )
    return 0


def cmd_demo(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx, migrate=True)
    r = demo_service.load_demo(db, ctx.clock)
    print(
        _(
            "Demo data loaded: {ops} operators, {plans} tariff plans, {customers} customers added "
            "(already present data kept).",
            ops=r.operators_added,
            plans=r.plans_added,
            customers=r.customers_added,
        )
    )
    print(_("Demo passwords are demo- followed by the operator id (for demonstration only)."))
    return 0


def cmd_customers_import(ctx: AppContext, args: argparse.Namespace) -> int:
    from app.i18n import get_language

    db = open_db(ctx, migrate=True)
    lang = get_language()

    def on_error(err: customer_service.RowError) -> None:
        if not args.json:
            print(
                _("line {line}: {message}", line=err.line, message=err.localized), file=sys.stderr
            )

    report = customer_service.import_csv(
        db,
        Path(args.file),
        ctx.clock,
        all_or_nothing=args.all_or_nothing,
        on_error=on_error,
        language=lang,
    )
    if args.json:
        emit_json(report.to_json())
    elif report.committed:
        print(
            _(
                "Imported {imported} of {rows} rows; {bad} bad rows were not imported.",
                imported=report.imported,
                rows=report.rows,
                bad=report.bad,
            )
        )
    else:
        print(
            _(
                "Nothing was imported: {bad} of {rows} rows are bad and all-or-nothing was asked.",
                bad=report.bad,
                rows=report.rows,
            )
        )
    if report.offices_created and not args.json:
        print(_("New offices created: {offices}", offices=", ".join(report.offices_created)))
    return 0 if report.bad == 0 else 1


def cmd_customers_find(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx)
    found = customer_service.find_customers(db, args.text, limit=args.limit)
    if args.json:
        emit_json([c.to_json() for c in found])
        return 0
    if not found:
        print(_("No customer matches {text!r}.", text=args.text))
        return 0
    for c in found:
        print(
            f"{c.customer_no}  {c.meter_no}  {c.meter_kind:6}  {c.status:6}  {c.name}  "
            f"{c.phone}  {c.address}"
        )
    return 0


def cmd_customers_show(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx)
    c = customer_service.customer_view(db, args.customer_no)
    if args.json:
        emit_json(c.to_json())
        return 0
    for key, value in c.to_json().items():
        if key in ("alarm1", "alarm2", "overdraft_limit", "credit_ceiling"):
            value = format_yuan(value)
        print(f"{key:16} {value if value is not None else ''}")
    return 0


def cmd_tariffs_list(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx)
    with db.read() as session:
        plans = tariff_service.list_plans(session, ctx.clock.now())
    if args.json:
        emit_json(plans)
        return 0
    for p in plans:
        print(f"{p['code']:10} {p['name']}")
        for v in p["versions"]:
            mark = "*" if v["in_force"] else " "
            since = dt.datetime.fromisoformat(v["effective_from"]).astimezone()
            print(
                f"   {mark} v{v['version_no']} {v['kind']:10} {_('from')} {since:%Y-%m-%d %H:%M %z}"
            )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help=_("create or upgrade the database"))
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("demo", help=_("load the demo office, operators, tariffs and customers"))
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("customers", help=_("the customer archive"))
    csub = p.add_subparsers(dest="customers_command", required=True, metavar="COMMAND")
    q = csub.add_parser("import", help=_("import customers from a UTF-8 CSV file"))
    q.add_argument("file")
    q.add_argument(
        "--all-or-nothing", action="store_true", help=_("import nothing if any row is bad")
    )
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_customers_import)
    q = csub.add_parser(
        "find", help=_("find by customer_no, meter_no, name prefix or phone suffix")
    )
    q.add_argument("text")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_customers_find)
    q = csub.add_parser("show", help=_("show one customer"))
    q.add_argument("customer_no")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_customers_show)

    p = sub.add_parser("tariffs", help=_("tariff plans and their versions"))
    tsub = p.add_subparsers(dest="tariffs_command", required=True, metavar="COMMAND")
    q = tsub.add_parser("list", help=_("list tariff plans and versions"))
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_tariffs_list)
