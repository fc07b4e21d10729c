"""Condition release with real processes: the fleet simulator serving the demo's remote meters
over DL/T 645 on TCP and the station (``central serve``, with ``--terminals`` pointing at the
fleet or without terminals), each a process of its own with the demo's customers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import update

from sync.central import models as m
from sync.central.store import CentralStore
from tests.rigs.fleet_process import station_with_fleet

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
    with station_with_fleet(
        tmp_path, db, "--enrolment-key", "office-secret", "--control-interval", "3600",
        terminals=terminals, home="station-home",
    ) as running:  # fmt: skip
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
        yield Station(running.url, tmp_path / "fleet" if terminals else None)
