"""The simulated meter (:class:`cardio.meter_sim.MeterSimulator`) on the wire: its state as
DL/T 645-2007 registers (:class:`cardio.dlt645.MeterRegisters`).

The state file is shared with the card slot (``cardvend meter insert``): every read reloads it,
so a purchase loaded from a card shows in the remaining amount read over the wire, and every
relay command or clock write is saved into it, so the card slot sees the relay a command set.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Collection
from typing import Any
from typing import TypeVar

from app.clock import Clock
from app.ports import ControlParameters
from app.services import meter_reading
from app.services.meter_reading import MeterReading
from app.settings import METER_BAUD
from app.settings import METER_PARITY
from app.settings import METER_PASSWORD
from app.settings import METER_PASSWORD_LEVEL
from app.settings import METER_RETRIES
from app.settings import METER_TIMEOUT_MS
from app.settings import Settings
from cardio.dlt645 import dataids as D
from cardio.dlt645.client import MeterClient
from cardio.dlt645.errors import ErrorBits
from cardio.dlt645.errors import MalformedFrame
from cardio.dlt645.errors import MeterRefused
from cardio.dlt645.errors import Refusal
from cardio.dlt645.link import FrameLink
from cardio.dlt645.link import SerialSettings
from cardio.dlt645.link import TcpSettings
from cardio.dlt645.link import connect_tcp_link
from cardio.dlt645.link import open_serial_link
from cardio.dlt645.messages import Password
from cardio.dlt645.messages import RelayCommand
from cardio.meter_sim import RELAY_CLOSED
from cardio.meter_sim import RELAY_TRIPPED
from cardio.meter_sim import MeterSimulator
from cardio.meter_sim import MeterState
from cardio.profile import BEIJING

T = TypeVar("T")

NO_ADDRESS = "000000000000"  # a meter without a number yet


class SimulatedMeterRegisters:
    """:class:`~cardio.dlt645.MeterRegisters` over a :class:`MeterSimulator`'s state file."""

    def __init__(self, meter: MeterSimulator, *, password: str = "000000") -> None:
        self.meter = meter
        self._password = password
        self._lock = threading.Lock()
        self._alarm = False

    def _state(self) -> MeterState:
        return self.meter.reload()

    @property
    def address(self) -> str:
        return self.meter.state.meter_no or NO_ADDRESS

    def value(self, di: D.DataId[T]) -> T | None:
        with self._lock:
            s = self._state()
            return self._value(s, di)  # type: ignore[no-any-return]

    def _value(self, s: MeterState, di: D.DataId[Any]) -> Any:
        code = di.code
        found: dict[int, Any] = {
            D.REMAINING_AMOUNT.code: max(0, s.remaining),
            D.OVERDRAFT_AMOUNT.code: s.overdraft_used,
            D.PURCHASE_COUNT.code: s.purchase_count,
            D.POSITIVE_ENERGY.code: s.total_energy_wh,
            D.COMBINED_ENERGY.code: s.total_energy_wh,
            D.ALARM_AMOUNT_1.code: s.alarm1,
            D.ALARM_AMOUNT_2.code: s.alarm2,
            D.OVERDRAFT_LIMIT.code: s.overdraft_limit,
            D.CREDIT_CEILING.code: s.credit_ceiling,
            D.STATUS_WORD_3.code: self._status3(s),
            D.DATE_TIME.code: s.clock.astimezone(BEIJING),
            D.DATE.code: s.clock.astimezone(BEIJING).date(),
            D.TIME.code: s.clock.astimezone(BEIJING).time().replace(tzinfo=None),
            D.METER_ADDRESS.code: s.meter_no or NO_ADDRESS,
        }
        if s.meter_no is not None:
            found[D.METER_NUMBER.code] = s.meter_no
        if code in found:
            return found[code]
        if di in D.STATUS_WORDS:
            return 0  # a meter always has its status words
        return None  # per-rate energy and the rest: this meter does not keep them

    def _status3(self, s: MeterState) -> int:
        word = int(D.Status3.MONEY_PREPAID)
        if s.relay == RELAY_TRIPPED:
            word |= D.Status3.RELAY_OPEN | D.Status3.RELAY_COMMAND_OPEN
        if self._alarm:
            word |= D.Status3.PRE_TRIP_ALARM
        return word

    def write(self, di: D.DataId[T], value: T, operator: str) -> None:
        with self._lock:
            s = self._state()
            if isinstance(value, dt.datetime) and di.code == D.DATE_TIME.code:
                self._set_clock(s, value)
            else:
                raise Refusal(ErrorBits.UNAUTHORISED)

    def password_ok(self, password: Password) -> bool:
        return password.code == self._password

    def relay(self, command: RelayCommand, operator: str) -> None:
        with self._lock:
            s = self._state()
            if command is RelayCommand.TRIP:
                s.relay = RELAY_TRIPPED
            elif command in (RelayCommand.CLOSE_PERMIT, RelayCommand.CLOSE_DIRECT):
                if s.remaining <= s.trip_point:
                    raise Refusal(ErrorBits.OTHER)  # no credit: the meter keeps the relay open
                s.relay = RELAY_CLOSED
            elif command is RelayCommand.ALARM:
                self._alarm = True
            elif command is RelayCommand.ALARM_RELEASE:
                self._alarm = False
            else:
                raise Refusal(ErrorBits.OTHER)
            self.meter.save()

    def clock(self) -> dt.datetime:
        with self._lock:
            return self._state().clock.astimezone(BEIJING)

    def set_clock(self, when: dt.datetime) -> None:
        with self._lock:
            self._set_clock(self._state(), when)

    def _set_clock(self, s: MeterState, when: dt.datetime) -> None:
        s.clock = when.astimezone(BEIJING).replace(second=0, microsecond=0)
        self.meter.save()


