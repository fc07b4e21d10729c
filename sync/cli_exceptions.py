"""The station's exceptions queue at the counter: ``cardvend exceptions list|show|assign|explain|
resolve|escalate [--json]``.

Every command signs in ``--operator`` (password from ``CARDVEND_PASSWORD`` or a prompt), who
must be a supervisor (``handle_exceptions``); the station answers for this counter's office only
(another office's exception is unknown here, like an id that does not exist).  The steps are
audited at the counter (``exception_assign`` ...; a step the station refuses as ``failed`` with its code); a refusal is a typed error
(:class:`~sync.errors.ExceptionNotFound`, :class:`~sync.errors.IllegalTransition`), one line on
stderr and exit 1 (with ``--json`` also ``{"error": CODE, "message": ...}`` on stdout).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from contextlib import closing
from typing import Any

from app.cli import answer
from app.cli import cli_login
from app.cli import command_group
from app.cli import emit_json
from app.cli import id_arg
from app.cli import open_db
from app.cli import operator_json_args
from app.context import AppContext
from app.domain import ids
from app.i18n import _
from app.localtime import local_time
from app.presenters import exceptions as exc_text
from app.services import exceptions_queue as queue
from app.services.auth import Principal
from app.settings import TIME_ZONE
from sync import contract as c
from sync.errors import ExceptionNotFound
from sync.errors import IllegalTransition
from sync.service import make_client

STATES, STEPS = exc_text.STATES, exc_text.STEPS
label = exc_text.label  # what a person reads for the station's state and step codes


def _supervisor(ctx: AppContext, args: argparse.Namespace, what: str, target: str) -> Principal:
    """The signed-in operator, who must be a supervisor; a refusal is audited first."""
    me = cli_login(ctx, args.operator)
    queue.authorize(open_db(ctx), me, ctx.clock, what, target)
    return me


def _line(item: c.ExceptionItem, tz: str) -> str:
    who = item.assignee or "-"
    return (
        f"{item.id}  {item.customer_no:12}  {item.kind:22} {label(item.state):9}  {who:10} "
        f"{local_time(item.created_at, tz)}"
    )


def cmd_list(ctx: AppContext, args: argparse.Namespace) -> int:
    _supervisor(ctx, args, "exception_list", args.state or "")
    with closing(make_client(ctx)) as client:
        page = client.list_exceptions(args.state, args.limit)
    tz = ctx.settings.value(TIME_ZONE)
    lines = [_line(item, tz) for item in page.items] or [_("No exceptions in this office's queue.")]
    return answer(args.json, page.model_dump(mode="json"), *lines)


def _print_detail(ctx: AppContext, d: c.ExceptionDetail) -> None:
    tz = ctx.settings.value(TIME_ZONE)
    print(_line(d, tz))
    print(f"  {_('detail')}: {d.detail}")
    if d.note:
        print(f"  {_('note')}: {d.note}")
    print(f"  {_('history')}:")
    for e in d.history:
        who = e.operator_id or _("station")
        where = f"@{e.counter_id}" if e.counter_id else ""
        moved = f"{label(e.from_state)} -> {label(e.to_state)}"
        note = f"  {e.note}" if e.note else ""
        print(f"    {local_time(e.at, tz)}  {label(e.action):9} {moved:22} {who}{where}{note}")


def _refused(args: argparse.Namespace, err: Exception, code: str) -> None:
    if args.json:
        message = err.localized() if hasattr(err, "localized") else str(err)
        emit_json({"error": code, "message": message})


def cmd_show(ctx: AppContext, args: argparse.Namespace) -> int:
    _supervisor(ctx, args, "exception_show", args.exception_id)
    with closing(make_client(ctx)) as client:
        try:
            detail = client.get_exception(args.exception_id)
        except ExceptionNotFound as err:
            _refused(args, err, err.code)
            raise
    if args.json:
        emit_json(detail.model_dump(mode="json"))
    else:
        _print_detail(ctx, detail)
    return 0


def cmd_step(ctx: AppContext, args: argparse.Namespace) -> int:
    """assign / explain / resolve / escalate, audited at the counter (refused steps too)."""
    me = _supervisor(ctx, args, f"exception_{args.step}", args.exception_id)
    request = queue.step_request(
        me, args.step, assignee=getattr(args, "to", None), note=args.note or ""
    )
    with closing(make_client(ctx)) as client:

        def send(req: Mapping[str, Any]) -> Mapping[str, Any]:
            step = c.ExceptionAction.model_validate(req)
            return client.act_on_exception(args.exception_id, step).model_dump(mode="json")

        try:
            done = queue.take_step(open_db(ctx), me, ctx.clock, args.exception_id, request, send)
        except (ExceptionNotFound, IllegalTransition) as err:
            _refused(args, err, err.code)
            raise
    text = _("Exception {id} is now {state}.", id=done["id"], state=label(done["state"]))
    return answer(args.json, dict(done), text)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    esub = command_group(
        sub, "exceptions", _("the station's exceptions queue of this office (supervisors)")
    )
    q = esub.add_parser("list", help=_("the office's exceptions, newest first"))
    q.add_argument("--state", choices=STATES, help=_("only this state ('open': not closed)"))
    q.add_argument("--limit", type=int, default=100, help=_("at most this many (1-500)"))
    operator_json_args(q)
    q.set_defaults(func=cmd_list)
    q = esub.add_parser("show", help=_("one exception and its history"))
    q.add_argument("exception_id", metavar="ID", type=id_arg(ids.UUID))
    operator_json_args(q)
    q.set_defaults(func=cmd_show)
    helps = {
        "assign": _("assign an exception to an operator"),
        "explain": _("close an exception with its explanation"),
        "resolve": _("close an exception as resolved"),
        "escalate": _("escalate an exception"),
    }
    for step in STEPS:
        q = esub.add_parser(step, help=helps[step])
        q.add_argument("exception_id", metavar="ID", type=id_arg(ids.UUID))
        if step == "assign":
            q.add_argument(
                "--to", required=True, type=id_arg(ids.OPERATOR_ID), help=_("who takes it")
            )
        q.add_argument(
            "--note", required=step == "explain", default="", help=_("what was found or done")
        )
        operator_json_args(q)
        q.set_defaults(func=cmd_step, step=step)
