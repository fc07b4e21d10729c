"""The station's SMS and arrears options (``--sms-url``, ``--arrears-grace-days``,
``--arrears-interval-h`` on ``central serve`` and ``central control run``), the loop steps they
build, and ``cardvend central sms-gateway`` (the reference gateway, :mod:`sync.central.sms_gateway`)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType

from app.context import AppContext
from app.errors import ValidationError
from app.i18n import N_, _
from sync.central.arrears import GRACE_DAYS, INTERVAL_H, ArrearsControl
from sync.central.base import StoreBase
from sync.central.control import LoopStep
from sync.central.sms import HttpSmsGateway, Notices


def notice_options(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--sms-url",
        metavar="URL",
        help=_("the SMS gateway notices are posted to (without it they stay queued)"),
    )
    q.add_argument(
        "--arrears-grace-days",
        type=float,
        default=GRACE_DAYS,
        metavar="DAYS",
        help=_("days after its due date an arrears item is overdue (default 30)"),
    )
    q.add_argument(
        "--arrears-interval-h",
        type=float,
        default=INTERVAL_H,
        metavar="HOURS",
        help=_("hours between two arrears reminders to a customer (default 24)"),
    )


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
    gateway = HttpSmsGateway(url) if url else None
    arrears = ArrearsControl(store, grace_days=grace, interval_h=interval)
    return [arrears, Notices(store, gateway)]


def cmd_sms_gateway(ctx: AppContext, args: argparse.Namespace) -> int:
    from sync.central.sms_gateway import SmsSink, make_server

    if args.fail < 0:
        raise ValidationError(N_("--fail cannot be negative"))
    server = make_server(args.host, args.port, SmsSink(Path(args.out), args.fail))
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
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
    q = csub.add_parser(
        "sms-gateway", help=_("a reference SMS gateway that records what it receives")
    )
    q.add_argument("--port", type=int, default=0, help=_("TCP port; 0 picks a free one"))
    q.add_argument("--host", default="127.0.0.1", help=_("address to listen on"))
    q.add_argument("--out", required=True, metavar="FILE",
                   help=_("the file each message received is appended to (JSON lines)"))  # fmt: skip
    q.add_argument("--fail", type=int, default=0, metavar="N",
                   help=_("answer the first N messages with an error (503)"))  # fmt: skip
    q.set_defaults(func=cmd_sms_gateway)
