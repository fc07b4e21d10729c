"""Meter commands over DL/T 645-2007: ``cardvend meter read``, ``meter relay`` and
``meter simulate`` (``meter insert`` is in :mod:`cardio.cli`).

A meter is reached on a serial RS485 bus (``--port``; 2400 baud 8E1 by default) or through a
terminal on TCP (``--tcp HOST:PORT``). The simulated meter serves the same ``--meter-state``
file the card slot (``meter insert``) uses.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from app.cli import emit_fields
from app.cli import id_arg
from app.cli import open_db
from app.context import AppContext
from app.domain import ids
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import _
from app.services import meter_reading
from app.services.auth import Principal
from cardio import wiring
from cardio.cli import MeterStateFileError
from cardio.cli import _meter_state
from cardio.cli import sign_in_operator
from cardio.dlt645 import FrameLink
from cardio.dlt645 import MeterClient
from cardio.dlt645 import Password
from cardio.dlt645 import Responder
from cardio.dlt645 import SerialServer
from cardio.dlt645 import SerialSettings
from cardio.dlt645 import TcpServer
from cardio.dlt645 import TcpSettings
from cardio.dlt645 import connect_tcp_link
from cardio.dlt645 import open_serial_link
from cardio.meter_wire import RELAY_COMMANDS
from cardio.meter_wire import SimulatedMeterRegisters
from cardio.meter_wire import command_relay
from cardio.meter_wire import read_meter

PARITIES = ("N", "E", "O")


def _endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError(N_("--tcp takes HOST:PORT, got {value!r}"), value=text)
    return host or "127.0.0.1", int(port)


def _serial_settings(args: argparse.Namespace) -> SerialSettings:
    return SerialSettings(
        args.port,
        baudrate=args.baud,
        parity=args.parity,
        timeout=args.timeout,
        retries=args.retries,
    )


def open_link(args: argparse.Namespace) -> FrameLink:
    """The meter link the command line names (``--port`` or ``--tcp``)."""
    if args.tcp:
        host, port = _endpoint(args.tcp)
        return connect_tcp_link(TcpSettings(host, port, timeout=args.timeout, retries=args.retries))
    return open_serial_link(_serial_settings(args))


def _target(args: argparse.Namespace) -> str:
    where = f"tcp:{args.tcp}" if args.tcp else f"serial:{args.port}"
    return f"meter:{args.addr}@{where}"


def _operator(ctx: AppContext, args: argparse.Namespace, action: str) -> Principal | None:
    """Sign in ``--operator`` with ``read_meter``; with no database here (a lab bench) a read
    runs without one, a relay command never does."""
    return sign_in_operator(
        ctx,
        args,
        meter_reading.authorize,
        action,
        _target(args),
        optional=action == "meter_read",
        missing=N_(
            "meter commands are done by a technician: add --operator ID (password from "
            "CARDVEND_PASSWORD or a prompt)"
        ),
    )


def cmd_read(ctx: AppContext, args: argparse.Namespace) -> int:
    _operator(ctx, args, "meter_read")
    link = open_link(args)
    try:
        reading = read_meter(MeterClient(link), args.addr)
    finally:
        link.close()
    emit_fields(reading.to_json(), as_json=args.json, width=16, none="-")
    return 0


def cmd_relay(ctx: AppContext, args: argparse.Namespace) -> int:
    actor = _operator(ctx, args, "meter_relay")
    assert actor is not None
    db = open_db(ctx)
    link = open_link(args)
    detail: dict[str, Any] = {"command": args.command, "role": actor.role}
    try:
        command_relay(
            MeterClient(link),
            args.addr,
            args.command,
            ctx.clock.now(),
            operator=actor.operator_id,
            password=Password(args.password_level, args.password),
        )
    except Exception as exc:
        detail["error"] = type(exc).__name__
        meter_reading.record(
            db,
            actor,
            ctx.clock,
            action="meter_relay",
            target=_target(args),
            result="failed",
            detail=detail,
        )
        raise
    finally:
        link.close()
    meter_reading.record(
        db, actor, ctx.clock, action="meter_relay", target=_target(args), detail=detail
    )
    print(_("Meter {addr}: {command} done", addr=args.addr, command=args.command))
    return 0


def cmd_simulate(ctx: AppContext, args: argparse.Namespace) -> int:
    from cardio.meter_sim import MeterSimulator
    from cardio.meter_sim import MeterStateError

    state = Path(args.meter_state)
    with _meter_state(state):
        try:
            meter = MeterSimulator(
                state, wiring.key_provider(ctx), meter_no=args.meter_no, clock=ctx.clock
            )
        except (MeterStateError, UnicodeDecodeError):
            raise
        except ValueError as exc:
            raise MeterStateFileError(
                path=str(state), reason=N_("it is another meter's ({detail})"), detail=str(exc)
            ) from None
    registers = SimulatedMeterRegisters(meter)
    responder = Responder([registers])
    server: SerialServer | TcpServer
    if args.tcp is not None:
        server = TcpServer(responder, args.host, args.tcp)
        server.start()
        where = f"tcp {args.host}:{server.port}"
    else:
        server = SerialServer(responder, _serial_settings(args)).start()
        where = f"serial {args.port}"
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        _(
            "Serving meter {addr} on {where}; stop with Ctrl-C",
            addr=registers.address,
            where=where,
        ),
        flush=True,
    )
    stop.wait()
    server.stop()
    return 0


def _line_options(q: argparse.ArgumentParser, *, tcp_port_only: bool = False) -> None:
    line = q.add_mutually_exclusive_group(required=True)
    line.add_argument("--port", help=_("serial port of the RS485 bus"))
    if tcp_port_only:
        line.add_argument("--tcp", type=int, metavar="PORT", help=_("serve on this TCP port"))
        q.add_argument("--host", default="127.0.0.1")
    else:
        line.add_argument("--tcp", metavar="HOST:PORT", help=_("a terminal reached over TCP"))
    q.add_argument("--baud", type=int, default=2400)
    q.add_argument("--parity", choices=PARITIES, default="E")
    q.add_argument("--timeout", type=float, default=1.0, help=_("seconds for an answer to begin"))
    q.add_argument("--retries", type=int, default=2)


def register(msub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = msub.add_parser("read", help=_("read a meter over DL/T 645-2007"))
    _line_options(q)
    q.add_argument("--addr", required=True, type=id_arg(ids.METER_NO))
    q.add_argument("--operator")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_read)

    q = msub.add_parser("relay", help=_("trip or close a meter's relay, or sound its alarm"))
    _line_options(q)
    q.add_argument("--addr", required=True, type=id_arg(ids.METER_NO))
    q.add_argument("command", choices=tuple(RELAY_COMMANDS))
    q.add_argument("--operator")
    q.add_argument("--password", default="000000", help=_("the meter's password (6 hex digits)"))
    q.add_argument("--password-level", type=int, default=2)
    q.set_defaults(func=cmd_relay)

    q = msub.add_parser("simulate", help=_("serve the simulated meter over DL/T 645-2007"))
    _line_options(q, tcp_port_only=True)
    q.add_argument("--meter-state", required=True)
    q.add_argument("--meter-no", type=id_arg(ids.METER_NO))
    q.set_defaults(func=cmd_simulate)
