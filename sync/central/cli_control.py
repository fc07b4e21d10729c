"""``cardvend central control run|status``, and the control loop that ``central serve
--terminals HOST:PORT`` runs in the background (:class:`ControlRunner`)."""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

from app.cli import answer
from app.cli import command_group
from app.context import AppContext
from app.errors import NotFound
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import _
from app.money import parse_yuan
from app.ports import RemoteMeters
from app.presenters.control import status_line
from sync.central.cli import central_store
from sync.central.cli import on_station_db
from sync.central.cli import opened_store
from sync.central.cli import print_json
from sync.central.cli_sms import loop_steps
from sync.central.cli_sms import notice_options
from sync.central.cli_sms import step_counts
from sync.central.control import ControlLoop
from sync.central.control import RunReport
from sync.central.control import control_status

log = logging.getLogger(__name__)

DEMO_OPENING_FEN = 5000  # the demo's remote customers come under control with 50.00 yuan


def remote_meters(ctx: AppContext, where: str | None) -> RemoteMeters | None:
    """The terminals behind ``where`` (``HOST:PORT`` or a serial port), or None."""
    if not where:
        return None
    if ctx.remote_meters_factory is None:
        raise ValidationError(N_("this program cannot reach meters (no DL/T 645 link is wired)"))
    return ctx.remote_meters_factory(where)


def opening_fen(args: argparse.Namespace, *, demo: bool) -> int:
    if args.opening_yuan is None:
        return DEMO_OPENING_FEN if demo else 0
    return parse_yuan(args.opening_yuan)


class ControlRunner:
    """Runs ``loop`` every ``interval`` seconds in a background thread until :meth:`stop`; a run
    that fails is logged and the next one comes on time (the lease keeps it to one worker)."""

    def __init__(self, loop: ControlLoop, interval: float) -> None:
        if not interval > 0:
            raise ValidationError(N_("--control-interval must be above 0"))
        self.loop = loop
        self.interval = interval
        self.last: RunReport | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ControlRunner:
        self._thread = threading.Thread(target=self._run, name="charge control", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = self.loop.run()
            except Exception:  # the loop goes on: a database hiccup must not stop control
                log.exception("control run failed")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self.loop.meters is not None:
            self.loop.meters.close()
        self.loop.store.dispose()


def cmd_control_run(ctx: AppContext, args: argparse.Namespace) -> int:
    store = central_store(ctx, args)
    meters = remote_meters(ctx, args.terminals)
    steps = loop_steps(store, args)
    try:
        report = ControlLoop(
            store, meters, opening_fen=opening_fen(args, demo=False), steps=steps
        ).run()
    finally:
        if meters is not None:
            meters.close()
        store.dispose()
    if args.json:
        out = {**report.to_json(), **(step_counts(steps) if report.ran else {})}
        print_json(out)
        return 0 if report.ran else 3
    if not report.ran:
        print(_("Another worker is running the control loop now; nothing was done."))
        return 3
    print(
        _(
            "{enrolled} customers came under control, {read} meters read, {exceptions} new "
            "exceptions, {changed} changed state; {sent} commands sent, {failed} failed, "
            "{waiting} waiting.",
            enrolled=report.enrolled,
            read=report.read,
            exceptions=report.exceptions,
            changed=report.changed,
            sent=report.commands_sent,
            failed=report.commands_failed,
            waiting=report.commands_waiting,
        )
    )
    counts = step_counts(steps)
    print(
        _(
            "SMS: {queued} queued, {sent} sent, {failed} failed, {limited} over the rate limit; "
            "arrears: {entered} came under arrears control, {reminded} reminded, {lifted} lifted.",
            **counts["sms"],
            **counts["arrears"],
        )
    )
    return 0


def cmd_control_status(ctx: AppContext, args: argparse.Namespace) -> int:
    with opened_store(ctx, args) as store:
        status: dict[str, Any] | None = control_status(store, args.customer_no)
    if status is None:
        raise NotFound(N_("Customer {customer_no} is not under fee control."),
                       customer_no=args.customer_no)  # fmt: skip
    line = status_line(
        status["customer_no"], status["state"], status["remaining_fen"], status["relay"],
        status["last_reading_at"], status["close_permit_sent_at"],
    )  # fmt: skip
    return answer(args.json, status, line, dump=print_json)


def control_options(q: argparse.ArgumentParser) -> None:
    """The options ``central serve`` and ``central control run`` share."""
    q.add_argument(
        "--terminals",
        metavar="HOST:PORT",
        help=_("the terminal (concentrator) behind which the remote meters answer"),
    )
    q.add_argument(
        "--opening-yuan",
        metavar="YUAN",
        help=_("the balance a customer comes under control with (demo data: 50.00, else 0)"),
    )
    notice_options(q)


def register(csub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ksub = command_group(csub, "control", _("the charge-control loop"))
    r = ksub.add_parser(
        "run", help=_("one run: read the meters, compute balances, send alarm/trip/close")
    )
    control_options(r)
    on_station_db(r, cmd_control_run, json=True)
    r = ksub.add_parser("status", help=_("a customer's control state, balance and relay"))
    r.add_argument("customer_no", metavar="CUSTOMER_NO")
    on_station_db(r, cmd_control_status, json=True)
