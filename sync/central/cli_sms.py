"""The station's SMS and arrears options (``--sms-url``, ``--sms-per-customer-per-hour``,
``--sms-per-customer-per-day``, ``--arrears-grace-days``, ``--arrears-interval-h`` on ``central
serve`` and ``central control run``), the loop steps they build and what they did in a run
(:func:`step_counts`), ``cardvend central sms prefs|list`` (:mod:`sync.central.sms_admin`) and
``cardvend central sms-gateway`` (the reference gateway, :mod:`sync.central.sms_gateway`)."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Final

from app.cli import answer
from app.cli import stop_on_signals
from app.context import AppContext
from app.errors import NotFound
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from sync.central.arrears import GRACE_DAYS
from sync.central.arrears import INTERVAL_H
from sync.central.arrears import ArrearsControl
from sync.central.base import StoreBase
from sync.central.cli import listen_options
from sync.central.cli import on_station_db
from sync.central.cli import opened_store
from sync.central.cli import print_json
from sync.central.cli import print_rows
from sync.central.control import LoopStep
from sync.central.sms import PER_DAY
from sync.central.sms import PER_HOUR
from sync.central.sms import STATUSES
from sync.central.sms import HttpSmsGateway
from sync.central.sms import Limits
from sync.central.sms import Notices

# the SMS rate limits and the arrears timing: (option, type, default, metavar, help)
LIMIT_OPTIONS: Final = (
    ("--sms-per-customer-per-hour", int, PER_HOUR, "N",
     N_("at most N SMS to a customer in an hour; trip and close always go (0: no limit)")),
    ("--sms-per-customer-per-day", int, PER_DAY, "N",
     N_("at most N SMS to a customer in a day; trip and close always go (0: no limit)")),
    ("--arrears-grace-days", float, GRACE_DAYS, "DAYS",
     N_("days after its due date an arrears item is overdue (default 30)")),
    ("--arrears-interval-h", float, INTERVAL_H, "HOURS",
     N_("hours between two arrears reminders to a customer (default 24)")),
)  # fmt: skip


def notice_options(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--sms-url",
        metavar="URL",
        help=_("the SMS gateway notices are posted to (without it they stay queued)"),
    )
    for option, kind, default, metavar, text in LIMIT_OPTIONS:
        q.add_argument(option, type=kind, default=default, metavar=metavar, help=translate(text))


def loop_steps(store: StoreBase, args: argparse.Namespace) -> list[LoopStep]:
    """Arrears control, then the SMS notices (sent when ``--sms-url`` is given)."""
    url = getattr(args, "sms_url", None)
    grace = getattr(args, "arrears_grace_days", GRACE_DAYS)
    interval = getattr(args, "arrears_interval_h", INTERVAL_H)
    if url and not url.startswith(("http://", "https://")):
        raise ValidationError(N_("--sms-url must begin with http:// or https://"))
    if grace < 0:
        raise ValidationError(N_("--arrears-grace-days cannot be negative"))
    if not interval > 0:
        raise ValidationError(N_("--arrears-interval-h must be above 0"))
    per_hour = getattr(args, "sms_per_customer_per_hour", PER_HOUR)
    per_day = getattr(args, "sms_per_customer_per_day", PER_DAY)
    if per_hour < 0 or per_day < 0:
        raise ValidationError(N_("an SMS rate limit cannot be negative"))
    gateway = HttpSmsGateway(url) if url else None
    arrears = ArrearsControl(store, grace_days=grace, interval_h=interval)
    limits = Limits(per_hour=per_hour, per_day=per_day)
    return [arrears, Notices(store, gateway, limits=limits)]


def step_counts(steps: Sequence[LoopStep]) -> dict[str, dict[str, int]]:
    """What the SMS and arrears steps did in the last run: ``{"sms": {queued, sent, failed,
    limited}, "arrears": {entered, reminded, lifted}}`` (zeros for a step that did not run)."""
    counts: dict[str, dict[str, int]] = {
        "sms": dict.fromkeys(("queued", "sent", "failed", "limited"), 0),
        "arrears": dict.fromkeys(("entered", "reminded", "lifted"), 0),
    }
    for step in steps:
        if isinstance(step, Notices):
            counts["sms"].update(step.last)
        elif isinstance(step, ArrearsControl):
            counts["arrears"].update(step.last)
    return counts


def cmd_sms_prefs(ctx: AppContext, args: argparse.Namespace) -> int:
    from sync.central import sms_admin

    with opened_store(ctx, args) as store:
        if args.language is None and args.opted_out is None:
            found: dict[str, Any] | None = sms_admin.prefs(store, args.customer_no)
        else:
            found = sms_admin.set_prefs(
                store, args.customer_no, language=args.language, opted_out=args.opted_out
            )
    if found is None:
        raise NotFound(
            N_("Customer {customer_no} is not in the station's archive. Check the number."),
            customer_no=args.customer_no,
        )
    line = _(
        "Customer {customer_no}: SMS in {language}, {state}.",
        customer_no=found["customer_no"],
        language=found["language"],
        state=_("opted out") if found["opted_out"] else _("notices on"),
    )
    return answer(args.json, found, line, dump=print_json)


def cmd_sms_list(ctx: AppContext, args: argparse.Namespace) -> int:
    from sync.central import sms_admin

    if args.limit < 1:
        raise ValidationError(N_("--limit must be at least 1"))
    with opened_store(ctx, args) as store:
        rows = sms_admin.list_notices(
            store, customer_no=args.customer, status=args.status, limit=args.limit
        )
    return print_rows(rows, args.json, _("No SMS notices."), _notice_line)


def _notice_line(r: Mapping[str, Any]) -> str:
    return _(
        "{id} {customer_no} {kind} {status}, {attempts} attempts, sent {sent_at}{error}",
        id=r["id"],
        customer_no=r["customer_no"],
        kind=r["kind"],
        status=r["status"],
        attempts=r["attempts"],
        sent_at=r["sent_at"] or "-",
        error=f": {r['last_error']}" if r["last_error"] else "",
    )


def cmd_sms_gateway(ctx: AppContext, args: argparse.Namespace) -> int:
    from sync.central.sms_gateway import SmsSink
    from sync.central.sms_gateway import make_server

    if args.fail < 0:
        raise ValidationError(N_("--fail cannot be negative"))
    server = make_server(args.host, args.port, SmsSink(Path(args.out), args.fail))
    with stop_on_signals("sms gateway") as stop:
        thread = threading.Thread(target=server.serve_forever, name="sms gateway", daemon=True)
        thread.start()
        host, port = server.server_address[:2]
        print(f"sms gateway listening on http://{host!s}:{port}", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            server.shutdown()
            server.server_close()
    return 0


def register(csub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sms = csub.add_parser("sms", help=_("the station's SMS notices and customers' preferences"))
    ssub = sms.add_subparsers(dest="sms_command", required=True)
    q = ssub.add_parser("prefs", help=_("show or set a customer's SMS language and opt-out"))
    q.add_argument("customer_no", metavar="CUSTOMER_NO")
    q.add_argument("--language", choices=("zh_CN", "en"), help=_("the language of their SMS"))
    way = q.add_mutually_exclusive_group()
    way.add_argument("--opt-out", dest="opted_out", action="store_const", const=True,
                     help=_("send this customer no SMS"))  # fmt: skip
    way.add_argument("--opt-in", dest="opted_out", action="store_const", const=False,
                     help=_("send this customer SMS again"))  # fmt: skip
    on_station_db(q, cmd_sms_prefs, json=True)
    q.set_defaults(opted_out=None)
    q = ssub.add_parser("list", help=_("the latest SMS notices with their delivery status"))
    q.add_argument("--customer", metavar="NO", help=_("only this customer's notices"))
    q.add_argument("--status", choices=STATUSES, help=_("only notices in this status"))
    q.add_argument("--limit", type=int, default=100, help=_("at most this many (default 100)"))
    on_station_db(q, cmd_sms_list, json=True)

    q = csub.add_parser(
        "sms-gateway", help=_("a reference SMS gateway that records what it receives")
    )
    listen_options(q)
    q.add_argument("--out", required=True, metavar="FILE",
                   help=_("the file each message received is appended to (JSON lines)"))  # fmt: skip
    q.add_argument("--fail", type=int, default=0, metavar="N",
                   help=_("answer the first N messages with an error (503)"))  # fmt: skip
    q.set_defaults(func=cmd_sms_gateway)
