"""The technician's management-card jobs: ``cardvend jobs list|show|take|release|program|return``
and the check card (``jobs check-program``, ``jobs check-read``).

Every command signs in ``--operator`` (a technician; password from ``CARDVEND_PASSWORD`` or a
prompt) and works on this counter's office's jobs (app/services/jobs.py).  The card is the one in
``--reader NAME`` (or the configured reader) or an emulated card image ``--image FILE``.
``program`` shows what it writes (the job's content from the job and the archive) before it
writes; ``--dry-run`` only shows it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import Concatenate
from typing import ParamSpec
from typing import TypeVar

from app.cli import answer
from app.cli import card_args
from app.cli import cli_login
from app.cli import command_group
from app.cli import emit_json
from app.cli import id_arg
from app.cli import open_db
from app.cli import operator_json_args
from app.cli_sales import card_terminal
from app.clock import Clock
from app.context import AppContext
from app.domain import ids
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.persistence.db import Database
from app.ports import CardTerminal
from app.services import jobs
from app.services.auth import Principal
from app.settings import JOB_CARD_OVERDUE_DAYS
from app.settings import UTILITY_CODE

P = ParamSpec("P")
T = TypeVar("T")

JOB_ID = ids.IdFormat(N_("job id"), ids.UUID.pattern, ids.UUID.rule)


def _overdue_days(ctx: AppContext) -> int:
    return int(ctx.settings.get(JOB_CARD_OVERDUE_DAYS.key))


def _utility(ctx: AppContext) -> str:
    return str(ctx.settings.get(UTILITY_CODE.key))


def _preview(ctx: AppContext, db: Database, actor: Principal, job_id: str) -> jobs.CardPlan:
    """The card content of this office's job ``job_id`` (what ``program`` writes)."""
    return jobs.preview(
        db, actor, ctx.clock, job_id, office_code=ctx.office_code, utility_code=_utility(ctx)
    )


def _line(v: jobs.JobView) -> str:
    what = jobs.what_to_set(v)
    state = jobs.state_text(v)
    flag = " " + _("OVERDUE") if v.overdue else ""
    holder = v.taken_by or "-"
    return (
        f"{v.id}  {translate(jobs.KIND_NAMES.get(v.kind, v.kind))}  {v.customer_no} "
        f"{v.customer_name or ''}  {_('meter')} {v.meter_no}  [{what}]  {holder}  {state}{flag}"
    )


def _print_fields(data: Mapping[str, Any], prefix: str) -> None:
    """One line a field: ``prefix``, the key padded to 20, the value."""
    for key, value in data.items():
        print(f"{prefix}{key:20} {value}")


def _show(v: jobs.JobView) -> None:
    print(_line(v))
    if v.result:
        print(
            "  "
            + _(
                "Result: {result} {reason}",
                result=translate(jobs.RESULT_NAMES.get(v.result, v.result)),
                reason=v.result_reason,
            )
        )
    if v.write_back:
        _print_fields(v.write_back, "  write_back.")


def cmd_list(ctx: AppContext, args: argparse.Namespace) -> int:
    actor = cli_login(ctx, args.operator)
    views = jobs.list_jobs(
        open_db(ctx),
        actor,
        ctx.clock,
        office_code=ctx.office_code,
        overdue_days=_overdue_days(ctx),
        include_closed=args.all,
    )
    if args.mine:
        views = jobs.my_jobs(views, actor.operator_id)
    if args.json:
        emit_json([v.to_json() for v in views])
        return 0
    if not views:
        print(_("No jobs."))
    mine = jobs.my_jobs(views, actor.operator_id)
    others = [v for v in views if v not in mine]
    if mine:
        print(_("My jobs:"))
        for v in mine:
            print("  " + _line(v))
    if others:
        print(_("Open jobs of office {office}:", office=ctx.office_code))
        for v in others:
            print("  " + _line(v))
    return 0


def cmd_show(ctx: AppContext, args: argparse.Namespace) -> int:
    actor = cli_login(ctx, args.operator)
    db = open_db(ctx)
    view = jobs.get_job(
        db,
        actor,
        ctx.clock,
        args.job,
        office_code=ctx.office_code,
        overdue_days=_overdue_days(ctx),
    )
    data: dict[str, Any] = view.to_json()
    if view.status == "open":
        try:
            data["card_content"] = _preview(ctx, db, actor, args.job).to_json()
        except jobs.JobContentMissing as exc:
            data["card_content_problem"] = exc.localized()
    if args.json:
        emit_json(data)
        return 0
    _show(view)
    if "card_content" in data:
        print("  " + _("Card content:"))
        _print_fields(data["card_content"], "    ")
    if "card_content_problem" in data:
        print("  " + data["card_content_problem"])
    return 0


def _hold(step: Any, done: str) -> Any:
    """``jobs take`` / ``jobs release``: the service step and the line that says it is done."""

    def cmd(ctx: AppContext, args: argparse.Namespace) -> int:
        actor = cli_login(ctx, args.operator)
        view = step(open_db(ctx), actor, ctx.clock, args.job, office_code=ctx.office_code)
        return answer(args.json, view.to_json(), translate(done).format(job_id=view.id))

    return cmd


