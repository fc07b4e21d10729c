"""Condition release with real processes: the fleet simulator serving the demo's remote meters
over DL/T 645 on TCP and the station (``central serve``, with ``--terminals`` pointing at the
fleet or without terminals), each a process of its own with the demo's customers."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import update

from sync.central import models as m
from sync.central.store import CentralStore
from tests.rigs.processes import start, stop

SILENT = "100000000020"  # its meter number is moved to an address no meter answers
FOREIGN = "100000000030"  # moved to another office


@dataclass
class Station:
    url: str  # the station's base URL
    fleet_state: Path | None  # the fleet's state folder (None: a station without terminals)


@contextlib.contextmanager
def fleet_and_station(tmp_path: Path, db: str, *, terminals: bool = True) -> Iterator[Station]:
    """The fleet simulator (with ``terminals``) and the station on ``db`` calling it, the
    enrolment key ``office-secret``; :data:`SILENT`'s meter moved to an address no meter
    answers and :data:`FOREIGN` to another office.  Both stopped afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDVEND_")}
    env["CARDVEND_HOME"] = str(tmp_path / "station-home")
    procs: list[subprocess.Popen[str]] = []
    try:
        args = ["central", "serve", "--port", "0", "--db", db]
        state = None
        if terminals:
            state = tmp_path / "fleet"
            fleet, line = start(
                ["fleet", "simulate", "--tcp", "0", "--demo", "--state", str(state)],
                env, "Serving",
            )  # fmt: skip
            procs.append(fleet)
            args += ["--terminals", "127.0.0.1:" + line.split("127.0.0.1:")[1].split()[0]]
        station, line = start(
            [*args, "--enrolment-key", "office-secret", "--control-interval", "3600"],
            env, "central listening on",
        )  # fmt: skip
        procs.append(station)
        store = CentralStore(db)
        cu = m.customers.c
        with store.engine.begin() as conn:
            conn.execute(
                update(m.customers).where(cu.customer_no == SILENT).values(meter_no="299999999999")
            )
            conn.execute(
                update(m.customers).where(cu.customer_no == FOREIGN).values(office_code="ELSE")
            )
        store.dispose()
        yield Station(line.split("central listening on ")[1].strip(), state)
    finally:
        stop(procs)
