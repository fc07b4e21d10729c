"""``cardvend backup --out FILE|--scheduled`` and ``cardvend restore FILE --operator ID``.

A backup needs no sign-in (the scheduled one runs from cron or the Task Scheduler as the user
that owns the database); a restore needs an administrator's password and is audited in the
restored log. See app/services/backup.py and app/services/restore.py.
"""

from __future__ import annotations

import argparse

from app.cli import answer
from app.cli import cli_secret
from app.cli import emit_json
from app.cli import json_arg
from app.cli import open_db
from app.cli import operator_arg
from app.context import AppContext
from app.files import check_output
from app.i18n import _
from app.persistence.db import Database
from app.services import auth
from app.services import backup as backup_service
from app.services import restore as restore_service
from app.services.auth import Principal


def cmd_backup(ctx: AppContext, args: argparse.Namespace) -> int:
    db = open_db(ctx)
    if args.scheduled:
        schedule = backup_service.schedule_of(ctx.settings, ctx.paths.data_dir)
        result = backup_service.run_scheduled(
            db, schedule, office=ctx.office_code, counter_id=ctx.counter_id, clock=ctx.clock
        )
        if args.json:
            emit_json(
                {
                    "taken": str(result.taken) if result.taken else None,
                    "deleted": [str(p) for p in result.deleted],
                    "manifest": result.manifest.to_json() if result.manifest else None,
                }
            )
        elif result.taken is None:
            print(_("No backup is due (folder {folder}).", folder=schedule.folder))
        else:
            print(_("Backup written to {path}.", path=result.taken))
            for path in result.deleted:
                print(_("Old backup {path} deleted.", path=path))
        return 0
    out = check_output(args.out, force=args.force)
    manifest = backup_service.take_backup(
        db, out, office=ctx.office_code, counter_id=ctx.counter_id, clock=ctx.clock
    )
    return answer(
        args.json,
        manifest.to_json(),
        _(
            "Backup written to {path}: audit rows up to {seq}, {sales} sales.",
            path=out,
            seq=manifest.audit_seq,
            sales=manifest.rows.get("sales", 0),
        ),
    )


def cmd_restore(ctx: AppContext, args: argparse.Namespace) -> int:
    password = cli_secret(
        "CARDVEND_PASSWORD", _("Password for {operator}: ", operator=args.operator)
    )
    policy = auth.SecurityPolicy.from_settings(ctx.settings)

    def authenticate(db: Database) -> Principal:
        return auth.login(
            db, args.operator, password, counter_id=ctx.counter_id, clock=ctx.clock, policy=policy
        )

    result = restore_service.restore(
        ctx.db,
        args.file,
        office=ctx.office_code,
        clock=ctx.clock,
        authenticate=authenticate,
        force=args.force,
    )
    m = result.manifest
    last = m.last_sale["at"] if m.last_sale else "-"
    print(
        _(
            "Restored from {path} (taken {taken}): audit rows up to {seq}, last sale {last}.",
            path=args.file,
            taken=m.taken_at,
            seq=m.audit_seq,
            last=last,
        )
    )
    if result.kept_aside:
        print(_("The replaced database is kept as {aside}.", aside=result.kept_aside))
    if m.counter_id != ctx.counter_id:
        print(
            _(
                "Note: the backup was taken at counter {backup_counter}; this counter is {counter}.",
                backup_counter=m.counter_id,
                counter=ctx.counter_id,
            )
        )
    print(
        _(
            "Sales made at this counter after the backup ({taken}) are no longer in its database "
            "but may be at the central system: run 'cardvend sync reconcile' now and settle the "
            "differences.",
            taken=m.taken_at,
        )
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "backup", help=_("back up the database (the counter may keep selling meanwhile)")
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", metavar="FILE", help=_("write the backup to this file"))
    g.add_argument(
        "--scheduled",
        action="store_true",
        help=_(
            "take one into the backup folder only if due, and delete the oldest beyond the ones kept"
        ),
    )
    p.add_argument("--force", action="store_true", help=_("replace an existing file"))
    json_arg(p)
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser(
        "restore",
        help=_("replace the database by a backup (an administrator; close the window first)"),
    )
    p.add_argument("file")
    p.add_argument(
        "--force",
        action="store_true",
        help=_("restore even over a database with newer sales or audit rows"),
    )
    operator_arg(p)
    p.set_defaults(func=cmd_restore)
