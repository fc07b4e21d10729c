"""Cross-check of our DL/T 645-2007 codec against an independent implementation: the ``dlt645``
package (3.2.0, a test-only dependency; nothing outside tests imports it).

Three levels, both directions each:

1. Frames: a table with every function we implement (read, follow-up, read address, write,
   broadcast time, relay, error replies). Its frame layer (``DLT645Protocol``) is generic, so it
   builds and parses all of them: its frames -> our decoder and parser, ours -> its decoder, and
   the bytes are identical.
2. Values: its BCD helpers (``float_to_bcd``, ``bcd_to_float``, ``string_to_bcd``,
   ``bcd_to_string``) against our formats for money, energy (signed), price, counts, status
   words, date, time and addresses.
3. Services over TCP on loopback: our client against its meter server, its client against our
   responder (reads, read address, writes with right and wrong passwords, error replies).

What its API cannot do (so only levels 1 and 2 cover it):

* relay control 0x1C and follow-up reads 0x12: it has no client or server function for them;
* remaining/overdraft amount (0090020x), purchase count (03330201), price (02800020), alarm and
  other money limits (0400100x) and the combined date-time (0400010C): not in its data table;
  its server answers "no such data" and its client cannot decode them;
* status words with a hex digit A-F in them: it keeps status words as decimal digit strings.
* money of 800,000.00 yuan and more: its decoder takes bit 7 for a sign in every XXXXXX.XX value,
  but the money registers are unsigned.

Where it differs from us (asserted below, so a change on either side shows):

* its ``set_address`` takes the address in line order (A0 first), ours as printed on the meter;
* it sends the password's digits in written order (``02123456`` -> ``02 12 34 56``); we send
  them least significant byte first like every multi-byte field (``02 56 34 12``);
* it sends the broadcast time as ``YY MM DD hh mm ss``; DL/T 645-2007 (and we) send
  ``ss mm hh DD MM YY``, least significant first, as for the relay command's valid-until time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("dlt645", reason="the dlt645 package (a dev extra) is not installed")

from dlt645 import DLT645Protocol
from dlt645 import MeterClientService
from dlt645 import MeterServerService
from dlt645 import TcpClient
from dlt645.common.transform import bcd_to_float
from dlt645.common.transform import bcd_to_string
from dlt645.common.transform import float_to_bcd
from dlt645.common.transform import string_to_bcd

from app.clock import FixedClock
from cardio.dlt645 import dataids as D
from cardio.dlt645.client import MeterClient
from cardio.dlt645.errors import MeterDataUnavailable
from cardio.dlt645.errors import MeterPasswordRefused
from cardio.dlt645.frame import BROADCAST
from cardio.dlt645.frame import WILDCARD
from cardio.dlt645.frame import Frame
from cardio.dlt645.frame import address_bytes
from cardio.dlt645.frame import decode_frame
from cardio.dlt645.link import TcpSettings
from cardio.dlt645.link import connect_tcp_link
from cardio.dlt645.messages import Password
from cardio.dlt645.messages import ReadReply
from cardio.dlt645.messages import RelayCommand
from cardio.dlt645.messages import RelayRequest
from cardio.dlt645.messages import TimeBroadcast
from cardio.dlt645.messages import decode
from cardio.dlt645.messages import encode
from cardio.dlt645.parser import FrameParser
from cardio.dlt645.registers import MemoryMeter
from cardio.dlt645.responder import Responder
from cardio.dlt645.server import TcpServer
from cardio.profile import BEIJING

A = "000000000001"
WHEN = dt.datetime(2026, 3, 1, 8, 30, 15, tzinfo=BEIJING)

# --------------------------------------------------------------------------- 1. frames

FRAMES: list[tuple[str, str, int, str]] = [
    # name, address as printed, control, data (without the 0x33 offset)
    ("read request", A, 0x11, "00 02 90 00"),
    ("read reply", A, 0x91, "00 02 90 00 56 34 12 00"),
    ("read reply, follow-up comes", A, 0xB1, "FF 05 00 04 00 00 00 00 50 02"),
    ("follow-up request", A, 0x12, "FF 05 00 04 01"),
    ("follow-up reply", A, 0x92, "FF 05 00 04 00 00 00 00 01"),
    ("read address request", WILDCARD, 0x13, ""),
    ("read address reply", "123456789012", 0x93, "12 90 78 56 34 12"),
    ("write request", A, 0x14, "01 10 00 04 02 00 00 00 34 12 00 00 00 20 00 00"),
    ("write ack", A, 0x94, ""),
    ("broadcast time", BROADCAST, 0x08, "15 30 08 01 03 26"),
    ("relay trip", A, 0x1C, "02 00 00 00 07 00 00 00 1A 00 00 35 08 01 03 26"),
    ("relay ack", A, 0x9C, ""),
    ("read error: no data", A, 0xD1, "02"),
    ("write error: unauthorised", A, 0xD4, "04"),
    ("relay error: other", A, 0xDC, "01"),
]


@pytest.mark.parametrize(("name", "address", "c", "data"), FRAMES, ids=[f[0] for f in FRAMES])
def test_frames_agree_both_ways(name: str, address: str, c: int, data: str) -> None:
    ours = Frame(address, c, bytes.fromhex(data))
    theirs = bytes(DLT645Protocol.build_frame(address_bytes(address), c, ours.data))
    assert theirs == ours.encode()  # identical bytes, preamble included
    # its encoder -> our decoder and our stream parser
    assert decode_frame(theirs) == ours
    assert FrameParser().feed(theirs[:7]) + FrameParser().feed(theirs) == [ours]
    decode(ours)  # and our messages take it
    # our encoder -> its decoder
    parsed = DLT645Protocol.deserialize(ours.encode())
    assert parsed is not None
    assert bytes(parsed.addr) == address_bytes(address)
    assert parsed.ctrl_code == c and bytes(parsed.data) == ours.data


def test_our_typed_relay_request_is_its_frame() -> None:
    request = RelayRequest(
        RelayCommand.TRIP, Password(2, "000000"), "00000007", WHEN.replace(minute=35, second=0)
    )
    relay = next(f for f in FRAMES if f[0] == "relay trip")
    assert encode(A, request) == Frame(A, 0x1C, bytes.fromhex(relay[3]))


# --------------------------------------------------------------------------- 2. values

MONEY_FEN = [0, 1, 99, 123_456, 79_999_999]
ENERGY_WH = [0, 10, 123_450, -123_450, 799_999_990, -799_999_990]


@pytest.mark.parametrize("fen", MONEY_FEN)
def test_money_agrees(fen: int) -> None:
    ours = D.REMAINING_AMOUNT.encode(fen)
    assert bytes(float_to_bcd(fen / 100, "XXXXXX.XX", "little")) == ours
    assert round(bcd_to_float(ours, "XXXXXX.XX", "little") * 100) == fen


def test_money_from_800000_yuan_up_is_read_as_negative_by_it() -> None:
    # its decoder reads bit 7 of the top byte as a sign in every XXXXXX.XX value; the money
    # registers are unsigned (the overdraft has its own register), so we read 999999.99 yuan
    ours = D.REMAINING_AMOUNT.encode(99_999_999)
    assert bytes(float_to_bcd(999_999.99, "XXXXXX.XX", "little")) == ours
    assert D.REMAINING_AMOUNT.decode(ours) == 99_999_999
    assert bcd_to_float(ours, "XXXXXX.XX", "little") < 0


@pytest.mark.parametrize("wh", ENERGY_WH)
def test_signed_energy_agrees(wh: int) -> None:
    ours = D.COMBINED_ENERGY.encode(wh)
    assert bytes(float_to_bcd(wh / 1000, "XXXXXX.XX", "little")) == ours
    assert round(bcd_to_float(ours, "XXXXXX.XX", "little") * 1000) == wh


@pytest.mark.parametrize("rate", [1, 5_283, 99_999])
def test_price_agrees(rate: int) -> None:
    ours = D.CURRENT_PRICE.encode(rate)
    assert bytes(float_to_bcd(rate / 10_000, "XXXX.XXXX", "little")) == ours
    assert round(bcd_to_float(ours, "XXXX.XXXX", "little") * 10_000) == rate


@pytest.mark.parametrize(
    ("di", "value", "text"),
    [
        (D.PURCHASE_COUNT, 42, "0042"),
        (D.STATUS_WORD_3, 0x0250, "0250"),  # decimal-looking bits only (see the docstring)
        (D.DATE, dt.date(2026, 3, 1), "26030100"),  # YYMMDDWW, Sunday = 0
        (D.TIME, dt.time(8, 30, 15), "083015"),
        (D.METER_ADDRESS, "123456789012", "123456789012"),
    ],
)
def test_digit_values_agree(di: D.DataId[Any], value: Any, text: str) -> None:
    ours = di.encode(value)
    assert bytes(string_to_bcd(text, "little")) == ours
    assert bcd_to_string(bytearray(ours), "little") == text
    assert di.decode(bytes(string_to_bcd(text, "little"))) == value


# --------------------------------------------------------------------------- 3. services


@pytest.fixture
def their_meter() -> Iterator[MeterServerService]:
    service = MeterServerService.new_tcp_server("127.0.0.1", 0, 2.0)
    service.set_address(address_bytes(A))  # its addresses are in line order
    assert service.set_00(0x00000000, -1234.56)
    assert service.set_00(0x00010000, 99.99)
    assert service.set_00(0x00010100, 12.34)
    assert service.set_04(0x04000101, "26030100")
    assert service.set_04(0x04000102, "083015")
    assert service.set_04(0x04000401, A)
    assert service.set_04(0x04000503, "0250")
    assert service.set_password("02000000")
    assert service.server.start()
    try:
        yield service
    finally:
        service.server.stop()


def test_our_client_reads_and_writes_its_meter(their_meter: MeterServerService) -> None:
    client = MeterClient(
        connect_tcp_link(TcpSettings("127.0.0.1", their_meter.server.port, timeout=1.0))
    )
    try:
        assert client.read(A, D.COMBINED_ENERGY) == -1_234_560
        assert client.read(A, D.POSITIVE_ENERGY) == 99_990
        assert client.read(A, D.POSITIVE_ENERGY_RATES[0]) == 12_340
        assert client.read(A, D.DATE) == dt.date(2026, 3, 1)
        assert client.read(A, D.TIME) == dt.time(8, 30, 15)
        assert client.read(A, D.METER_ADDRESS) == A
        assert not D.relay_closed(client.read(A, D.STATUS_WORD_3))
        assert client.read_address() == A
        with pytest.raises(MeterDataUnavailable):
            client.read(A, D.REMAINING_AMOUNT)  # not in its table
        client.write(A, D.DATE, dt.date(2026, 3, 2), Password(2, "000000"), "0")
        assert client.read(A, D.DATE) == dt.date(2026, 3, 2)
        with pytest.raises(MeterPasswordRefused):
            client.write(A, D.DATE, dt.date(2026, 3, 3), Password(2, "000001"), "0")
        assert client.read(A, D.DATE) == dt.date(2026, 3, 2)
    finally:
        client.link.close()


@pytest.fixture(scope="module")
def their_client() -> MeterClientService:
    # built once: each one deep-copies its data table (seconds); connected per test below
    return MeterClientService.new_tcp_client("127.0.0.1", 1, timeout=2.0)


@pytest.fixture
def our_meter(
    clock: FixedClock, their_client: MeterClientService
) -> Iterator[tuple[MemoryMeter, MeterClientService]]:
    clock.set(WHEN)
    meter = MemoryMeter.with_values(
        A,
        {D.COMBINED_ENERGY: -1_234_560, D.POSITIVE_ENERGY: 99_990, D.STATUS_WORD_1: 0x4000},
        passwords={2: "123456"},
        source=clock,
    )
    with TcpServer(Responder([meter])) as server:
        theirs = their_client
        theirs.client = TcpClient("127.0.0.1", server.port, timeout=2.0)
        theirs.set_address(address_bytes(A).hex())  # line order (see the docstring)
        try:
            yield meter, theirs
        finally:
            theirs.disconnect()


def test_its_client_reads_our_meter(our_meter: tuple[MemoryMeter, MeterClientService]) -> None:
    _meter, theirs = our_meter
    values = {di: theirs.read_00(di) for di in (0x00000000, 0x00010000)}
    assert {di: item.value for di, item in values.items() if item} == {
        0x00000000: -1234.56,
        0x00010000: 99.99,
    }
    texts = {di: theirs.read_04(di) for di in (0x04000101, 0x04000102, 0x04000501, 0x04000401)}
    assert {di: item.value for di, item in texts.items() if item} == {
        0x04000101: "26030100",
        0x04000102: "083015",
        0x04000501: "4000",
        0x04000401: A,
    }
    assert theirs.read_00(0x00009900) is None  # no such data: our error reply, its None
    address = theirs.read_address()
    assert address is not None and bytes(theirs.address) == address_bytes(A)


def test_its_writes_reach_our_meter_with_the_password_in_its_order(
    our_meter: tuple[MemoryMeter, MeterClientService],
) -> None:
    meter, theirs = our_meter
    # our password 123456 is 02 56 34 12 on the line, which it writes as "02563412"
    theirs.write_04(0x04000101, "26030200", "02123456")
    assert meter.log == []  # refused: "123456" in its order is another password
    theirs.write_04(0x04000101, "26030200", "02563412")
    assert [w.what for w in meter.log] == ["date"]
    assert meter.clock().date() == dt.date(2026, 3, 2)


def test_broadcast_time_byte_order_differs(
    our_meter: tuple[MemoryMeter, MeterClientService],
) -> None:
    meter, theirs = our_meter
    frame = encode(BROADCAST, TimeBroadcast(WHEN))
    assert frame.data == bytes.fromhex("15 30 08 01 03 26")  # ss mm hh DD MM YY
    assert theirs.broadcast_time_sync(WHEN.replace(tzinfo=None))
    # it sent 26 03 01 08 30 15 (YY MM DD hh mm ss): our meter reads ss=26 mm=03 hh=01 DD=08
    # MM=30 -- no such month, so the broadcast is dropped and the clock stays
    assert meter.clock() == WHEN
    message = decode(Frame(BROADCAST, 0x08, bytes.fromhex("15 30 08 01 03 26")))
    assert message == TimeBroadcast(WHEN)
    reply = encode(A, ReadReply(D.DATE_TIME.code, D.DATE_TIME.encode(WHEN)))
    assert decode_frame(reply.encode()).data[4:] == bytes.fromhex("15 30 08 00 01 03 26")
