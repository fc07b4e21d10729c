"""Reading and commanding a meter over a :class:`app.ports.MeterLink`, for the CLI and the
technician's meter page.

The protocol itself lives in ``cardio`` (``cardio.meter_wire.read_meter`` fills a
:class:`MeterReading` from a DL/T 645 client); this module holds the typed result and the
permission and audit rules: reading needs ``read_meter``, a relay command needs
``read_meter`` too plus being audited (ok, refused or denied) with the meter and the command.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any
from typing import Final

from app.clock import Clock
from app.domain.permissions import Action
from app.persistence.db import Database
from app.services import audit
from app.services import cards
from app.services.auth import Principal

RELAY_CLOSED: Final = "closed"
RELAY_OPEN: Final = "open"
RELAY_COMMANDS: Final = ("trip", "close", "alarm", "release")


@dataclass(frozen=True)
class MeterReading:
    """What a meter answered; ``None`` for a value it did not answer. Money in fen, energy Wh."""

    addr: str
    remaining_fen: int | None
    overdraft_fen: int | None
    purchase_count: int | None
    energy_wh: int | None
    energy_rates_wh: tuple[int | None, ...]
    alarm1_fen: int | None
    alarm2_fen: int | None
    relay: str | None  # RELAY_CLOSED, RELAY_OPEN, or None
    status_words: tuple[int | None, ...]
    meter_time: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["energy_rates_wh"] = list(self.energy_rates_wh)
        data["status_words"] = list(self.status_words)
        data["meter_time"] = self.meter_time.isoformat() if self.meter_time else None
        return data


def authorize(db: Database, actor: Principal, clock: Clock, *, action: str, target: str) -> None:
    """The permission to read or command a meter (``read_meter``); a refusal is audited."""
    cards.authorize(db, actor, clock, action=action, target=target, permission=Action.READ_METER)


def record(
    db: Database,
    actor: Principal,
    clock: Clock,
    *,
    action: str,
    target: str,
    result: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    """One audit row for a meter command."""
    audit.Actor.of(actor, clock).record_alone(
        db, action, target, result=result, detail=detail or {"role": actor.role}
    )


# set by the composition root (main.py, from cardio/): (where, meter address) -> the reading;
# ``where`` is a serial port (``/dev/ttyUSB0``, ``COM3``) or a terminal's ``HOST:PORT``
MeterReader = Callable[[str, str], MeterReading]
# (where, meter address, command, operator id) -> None, or a typed error
MeterCommander = Callable[[str, str, str, str], None]


def target(where: str, addr: str) -> str:
    return f"meter:{addr}@{where}"


def read_for(
    db: Database, actor: Principal, clock: Clock, reader: MeterReader, where: str, addr: str
) -> MeterReading:
    """Read meter ``addr`` at ``where`` for a signed-in person with ``read_meter``."""
    authorize(db, actor, clock, action="meter_read", target=target(where, addr))
    return reader(where, addr)


def relay_for(
    db: Database,
    actor: Principal,
    clock: Clock,
    commander: MeterCommander,
    where: str,
    addr: str,
    command: str,
) -> None:
    """A relay command (:data:`RELAY_COMMANDS`) to meter ``addr``, audited ok or failed."""
    where_to = target(where, addr)
    authorize(db, actor, clock, action="meter_relay", target=where_to)
    detail: dict[str, Any] = {"command": command, "role": actor.role}
    try:
        commander(where, addr, command, actor.operator_id)
    except Exception as exc:
        detail["error"] = type(exc).__name__
        record(
            db, actor, clock, action="meter_relay", target=where_to, result="failed", detail=detail
        )
        raise
    record(db, actor, clock, action="meter_relay", target=where_to, detail=detail)
