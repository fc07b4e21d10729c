"""Sync commands: ``cardvend sync [--watch]``, ``cardvend sync status [--json]``,
``cardvend sync retry RECORD...|--all-refused --operator ID``, ``cardvend sync reconcile
[--json]`` and ``cardvend counter register --central URL --operator ID``.

Sync runs without an operator (it is the counter's own job, like the background worker in the
window); re-sending refused records is a person's decision (a supervisor or an administrator)
and is audited. Registering is an administrator's act (``--operator``, password from
CARDVEND_PASSWORD or a prompt), changes this counter's settings and is audited.  Registering
again sends the counter's current token; a counter that lost it (or moves to another office)
registers with a one-time ``--enrolment-code`` from the central system's administrator.

Exit codes: 0 done (a round whose refused records were set aside is done: the rest went up);
1 an error (one line on stderr, e.g. the central system cannot be reached); 3 ``reconcile``
found differences that need attention (missing, different, reversal, refused, invalid).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import closing

from app.cli import answer
from app.cli import cli_login
from app.cli import command_group
from app.cli import emit_json
from app.cli import id_arg
from app.cli import json_arg
from app.cli import open_db
from app.cli import operator_arg
from app.cli import stop_on_signals
from app.context import AppContext
from app.domain import ids
from app.i18n import _
from app.money import format_yuan
from app.services.sync_status import refused_records
from app.services.sync_status import requeue_refused
from app.services.sync_status import sync_status
from app.settings import SYNC_INTERVAL
from sync import cli_condition
from sync import cli_control_lift
from sync import cli_exceptions
from sync import cli_stats
from sync import contract as c
from sync.errors import AuditDiverged
from sync.errors import SyncError
from sync.service import RoundReport
from sync.service import SyncService
from sync.service import make_client
from sync.service import reconcile
from sync.service import register_counter

EXIT_DIFFERENCES = 3
REFUSED_SHOWN = 50  # refused records listed by ``sync status`` (all of them with --json)


def _service(ctx: AppContext) -> SyncService:
    open_db(ctx)
    return SyncService.from_context(ctx)


def _print_round(report: RoundReport) -> None:
    r = report.to_json()
    print(
        _(
            "sent {sent}, already there {duplicates}, refused {refused}, waiting {waiting}; "
            "pulled {tariffs} tariff versions, {new} new and {changed} changed customers, "
            "{jobs} jobs; {control} card balances reported",
            sent=r["sent"],
            duplicates=r["duplicates"],
            refused=r["refused"],
            waiting=r["waiting"],
            tariffs=r["tariffs"],
            new=r["customers_new"],
            changed=r["customers_changed"],
            jobs=r["jobs"],
            control=r["control_reports"],
        )
    )
    for sale_id in r["flagged"]:
        print(_("sale {sale_id} flagged by the central system for review", sale_id=sale_id))
    for refusal in report.push.refusals:
        print(
            _(
                "record {record} ({kind} {ref}) refused and set aside: {code}: {reason}",
                record=refusal.row_id,
                kind=refusal.kind,
                ref=refusal.ref_id,
                code=refusal.code,
                reason=refusal.reason,
            )
        )
    if report.push.refusals:
        print(_("'cardvend sync status' says what to do with refused records."))
    if report.audit_diverged:
        print(AuditDiverged(detail=report.audit_diverged).localized(), file=sys.stderr)


def cmd_sync(ctx: AppContext, args: argparse.Namespace) -> int:
    service = _service(ctx)
    if not args.watch:
        report = service.run_round()
        if args.json:
            emit_json(report.to_json())
        else:
            _print_round(report)
        return 0
    interval = args.interval or ctx.settings.value(SYNC_INTERVAL)
    with stop_on_signals("sync --watch") as stop:
        while not stop.is_set():
            try:
                report = service.run_round()
                if args.json:
                    emit_json(report.to_json())
                else:
                    _print_round(report)
            except SyncError as exc:
                print(exc.localized(), flush=True)
            stop.wait(interval)
    return 0


def cmd_status(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx)
    status = sync_status(db, ctx.clock, ctx.counter_id)
    refused = refused_records(db, ctx.counter_id, REFUSED_SHOWN) if status.refused else []
    if args.json:
        emit_json(
            {
                "counter_id": ctx.counter_id,
                **status.to_json(),
                "refused_records": [r.to_json() for r in refused],
            }
        )
        return 0
    print(_("counter: {counter}", counter=ctx.counter_id))
    print(_("online: {value}", value=_("yes") if status.online else _("no")))
    print(
        _(
            "pending: {count} ({amount} yuan)",
            count=status.pending,
            amount=format_yuan(status.pending_amount),
        )
    )
    age = status.oldest_pending_age_s
    print(_("oldest pending: {age}", age=_("none") if age is None else f"{age} s"))
    last = status.last_success.isoformat() if status.last_success else _("never")
    print(_("last success: {when}", when=last))
    print(_("last error: {error}", error=status.last_error or _("none")))
    if status.review:
        print(_("sales flagged for review: {count}", count=status.review))
    if status.audit_diverged:
        print(AuditDiverged(detail=status.audit_diverged).localized())
    if status.refused:
        print(
            _(
                "refused, set aside: {count} ({amount} yuan)",
                count=status.refused,
                amount=format_yuan(status.refused_amount),
            )
        )
        for r in refused:
            print(
                _(
                    "  record {record}: {kind} {ref}, {amount} yuan, refused {when}: "
                    "{code}: {reason}",
                    record=r.id,
                    kind=r.kind,
                    ref=r.ref_id,
                    amount=format_yuan(r.amount_fen),
                    when=r.refused_at.isoformat(timespec="seconds"),
                    code=r.code,
                    reason=r.reason,
                )
            )
            print("    " + _("what to do: {advice}", advice=r.advice))
        if status.refused > len(refused):
            print(
                _("  ... and {count} more (--json lists them)", count=status.refused - len(refused))
            )
    return 0


def cmd_retry(ctx: AppContext, args: argparse.Namespace) -> int:
    me = cli_login(ctx, args.operator)
    ids = requeue_refused(open_db(ctx), me, ctx.clock, args.records, all_refused=args.all_refused)
    print(
        _(
            "{count} refused records put back in the queue; they are sent at the next sync.",
            count=len(ids),
        )
    )
    return 0


def cmd_reconcile(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx)
    with closing(make_client(ctx)) as client:
        report = reconcile(db, client, counter_id=ctx.counter_id, office_code=ctx.office_code)
    summary = _(
        "local {local}, central {central}, matched {matched}, differences {count}",
        local=report.local,
        central=report.central,
        matched=report.matched,
        count=len(report.differences),
    )
    rows = [f"{d.kind}\t{d.sale_id}\t{d.detail}" for d in report.differences]
    answer(args.json, report.to_json(), summary, *rows)
    return EXIT_DIFFERENCES if report.serious else 0


def cmd_register(ctx: AppContext, args: argparse.Namespace) -> int:
    open_db(ctx)
    admin = cli_login(ctx, args.operator)
    key = args.enrolment_key or os.environ.get("CARDVEND_ENROLMENT_KEY")
    code = args.enrolment_code or os.environ.get("CARDVEND_ENROLMENT_CODE")
    registered = register_counter(
        ctx, args.central, key, args.name or "", operator=admin, enrolment_code=code or None
    )
    print(registered_line(registered, args.central))
    return 0


def registered_line(answer: c.RegisterResponse, url: str) -> str:
    """What registering with the central system at ``url`` says (``counter register`` and the
    window's administration page)."""
    return _(
        "counter {counter} of office {office} registered with {url}",
        counter=answer.counter_id,
        office=answer.office_code,
        url=url,
    )


def cmd_control_status(ctx: AppContext, args: argparse.Namespace) -> int:
    """A customer's charge control as the station holds it (the user balance view)."""
    with closing(make_client(ctx)) as client:
        status = client.control_status(args.customer_no)
    return answer(args.json, status.model_dump(mode="json"), cli_control_lift.control_line(status))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sync", help=_("sync with the central system (one round)"))
    p.add_argument("--watch", action="store_true", help=_("keep syncing until stopped"))
    p.add_argument("--interval", type=int, help=_("seconds between rounds with --watch"))
    json_arg(p)
    p.set_defaults(func=cmd_sync)
    ssub = p.add_subparsers(dest="sync_command", metavar="COMMAND")
    q = ssub.add_parser("status", help=_("online, pending sales, last success and error"))
    json_arg(q)
    q.set_defaults(func=cmd_status)
    q = ssub.add_parser(
        "retry", help=_("re-send refused records once the cause is fixed (audited)")
    )
    q.add_argument(
        "records", nargs="*", metavar="RECORD", help=_("record ids (or sale ids) to re-send")
    )
    q.add_argument("--all-refused", action="store_true", help=_("every refused record"))
    operator_arg(
        q, _("a supervisor or administrator (password from CARDVEND_PASSWORD or a prompt)")
    )
    q.set_defaults(func=cmd_retry)
    q = ssub.add_parser(
        "reconcile", help=_("compare this counter's sales with the central system's")
    )
    json_arg(q)
    q.set_defaults(func=cmd_reconcile)

    csub = command_group(sub, "counter", _("this counter"))
    q = csub.add_parser("register", help=_("register with the central system"))
    q.add_argument("--central", required=True, help=_("the central system's URL"))
    q.add_argument("--enrolment-key", help=_("enrolment key (or set CARDVEND_ENROLMENT_KEY)"))
    q.add_argument(
        "--enrolment-code",
        help=_(
            "one-time enrolment code from the central system's administrator, for a counter "
            "registered before (or set CARDVEND_ENROLMENT_CODE)"
        ),
    )
    q.add_argument("--name", help=_("a name for this counter"))
    operator_arg(
        q, _("the administrator who registers (password from CARDVEND_PASSWORD or a prompt)")
    )
    q.set_defaults(func=cmd_register)

    ksub = command_group(sub, "control", _("charge control of remote fee-control customers"))
    q = ksub.add_parser(
        "status", help=_("a customer's control state, balance and relay, from the station")
    )
    q.add_argument("customer_no", metavar="CUSTOMER_NO", type=id_arg(ids.CUSTOMER_NO))
    json_arg(q)
    q.set_defaults(func=cmd_control_status)
    cli_condition.register(ksub)  # cardvend control condition
    cli_exceptions.register(sub)  # cardvend exceptions
    cli_control_lift.register(ksub)  # cardvend control lift (approved) | resume
    cli_stats.register(sub)  # cardvend stats
