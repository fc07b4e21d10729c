"""A fleet of remote fee-control meters behind one concentrator, its state kept in a folder.

``DIR/fleet.json`` (0600) holds the simulated time and every meter; it is rewritten atomically
(a crash leaves the old file or the new one) every few seconds while the fleet runs and when it
stops, so a restarted fleet resumes at the simulated time it stopped and no meter loses energy
or relay state.  The meters come from ``--meters FILE`` (a meter number a line, optionally its
mean load in kW: ``200000000010,3.5``; ``#`` comments) or ``--demo`` (the demo database's remote
customers); a saved fleet keeps its meters and takes in new ones.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Final

from app.domain import ids
from app.domain.customers import MeterKind
from app.errors import CardVendError
from app.fileio import private_dir
from app.fileio import write_atomically
from app.i18n import N_
from cardio.dlt645.responder import Responder
from cardio.fleet.model import FleetMeter
from cardio.fleet.model import SimClock
from cardio.fleet.model import load_factor

log = logging.getLogger(__name__)

STATE_FILE: Final = "fleet.json"
STATE_VERSION: Final = 1
MAX_LOAD_KW: Final = 1000.0  # a meter's mean load above this is a typing error
DEFAULT_PASSWORDS: Final = {2: "000000", 4: "000000"}


class FleetError(CardVendError):
    code = "fleet"
    template = N_("The meter fleet cannot start: {reason}")


class FleetStateError(FleetError):
    code = "fleet_state"
    template = N_(
        "The fleet state {path} cannot be used: {reason}. Give another --state folder (an "
        "empty one starts a new fleet)."
    )


class MetersFileError(FleetError):
    code = "fleet_meters"
    template = N_("The meters file {path}, line {line}: {reason}")


def demo_meters() -> list[tuple[str, float | None]]:
    """The demo database's remote fee-control meters (their mean load: the fleet's)."""
    from app.services.demo import CUSTOMERS
    from app.services.demo import demo_customer

    found = (demo_customer(i) for i in range(CUSTOMERS))
    return [(c["meter_no"], None) for c in found if c["meter_kind"] == MeterKind.REMOTE.value]


def read_meters_file(path: Path) -> list[tuple[str, float | None]]:
    """``(meter number, mean load kW or None)`` a line of ``path``; the first bad line is a
    :class:`MetersFileError` that names it (nothing is taken from a file with a bad line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MetersFileError(path=str(path), line=0, reason=str(exc)) from None
    meters: list[tuple[str, float | None]] = []
    seen: set[str] = set()
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line or (n == 1 and line.lower().startswith("meter")):
            continue  # blank, a comment, a header
        fields = [f.strip() for f in line.split(",")]
        if len(fields) > 2 or not ids.is_digits(fields[0], 12):
            raise MetersFileError(
                path=str(path),
                line=n,
                reason=N_("a meter number is 12 digits, optionally followed by ,LOAD_KW"),
            )
        load: float | None = None
        if len(fields) == 2 and fields[1]:
            try:
                load = float(fields[1])
            except ValueError:
                load = -1.0
            if not 0 <= load <= MAX_LOAD_KW:
                raise MetersFileError(
                    path=str(path), line=n, reason=N_("the load is kW from 0 to 1000")
                )
        if fields[0] in seen:
            raise MetersFileError(path=str(path), line=n, reason=N_("this meter is listed twice"))
        seen.add(fields[0])
        meters.append((fields[0], load))
    if not meters:
        raise MetersFileError(path=str(path), line=0, reason=N_("it lists no meter"))
    return meters


class Fleet:
    """The meters, their simulated clock and their saved state (see the module)."""

    def __init__(self, state_dir: Path, clock: SimClock, meters: Iterable[FleetMeter]) -> None:
        self.state_dir = state_dir
        self.clock = clock
        self.meters: dict[str, FleetMeter] = {m.address: m for m in meters}
        self._save_lock = threading.Lock()
        self._stop = threading.Event()
        self._saver: threading.Thread | None = None

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @classmethod
    def open(
        cls,
        state_dir: Path,
        meters: Sequence[tuple[str, float | None]],
        *,
        load_kw: float,
        speed: float = 1.0,
        start: dt.datetime,
    ) -> Fleet:
        """The fleet saved in ``state_dir`` (its simulated time resumes; ``meters`` not in it
        join), or a new one of ``meters`` whose simulated time begins at ``start``."""
        if not 0 <= load_kw <= MAX_LOAD_KW:
            raise FleetError(reason=N_("the load is kW from 0 to 1000"))
        if not speed > 0:
            raise FleetError(reason=N_("the speed must be above 0"))
        try:
            private_dir(state_dir)
        except OSError as exc:
            raise FleetStateError(path=str(state_dir), reason=str(exc)) from None
        fleet = cls.load(state_dir, speed) or cls(state_dir, SimClock(start, speed), ())
        for address, own_kw in meters:
            if address not in fleet.meters:
                kw = load_kw * load_factor(address) if own_kw is None else own_kw
                meter = FleetMeter(
                    address, source=fleet.clock, mean_w=kw * 1000, passwords=dict(DEFAULT_PASSWORDS)
                )
                meter.settled_at = fleet.clock.now()
                fleet.meters[address] = meter
        if not fleet.meters:
            raise FleetError(reason=N_("no meters: give --meters FILE or --demo"))
        fleet.save()
        return fleet

    @classmethod
    def load(cls, state_dir: Path, speed: float = 0.0) -> Fleet | None:
        """The fleet saved in ``state_dir`` (None if there is none), its time resumed at
        ``speed`` (0: stopped where it was saved, to look at it without changing it)."""
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, not {STATE_VERSION}")
            clock = SimClock(dt.datetime.fromisoformat(data["sim_time"]), speed)
            meters = [FleetMeter.from_json(m, clock) for m in data["meters"]]
            for m in meters:
                ids.check_meter_no(m.address)
        except CardVendError as exc:  # said in the reader's language, like the rest
            raise FleetStateError(path=str(path), reason=exc) from None
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise FleetStateError(path=str(path), reason=str(exc)) from None
        return cls(state_dir, clock, meters)

    def responder(self) -> Responder:
        """A DL/T 645 responder answering for every meter."""
        return Responder(self.meters.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "sim_time": self.clock.now().isoformat(),
            "meters": [m.to_json() for m in self.meters.values()],
        }

    def save(self) -> None:
        """Write the state file (atomically, 0600)."""
        with self._save_lock:
            data = json.dumps(self.to_json(), ensure_ascii=True, separators=(",", ":"))
            write_atomically(self.state_file, data.encode("ascii"))

    def keep_saved(self, every_s: float = 5.0) -> None:
        """Save every ``every_s`` real seconds in a background thread until :meth:`close`."""

        def run() -> None:
            while not self._stop.wait(every_s):
                try:
                    self.save()
                except OSError as exc:
                    log.warning("fleet state not saved: %s", exc)

        self._saver = threading.Thread(target=run, name="fleet saver", daemon=True)
        self._saver.start()

    def close(self) -> None:
        """Stop saving in the background and save one last time."""
        self._stop.set()
        if self._saver is not None:
            self._saver.join(10)
            self._saver = None
        self.save()
