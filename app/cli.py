"""Command-line commands of the counter core (``cardvend init|demo|customers|tariffs``).

Each package registers its own commands with :func:`register`-style functions; main.py builds
the parser from them.  Handlers return the exit code; a :class:`~app.errors.CardVendError` is
turned into one clear line on stderr and exit code 1 by main.py.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from app.context import AppContext
from app.domain import ids
from app.domain.audit import AuditAction
from app.domain.operators import Role
from app.domain.permissions import Action
from app.errors import CardVendError
from app.errors import Conflict
from app.errors import DatabaseError
from app.errors import ValidationError
from app.files import check_output
from app.files import output_errors
from app.files import save_output
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.localtime import local_time
from app.money import format_yuan
from app.persistence.db import Database
from app.services import audit as audit_service
from app.services import auth
from app.services import customers as customer_service
from app.services import demo as demo_service
from app.services import tariffs as tariff_service
from app.services.auth import Principal
from app.settings import COUNTER_ID
from app.settings import TIME_ZONE

Handler = Callable[[AppContext, argparse.Namespace], int]

log = logging.getLogger(__name__)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")


def answer(as_json: bool, data: Any, *lines: str, dump: Callable[[Any], None] = emit_json) -> int:
    """A command's answer and its exit code 0: ``data`` as JSON (``--json``; ``dump`` writes
    it), else ``lines``, one a line."""
    if as_json:
        dump(data)
    else:
        print_lines(lines)
    return 0


def save_after(path: str, render: Callable[[], bytes], failed: str, **params: object) -> str | None:
    """Save what ``render`` makes to ``path`` after the action it belongs to is done, and say
    where (``path``).  The action stands whatever happens here: a failure is the message
    ``failed`` (its ``detail`` and ``params`` filled in) on stderr, and None."""
    try:
        save_output(path, render())
    except Exception as exc:  # the action is done; what shows it is not saved
        detail = exc.localized() if isinstance(exc, CardVendError) else str(exc)
        print(translate(failed).format(detail=detail, **params), file=sys.stderr)
        return None
    return str(path)


def emit_fields(data: Mapping[str, Any], *, as_json: bool, width: int, none: str = "") -> None:
    """``data`` as JSON, or one ``key value`` line a field, the keys padded to ``width`` and
    ``none`` standing for a value that is None."""
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        print(f"{key:{width}} {none if value is None else value}")


def command_group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """``cardvend NAME COMMAND``: a command made of subcommands, which are added to what this
    returns; the one chosen is ``args.NAME_command``."""
    group = sub.add_parser(name, help=help_text)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def id_arg(fmt: ids.IdFormat) -> Callable[[str], str]:
    """An argparse ``type`` for an argument that is an id: a malformed one (``t01\\n``,
    full-width digits) is a usage error (exit 2) whose line says what the id must look like."""

    def parse(text: str) -> str:
        try:
            return fmt.check(text)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(exc.localized()) from None

    parse.__name__ = str(fmt.name)
    return parse


@contextmanager
def stop_on_signals(what: str) -> Iterator[threading.Event]:
    """An event that SIGINT or SIGTERM sets, for a command that runs until it is stopped
    (``what`` names it in the log); the previous handlers come back after the block.  Off the
    main thread, where Python takes no signal handlers, only the caller sets it."""
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("%s: signal %d, stopping", what, signum)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def open_db(ctx: AppContext, *, migrate: bool = False) -> Database:
    db = ctx.db
    if migrate:
        db.migrate()
    elif not db.is_initialized():
        raise DatabaseError(
            detail=N_("it has no CardVend tables yet; run 'cardvend init' (or 'cardvend demo')")
        )
    else:
        db.check_revision()  # a newer CardVend's database is not used by this one
    return db


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

    admin = cli_login(ctx, args.operator)
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
        actor=admin,
        all_or_nothing=args.all_or_nothing,
        on_error=on_error,
        language=lang,
    )
    if report.committed:
        lines = [
            _(
                "Imported {imported} of {rows} rows; {bad} bad rows were not imported.",
                imported=report.imported,
                rows=report.rows,
                bad=report.bad,
            )
        ]
    else:
        lines = [
            _(
                "Nothing was imported: {bad} of {rows} rows are bad and all-or-nothing was asked.",
                bad=report.bad,
                rows=report.rows,
            )
        ]
    if report.offices_created:
        lines.append(_("New offices created: {offices}", offices=", ".join(report.offices_created)))
    answer(args.json, report.to_json(), *lines)
    return 0 if report.bad == 0 else 1


def cmd_customers_find(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx)
    found = customer_service.find_customers(db, args.text, limit=args.limit)
    lines = [
        f"{c.customer_no}  {c.meter_no}  {c.meter_kind:6}  {c.status:6}  {c.name}  "
        f"{c.phone}  {c.address}"
        for c in found
    ]
    none = _("No customer matches {text!r}.", text=args.text)
    return answer(args.json, [c.to_json() for c in found], *(lines or [none]))


def cmd_customers_show(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx)
    data = customer_service.customer_view(db, args.customer_no).to_json()
    if not args.json:
        yuan = ("alarm1", "alarm2", "overdraft_limit", "credit_ceiling")
        data = {k: format_yuan(v) if k in yuan else v for k, v in data.items()}
    emit_fields(data, as_json=args.json, width=16)
    return 0


def cmd_tariffs_list(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx)
    with db.read() as session:
        plans = tariff_service.list_plans(session, ctx.clock.now())
    tz = ctx.settings.value(TIME_ZONE)
    if args.json:
        emit_json(plans)
        return 0
    for p in plans:
        print(f"{p['code']:10} {p['name']}")
        for v in p["versions"]:
            mark = "*" if v["in_force"] else " "
            since = local_time(v["effective_from"], tz, "%Y-%m-%d %H:%M %z")
            print(f"   {mark} v{v['version_no']} {v['kind']:10} {_('from')} {since}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from app import cli_approvals  # it builds on this module's helpers

    register_security(sub)
    cli_approvals.register(sub)
    p = sub.add_parser("init", help=_("create or upgrade the database and the first administrator"))
    p.add_argument("--admin-id", default="admin", help=_("id of the first administrator"))
    p.add_argument("--admin-name", default="Administrator")
    p.add_argument(
        "--counter-id",
        metavar="ID",
        help=_(
            "this counter's id, unique among the central system's counters; default: the one "
            "in the settings, or a new random one (C-XXXXXXXX)"
        ),
    )
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("demo", help=_("load the demo office, operators, tariffs and customers"))
    p.set_defaults(func=cmd_demo)

    csub = command_group(sub, "customers", _("the customer archive"))
    q = csub.add_parser(
        "import", help=_("import customers from a UTF-8 CSV file (an administrator)")
    )
    q.add_argument("file")
    q.add_argument(
        "--all-or-nothing", action="store_true", help=_("import nothing if any row is bad")
    )
    operator_json_args(q)
    q.set_defaults(func=cmd_customers_import)
    q = csub.add_parser(
        "find", help=_("find by customer_no, meter_no, name prefix or phone suffix")
    )
    q.add_argument("text")
    q.add_argument("--limit", type=int, default=50)
    json_arg(q)
    q.set_defaults(func=cmd_customers_find)
    q = csub.add_parser("show", help=_("show one customer"))
    q.add_argument("customer_no", type=id_arg(ids.CUSTOMER_NO))
    json_arg(q)
    q.set_defaults(func=cmd_customers_show)

    tsub = command_group(sub, "tariffs", _("tariff plans and their versions"))
    q = tsub.add_parser("list", help=_("list tariff plans and versions"))
    json_arg(q)
    q.set_defaults(func=cmd_tariffs_list)


# --------------------------------------------------------------------------- security


def cli_secret(env: str, prompt: str, *, confirm: bool = False) -> str:
    """A password from the environment or, at a terminal, from a prompt (never an argument)."""
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise ValidationError(
            N_("no password given: set {env} or run the command at a terminal"), env=env
        )
    value = getpass.getpass(prompt)
    if confirm and getpass.getpass(_("Repeat: ")) != value:
        raise ValidationError(N_("the two passwords differ"))
    return value


def cli_login(
    ctx: AppContext, operator_id: str | None, *, env: str = "CARDVEND_PASSWORD"
) -> Principal:
    """Sign in the operator named by ``--operator`` (password from CARDVEND_PASSWORD or a
    prompt); the login is audited like one at the counter window."""
    if not operator_id:
        raise ValidationError(N_("this command needs --operator ID"))
    password = cli_secret(env, _("Password for {operator}: ", operator=operator_id))
    return auth.login(
        open_db(ctx),
        operator_id,
        password,
        counter_id=ctx.counter_id,
        clock=ctx.clock,
        policy=auth.SecurityPolicy.from_settings(ctx.settings),
    )


def derive_counter_id() -> str:
    """A counter id for a new install: random, so that installs do not all claim the same one
    (the central system refuses an id another counter holds)."""
    return "C-" + secrets.token_hex(4).upper()


def _init_counter_id(ctx: AppContext, wanted: str | None) -> None:
    """``--counter-id``, or a derived id when the settings name none; saved in the settings."""
    settings = ctx.settings
    if wanted is not None:
        counter_id = ids.COUNTER_ID.check(wanted, "--counter-id")
    elif settings.is_set(COUNTER_ID.key):
        return
    else:
        counter_id = derive_counter_id()
    if settings.is_set(COUNTER_ID.key) and settings.value(COUNTER_ID) == counter_id:
        return
    settings.set(COUNTER_ID.key, counter_id)
    settings.save(settings.path or ctx.paths.settings_file)
    print(_("This counter's id: {counter}", counter=counter_id))


def cmd_init(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx, migrate=True)
    print(
        _(
            "Database ready at revision {rev}: {url}",
            rev=db.current_revision(),
            url=db.url.render_as_string(hide_password=True),
        )
    )
    _init_counter_id(ctx, args.counter_id)
    if auth.admin_exists(db):
        return 0
    password = os.environ.get("CARDVEND_ADMIN_PASSWORD")
    if not password and sys.stdin.isatty():
        password = cli_secret(
            "CARDVEND_ADMIN_PASSWORD",
            _("Password for the first administrator {operator}: ", operator=args.admin_id),
            confirm=True,
        )
    if not password:
        print(
            _(
                "No administrator exists yet. Run 'cardvend init' again at a terminal, or with "
                "CARDVEND_ADMIN_PASSWORD set, to create the first one."
            )
        )
        return 0
    try:
        auth.create_first_admin(
            db,
            args.admin_id,
            args.admin_name,
            password,
            counter_id=ctx.counter_id,
            clock=ctx.clock,
            policy=auth.SecurityPolicy.from_settings(ctx.settings),
        )
    except Conflict:
        if auth.admin_exists(db):  # another counter's init created it meanwhile
            return 0
        raise
    print(_("Administrator {operator} created.", operator=args.admin_id))
    return 0


def cmd_operators_add(ctx: AppContext, args: argparse.Namespace) -> int:
    admin = cli_login(ctx, args.operator)
    password = cli_secret(
        "CARDVEND_NEW_PASSWORD", _("Password for {operator}: ", operator=args.id), confirm=True
    )
    auth.add_operator(
        open_db(ctx),
        admin,
        args.id,
        args.name or args.id,
        Role(args.role),
        password,
        ctx.clock,
        office=ctx.office_code,
    )
    print(_("Operator {operator} added as {role}.", operator=args.id, role=args.role))
    return 0


def cmd_operators_list(ctx: AppContext, args: argparse.Namespace) -> int:
    admin = cli_login(ctx, args.operator)
    ops = auth.list_operators(open_db(ctx), admin, ctx.clock)
    if args.json:
        emit_json(
            [
                {
                    "id": o.id,
                    "name": o.name,
                    "role": o.role,
                    "disabled": o.disabled,
                    "locked_until": o.locked_until.isoformat() if o.locked_until else None,
                }
                for o in ops
            ]
        )
        return 0
    tz = ctx.settings.value(TIME_ZONE)
    for o in ops:
        state = " ".join(
            t for t in (_("disabled") if o.disabled else "", auth.locked_text(o, tz)) if t
        )
        print(f"{o.id:10} {o.role:11} {o.name}  {state}")
    return 0


def cmd_operators_enable(ctx: AppContext, args: argparse.Namespace) -> int:
    admin = cli_login(ctx, args.operator)
    disable = args.operators_command == "disable"
    auth.set_disabled(open_db(ctx), admin, args.id, disable, ctx.clock)
    if disable:
        print(_("Operator {operator} disabled.", operator=args.id))
    else:
        print(_("Operator {operator} enabled.", operator=args.id))
    return 0


def cmd_operators_passwd(ctx: AppContext, args: argparse.Namespace) -> int:
    me = cli_login(ctx, args.operator)
    target = args.id or me.operator_id
    new = cli_secret(
        "CARDVEND_NEW_PASSWORD", _("New password for {operator}: ", operator=target), confirm=True
    )
    if target == me.operator_id:
        old = cli_secret("CARDVEND_PASSWORD", _("Current password: "))
        auth.change_password(open_db(ctx), me, old, new, ctx.clock)
    else:
        auth.reset_password(open_db(ctx), me, target, new, ctx.clock)
    print(_("Password of {operator} changed.", operator=target))
    return 0


def cmd_audit_verify(ctx: AppContext, args: argparse.Namespace) -> int:
    me = cli_login(ctx, args.operator)
    me.authorize(Action.VERIFY_AUDIT, ctx.clock)
    db = open_db(ctx)
    result = audit_service.verify(db)
    with db.write() as session:
        audit_service.Actor.of(me, ctx.clock).record(
            session,
            AuditAction.AUDIT_VERIFY,
            result="ok" if result.ok else "failed",
            detail={"rows": result.rows, "first_bad_seq": result.first_bad_seq},
        )
    if args.json:
        emit_json(result.to_json())
    elif result.ok:
        print(
            _(
                "The audit log is intact: {rows} rows, last hash {hash}.",
                rows=result.rows,
                hash=result.last_hash,
            )
        )
    else:
        print(
            audit_service.AuditVerifyFailed(result).localized(),
            file=sys.stderr,
        )
    return 0 if result.ok else 1


def cmd_audit_export(ctx: AppContext, args: argparse.Namespace) -> int:
    me = cli_login(ctx, args.operator)
    me.authorize(Action.VERIFY_AUDIT, ctx.clock)
    db = open_db(ctx)
    out = check_output(args.out, force=True)  # an export is made again at will
    with output_errors(out):
        rows = audit_service.export_csv(db, out)
    with db.write() as session:
        audit_service.Actor.of(me, ctx.clock).record(
            session, AuditAction.AUDIT_EXPORT, args.out[-120:], detail={"rows": rows}
        )
    print(_("{rows} audit rows written to {path}.", rows=rows, path=args.out))
    return 0


def operator_arg(q: argparse.ArgumentParser, help_text: str | None = None) -> None:
    """``--operator ID``: who runs the command (signed in by :func:`cli_login`); ``help_text``
    says who may, where only some may."""
    q.add_argument(
        "--operator",
        required=True,
        type=id_arg(ids.OPERATOR_ID),
        help=help_text or _("who runs the command (password from CARDVEND_PASSWORD or a prompt)"),
    )


def card_args(q: argparse.ArgumentParser) -> None:
    """``--reader NAME`` or ``--image FILE``: the card a command works on."""
    g = q.add_mutually_exclusive_group()
    g.add_argument("--reader", help=_("PC/SC reader name"))
    g.add_argument("--image", help=_("an emulated card image file instead of a reader"))


def json_arg(q: argparse.ArgumentParser) -> None:
    """``--json``: the command's answer as JSON (for scripts)."""
    q.add_argument("--json", action="store_true", help=_("print JSON"))


