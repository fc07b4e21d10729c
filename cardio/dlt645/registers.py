"""The meter side's state as the responder sees it, and a simple in-memory meter.

:class:`MeterRegisters` is what :class:`cardio.dlt645.responder.Responder` needs from a meter:
its address, typed register values, writes, password checks, relay/alarm actions and its clock.
Anything that holds a meter's state (the card meter simulator, the fleet simulator) can stand
behind it.  :class:`MemoryMeter` keeps everything in memory (tests, benchmarks, demos).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol
from typing import TypeVar

from app.clock import Clock
from app.clock import SystemClock
from cardio.dlt645 import dataids as D
from cardio.dlt645.errors import ErrorBits
from cardio.dlt645.errors import Refusal
from cardio.dlt645.messages import Password
from cardio.dlt645.messages import RelayCommand
from cardio.profile import BEIJING

T = TypeVar("T")


class MeterRegisters(Protocol):
    """One meter, as the responder needs it. Values are typed as :mod:`.dataids` says (fen,
    Wh, status words as ints, aware date-times). Raise :class:`Refusal` to answer with an error
    reply (e.g. ``Refusal(ErrorBits.OTHER)`` for a value the meter will not take)."""

    @property
    def address(self) -> str:
        """12 digits."""
        ...

    def value(self, di: D.DataId[T]) -> T | None:
        """The current value of ``di``; ``None`` when the meter has no such data."""
        ...

    def write(self, di: D.DataId[T], value: T, operator: str) -> None:
        """Take a written value (the password was checked already)."""
        ...

    def password_ok(self, password: Password) -> bool: ...

    def relay(self, command: RelayCommand, operator: str) -> None:
        """Carry out a relay or alarm command (the password and validity were checked)."""
        ...

    def clock(self) -> dt.datetime:
        """The meter's clock (aware)."""
        ...

    def set_clock(self, when: dt.datetime) -> None:
        """A broadcast time (or a written date/time) sets the clock."""
        ...


@dataclass
class Written:
    """A write or relay command a :class:`MemoryMeter` took (for tests to inspect)."""

    what: str  # a DI name or a relay command name
    value: object
    operator: str


@dataclass
class MemoryMeter:
    """An in-memory meter (:class:`MeterRegisters`) with a relay.

    ``values`` by data identifier; status word 3 is computed from the relay state (its other
    bits come from ``values`` or default to a money-prepaid meter); the date and time come from
    the meter clock (``clock`` plus the offset a broadcast or write set). A close permit closes
    the relay at once when ``auto_close`` (a customer at the button), else :meth:`press_button`
    does. A kept meter (keep power) refuses to trip."""

    address: str
    values: dict[int, Any] = field(default_factory=dict)
    passwords: dict[int, str] = field(default_factory=lambda: {2: "000000", 4: "000000"})
    source: Clock = field(default_factory=SystemClock)
    auto_close: bool = True
    relay_open: bool = False
    command_open: bool = False
    alarm: bool = False
    keep_power: bool = False
    offset: dt.timedelta = dt.timedelta(0)
    log: list[Written] = field(default_factory=list)

    @classmethod
    def with_values(
        cls, address: str, values: Mapping[D.DataId[Any], Any], **kwargs: Any
    ) -> MemoryMeter:
        return cls(address, {di.code: v for di, v in values.items()}, **kwargs)

    def value(self, di: D.DataId[T]) -> T | None:
        found: Any
        if di.code == D.STATUS_WORD_3.code:
            found = self._status3()
        elif di.code == D.DATE_TIME.code:
            found = self.clock()
        elif di.code == D.DATE.code:
            found = self.clock().date()
        elif di.code == D.TIME.code:
            found = self.clock().time().replace(microsecond=0)
        elif di.code == D.METER_ADDRESS.code:
            found = self.address
        elif di in D.STATUS_WORDS:
            found = self.values.get(di.code, 0)  # a meter always has its status words
        else:
            found = self.values.get(di.code)
        return found  # type: ignore[no-any-return]

    def write(self, di: D.DataId[T], value: T, operator: str) -> None:
        self.log.append(Written(di.name, value, operator))
        if isinstance(value, dt.datetime) and di.code == D.DATE_TIME.code:
            self.set_clock(value)
        elif isinstance(value, dt.date) and di.code == D.DATE.code:
            now = self.clock()
            self.set_clock(dt.datetime.combine(value, now.timetz()))
        elif isinstance(value, dt.time) and di.code == D.TIME.code:
            now = self.clock()
            self.set_clock(dt.datetime.combine(now.date(), value, BEIJING))
        else:
            self.values[di.code] = value

    def password_ok(self, password: Password) -> bool:
        return self.passwords.get(password.level) == password.code

    def relay(self, command: RelayCommand, operator: str) -> None:
        if command is RelayCommand.TRIP and self.keep_power:
            raise Refusal(ErrorBits.OTHER)
        self.log.append(Written(command.name, None, operator))
        if command is RelayCommand.TRIP:
            self.command_open = self.relay_open = True
        elif command is RelayCommand.CLOSE_PERMIT:
            self.command_open = False
            if self.auto_close:
                self.relay_open = False
        elif command in (RelayCommand.CLOSE_DIRECT, RelayCommand.KEEP_POWER):
            self.command_open = self.relay_open = False
            self.keep_power = command is RelayCommand.KEEP_POWER or self.keep_power
        elif command is RelayCommand.KEEP_POWER_RELEASE:
            self.keep_power = False
        else:
            self.alarm = command is RelayCommand.ALARM

    def press_button(self) -> None:
        """The customer switches on: the relay closes if closing is permitted."""
        if not self.command_open:
            self.relay_open = False

    def clock(self) -> dt.datetime:
        return (self.source.now() + self.offset).astimezone(BEIJING)

    def set_clock(self, when: dt.datetime) -> None:
        self.offset = when - self.source.now()

    def _status3(self) -> int:
        word = int(self.values.get(D.STATUS_WORD_3.code, D.Status3.MONEY_PREPAID))
        flags = {
            D.Status3.RELAY_OPEN: self.relay_open,
            D.Status3.RELAY_COMMAND_OPEN: self.command_open,
            D.Status3.PRE_TRIP_ALARM: self.alarm,
            D.Status3.KEEP_POWER: self.keep_power,
        }
        for bit, on in flags.items():
            word = word | bit if on else word & ~bit
        return word
