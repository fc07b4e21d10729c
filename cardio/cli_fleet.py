"""``cardvend fleet simulate``: many remote fee-control meters behind one TCP endpoint, as a
concentrator serves them, each answering DL/T 645-2007 by its address; ``cardvend fleet show``:
what a saved fleet holds (energy by rate, relay), for a technician or a test."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli import command_group
from app.cli import emit_json
from app.cli import stop_on_signals
from app.context import AppContext
from app.i18n import N_
from app.i18n import _
from cardio.dlt645 import TcpServer
from cardio.fleet import Fleet
from cardio.fleet import FleetStateError
from cardio.fleet import demo_meters
from cardio.fleet import read_meters_file
from cardio.fleet.fleet import STATE_FILE


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1_000_000:
        raise argparse.ArgumentTypeError(_("a number above 0 (at most 1000000), got {value!r}",
                                           value=text))  # fmt: skip
    return value


def cmd_simulate(ctx: AppContext, args: argparse.Namespace) -> int:
    meters = demo_meters() if args.demo else read_meters_file(Path(args.meters))
    fleet = Fleet.open(
        Path(args.state), meters, load_kw=args.load_kw, speed=args.speed, start=ctx.clock.now()
    )
    server = TcpServer(fleet.responder(), args.host, args.tcp)
    server.start()
    fleet.keep_saved(args.save_every)
    with stop_on_signals("fleet simulate") as stop:
        print(
            _(
                "Serving {count} meters on tcp {host}:{port} at {speed}x, simulated time {when}; "
                "stop with Ctrl-C",
                count=len(fleet.meters),
                host=args.host,
                port=server.port,
                speed=f"{args.speed:g}",
                when=fleet.clock.now().isoformat(timespec="seconds"),
            ),
            flush=True,
        )
        stop.wait()
    server.stop()
    fleet.close()
    return 0


def cmd_show(ctx: AppContext, args: argparse.Namespace) -> int:
    state = Path(args.state)
    fleet = Fleet.load(state)  # read only: a running fleet keeps its file
    if fleet is None:
        raise FleetStateError(path=str(state / STATE_FILE), reason=N_("there is no such file"))
    rows: list[dict[str, Any]] = [
        {
            "meter_no": m.address,
            "energy_wh": list(m.energy_by_rate()),
            "relay": "open" if m.relay_open else "closed",
            "close_permitted": not m.command_open,
            "alarm": m.alarm,
            "mean_kw": round(m.mean_w / 1000, 3),
        }
        for m in fleet.meters.values()
    ]
    if args.json:
        emit_json({"sim_time": fleet.clock.now().isoformat(), "meters": rows})
        return 0
    print(_("Simulated time {when}", when=fleet.clock.now().isoformat(timespec="seconds")))
    for r in rows:
        print(
            _(
                "{meter_no}: {kwh} kWh (rates {rates} Wh), relay {relay}, alarm {alarm}",
                meter_no=r["meter_no"],
                kwh=f"{sum(r['energy_wh']) / 1000:.2f}",
                rates="/".join(str(x) for x in r["energy_wh"]),
                relay=_("open") if r["relay"] == "open" else _("closed"),
                alarm=_("on") if r["alarm"] else _("off"),
            )
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fsub = command_group(
        sub, "fleet", _("simulated remote fee-control meters behind a concentrator")
    )
    q = fsub.add_parser(
        "simulate", help=_("serve many remote meters on one TCP endpoint over DL/T 645-2007")
    )
    q.add_argument("--tcp", type=int, required=True, metavar="PORT", help=_("TCP port (0: any)"))
    q.add_argument("--host", default="127.0.0.1")
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("--demo", action="store_true", help=_("the demo database's remote meters"))
    which.add_argument(
        "--meters", metavar="FILE", help=_("a meter number a line, optionally ,LOAD_KW")
    )
    q.add_argument("--state", required=True, metavar="DIR", help=_("folder of the fleet's state"))
    q.add_argument(
        "--speed", type=_positive, default=1.0, help=_("simulated seconds a real second")
    )
    q.add_argument("--load-kw", type=_positive, default=2.0, help=_("the meters' mean load in kW"))
    q.add_argument("--save-every", type=_positive, default=5.0, help=argparse.SUPPRESS)
    q.set_defaults(func=cmd_simulate)
    q = fsub.add_parser("show", help=_("what a saved fleet holds"))
    q.add_argument("--state", required=True, metavar="DIR")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_show)