# --------------------------------------------------------------------------- the reading side

READ_SET: tuple[D.DataId[Any], ...] = (
    D.REMAINING_AMOUNT,
    D.OVERDRAFT_AMOUNT,
    D.PURCHASE_COUNT,
    D.POSITIVE_ENERGY,
    *D.POSITIVE_ENERGY_RATES,
    D.ALARM_AMOUNT_1,
    D.ALARM_AMOUNT_2,
    D.STATUS_BLOCK,
    D.DATE_TIME,
)

RELAY_COMMANDS: dict[str, RelayCommand] = {
    "trip": RelayCommand.TRIP,
    "close": RelayCommand.CLOSE_PERMIT,
    "alarm": RelayCommand.ALARM,
    "release": RelayCommand.ALARM_RELEASE,
}


# what the station's control loop needs of a remote meter: three questions, not twelve
STATION_SET: tuple[D.DataId[Any], ...] = (D.POSITIVE_ENERGY_BLOCK, D.STATUS_BLOCK, D.DATE_TIME)
# the registers a station's measurement task names (app.ports.RemoteMeters.read)
STATION_REGISTERS: dict[str, D.DataId[Any]] = {
    "energy": D.POSITIVE_ENERGY_BLOCK,
    "status": D.STATUS_BLOCK,
    "clock": D.DATE_TIME,
}


def read_meter(
    client: MeterClient, address: str, dis: tuple[D.DataId[Any], ...] = READ_SET
) -> MeterReading:
    """Every value of ``dis`` (:data:`READ_SET`) the meter at ``address`` answers (``None`` for
    the others); a meter that does not answer at all raises :class:`MeterNoAnswer`."""
    got = client.read_many(address, dis)
    block = got.get(D.POSITIVE_ENERGY_BLOCK)
    if block:  # the total and the four rates in one answer
        got[D.POSITIVE_ENERGY] = block[0]
        got.update(zip(D.POSITIVE_ENERGY_RATES, block[1:], strict=False))
    words = got.get(D.STATUS_BLOCK)
    status: tuple[int | None, ...] = tuple(words) if words else (None,) * len(D.STATUS_WORDS)
    status3 = status[2]
    relay = None
    if status3 is not None:
        relay = meter_reading.RELAY_CLOSED if D.relay_closed(status3) else meter_reading.RELAY_OPEN
    return MeterReading(
        addr=address,
        remaining_fen=got.get(D.REMAINING_AMOUNT),
        overdraft_fen=got.get(D.OVERDRAFT_AMOUNT),
        purchase_count=got.get(D.PURCHASE_COUNT),
        energy_wh=got.get(D.POSITIVE_ENERGY),
        energy_rates_wh=tuple(got.get(di) for di in D.POSITIVE_ENERGY_RATES),
        alarm1_fen=got.get(D.ALARM_AMOUNT_1),
        alarm2_fen=got.get(D.ALARM_AMOUNT_2),
        relay=relay,
        status_words=status,
        meter_time=got.get(D.DATE_TIME),
    )


