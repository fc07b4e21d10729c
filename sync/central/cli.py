"""``cardvend central serve``: the reference central server in the foreground;
``cardvend central enrol COUNTER_ID --office CODE``: a one-time enrolment code for a counter.

``serve`` prints one line, ``central listening on http://HOST:PORT``, to stdout once it accepts
connections (scripts and tests wait for it; the line is not translated for that reason) and
serves until SIGINT or SIGTERM, then exits 0.

``enrol`` prints the code alone on stdout (scripts read it; only its hash is kept) and what to do
with it on stderr.  A counter that is registered already registers again only with its current
token or with such a code (a lost or reinstalled counter, or one that moves to another office).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from app.context import AppContext
from app.errors import ValidationError
from app.i18n import N_, _

log = logging.getLogger(__name__)
ENROLMENT_KEY_ENV = "CARDVEND_ENROLMENT_KEY"
DEFAULT_SKEW_MINUTES = 10


def default_db(ctx: AppContext) -> str:
    return str(ctx.paths.data_dir / "central.db")


def cmd_central_serve(ctx: AppContext, args: argparse.Namespace) -> int:
    from sync.central.seed import seed_demo
    from sync.central.server import CentralServer

    db_url = args.central_db or default_db(ctx)
    key = args.enrolment_key or os.environ.get(ENROLMENT_KEY_ENV) or None
    server = CentralServer(
        db_url,
        host=args.host,
        port=args.port,
        enrolment_key=key,
        faults=args.faults,
        clock=ctx.clock,
        clock_skew=dt.timedelta(minutes=args.clock_skew),
    )
    stop = threading.Event()
    try:
        if not args.no_seed:
            report = seed_demo(server.store, ctx.clock.now())
            print(
                _(
                    "Demo data: {plans} tariff versions, {customers} customers, {jobs} jobs added.",
                    plans=report.plans_added,
                    customers=report.customers_added,
                    jobs=report.jobs_added,
                ),
                file=sys.stderr,
            )
        server.start()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, _frame: FrameType | None) -> None:
                log.info("central server: signal %d, stopping", signum)
                stop.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        print(f"central listening on {server.url}", flush=True)
        if key is None:
            print(_("No enrolment key: any counter may register."), file=sys.stderr)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        server.stop()
    return 0


def cmd_central_enrol(ctx: AppContext, args: argparse.Namespace) -> int:
    from pydantic import ValidationError as ModelError

    from sync.central.store import CentralStore

    store = CentralStore(args.central_db or default_db(ctx), clock=ctx.clock)
    try:
        code, expires = store.issue_enrolment_code(args.counter_id, args.office, hours=args.hours)
    except (ModelError, ValueError) as exc:
        raise ValidationError(
            N_("cannot issue an enrolment code for counter {counter} of office {office}: {detail}"),
            counter=args.counter_id,
            office=args.office,
            detail=str(exc).splitlines()[0],
        ) from exc
    finally:
        store.dispose()
    print(code, flush=True)
    print(
        _(
            "Enrolment code for counter {counter} of office {office}, valid once until {expires}. "
            "On that counter an administrator runs 'cardvend counter register --central URL "
            "--enrolment-code CODE --operator ID'.",
            counter=args.counter_id,
            office=args.office,
            expires=expires.isoformat(timespec="minutes"),
        ),
        file=sys.stderr,
    )
    return 0


def _db_option(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--db",
        dest="central_db",
        metavar="URL",
        help=_("the central system's own database URL; default: central.db in the data folder"),
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "central", help=_("the reference central marketing system (for tests and demos)")
    )
    csub = p.add_subparsers(dest="central_command", required=True, metavar="COMMAND")
    q = csub.add_parser("serve", help=_("serve the central system's contract over HTTP"))
    q.add_argument("--port", type=int, default=0, help=_("TCP port; 0 picks a free one"))
    q.add_argument("--host", default="127.0.0.1", help=_("address to listen on"))
    _db_option(q)
    q.add_argument(
        "--enrolment-key",
        help=_("counters must send this key to register (or set {env})", env=ENROLMENT_KEY_ENV),
    )
    q.add_argument(
        "--faults",
        action="store_true",
        help=_("allow fault injection through /_test/faults (tests only)"),
    )
    q.add_argument("--no-seed", action="store_true", help=_("do not load the demo data"))
    q.add_argument(
        "--clock-skew",
        type=float,
        default=DEFAULT_SKEW_MINUTES,
        metavar="MINUTES",
        help=_("how far ahead of this clock a record's time may be (default {minutes})",
               minutes=DEFAULT_SKEW_MINUTES),
    )  # fmt: skip
    q.set_defaults(func=cmd_central_serve)

    q = csub.add_parser(
        "enrol",
        help=_("issue a one-time enrolment code with which a counter registers (again)"),
    )
    q.add_argument("counter_id", metavar="COUNTER_ID")
    q.add_argument("--office", required=True, help=_("the office the counter belongs to"))
    _db_option(q)
    q.add_argument(
        "--hours", type=float, default=24, help=_("how long the code is valid (default 24)")
    )
    q.set_defaults(func=cmd_central_enrol)