def operator_json_args(q: argparse.ArgumentParser) -> None:
    """``--operator ID`` and ``--json``: who runs the command, and its answer as JSON."""
    operator_arg(q)
    json_arg(q)


def approver_arg(q: argparse.ArgumentParser, *, required: bool) -> None:
    """``--approver ID``: the supervisor who signs here (see ``approve_here``)."""
    q.add_argument(
        "--approver",
        required=required,
        type=id_arg(ids.OPERATOR_ID),
        help=_(
            "the supervisor who approves here (password from CARDVEND_APPROVER_PASSWORD "
            "or a prompt)"
        ),
    )


def print_lines(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)


def register_security(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    osub = command_group(sub, "operators", _("operators of this office"))
    q = osub.add_parser(
        "add", help=_("add an operator (password from CARDVEND_NEW_PASSWORD or a prompt)")
    )
    q.add_argument("id", type=id_arg(ids.OPERATOR_ID))
    q.add_argument("--name")
    q.add_argument("--role", required=True, choices=[r.value for r in Role])
    operator_arg(q)
    q.set_defaults(func=cmd_operators_add)
    q = osub.add_parser("list", help=_("list the operators"))
    operator_json_args(q)
    q.set_defaults(func=cmd_operators_list)
    for name, text in (("disable", _("disable an operator")), ("enable", _("enable an operator"))):
        q = osub.add_parser(name, help=text)
        q.add_argument("id", type=id_arg(ids.OPERATOR_ID))
        operator_arg(q)
        q.set_defaults(func=cmd_operators_enable)
    q = osub.add_parser("passwd", help=_("change your password, or (admin) set another's"))
    q.add_argument("id", nargs="?", type=id_arg(ids.OPERATOR_ID))
    operator_arg(q)
    q.set_defaults(func=cmd_operators_passwd)

    asub = command_group(sub, "audit", _("the tamper-evident audit log"))
    q = asub.add_parser("verify", help=_("check the hash chain of the whole log"))
    operator_json_args(q)
    q.set_defaults(func=cmd_audit_verify)
    q = asub.add_parser("export", help=_("export the log as CSV"))
    q.add_argument("--out", required=True)
    operator_arg(q)
    q.set_defaults(func=cmd_audit_export)
