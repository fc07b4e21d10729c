"""Remote fee-control meters as a concentrator serves them: simulated time, a daily load profile,
energy by rate, and the relay that the station trips and permits to close.

A remote fee-control meter (远程费控表) keeps no money: the station computes the balance from
what the meters measure.  So a :class:`FleetMeter` is a :class:`~cardio.dlt645.MemoryMeter` (relay,
alarm, keep-power, passwords, clock) whose positive active energy grows, rate by rate, while its
relay is closed.  Energy is settled lazily: only when something reads it, changes the relay or
saves, integrated hour by hour from the last settlement, so thousands of idle meters cost nothing.

Time is :class:`SimClock`: ``speed`` simulated seconds a real second (``3600``: an hour a second),
resumed where a saved fleet stopped.  The hour of day (Beijing time) picks the load factor
(:data:`LOAD_PROFILE`) and the rate (:data:`RATE_OF_HOUR`); each meter's mean load is the fleet's
``--load-kw`` times a factor from its address (0.6 to 1.4), so the customers of a fleet do not
reach their thresholds all at the same moment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Final
from typing import TypeVar

from cardio.dlt645 import dataids as D
from cardio.dlt645.messages import RelayCommand
from cardio.dlt645.registers import MemoryMeter
from cardio.profile import BEIJING

T = TypeVar("T")

# the rate (1 sharp, 2 peak, 3 flat, 4 valley) of each hour of the day, Beijing time
RATE_OF_HOUR: Final[tuple[int, ...]] = (
    4, 4, 4, 4, 4, 4, 4,  # 00-07 valley
    3,  # 07-08 flat
    2, 2, 2,  # 08-11 peak
    3, 3, 3, 3, 3, 3,  # 11-17 flat
    2, 2,  # 17-19 peak
    1, 1,  # 19-21 sharp
    2, 2,  # 21-23 peak
    4,  # 23-24 valley
)  # fmt: skip

# the load of each hour of the day relative to the day's mean (the hours average to 1)
_SHAPE: Final = (
    0.3, 0.3, 0.3, 0.3, 0.3, 0.35, 0.6, 0.9,  # night, waking
    0.7, 0.6, 0.6, 0.8, 0.9, 0.6, 0.6, 0.6,  # day
    0.7, 1.2, 1.6, 1.8, 1.7, 1.4, 1.0, 0.6,  # evening
)  # fmt: skip
LOAD_PROFILE: Final[tuple[float, ...]] = tuple(f * 24 / sum(_SHAPE) for f in _SHAPE)

# energy registers by rate (no export here: combined energy equals positive energy)
_RATE_INDEX: Final = {
    di.code: i
    for rates in (D.POSITIVE_ENERGY_RATES, D.COMBINED_ENERGY_RATES)
    for i, di in enumerate(rates)
}


class SimClock:
    """Simulated time (aware, UTC): ``start`` at the moment it was made, then ``speed``
    simulated seconds for every real second (0: stopped, to look at a saved fleet).
    ``monotonic`` is injectable for tests."""

    def __init__(
        self,
        start: dt.datetime,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock needs a timezone-aware start time")
        if not speed >= 0:
            raise ValueError("the speed must not be below 0")
        self.start = start.astimezone(dt.UTC)
        self.speed = speed
        self._monotonic = monotonic
        self._real_start = monotonic()

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(
            seconds=(self._monotonic() - self._real_start) * self.speed
        )


def load_factor(address: str) -> float:
    """A meter's own factor on the fleet's mean load, 0.6 to 1.4, fixed by its address."""
    digest = hashlib.sha256(address.encode("ascii")).digest()
    return 0.6 + 0.8 * int.from_bytes(digest[:2], "big") / 0xFFFF


def _next_hour(when: dt.datetime) -> dt.datetime:
    return when.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)


def consumption(
    start: dt.datetime, end: dt.datetime, mean_w: float
) -> tuple[float, float, float, float]:
    """Wh by rate 1..4 that a load of mean ``mean_w`` watts draws from ``start`` to ``end``,
    hour by hour under :data:`LOAD_PROFILE` and :data:`RATE_OF_HOUR` (Beijing time)."""
    by_rate = [0.0, 0.0, 0.0, 0.0]
    when = start.astimezone(BEIJING)
    end = end.astimezone(BEIJING)
    while when < end:
        upto = min(_next_hour(when), end)
        hours = (upto - when).total_seconds() / 3600
        by_rate[RATE_OF_HOUR[when.hour] - 1] += mean_w * LOAD_PROFILE[when.hour] * hours
        when = upto
    return by_rate[0], by_rate[1], by_rate[2], by_rate[3]


@dataclass
class FleetMeter(MemoryMeter):
    """One remote fee-control meter of a fleet (:class:`~cardio.dlt645.MeterRegisters`).

    ``energy_wh`` is positive active energy by rate 1..4 up to ``settled_at``; ``mean_w`` the
    meter's mean load.  Reads of energy settle first; so does every relay command, since the
    relay decides whether the past interval drew power.  ``lock`` is the fleet's (the responder
    and the saver share the meters)."""

    mean_w: float = 0.0
    energy_wh: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    settled_at: dt.datetime | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def settle(self) -> None:
        """Bring ``energy_wh`` up to the meter's time."""
        with self.lock:
            now = self.source.now()
            if self.settled_at is not None and now > self.settled_at and not self.relay_open:
                for rate, wh in enumerate(consumption(self.settled_at, now, self.mean_w)):
                    self.energy_wh[rate] += wh
            if self.settled_at is None or now > self.settled_at:
                self.settled_at = now

    def energy_by_rate(self) -> tuple[int, int, int, int]:
        """Whole Wh by rate 1..4, settled to now."""
        with self.lock:
            self.settle()
            e = self.energy_wh
            return int(e[0]), int(e[1]), int(e[2]), int(e[3])

    def value(self, di: D.DataId[T]) -> T | None:
        found: Any
        if di.code in (D.POSITIVE_ENERGY_BLOCK.code, D.COMBINED_ENERGY_BLOCK.code):
            rates = self.energy_by_rate()  # the total and its rates settled to one moment
            found = (sum(rates), *rates)
        elif di.code in (D.POSITIVE_ENERGY.code, D.COMBINED_ENERGY.code):
            found = sum(self.energy_by_rate())
        elif di.code in _RATE_INDEX:
            found = self.energy_by_rate()[_RATE_INDEX[di.code]]
        elif di.code == D.METER_NUMBER.code:
            found = self.address
        else:
            with self.lock:
                return super().value(di)
        return found  # type: ignore[no-any-return]

    def relay(self, command: RelayCommand, operator: str) -> None:
        with self.lock:
            self.settle()
            super().relay(command, operator)

    def press_button(self) -> None:
        with self.lock:
            self.settle()
            super().press_button()

    # ------------------------------------------------------------------ saved state

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            self.settle()
            return {
                "address": self.address,
                "mean_w": self.mean_w,
                "energy_wh": list(self.energy_wh),
                "relay_open": self.relay_open,
                "command_open": self.command_open,
                "alarm": self.alarm,
                "keep_power": self.keep_power,
                "auto_close": self.auto_close,
                "clock_offset_s": self.offset.total_seconds(),
                "passwords": {str(level): code for level, code in self.passwords.items()},
            }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: SimClock) -> FleetMeter:
        """A meter as :meth:`to_json` saved it, settled from ``source``'s now on."""
        energy = [float(x) for x in data["energy_wh"]]
        if len(energy) != D.RATES or any(e < 0 for e in energy):
            raise ValueError(
                f"meter {data.get('address')}: energy_wh needs 4 values, none negative"
            )
        meter = cls(
            str(data["address"]),
            source=source,
            mean_w=float(data["mean_w"]),
            energy_wh=energy,
            relay_open=bool(data["relay_open"]),
            command_open=bool(data["command_open"]),
            alarm=bool(data["alarm"]),
            keep_power=bool(data["keep_power"]),
            auto_close=bool(data.get("auto_close", True)),
            offset=dt.timedelta(seconds=float(data.get("clock_offset_s", 0.0))),
            passwords={int(k): str(v) for k, v in data["passwords"].items()},
        )
        meter.settled_at = source.now()
        return meter
