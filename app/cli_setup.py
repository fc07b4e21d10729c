"""``cardvend setup``: the first-run set-up without the window, for scripts.

The same steps as the window's wizard (app/services/setup.py): office and counter, database,
card reader, key provider, printer, central system, first administrator. Secrets come from the
environment or a prompt, never an argument: the keystore passphrase from
CARDVEND_KEYSTORE_PASSPHRASE, the administrator's password from CARDVEND_PASSWORD, the enrolment
key from CARDVEND_ENROLMENT_KEY. Each step that fails says so in one line (exit 1); nothing is
configured until every step passed.
"""

from __future__ import annotations

import argparse
import os

from app.cli import cli_secret
from app.context import AppContext
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.services import setup
from app.settings import PRINTER


def plan_from_args(ctx: AppContext, args: argparse.Namespace) -> setup.SetupPlan:
    plan = setup.SetupPlan(
        office_code=args.office,
        counter_id=args.counter,
        db_url=args.setup_db or ctx.db_url_override or "",
        card_reader=args.reader or "",
        printer=args.printer,
        printer_name=args.printer_name or "",
        printer_port=args.printer_port or "",
        central_url=args.central or "",
        enrolment_key=args.enrolment_key or os.environ.get("CARDVEND_ENROLMENT_KEY", ""),
        enrolment_code=args.enrolment_code or os.environ.get("CARDVEND_ENROLMENT_CODE", ""),
        admin_id=args.admin,
        admin_name=args.admin_name or "",
        language=args.lang,
    )
    setup.check_office(plan)  # the cheap check first: no prompt for a wrong office code
    if args.psam_reader:
        plan.key_provider, plan.psam_reader = "psam", args.psam_reader
    else:
        plan.keystore_source = args.keystore
        plan.keystore_passphrase = cli_secret(
            "CARDVEND_KEYSTORE_PASSPHRASE", _("Keystore passphrase: ")
        )
    plan.admin_password = cli_secret(
        "CARDVEND_PASSWORD",
        _("Password for the first administrator {operator}: ", operator=args.admin),
        confirm=True,
    )
    return plan


def cmd_setup(ctx: AppContext, args: argparse.Namespace) -> int:
    if ctx.settings.is_configured():
        raise ValidationError(
            N_("this counter is set up already ({path}); remove that file to set it up again"),
            path=str(ctx.settings.path),
        )
    plan = plan_from_args(ctx, args)
    probe = ctx.setup_probe
    steps = (
        (setup.OFFICE, lambda: setup.check_office(plan)),
        (setup.DATABASE, lambda: setup.check_database(plan, ctx.paths)),
        (setup.READER, lambda: setup.check_reader(plan, probe)),
        (setup.KEYS, lambda: setup.check_keys(plan, probe)),
        (setup.PRINTING, lambda: setup.check_printer(plan)),
        (setup.CENTRAL, lambda: setup.check_central(plan)),
        (setup.ADMIN, lambda: setup.check_admin(plan, ctx.settings)),
    )
    for step, check in steps:
        check()
        print(_("{step}: ok", step=translate(step)))
    if args.test_read:
        print(setup.test_read(plan, probe))
    if args.test_print:
        print(setup.test_print(plan, probe, ctx.clock))
    result = setup.apply(plan, ctx.paths, ctx.settings, ctx.clock, probe)
    if result.registered:
        print(_("Registered with the central system as {counter}.", counter=result.registered))
    print(_("Counter set up; settings written to {path}.", path=str(result.settings_file)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "setup",
        help=_("first-run set-up: office, database, reader, keys, printer, central, admin"),
    )
    p.add_argument("--office", required=True, help=_("the office code"))
    p.add_argument("--counter", required=True, help=_("this counter's id"))
    p.add_argument(
        "--db",
        dest="setup_db",
        metavar="URL",
        help=_("the office's PostgreSQL URL; default: a SQLite file in the data folder"),
    )
    p.add_argument("--reader", help=_("PC/SC reader of the user-card slot"))
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument(
        "--keystore",
        metavar="FILE",
        help=_(
            "keystore file to import (passphrase from CARDVEND_KEYSTORE_PASSPHRASE or a prompt)"
        ),
    )
    keys.add_argument("--psam-reader", metavar="NAME", help=_("PC/SC reader holding the PSAM"))
    p.add_argument("--printer", default="pdf", choices=PRINTER.choices)
    p.add_argument("--printer-name", help=_("system printer (CUPS queue)"))
    p.add_argument("--printer-port", help=_("serial port of the ESC/POS printer"))
    p.add_argument("--central", metavar="URL", help=_("the central system's URL"))
    p.add_argument("--enrolment-key", help=_("enrolment key (or set CARDVEND_ENROLMENT_KEY)"))
    p.add_argument(
        "--enrolment-code",
        help=_("one-time enrolment code (or set CARDVEND_ENROLMENT_CODE)"),
    )
    p.add_argument(
        "--admin",
        required=True,
        metavar="ID",
        help=_("the first administrator (password from CARDVEND_PASSWORD or a prompt)"),
    )
    p.add_argument("--admin-name", help=_("the administrator's name"))
    p.add_argument("--test-read", action="store_true", help=_("read the card in the reader"))
    p.add_argument("--test-print", action="store_true", help=_("print a test receipt"))
    p.set_defaults(func=cmd_setup)
