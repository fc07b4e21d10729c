"""DL/T 645-2007 codec (cardio/dlt645): frames, addresses, control codes, value formats, data
identifiers and typed messages, checked against hand-computed bytes and by round trips."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.errors import ValidationError
from cardio.dlt645 import dataids as D
from cardio.dlt645 import formats as F
from cardio.dlt645.errors import ChecksumError
from cardio.dlt645.errors import ErrorBits
from cardio.dlt645.errors import FrameLengthError
from cardio.dlt645.errors import MalformedFrame
from cardio.dlt645.errors import MeterDataUnavailable
from cardio.dlt645.errors import MeterLinkError
from cardio.dlt645.errors import MeterNoAnswer
from cardio.dlt645.errors import MeterPasswordRefused
from cardio.dlt645.errors import MeterRefused
from cardio.dlt645.errors import TruncatedFrame
from cardio.dlt645.errors import ValueFormatError
from cardio.dlt645.frame import BROADCAST
from cardio.dlt645.frame import WILDCARD
from cardio.dlt645.frame import Frame
from cardio.dlt645.frame import Function
from cardio.dlt645.frame import address_matches
from cardio.dlt645.frame import control
from cardio.dlt645.frame import decode_frame
from cardio.dlt645.frame import is_address
from cardio.dlt645.frame import is_meter_address
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
from cardio.dlt645.messages import operator_code
from cardio.dlt645.registers import MemoryMeter
from cardio.dlt645.responder import Responder
from cardio.profile import BEIJING

FAST = settings(max_examples=60, deadline=None, database=None)

METER = "000000000001"
# tests/../shared/TESTING.md: read remaining amount of meter 000000000001, and its reply (1234.56)
SAMPLE_REQUEST = bytes.fromhex("FE FE FE FE 68 01 00 00 00 00 00 68 11 04 33 35 C3 33 44 16")
SAMPLE_REPLY = bytes.fromhex(
    "FE FE FE FE 68 01 00 00 00 00 00 68 91 08 33 35 C3 33 89 67 45 33 30 16"
)


def hexb(text: str) -> bytes:
    return bytes.fromhex(text)


# --------------------------------------------------------------------------- the sample


def test_sample_read_request_is_byte_exact() -> None:
    frame = encode(METER, ReadRequest(D.REMAINING_AMOUNT.code))
    assert frame.encode() == SAMPLE_REQUEST
    assert decode(decode_frame(SAMPLE_REQUEST)) == ReadRequest(0x00900200)


def test_sample_reply_is_byte_exact_both_ways() -> None:
    reply = ReadReply(D.REMAINING_AMOUNT.code, D.REMAINING_AMOUNT.encode(123_456))
    assert encode(METER, reply).encode() == SAMPLE_REPLY
    message = decode(decode_frame(SAMPLE_REPLY))
    assert isinstance(message, ReadReply)
    assert D.REMAINING_AMOUNT.decode(message.data) == 123_456  # 1234.56 yuan in fen


# --------------------------------------------------------------------------- frames


def test_frame_layout() -> None:
    frame = Frame("123456789012", 0x11, hexb("00 01 02 03"))
    raw = frame.encode(preamble=False)
    assert raw[:8] == hexb("68 12 90 78 56 34 12 68")  # address least significant byte first
    assert raw[8:10] == hexb("11 04")
    assert raw[10:14] == hexb("33 34 35 36")  # data + 0x33
    assert raw[14] == sum(raw[:14]) & 0xFF
    assert raw[15] == 0x16
    assert frame.encode() == hexb("FE FE FE FE") + raw
    assert decode_frame(raw) == frame
    assert decode_frame(frame.encode()) == frame


def test_data_offset_wraps_around() -> None:
    frame = Frame(METER, 0x91, hexb("CC CD FF 00"))
    assert frame.encode(preamble=False)[10:14] == hexb("FF 00 32 33")
    assert decode_frame(frame.encode()) == frame


def test_known_read_address_frame() -> None:
    # the read-address frame every DL/T 645 tool sends
    assert encode(WILDCARD, AddressRequest()).encode(preamble=False) == hexb(
        "68 AA AA AA AA AA AA 68 13 00 DF 16"
    )


def test_decode_frame_errors_are_typed() -> None:
    good = Frame(METER, 0x11, hexb("00 02 90 00")).encode(preamble=False)
    bad_sum = good[:-2] + bytes([good[-2] ^ 1]) + good[-1:]
    with pytest.raises(ChecksumError):
        decode_frame(bad_sum)
    with pytest.raises(FrameLengthError):
        decode_frame(good[:9] + bytes([3]) + good[10:])  # L says 3: byte 13 is not 16
    with pytest.raises(TruncatedFrame):
        decode_frame(good[:-1])
    with pytest.raises(TruncatedFrame):
        decode_frame(good[:5])
    with pytest.raises(MalformedFrame):
        decode_frame(hexb("00 11 22"))
    with pytest.raises(MalformedFrame):
        decode_frame(good + b"\x00")


def test_encode_refuses_what_no_frame_can_carry() -> None:
    with pytest.raises(ValueError, match="255"):
        Frame(METER, 0x11, bytes(256)).encode()
    with pytest.raises(ValueError, match="12 digits"):
        Frame("1234", 0x11).encode()


def test_control_codes() -> None:
    assert control(Function.READ) == 0x11
    assert control(Function.READ, reply=True) == 0x91
    assert control(Function.READ, reply=True, more=True) == 0xB1
    assert control(Function.READ, error=True) == 0xD1
    assert control(Function.READ_FOLLOW_UP, reply=True, more=True) == 0xB2
    assert control(Function.WRITE, error=True) == 0xD4
    assert control(Function.RELAY, reply=True) == 0x9C
    frame = Frame(METER, 0xB1)
    assert frame.from_meter and frame.more and not frame.is_error
    assert frame.function == Function.READ
    assert Frame(METER, 0xDC).is_error and Frame(METER, 0xDC).function == Function.RELAY


def test_addresses() -> None:
    assert is_address(METER) and is_address(WILDCARD) and is_address("AAAAAAAA0001")
    assert not is_address("AAAAAAAAA001")  # a wildcard is a whole byte
    assert not is_address("00000000000१")  # another script's digit
    assert not is_address("0000000000001") and not is_address("00000000000a")
    assert is_meter_address(METER)
    assert not is_meter_address(BROADCAST) and not is_meter_address(WILDCARD)
    assert address_matches(WILDCARD, METER)
    assert address_matches("AAAAAAAA0001", METER)
    assert not address_matches("AAAAAAAA0002", METER)
    assert not address_matches("000000000002", METER)
    assert not address_matches(METER, WILDCARD)


def test_describe_masks_the_password() -> None:
    request = WriteRequest(D.ALARM_AMOUNT_1.code, Password(2, "123456"), "00000001", b"\x00")
    text = encode(METER, request).describe()
    assert "56 34 12" not in text and "** ** ** **" in text
    relay = RelayRequest(
        RelayCommand.TRIP,
        Password(4, "654321"),
        "00000001",
        dt.datetime(2026, 1, 1, tzinfo=BEIJING),
    )
    assert "21 43 65" not in encode(METER, relay).describe()
    assert "654321" not in repr(relay.password)


# --------------------------------------------------------------------------- value formats


@pytest.mark.parametrize(
    ("di", "value", "wire"),
    [
        (D.REMAINING_AMOUNT, 123_456, "56 34 12 00"),  # 1234.56 yuan
        (D.OVERDRAFT_AMOUNT, 1, "01 00 00 00"),
        (D.ALARM_AMOUNT_1, 99_999_999, "99 99 99 99"),
        (D.POSITIVE_ENERGY, 12_340, "34 12 00 00"),  # 12.34 kWh
        (D.COMBINED_ENERGY, -12_340, "34 12 00 80"),  # sign in bit 7 of the top byte
        (D.COMBINED_ENERGY, -799_999_990, "99 99 99 F9"),
        (D.CURRENT_PRICE, 5_283, "83 52 00 00"),  # 0.5283 yuan/kWh = the app's rate unit
        (D.PURCHASE_COUNT, 7, "07 00"),
        (D.STATUS_WORD_3, 0x0250, "50 02"),  # a bit string, not BCD
        (D.METER_ADDRESS, "123456789012", "12 90 78 56 34 12"),
        (D.DATE, dt.date(2026, 3, 1), "00 01 03 26"),  # a Sunday: week 0
        (D.DATE, dt.date(2026, 3, 7), "06 07 03 26"),
        (D.TIME, dt.time(8, 30, 15), "15 30 08"),
        (D.DATE_TIME, dt.datetime(2026, 3, 2, 8, 30, 15, tzinfo=BEIJING), "15 30 08 01 02 03 26"),
        (D.DATE_TIME, dt.datetime(2026, 3, 2, 0, 30, 15, tzinfo=dt.UTC), "15 30 08 01 02 03 26"),
        (
            D.POSITIVE_ENERGY_BLOCK,
            (100, 10, 20, 30, 40),
            "10 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00 04 00 00 00",
        ),
    ],
)
def test_value_formats(di: D.DataId[Any], value: Any, wire: str) -> None:
    assert di.encode(value) == hexb(wire)
    assert di.decode(hexb(wire)) == value


def test_energy_below_the_register_resolution_is_cut_toward_zero() -> None:
    assert D.POSITIVE_ENERGY.encode(12_349) == hexb("34 12 00 00")  # 12.349 kWh shows 12.34
    assert D.COMBINED_ENERGY.encode(-12_349) == hexb("34 12 00 80")
    assert D.COMBINED_ENERGY.encode(-9) == hexb("00 00 00 00")  # no minus zero on the line


def test_energy_is_whole_wh_and_never_float() -> None:
    value = D.POSITIVE_ENERGY.decode(hexb("99 99 99 99"))
    assert value == 999_999_990 and isinstance(value, int)
    assert D.COMBINED_ENERGY.decode(hexb("00 00 00 80")) == 0  # minus zero is zero


@pytest.mark.parametrize(
    ("di", "value"),
    [
        (D.REMAINING_AMOUNT, -1),  # money is unsigned: the overdraft has its own register
        (D.REMAINING_AMOUNT, 100_000_000),
        (D.REMAINING_AMOUNT, 12.5),
        (D.REMAINING_AMOUNT, True),
        (D.POSITIVE_ENERGY, -10),
        (D.COMBINED_ENERGY, 800_000_000),  # the sign bit leaves 7 for the top digit
        (D.PURCHASE_COUNT, 10_000),
        (D.STATUS_WORD_1, 0x10000),
        (D.METER_ADDRESS, "12345678901"),
        (D.METER_ADDRESS, "12345678901A"),
        (D.DATE, dt.date(2100, 1, 1)),
        (D.DATE, dt.datetime(2026, 1, 1, tzinfo=BEIJING)),
        (D.DATE_TIME, dt.datetime(2026, 1, 1)),  # naive: which clock?
        (D.DATE_TIME, dt.datetime(1999, 12, 31, 15, 59, tzinfo=dt.UTC)),
        (D.POSITIVE_ENERGY_BLOCK, ()),
        (D.STATUS_BLOCK, tuple(range(8))),
    ],
)
def test_values_that_do_not_fit_are_refused_before_sending(di: D.DataId[Any], value: Any) -> None:
    with pytest.raises(ValueFormatError) as caught:
        di.encode(value)
    assert di.hex in str(caught.value)


@pytest.mark.parametrize(
    ("di", "wire"),
    [
        (D.REMAINING_AMOUNT, "5A 34 12 00"),  # not a decimal digit
        (D.REMAINING_AMOUNT, "56 34 12"),  # short
        (D.PURCHASE_COUNT, "07 00 00"),
        (D.DATE, "07 01 03 26"),  # week 7
        (D.DATE, "00 31 02 26"),  # 31 February
        (D.TIME, "60 00 00"),
        (D.DATE_TIME, "00 00 24 01 01 01 26"),
        (D.POSITIVE_ENERGY_BLOCK, "00 00 00"),
        (D.POSITIVE_ENERGY_BLOCK, ""),
        (D.STATUS_BLOCK, "00" * 16),
    ],
)
def test_received_bytes_that_do_not_fit_are_malformed(di: D.DataId[Any], wire: str) -> None:
    with pytest.raises(MalformedFrame):
        di.decode(hexb(wire))


def test_blocks_take_as_many_members_as_the_meter_sends() -> None:
    assert D.POSITIVE_ENERGY_BLOCK.decode(hexb("10 00 00 00")) == (100,)
    assert D.STATUS_BLOCK.decode(hexb("01 00 02 00")) == (1, 2)
    assert D.STATUS_BLOCK.members[2] is D.STATUS_WORD_3


def test_status_word_3_relay_bits() -> None:
    word = D.Status3.RELAY_OPEN | D.Status3.RELAY_COMMAND_OPEN | D.Status3.MONEY_PREPAID
    assert word == 0x0250
    assert not D.relay_closed(word) and D.relay_closed(D.Status3.MONEY_PREPAID)


def test_data_identifier_table() -> None:
    assert len(D.BY_CODE) == len(D.ALL)  # no code twice
    assert len(D.BY_NAME) == len(D.ALL)
    assert D.REMAINING_AMOUNT.wire == hexb("00 02 90 00")  # DI0 first
    assert D.lookup(0x00900200) is D.REMAINING_AMOUNT and D.lookup(0x12345678) is None
    assert [d.hex for d in D.POSITIVE_ENERGY_RATES] == [
        "00010100",
        "00010200",
        "00010300",
        "00010400",
    ]
    assert [d.hex for d in D.STATUS_WORDS][::6] == ["04000501", "04000507"]
    writable = {d.name for d in D.ALL if d.writable}
    assert "remaining_amount" not in writable and "alarm_amount_1" in writable


# --------------------------------------------------------------------------- typed round trips

aware = st.datetimes(
    min_value=dt.datetime(2000, 1, 1, 0, 0), max_value=dt.datetime(2099, 12, 31, 15, 0)
).map(lambda t: t.replace(microsecond=0, tzinfo=dt.UTC))


def values_of(fmt: F.Format[Any]) -> st.SearchStrategy[Any]:
    if isinstance(fmt, F.Bcd):
        top = fmt.limit // fmt.unit
        return st.integers(-top if fmt.signed else 0, top).map(lambda v: v * fmt.unit)
    if isinstance(fmt, F.Bits):
        return st.integers(0, (1 << (8 * fmt.size)) - 1)
    if isinstance(fmt, F.Digits):
        return st.from_regex(r"[0-9]{12}", fullmatch=True)
    if isinstance(fmt, F.DateWeek):
        return st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31))
    if isinstance(fmt, F.TimeOfDay):
        return st.times().map(lambda t: t.replace(microsecond=0))
    if isinstance(fmt, F.DateTime):
        return aware
    assert isinstance(fmt, F.Repeated)
    return st.lists(values_of(fmt.item), min_size=1, max_size=fmt.count).map(tuple)


@pytest.mark.parametrize("di", D.ALL, ids=lambda d: d.name)
@FAST
@given(data=st.data())
def test_every_data_identifier_round_trips(di: D.DataId[Any], data: st.DataObject) -> None:
    value = data.draw(values_of(di.fmt))
    wire = di.encode(value)
    assert di.fmt.size == 0 or len(wire) == di.fmt.size
    assert di.decode(wire) == value
    # and through a read reply frame on the line
    frame = encode(METER, ReadReply(di.code, wire))
    reply = decode(decode_frame(frame.encode()))
    assert isinstance(reply, ReadReply) and di.decode(reply.data) == value


addresses = st.from_regex(r"(?:[0-9]{2}|AA){6}", fullmatch=True)
meters = st.from_regex(r"[0-9]{12}", fullmatch=True)
passwords = st.builds(Password, st.integers(0, 255), st.from_regex(r"[0-9A-F]{6}", fullmatch=True))
operators = st.from_regex(r"[0-9A-F]{8}", fullmatch=True)
codes = st.integers(0, 0xFFFFFFFF)
requests: st.SearchStrategy[Message] = st.one_of(
    st.builds(ReadRequest, codes),
    st.builds(FollowUpRequest, codes, st.integers(0, 255)),
    st.just(AddressRequest()),
    st.builds(WriteRequest, codes, passwords, operators, st.binary(max_size=200)),
    st.builds(TimeBroadcast, aware),
    st.builds(RelayRequest, st.sampled_from(RelayCommand), passwords, operators, aware),
)
replies: st.SearchStrategy[Message] = st.one_of(
    st.builds(ReadReply, codes, st.binary(max_size=200), st.booleans()),
    st.builds(ReadReply, codes, st.binary(max_size=200), st.booleans(), st.integers(0, 255)),
    st.builds(Ack, st.sampled_from([Function.WRITE, Function.RELAY])),
    st.builds(ErrorReply, st.sampled_from(Function), st.integers(0, 0x7F).map(ErrorBits)),
)


@FAST
@given(address=addresses, message=st.one_of(requests, replies))
def test_every_function_round_trips(address: str, message: Message) -> None:
    frame = encode(address, message)
    on_line = decode_frame(frame.encode())
    assert on_line == frame
    assert decode(on_line) == message


@FAST
@given(meter=meters)
def test_address_reply_round_trips(meter: str) -> None:
    frame = encode(WILDCARD, AddressReply(meter))
    assert frame.address == meter and frame.control == 0x93
    assert decode(decode_frame(frame.encode())) == AddressReply(meter)


# --------------------------------------------------------------------------- functions on the line


def test_write_request_layout() -> None:
    request = WriteRequest(D.ALARM_AMOUNT_1.code, Password(2, "123456"), "00001234", hexb("00 20"))
    data = encode(METER, request).data
    assert data == hexb("01 10 00 04") + hexb("02 56 34 12") + hexb("34 12 00 00") + hexb("00 20")


def test_relay_request_layout() -> None:
    until = dt.datetime(2026, 3, 1, 8, 35, 0, tzinfo=BEIJING)
    request = RelayRequest(RelayCommand.CLOSE_PERMIT, Password(2, "000000"), "00000007", until)
    frame = encode(METER, request)
    assert frame.control == 0x1C and len(frame.data) == 16
    assert frame.data == hexb("02 00 00 00 07 00 00 00 1B 00 00 35 08 01 03 26")
    assert [c.value for c in RelayCommand] == [0x1A, 0x1B, 0x1C, 0x2A, 0x2B, 0x3A, 0x3B]


def test_broadcast_time_layout() -> None:
    when = dt.datetime(2026, 3, 1, 8, 30, 15, tzinfo=BEIJING)
    frame = encode(BROADCAST, TimeBroadcast(when))
    assert frame.control == 0x08
    assert frame.data == hexb("15 30 08 01 03 26")  # ss mm hh DD MM YY


def test_follow_up_request_and_reply_layout() -> None:
    assert encode(METER, FollowUpRequest(0x040005FF, 1)).data == hexb("FF 05 00 04 01")
    frame = encode(METER, ReadReply(0x040005FF, hexb("01 00"), more=False, seq=2))
    assert frame.control == 0x92 and frame.data == hexb("FF 05 00 04 01 00 02")


def test_error_reply_and_its_bits() -> None:
    frame = encode(METER, ErrorReply(Function.WRITE, ErrorBits.UNAUTHORISED))
    assert frame.control == 0xD4 and frame.data == b"\x04"
    assert decode(Frame(METER, 0xD1, b"\x03")) == ErrorReply(
        Function.READ, ErrorBits.OTHER | ErrorBits.NO_DATA
    )
    bits = [
        ErrorBits.OTHER,
        ErrorBits.NO_DATA,
        ErrorBits.UNAUTHORISED,
        ErrorBits.BAUD_RATE,
        ErrorBits.YEAR_ZONES,
        ErrorBits.DAY_PERIODS,
        ErrorBits.TARIFFS,
    ]
    assert [int(b) for b in bits] == [1, 2, 4, 8, 16, 32, 64]


def test_refusals_are_typed_and_say_why() -> None:
    assert isinstance(MeterRefused.of(METER, 0x14, ErrorBits.UNAUTHORISED), MeterPasswordRefused)
    assert isinstance(MeterRefused.of(METER, 0x11, ErrorBits.NO_DATA), MeterDataUnavailable)
    other = MeterRefused.of(METER, 0x1C, ErrorBits.OTHER)
    assert type(other) is MeterRefused
    assert "wrong password" in str(MeterRefused.of(METER, 0x14, ErrorBits.UNAUTHORISED))
    assert "has no such data" in str(MeterRefused.of(METER, 0x11, ErrorBits.NO_DATA))
    assert "too many tariffs" in str(MeterRefused.of(METER, 0x14, ErrorBits.TARIFFS))


@pytest.mark.parametrize(
    "frame",
    [
        Frame(METER, 0x11, hexb("00 02 90 00 01")),  # load-record reads are not implemented
        Frame(METER, 0x17, hexb("08")),  # change baud rate: not implemented
        Frame(METER, 0x31, hexb("00 02 90 00")),  # a follow-up bit in a request
        Frame(METER, 0x91, hexb("00 02 90")),  # a read reply without its DI
        Frame(METER, 0x93, hexb("AA 00 00 00 00 00")),  # a wildcard is no meter's address
        Frame(METER, 0x9C, hexb("00")),
        Frame(METER, 0x1C, bytes(15)),
        Frame(METER, 0x1C, hexb("02 00 00 00 00 00 00 00 1D 00 00 00 00 01 01 26")),  # no N1 1D
        Frame(BROADCAST, 0x08, hexb("00 00 00 32 01 26")),  # 32 January
    ],
)
def test_frames_that_do_not_fit_their_function_are_malformed(frame: Frame) -> None:
    with pytest.raises(MalformedFrame):
        decode(frame)


# --------------------------------------------------------------------------- password, operator


def test_password_text_and_line_order() -> None:
    assert Password.parse("02123456") == Password(2, "123456")
    assert Password(2, "123456").wire == hexb("02 56 34 12")
    assert Password.from_wire(hexb("04 56 34 12")) == Password(4, "123456")
    for bad in ("0212345", "021234567", "02 12345", "0212345G"):
        with pytest.raises(ValidationError):
            Password.parse(bad)
    with pytest.raises(ValidationError):
        Password(256, "000000")


def test_operator_codes() -> None:
    assert operator_code("1234") == "00001234"
    assert operator_code("f01") == operator_code("f01")
    assert operator_code("f01") != operator_code("f02")
    assert len(operator_code("a-very-long.operator_id")) == 8
    assert operator_code("f01").isdigit()


def test_errors_read_in_both_languages() -> None:
    no_answer = MeterNoAnswer(METER, 0.9, 3)
    assert no_answer.localized("en").startswith(
        "The meter 000000000001 did not answer within 0.9 s"
    )
    assert "电表 000000000001 在 0.9 秒内没有应答" in no_answer.localized("zh_CN")
    refused = MeterRefused.of(METER, 0x14, ErrorBits.UNAUTHORISED)
    assert "密码错误或未授权" in refused.localized("zh_CN")
    assert "电表没有该数据" in MeterRefused.of(METER, 0x11, ErrorBits.NO_DATA).localized("zh_CN")
    assert "校验和错误" in ChecksumError("detail").localized("zh_CN")
    assert "终端关闭了连接" in MeterLinkError("10.0.0.1:9000", "closed").localized("zh_CN")
    with pytest.raises(ValueFormatError) as caught:
        D.REMAINING_AMOUNT.encode(100_000_000)
    assert caught.value.localized("zh_CN") == (
        "数值 100000000 不符合电表寄存器 00900200 的格式：不能超过 99999999。"
    )


any_frames = st.builds(
    Frame,
    st.one_of(addresses, st.just(METER)),
    st.one_of(st.integers(0, 255), st.sampled_from([0x11, 0x12, 0x13, 0x14, 0x08, 0x1C])),
    st.binary(max_size=40),
)


@settings(max_examples=200, deadline=None, database=None)
@given(frame=any_frames)
def test_any_frame_decodes_to_a_message_or_malformed(frame: Frame) -> None:
    try:
        message = decode(frame)
    except MalformedFrame:
        return
    again = encode(frame.address, message)
    assert again.function == frame.function and decode(again) == message


@settings(max_examples=200, deadline=None, database=None)
@given(frame=any_frames)
def test_the_responder_answers_any_frame_or_stays_silent(frame: Frame) -> None:
    meter = MemoryMeter.with_values(METER, {D.REMAINING_AMOUNT: 1})
    reply = Responder([meter]).handle(frame)
    assert reply is None or (reply.from_meter and reply.address == METER)
