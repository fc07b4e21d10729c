"""Our DL/T 645 client against our responder over real transports: a socat pty pair (the serial
link and server) and TCP on loopback (the terminal link and the asyncio server), plus a scripted
TCP terminal for damaged, stale and dropped answers."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from app.clock import FixedClock
from app.errors import ValidationError
from cardio.dlt645 import dataids as D
from cardio.dlt645.client import MeterClient
from cardio.dlt645.errors import ChecksumError
from cardio.dlt645.errors import MeterDataUnavailable
from cardio.dlt645.errors import MeterLinkError
from cardio.dlt645.errors import MeterNoAnswer
from cardio.dlt645.errors import MeterPasswordRefused
from cardio.dlt645.frame import Frame
from cardio.dlt645.link import SerialSettings
from cardio.dlt645.link import TcpSettings
from cardio.dlt645.link import connect_tcp_link
from cardio.dlt645.link import open_serial_link
from cardio.dlt645.messages import Password
from cardio.dlt645.messages import RelayCommand
from cardio.dlt645.parser import FrameParser
from cardio.dlt645.registers import MemoryMeter
from cardio.dlt645.responder import Responder
from cardio.dlt645.server import SerialServer
from cardio.dlt645.server import TcpServer
from cardio.profile import BEIJING
from cardio.serial_link import BUSY
from cardio.serial_link import FAILED
from cardio.serial_link import SerialPortError
from tests.serial_rig import PtyPair

A = "000000000001"
SILENT = "000000000009"
PASSWORD = Password(2, "000000")
TIMEOUT = 0.3
RETRIES = 1


@dataclass
class Rig:
    client: MeterClient
    meter: MemoryMeter
    server: SerialServer | TcpServer
    clock: FixedClock


def make_meter(clock: FixedClock) -> MemoryMeter:
    return MemoryMeter.with_values(
        A,
        {
            D.REMAINING_AMOUNT: 123_456,
            D.OVERDRAFT_AMOUNT: 0,
            D.PURCHASE_COUNT: 12,
            D.POSITIVE_ENERGY: 1_234_560,
            **dict(zip(D.POSITIVE_ENERGY_RATES, (100_000, 400_000, 500_000, 234_560), strict=True)),
            D.STATUS_WORD_1: D.Status1.OVERDRAFT,
        },
        source=clock,
    )


@pytest.fixture(params=["serial", "tcp"])
def rig(request: pytest.FixtureRequest, clock: FixedClock) -> Iterator[Rig]:
    meter = make_meter(clock)
    responder = Responder([meter])
    server: SerialServer | TcpServer
    if request.param == "serial":
        if shutil.which("socat") is None:
            pytest.skip("socat is not installed")
        pair: PtyPair = request.getfixturevalue("ptys")
        # a pty has no parity bit: 8N1 here, 8E1 on a real RS485 adapter
        server = SerialServer(responder, SerialSettings(str(pair.b), parity="N")).start()
        link = open_serial_link(
            SerialSettings(str(pair.a), parity="N", timeout=TIMEOUT, retries=RETRIES)
        )
    else:
        server = TcpServer(responder).start()
        link = connect_tcp_link(
            TcpSettings("127.0.0.1", server.port, timeout=TIMEOUT, retries=RETRIES)
        )
    try:
        yield Rig(MeterClient(link), meter, server, clock)
    finally:
        link.close()
        server.stop()


def test_read_remaining_amount_energy_and_status(rig: Rig) -> None:
    client = rig.client
    assert client.read(A, D.REMAINING_AMOUNT) == 123_456
    assert client.read(A, D.PURCHASE_COUNT) == 12
    assert client.read(A, D.POSITIVE_ENERGY) == 1_234_560
    assert client.read(A, D.POSITIVE_ENERGY_BLOCK) == (
        1_234_560,
        100_000,
        400_000,
        500_000,
        234_560,
    )
    words = client.read(A, D.STATUS_BLOCK)
    assert words[0] == D.Status1.OVERDRAFT and D.relay_closed(words[2])
    assert client.read_address() == A


def test_read_many_gives_none_for_what_the_meter_lacks(rig: Rig) -> None:
    values = rig.client.read_many(
        A, [D.REMAINING_AMOUNT, D.CURRENT_PRICE, D.STATUS_WORD_3, D.DATE_TIME]
    )
    assert values[D.REMAINING_AMOUNT] == 123_456
    assert values[D.CURRENT_PRICE] is None
    assert D.relay_closed(values[D.STATUS_WORD_3])
    assert values[D.DATE_TIME] == rig.clock.now().replace(microsecond=0)


def test_relay_trip_and_close(rig: Rig) -> None:
    until = rig.clock.now() + dt.timedelta(minutes=5)
    rig.client.relay(A, RelayCommand.TRIP, until, password=PASSWORD, operator="f01")
    assert not D.relay_closed(rig.client.read(A, D.STATUS_WORD_3))
    assert rig.meter.relay_open
    rig.client.relay(A, RelayCommand.CLOSE_PERMIT, until, password=PASSWORD, operator="f01")
    assert D.relay_closed(rig.client.read(A, D.STATUS_WORD_3))
    assert [w.what for w in rig.meter.log] == ["TRIP", "CLOSE_PERMIT"]


def test_write_with_a_wrong_password_is_refused(rig: Rig) -> None:
    with pytest.raises(MeterPasswordRefused) as caught:
        rig.client.write(A, D.ALARM_AMOUNT_1, 3_000, Password(2, "999999"), "f01")
    assert A in str(caught.value) and "wrong password" in str(caught.value)
    assert D.ALARM_AMOUNT_1.code not in rig.meter.values
    rig.client.write(A, D.ALARM_AMOUNT_1, 3_000, PASSWORD, "f01")
    assert rig.client.read(A, D.ALARM_AMOUNT_1) == 3_000


def test_an_error_reply_is_not_retried(rig: Rig) -> None:
    before = rig.server.answered
    with pytest.raises(MeterDataUnavailable):
        rig.client.read(A, D.CURRENT_PRICE)
    assert rig.server.answered == before + 1


def test_a_meter_that_does_not_answer_is_one_typed_error_within_the_timeout(rig: Rig) -> None:
    started = time.monotonic()
    with pytest.raises(MeterNoAnswer) as caught:
        rig.client.read(SILENT, D.REMAINING_AMOUNT)
    waited = time.monotonic() - started
    attempts = 1 + RETRIES
    assert attempts * TIMEOUT <= waited < attempts * TIMEOUT + 0.5
    assert SILENT in str(caught.value) and f"{attempts} attempts" in str(caught.value)
    # read_many gives up at the first silence instead of waiting once per value
    started = time.monotonic()
    with pytest.raises(MeterNoAnswer):
        rig.client.read_many(SILENT, [D.REMAINING_AMOUNT, D.POSITIVE_ENERGY, D.STATUS_WORD_3])
    assert time.monotonic() - started < attempts * TIMEOUT + 0.5


def test_broadcast_time_sets_the_meter_clock(rig: Rig) -> None:
    when = dt.datetime(2026, 6, 1, 10, 0, 0, tzinfo=BEIJING)
    rig.client.broadcast_time(when)
    deadline = time.monotonic() + 5
    while rig.meter.clock() != when and time.monotonic() < deadline:
        time.sleep(0.01)  # no answer comes: wait for the meter to take it
    assert rig.meter.clock() == when
    assert rig.client.read(A, D.DATE_TIME) == when


# --------------------------------------------------------------------------- serial only


def test_serial_settings_a_port_cannot_do_are_a_typed_error(ptys: PtyPair) -> None:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    with pytest.raises(SerialPortError) as caught:
        open_serial_link(SerialSettings(str(ptys.a)))  # 8E1 by default; a pty has no parity
    assert caught.value.kind == FAILED and str(ptys.a) in str(caught.value)
    first = open_serial_link(SerialSettings(str(ptys.a), parity="N"))
    try:
        with pytest.raises(SerialPortError) as busy:
            open_serial_link(SerialSettings(str(ptys.a), parity="N"))
        assert busy.value.kind == BUSY
    finally:
        first.close()


def test_rs485_defaults() -> None:
    settings = SerialSettings("/dev/ttyUSB0")
    assert (settings.baudrate, settings.parity, settings.bytesize, settings.stopbits) == (
        2400,
        "E",
        8,
        1,
    )
    assert settings.bits_per_byte == 11
    assert settings.line_time(24) == pytest.approx(0.11)


# --------------------------------------------------------------------------- TCP only


def tcp_client(port: int, **kwargs: float) -> MeterClient:
    settings = TcpSettings("127.0.0.1", port, timeout=TIMEOUT, retries=RETRIES)
    return MeterClient(connect_tcp_link(TcpSettings(**{**settings.__dict__, **kwargs})))


def test_one_terminal_connection_carries_many_meters(clock: FixedClock) -> None:
    meters = [
        MemoryMeter.with_values(f"{n:012d}", {D.REMAINING_AMOUNT: n * 100}, source=clock)
        for n in range(1, 1001)
    ]
    with TcpServer(Responder(meters)) as server:
        client = tcp_client(server.port)
        for n in range(1, 1001):
            assert client.read(f"{n:012d}", D.REMAINING_AMOUNT) == n * 100
        client.link.close()
        assert server.connections == 1 and server.answered == 1000


def test_long_answers_come_in_follow_up_frames(clock: FixedClock) -> None:
    meter = make_meter(clock)
    with TcpServer(Responder([meter], max_data=10)) as server:
        client = tcp_client(server.port)
        assert client.read(A, D.POSITIVE_ENERGY_BLOCK)[0] == 1_234_560
        assert server.answered == 4  # 20 bytes: 6 in the first frame, 5 + 5 + 4 in follow-ups
        client.link.close()


def test_the_link_reconnects_after_the_terminal_restarts(clock: FixedClock) -> None:
    responder = Responder([make_meter(clock)])
    first = TcpServer(responder).start()
    port = first.port
    client = tcp_client(port)
    assert client.read(A, D.REMAINING_AMOUNT) == 123_456
    first.stop()
    with TcpServer(responder, port=port) as second:
        assert client.read(A, D.REMAINING_AMOUNT) == 123_456
        assert second.connections == 1
    client.link.close()


def test_a_terminal_that_is_not_there_is_a_typed_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free now, nothing listens after the close
    with pytest.raises(MeterLinkError) as caught:
        connect_tcp_link(TcpSettings("127.0.0.1", port, connect_timeout=2))
    assert caught.value.kind == "refused" and f"127.0.0.1:{port}" in str(caught.value)


Script = Callable[[int, Frame], bytes | None]


class ScriptedTerminal:
    """A TCP terminal for fault injection: the n-th request frame is answered with the bytes
    ``script(n, frame)`` returns; ``None`` closes the connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[Frame] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        parser = FrameParser()
        while not self._stop.is_set():
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return
            for item in parser.feed(chunk):
                if isinstance(item, Frame):
                    answer = self.script(len(self.requests), item)
                    self.requests.append(item)
                    if answer is None:
                        return
                    conn.sendall(answer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture
def meter_answer(clock: FixedClock) -> Callable[[Frame], bytes]:
    responder = Responder([make_meter(clock)])

    def answer(frame: Frame) -> bytes:
        reply = responder.handle(frame)
        assert reply is not None
        return reply.encode()

    return answer


@contextmanager
def scripted(script: Script) -> Iterator[tuple[ScriptedTerminal, MeterClient]]:
    """A terminal that answers by ``script`` and a client connected to it over TCP."""
    terminal = ScriptedTerminal(script)
    try:
        client = tcp_client(terminal.port)
        yield terminal, client
        client.link.close()
    finally:
        terminal.close()


def damaged(raw: bytes) -> bytes:
    return raw[:-2] + bytes([raw[-2] ^ 0xFF]) + raw[-1:]


def test_a_damaged_answer_is_retried(meter_answer: Callable[[Frame], bytes]) -> None:
    with scripted(lambda n, f: damaged(meter_answer(f)) if n == 0 else meter_answer(f)) as (
        terminal,
        client,
    ):
        assert client.read(A, D.REMAINING_AMOUNT) == 123_456
        assert len(terminal.requests) == 2


def test_answers_that_stay_damaged_give_the_damage(meter_answer: Callable[[Frame], bytes]) -> None:
    with scripted(lambda n, f: damaged(meter_answer(f))) as (terminal, client):
        with pytest.raises(ChecksumError) as caught:
            client.read(A, D.REMAINING_AMOUNT)
        assert "checksum" in str(caught.value)
        assert len(terminal.requests) == 1 + RETRIES


def test_a_late_answer_for_another_meter_is_ignored(
    meter_answer: Callable[[Frame], bytes], clock: FixedClock
) -> None:
    other = Responder([MemoryMeter.with_values("000000000002", {D.REMAINING_AMOUNT: 1})])
    stale = other.handle(Frame("000000000002", 0x11, D.REMAINING_AMOUNT.wire))
    assert stale is not None
    with scripted(lambda n, f: stale.encode() + meter_answer(f)) as (terminal, client):
        assert client.read(A, D.REMAINING_AMOUNT) == 123_456
        assert len(terminal.requests) == 1


def test_a_dropped_connection_is_made_again(meter_answer: Callable[[Frame], bytes]) -> None:
    with scripted(lambda n, f: None if n == 0 else meter_answer(f)) as (terminal, client):
        assert client.read(A, D.REMAINING_AMOUNT) == 123_456
        assert len(terminal.requests) == 2


def test_a_bad_address_is_refused_before_sending(rig: Rig) -> None:
    before = rig.server.answered
    for bad in ("00000000001", "0000000000０1", "00000000000A"):
        with pytest.raises(ValidationError) as caught:
            rig.client.read(bad, D.REMAINING_AMOUNT)
        assert repr(bad) in str(caught.value)
    assert rig.server.answered == before