def command_relay(
    client: MeterClient,
    address: str,
    command: str,
    now: dt.datetime,
    *,
    operator: str,
    password: Password,
) -> None:
    """Send ``command`` (:data:`RELAY_COMMANDS`); valid for ten minutes of the meter's clock
    (its own time when it answers it, else ``now``)."""
    try:
        base = client.read(address, D.DATE_TIME)
    except MeterRefused:
        base = now
    client.relay(
        address,
        RELAY_COMMANDS[command],
        base + dt.timedelta(minutes=10),
        password=password,
        operator=operator,
    )


# --------------------------------------------------------------------------- the configured bus

_TCP = re.compile(r"[A-Za-z0-9.\-]+:[0-9]{1,5}", re.ASCII)


def link_to(where: str, settings: Settings) -> FrameLink:
    """The link to ``where``: a terminal's ``HOST:PORT`` (TCP), else a serial port with the
    configured RS485 settings (baud, parity, timeout, retries)."""
    timeout = settings.value(METER_TIMEOUT_MS) / 1000
    retries = settings.value(METER_RETRIES)
    if _TCP.fullmatch(where):
        host, port = where.rsplit(":", 1)
        return connect_tcp_link(TcpSettings(host, int(port), timeout=timeout, retries=retries))
    return open_serial_link(
        SerialSettings(
            where,
            baudrate=settings.value(METER_BAUD),
            parity=settings.value(METER_PARITY),
            timeout=timeout,
            retries=retries,
        )
    )


def read_at(settings: Settings, where: str, address: str) -> MeterReading:
    """Read the meter at ``address`` on the bus or terminal ``where`` (:func:`link_to`)."""
    link = link_to(where, settings)
    try:
        return read_meter(MeterClient(link), address)
    finally:
        link.close()


def relay_at(
    settings: Settings, clock: Clock, where: str, address: str, command: str, operator: str
) -> None:
    """A relay command to the meter at ``address`` with the configured meter password."""
    link = link_to(where, settings)
    try:
        command_relay(
            MeterClient(link),
            address,
            command,
            clock.now(),
            operator=operator,
            password=Password(settings.value(METER_PASSWORD_LEVEL), settings.value(METER_PASSWORD)),
        )
    finally:
        link.close()


class TerminalMeters:
    """:class:`app.ports.RemoteMeters` behind one terminal (``where``: ``HOST:PORT`` or a serial
    port), over one link kept open (made again after it broke) with the configured meter
    password."""

    def __init__(self, settings: Settings, clock: Clock, where: str) -> None:
        self._clock = clock
        self._password = Password(
            settings.value(METER_PASSWORD_LEVEL), settings.value(METER_PASSWORD)
        )
        self._link = link_to(where, settings)
        self._client = MeterClient(self._link)
        self._lock = threading.Lock()

    def read(self, meter_no: str, registers: Collection[str] | None = None) -> MeterReading:
        dis = STATION_SET
        if registers is not None:
            dis = tuple(di for name, di in STATION_REGISTERS.items() if name in registers)
        with self._lock:
            return read_meter(self._client, meter_no, dis)

    def command(self, meter_no: str, command: str, operator: str) -> None:
        with self._lock:
            command_relay(
                self._client, meter_no, command, self._clock.now(),
                operator=operator, password=self._password,
            )  # fmt: skip

    def set_parameters(
        self, meter_no: str, params: ControlParameters, operator: str
    ) -> ControlParameters:
        """Write alarm amounts 1 and 2 and the overdraft limit (DL/T 645 04001001..03), then
        read the three back in one exchange."""
        written = (
            (D.ALARM_AMOUNT_1, params.alarm1_fen),
            (D.ALARM_AMOUNT_2, params.alarm2_fen),
            (D.OVERDRAFT_LIMIT, params.overdraft_limit_fen),
        )
        with self._lock:
            for di, value in written:
                self._client.write(meter_no, di, value, self._password, operator)
            got = self._client.read_many(meter_no, tuple(di for di, _ in written))
        held = [got.get(di) for di, _ in written]
        if any(v is None for v in held):
            raise MalformedFrame(f"meter {meter_no} did not give its control parameters back")
        return ControlParameters(int(held[0]), int(held[1]), int(held[2]))  # type: ignore[arg-type]

    def close(self) -> None:
        self._link.close()