cmd_take = _hold(jobs.take, N_("Job {job_id} is yours until you return or release it."))
cmd_release = _hold(jobs.release, N_("Job {job_id} is released to the office."))


def cmd_program(ctx: AppContext, args: argparse.Namespace) -> int:
    actor = cli_login(ctx, args.operator)
    db = open_db(ctx)
    plan = _preview(ctx, db, actor, args.job)
    if not args.json:
        print(_("Card content of job {job_id}:", job_id=args.job))
        _print_fields(plan.to_json(), "  ")
    if args.dry_run:
        if args.json:
            emit_json({"card_content": plan.to_json(), "written": False})
        return 0
    with card_terminal(ctx, args) as terminal:
        view = jobs.program(
            db,
            actor,
            ctx.clock,
            args.job,
            terminal,
            office_code=ctx.office_code,
            utility_code=_utility(ctx),
        )
    return answer(
        args.json,
        {**view.to_json(), "card_content": plan.to_json(), "written": True},
        _(
            "Card {serial} programmed for job {job_id}. Take it to meter {meter_no}.",
            serial=view.card_serial,
            job_id=view.id,
            meter_no=view.meter_no,
        ),
    )


def _on_card(
    ctx: AppContext,
    args: argparse.Namespace,
    service: Callable[Concatenate[Database, Principal, Clock, CardTerminal, P], T],
    *service_args: P.args,
    **options: P.kwargs,
) -> T:
    """``--operator`` signs in and ``service`` works on the card of ``--reader``/``--image``:
    ``service(db, actor, clock, terminal, ...)``."""
    actor = cli_login(ctx, args.operator)
    with card_terminal(ctx, args) as terminal:
        return service(open_db(ctx), actor, ctx.clock, terminal, *service_args, **options)


def cmd_return(ctx: AppContext, args: argparse.Namespace) -> int:
    view = _on_card(
        ctx,
        args,
        jobs.return_card,
        office_code=ctx.office_code,
        job_id=args.job,
        note=args.note or "",
    )
    if args.json:
        emit_json(view.to_json())
    else:
        print(
            _(
                "Job {job_id} closed: {result}. The result goes to the central system at the "
                "next sync.",
                job_id=view.id,
                result=translate(jobs.RESULT_NAMES.get(view.result or "", view.result or "")),
            )
        )
        _show(view)
    return 0


def cmd_check_program(ctx: AppContext, args: argparse.Namespace) -> int:
    serial = _on_card(
        ctx, args, jobs.program_check_card, utility_code=_utility(ctx), meter_no=args.meter_no
    )
    return answer(
        args.json,
        {"serial": serial, "meter_no": args.meter_no},
        _("Check card {serial} programmed.", serial=serial),
    )


def cmd_check_read(ctx: AppContext, args: argparse.Namespace) -> int:
    reading = _on_card(ctx, args, jobs.read_check_card)
    data = {
        "serial": reading.serial,
        "meter_no": reading.meter_no,
        "customer_no": reading.customer_no,
        "write_back": reading.write_back,
    }
    if args.json:
        emit_json(data)
    else:
        print(
            _(
                "Check card {serial}: meter {meter_no}, customer {customer_no}.",
                serial=reading.serial,
                meter_no=reading.meter_no,
                customer_no=reading.customer_no or "-",
            )
        )
        _print_fields(reading.write_back, "  ")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jsub = command_group(sub, "jobs", _("management-card jobs of the technician"))

    job_id = id_arg(JOB_ID)
    q = jsub.add_parser("list", help=_("the office's open jobs and mine"))
    operator_json_args(q)
    q.add_argument("--mine", action="store_true", help=_("only the jobs I hold"))
    q.add_argument("--all", action="store_true", help=_("closed jobs too"))
    q.set_defaults(func=cmd_list)

    for name, func, text in (
        ("show", cmd_show, _("one job, with the card content it needs")),
        ("take", cmd_take, _("take a job: it is yours until returned or released")),
        ("release", cmd_release, _("give a job back to the office")),
    ):
        q = jsub.add_parser(name, help=text)
        q.add_argument("job", type=job_id)
        operator_json_args(q)
        q.set_defaults(func=func)

    q = jsub.add_parser("program", help=_("program the job's management card"))
    q.add_argument("job", type=job_id)
    operator_json_args(q)
    card_args(q)
    q.add_argument("--dry-run", action="store_true", help=_("only show the card content"))
    q.set_defaults(func=cmd_program)

    q = jsub.add_parser("return", help=_("read a returned job card and close its job"))
    q.add_argument("job", nargs="?", type=job_id, help=_("the job (default: the card's)"))
    operator_json_args(q)
    card_args(q)
    q.add_argument("--note", help=_("a note for the central system (200 characters)"))
    q.set_defaults(func=cmd_return)

    q = jsub.add_parser("check-program", help=_("program a check card to read meters"))
    operator_json_args(q)
    card_args(q)
    q.add_argument("--meter-no", type=id_arg(ids.METER_NO), help=_("one meter (default: any)"))
    q.set_defaults(func=cmd_check_program)

    q = jsub.add_parser("check-read", help=_("store and send what a check card brought back"))
    operator_json_args(q)
    card_args(q)
    q.set_defaults(func=cmd_check_read)
