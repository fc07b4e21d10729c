"""The demo fleet simulator (``cardvend fleet simulate --demo``) as a process of its own, serving
DL/T 645 over TCP on a free port, and the station (``central serve --terminals``) calling it:
for tests that read and switch remote meters through real sockets."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cardio.dlt645 import MeterClient
from cardio.dlt645 import TcpSettings
from cardio.dlt645 import connect_tcp_link
from cardio.dlt645 import dataids as D
from sync.central.control import control_status
from sync.central.store import CentralStore
from tests.rigs.processes import home_env
from tests.rigs.processes import start
from tests.rigs.processes import stop


def start_fleet(state: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    """The simulator with its state in ``state`` and ``args`` (speed, load); (the process,
    "127.0.0.1:PORT")."""
    proc, line = start(
        ["fleet", "simulate", "--tcp", "0", "--demo", "--state", str(state), *args],
        env,
        "Serving",
    )
    return proc, "127.0.0.1:" + line.split("127.0.0.1:")[1].split()[0]


@contextlib.contextmanager
def fleet_process(tmp_path: Path) -> Iterator[str]:
    """The simulator running with its state in ``tmp_path``; yields "127.0.0.1:PORT"."""
    proc, where = start_fleet(tmp_path / "fleet", home_env(tmp_path / "fleet-home"))
    try:
        yield where
    finally:
        stop([proc])


@dataclass
class Running:
    where: str | None  # the fleet's "127.0.0.1:PORT" (None: a station without terminals)
    url: str  # the station's base URL
    env: dict[str, str]  # the environment both run in


@contextlib.contextmanager
def station_with_fleet(
    tmp_path: Path,
    db: str,
    *station_args: str,
    fleet_args: tuple[str, ...] = (),
    terminals: bool = True,
    home: str = "home",
) -> Iterator[Running]:
    """``central serve`` on ``db`` with ``station_args`` and, with ``terminals``, the fleet
    simulator (state in ``tmp_path / "fleet"``, ``fleet_args``) as its terminals; both with
    ``CARDVEND_HOME`` at ``tmp_path / home``, both stopped afterwards."""
    env = home_env(tmp_path / home)
    procs: list[subprocess.Popen[str]] = []
    try:
        args = ["central", "serve", "--port", "0", "--db", db]
        where = None
        if terminals:
            fleet, where = start_fleet(tmp_path / "fleet", env, *fleet_args)
            procs.append(fleet)
            args += ["--terminals", where]
        station, line = start([*args, *station_args], env, "central listening on")
        procs.append(station)
        yield Running(where, line.split("central listening on ")[1].strip(), env)
    finally:
        stop(procs)


def relay_open(where: str, meter_no: str) -> bool:
    """Whether the meter's relay is open, read over DL/T 645 from the fleet at ``where``."""
    host, port = where.split(":")
    client = MeterClient(connect_tcp_link(TcpSettings(host, int(port), timeout=2.0)))
    try:
        return bool(client.read(meter_no, D.STATUS_WORD_3) & D.Status3.RELAY_OPEN)
    finally:
        client.link.close()


def wait_tripped(store: CentralStore, customer_no: str, where: str, meter_no: str) -> None:
    """Until the station has tripped the customer and the meter's relay is open (90 s at most)."""
    deadline = time.monotonic() + 90
    while (control_status(store, customer_no) or {}).get("state") != "tripped":
        assert time.monotonic() < deadline, control_status(store, customer_no)
        time.sleep(0.3)
    while not relay_open(where, meter_no):  # the trip goes out after the decision
        assert time.monotonic() < deadline, control_status(store, customer_no)
        time.sleep(0.1)


def wait_closed(
    store: CentralStore, customer_no: str, where: str, meter_no: str, paid_at: float
) -> float:
    """Until the meter's relay is closed again and the station has recorded the close permit
    sent, each within 60 s of ``paid_at`` (``time.monotonic()``); the seconds the relay took."""
    while relay_open(where, meter_no):
        assert time.monotonic() - paid_at < 60, control_status(store, customer_no)
        time.sleep(0.2)
    closed_after = time.monotonic() - paid_at
    # the run records what the meters took once its batch of commands is sent
    while (control_status(store, customer_no) or {}).get("close_permit_sent_at") is None:
        assert time.monotonic() - paid_at < 60, control_status(store, customer_no)
        time.sleep(0.1)
    return closed_after
