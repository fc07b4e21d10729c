"""The meter side (cardio/dlt645/responder.py, registers.py): which frames are answered and how,
frame in, frame out, with the in-memory meter."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from app.clock import FixedClock
from cardio.dlt645 import dataids as D
from cardio.dlt645.errors import ErrorBits
from cardio.dlt645.frame import BROADCAST
from cardio.dlt645.frame import WILDCARD
from cardio.dlt645.frame import Frame
from cardio.dlt645.frame import Function
from cardio.dlt645.messages import Ack
from cardio.dlt645.messages import AddressReply
from cardio.dlt645.messages import AddressRequest
from cardio.dlt645.messages import ErrorReply
from cardio.dlt645.messages import FollowUpRequest
from cardio.dlt645.messages import Message
from cardio.dlt645.messages import Password
from cardio.dlt645.messages import ReadReply
from cardio.dlt645.messages import ReadRequest
from cardio.dlt645.messages import RelayCommand
from cardio.dlt645.messages import RelayRequest
from cardio.dlt645.messages import TimeBroadcast
from cardio.dlt645.messages import WriteRequest
from cardio.dlt645.messages import decode
from cardio.dlt645.messages import encode
from cardio.dlt645.registers import MemoryMeter
from cardio.dlt645.responder import Responder
from cardio.profile import BEIJING

A = "000000000001"
B = "000000000002"
PASSWORD = Password(2, "000000")
WRONG = Password(2, "000001")
OPERATOR = "00000042"


@pytest.fixture
def meter(clock: FixedClock) -> MemoryMeter:
    return MemoryMeter.with_values(
        A,
        {
            D.REMAINING_AMOUNT: 123_456,
            D.OVERDRAFT_AMOUNT: 0,
            D.PURCHASE_COUNT: 3,
            D.POSITIVE_ENERGY: 10_000,
            **dict.fromkeys(D.POSITIVE_ENERGY_RATES, 2_500),
            D.ALARM_AMOUNT_1: 2_000,
        },
        source=clock,
    )


def ask(responder: Responder, message: Message, address: str = A) -> Message | None:
    reply = responder.handle(encode(address, message))
    return None if reply is None else decode(reply)


def later(clock: FixedClock, minutes: int = 5) -> dt.datetime:
    return clock.now() + dt.timedelta(minutes=minutes)


def test_reads_are_answered_with_typed_values(meter: MemoryMeter) -> None:
    responder = Responder([meter])
    reply = ask(responder, ReadRequest(D.REMAINING_AMOUNT.code))
    assert isinstance(reply, ReadReply)
    assert D.REMAINING_AMOUNT.decode(reply.data) == 123_456
    block = ask(responder, ReadRequest(D.POSITIVE_ENERGY_BLOCK.code))
    assert isinstance(block, ReadReply)
    assert D.POSITIVE_ENERGY_BLOCK.decode(block.data) == (10_000, 2_500, 2_500, 2_500, 2_500)
    address = ask(responder, ReadRequest(D.METER_ADDRESS.code))
    assert isinstance(address, ReadReply) and D.METER_ADDRESS.decode(address.data) == A


def test_unknown_or_missing_data_gets_no_data(meter: MemoryMeter) -> None:
    responder = Responder([meter])
    assert ask(responder, ReadRequest(0x12345678)) == ErrorReply(Function.READ, ErrorBits.NO_DATA)
    assert ask(responder, ReadRequest(D.CURRENT_PRICE.code)) == ErrorReply(
        Function.READ, ErrorBits.NO_DATA
    )


def test_a_value_the_register_cannot_carry_is_not_sent(
    meter: MemoryMeter, caplog: pytest.LogCaptureFixture
) -> None:
    meter.values[D.REMAINING_AMOUNT.code] = -5  # a broken meter state
    with caplog.at_level(logging.WARNING):
        reply = ask(Responder([meter]), ReadRequest(D.REMAINING_AMOUNT.code))
    assert reply == ErrorReply(Function.READ, ErrorBits.NO_DATA)
    assert "00900200" in caplog.text


def test_only_our_meters_requests_are_answered(meter: MemoryMeter) -> None:
    responder = Responder([meter])
    assert ask(responder, ReadRequest(D.REMAINING_AMOUNT.code), B) is None
    # a meter's reply on the bus is never answered
    reply = encode(A, ReadReply(D.REMAINING_AMOUNT.code, b"\x00" * 4))
    assert responder.handle(reply) is None
    assert ask(responder, ReadRequest(D.REMAINING_AMOUNT.code), BROADCAST) is None


def test_broadcast_time_sets_every_clock_and_is_never_answered(clock: FixedClock) -> None:
    meters = [MemoryMeter(A, source=clock), MemoryMeter(B, source=clock)]
    responder = Responder(meters)
    when = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=BEIJING)
    assert ask(responder, TimeBroadcast(when), BROADCAST) is None
    assert all(m.clock() == when for m in meters)
    # a time broadcast sent to one address is not a broadcast: ignored
    assert ask(responder, TimeBroadcast(when + dt.timedelta(hours=1)), A) is None
    assert meters[0].clock() == when


def test_wildcards_are_answered_by_exactly_one_meter(clock: FixedClock) -> None:
    one = Responder([MemoryMeter(A, source=clock)])
    assert ask(one, AddressRequest(), WILDCARD) == AddressReply(A)
    frame = one.handle(encode(WILDCARD, AddressRequest()))
    assert frame is not None and frame.address == A and frame.control == 0x93
    two = Responder([MemoryMeter(A, source=clock), MemoryMeter(B, source=clock)])
    assert ask(two, AddressRequest(), WILDCARD) is None  # both would answer: garbled on a bus
    assert ask(two, AddressRequest(), "AAAAAAAAAA02") == AddressReply(B)
    assert ask(two, ReadRequest(D.METER_ADDRESS.code), "AAAAAAAAAA01") is not None


def test_long_answers_go_out_in_follow_up_frames(meter: MemoryMeter) -> None:
    meter.values[D.STATUS_WORD_1.code] = 0x4000
    responder = Responder([meter], max_data=10)  # 4 DI bytes + 6 data bytes per frame
    code = D.STATUS_BLOCK.code
    first = ask(responder, ReadRequest(code))
    assert isinstance(first, ReadReply) and first.more and len(first.data) == 6
    second = ask(responder, FollowUpRequest(code, 1))
    assert isinstance(second, ReadReply) and second.more and second.seq == 1
    third = ask(responder, FollowUpRequest(code, 2))
    assert isinstance(third, ReadReply) and not third.more and third.seq == 2
    words = D.STATUS_BLOCK.decode(first.data + second.data + third.data)
    assert len(words) == 7 and words[0] == 0x4000
    # out of turn, or after the end
    assert ask(responder, FollowUpRequest(code, 3)) == ErrorReply(
        Function.READ_FOLLOW_UP, ErrorBits.NO_DATA
    )


def test_writes_check_the_password_and_the_register(meter: MemoryMeter) -> None:
    responder = Responder([meter])
    code = D.ALARM_AMOUNT_1.code
    good = D.ALARM_AMOUNT_1.encode(5_000)
    unauthorised = ErrorReply(Function.WRITE, ErrorBits.UNAUTHORISED)
    assert ask(responder, WriteRequest(code, WRONG, OPERATOR, good)) == unauthorised
    assert meter.values[code] == 2_000
    assert ask(responder, WriteRequest(code, Password(4, "000000"), OPERATOR, good)) == Ack(
        Function.WRITE
    )
    assert meter.values[code] == 5_000 and meter.log[-1].operator == OPERATOR
    readonly = WriteRequest(D.REMAINING_AMOUNT.code, PASSWORD, OPERATOR, good)
    assert ask(responder, readonly) == ErrorReply(Function.WRITE, ErrorBits.OTHER)
    unknown = WriteRequest(0x12345678, PASSWORD, OPERATOR, good)
    assert ask(responder, unknown) == ErrorReply(Function.WRITE, ErrorBits.NO_DATA)
    not_bcd = WriteRequest(code, PASSWORD, OPERATOR, b"\xaa\x00\x00\x00")
    assert ask(responder, not_bcd) == ErrorReply(Function.WRITE, ErrorBits.OTHER)
    assert meter.values[code] == 5_000


def test_writing_the_date_and_time_sets_the_meter_clock(
    meter: MemoryMeter, clock: FixedClock
) -> None:
    responder = Responder([meter])
    when = dt.datetime(2026, 7, 1, 9, 0, 0, tzinfo=BEIJING)
    data = D.DATE_TIME.encode(when)
    assert ask(responder, WriteRequest(D.DATE_TIME.code, PASSWORD, OPERATOR, data)) == Ack(
        Function.WRITE
    )
    clock.advance(seconds=30)
    reply = ask(responder, ReadRequest(D.DATE_TIME.code))
    assert isinstance(reply, ReadReply)
    assert D.DATE_TIME.decode(reply.data) == when + dt.timedelta(seconds=30)


def relay(
    responder: Responder, command: RelayCommand, until: dt.datetime, pw: Password = PASSWORD
) -> Message | None:
    return ask(responder, RelayRequest(command, pw, OPERATOR, until))


def status3(responder: Responder) -> int:
    reply = ask(responder, ReadRequest(D.STATUS_WORD_3.code))
    assert isinstance(reply, ReadReply)
    return D.STATUS_WORD_3.decode(reply.data)


def test_relay_trip_close_permit_alarm(meter: MemoryMeter, clock: FixedClock) -> None:
    meter.auto_close = False
    responder = Responder([meter])
    ack = Ack(Function.RELAY)
    assert D.relay_closed(status3(responder))
    assert relay(responder, RelayCommand.TRIP, later(clock)) == ack
    word = status3(responder)
    assert word & D.Status3.RELAY_OPEN and word & D.Status3.RELAY_COMMAND_OPEN
    assert relay(responder, RelayCommand.CLOSE_PERMIT, later(clock)) == ack
    word = status3(responder)
    assert word & D.Status3.RELAY_OPEN and not word & D.Status3.RELAY_COMMAND_OPEN
    meter.press_button()
    assert D.relay_closed(status3(responder))
    assert relay(responder, RelayCommand.ALARM, later(clock)) == ack
    assert status3(responder) & D.Status3.PRE_TRIP_ALARM
    assert relay(responder, RelayCommand.ALARM_RELEASE, later(clock)) == ack
    assert not status3(responder) & D.Status3.PRE_TRIP_ALARM
    assert [w.what for w in meter.log] == ["TRIP", "CLOSE_PERMIT", "ALARM", "ALARM_RELEASE"]


def test_relay_refusals(meter: MemoryMeter, clock: FixedClock) -> None:
    responder = Responder([meter])
    assert relay(responder, RelayCommand.TRIP, later(clock), WRONG) == ErrorReply(
        Function.RELAY, ErrorBits.UNAUTHORISED
    )
    expired = clock.now() - dt.timedelta(seconds=1)
    assert relay(responder, RelayCommand.TRIP, expired) == ErrorReply(
        Function.RELAY, ErrorBits.OTHER
    )
    assert relay(responder, RelayCommand.KEEP_POWER, later(clock)) == Ack(Function.RELAY)
    assert relay(responder, RelayCommand.TRIP, later(clock)) == ErrorReply(
        Function.RELAY, ErrorBits.OTHER
    )
    assert D.relay_closed(status3(responder)) and status3(responder) & D.Status3.KEEP_POWER
    assert relay(responder, RelayCommand.KEEP_POWER_RELEASE, later(clock)) == Ack(Function.RELAY)
    assert relay(responder, RelayCommand.TRIP, later(clock)) == Ack(Function.RELAY)
    assert not D.relay_closed(status3(responder))


def test_requests_we_do_not_implement_get_other(meter: MemoryMeter) -> None:
    responder = Responder([meter])
    change_baud = Frame(A, 0x17, b"\x08")
    reply = responder.handle(change_baud)
    assert reply == Frame(A, 0xD7, b"\x01")
    load_record = Frame(A, 0x11, bytes.fromhex("01 00 00 06 01"))
    assert responder.handle(load_record) == Frame(A, 0xD1, b"\x01")


def test_many_meters_by_address(clock: FixedClock) -> None:
    meters = [
        MemoryMeter.with_values(f"{n:012d}", {D.REMAINING_AMOUNT: n}, source=clock)
        for n in range(1, 2001)
    ]
    responder = Responder(meters)
    assert len(responder) == 2000
    for n in (1, 999, 2000):
        reply = ask(responder, ReadRequest(D.REMAINING_AMOUNT.code), f"{n:012d}")
        assert isinstance(reply, ReadReply) and D.REMAINING_AMOUNT.decode(reply.data) == n
    responder.remove(f"{999:012d}")
    assert ask(responder, ReadRequest(D.REMAINING_AMOUNT.code), f"{999:012d}") is None
