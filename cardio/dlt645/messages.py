"""Typed DL/T 645-2007 messages and their frames.

Requests (master -> meter): :class:`ReadRequest` (0x11), :class:`FollowUpRequest` (0x12, with the
frame sequence number), :class:`AddressRequest` (0x13), :class:`WriteRequest` (0x14: DI, password,
operator code, data), :class:`TimeBroadcast` (0x08) and :class:`RelayRequest` (0x1C: trip, close
permit, direct close, alarm, alarm release, keep power and its release, with a valid-until time).
Replies (meter -> master): :class:`ReadReply` (0x91/0xB1, 0x92/0xB2 with the sequence number),
:class:`AddressReply` (0x93), :class:`Ack` (0x94, 0x9C) and :class:`ErrorReply`
(``function | 0xC0`` with the error bits).

:func:`encode` makes the frame of a message, :func:`decode` the message of a frame (raising
:class:`~cardio.dlt645.errors.MalformedFrame` for what does not fit).  Data stay bytes here; the
values are typed by :mod:`cardio.dlt645.dataids`.

Password and operator code (4 bytes each) are sent as the standard sends every multi-byte field,
least significant byte first: the level ``PA`` then the password ``P0 P1 P2``; the password
written ``123456`` goes out as ``56 34 12``.  The operator code written ``00001234`` goes out as
``34 12 00 00``.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import zlib
from dataclasses import dataclass
from typing import Final

from app.errors import ValidationError
from app.i18n import N_
from cardio.dlt645 import formats as F
from cardio.dlt645.dataids import di_code
from cardio.dlt645.errors import ErrorBits
from cardio.dlt645.errors import MalformedFrame
from cardio.dlt645.frame import Frame
from cardio.dlt645.frame import Function
from cardio.dlt645.frame import address_text
from cardio.dlt645.frame import control
from cardio.dlt645.frame import is_address

_HEX6 = re.compile(r"[0-9A-F]{6}", re.ASCII)
_PASSWORD_TEXT = re.compile(r"[0-9A-Fa-f]{8}", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,8}", re.ASCII)


class RelayCommand(enum.IntEnum):
    """N1 of a relay control request (0x1C)."""

    TRIP = 0x1A  # 跳闸 (拉闸)
    CLOSE_PERMIT = 0x1B  # 合闸允许: the customer may switch on again
    CLOSE_DIRECT = 0x1C  # 直接合闸
    ALARM = 0x2A  # 报警
    ALARM_RELEASE = 0x2B  # 报警解除
    KEEP_POWER = 0x3A  # 保电: no trip while kept
    KEEP_POWER_RELEASE = 0x3B  # 保电解除


def _password_error() -> ValidationError:
    return ValidationError(
        N_(
            "The meter password must be 8 hex digits: the level (2 digits, e.g. 02) and the "
            "password (6 digits)."
        )
    )


@dataclass(frozen=True)
class Password:
    """``level`` (PA; 0 is the highest) and the password ``code`` as written (6 hex digits)."""

    level: int = 2
    code: str = "000000"

    def __post_init__(self) -> None:
        if not (
            isinstance(self.level, int)
            and 0 <= self.level <= 0xFF
            and isinstance(self.code, str)
            and _HEX6.fullmatch(self.code)
        ):
            raise _password_error()

    @classmethod
    def parse(cls, text: str) -> Password:
        """``"02123456"``: level 02, password 123456."""
        if not _PASSWORD_TEXT.fullmatch(text):
            raise _password_error()
        return cls(int(text[:2], 16), text[2:].upper())

    @property
    def wire(self) -> bytes:
        return bytes([self.level]) + bytes.fromhex(self.code)[::-1]

    @classmethod
    def from_wire(cls, data: bytes) -> Password:
        return cls(data[0], data[1:4][::-1].hex().upper())

    def __repr__(self) -> str:  # never log the password itself
        return f"Password(level={self.level:02X}, code=******)"


def operator_code(operator: str) -> str:
    """The 4-byte operator code (as written, 8 hex digits) a meter records for ``operator``.

    An id of up to 8 digits is itself (zero-padded); any other id is turned into 8 digits by
    CRC-32 modulo 10**8, so the same operator always gets the same code.  The meter only keeps
    the code in its event log; who it was is in our audit log."""
    if _DIGITS.fullmatch(operator):
        return f"{int(operator):08d}"
    return f"{zlib.crc32(operator.encode('utf-8')) % 100_000_000:08d}"


def _operator_wire(code: str) -> bytes:
    if not re.fullmatch(r"[0-9A-F]{8}", code, re.ASCII):
        raise ValueError(f"operator code must be 8 hex digits, not {code!r}")
    return bytes.fromhex(code)[::-1]


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class ReadRequest:
    di: int


@dataclass(frozen=True)
class FollowUpRequest:
    di: int
    seq: int  # 1, 2, ... the follow-up frame asked for


@dataclass(frozen=True)
class AddressRequest:
    pass


@dataclass(frozen=True)
class WriteRequest:
    di: int
    password: Password
    operator: str  # 8 hex digits as written (operator_code())
    data: bytes


@dataclass(frozen=True)
class TimeBroadcast:
    when: dt.datetime  # aware; sent as Beijing time, whole seconds


@dataclass(frozen=True)
class RelayRequest:
    command: RelayCommand
    password: Password
    operator: str
    valid_until: dt.datetime  # aware; the meter ignores the command after this time


@dataclass(frozen=True)
class ReadReply:
    di: int
    data: bytes
    more: bool = False  # a follow-up frame is waiting
    seq: int | None = None  # set in an answer to a follow-up request (0x92)


@dataclass(frozen=True)
class AddressReply:
    address: str


@dataclass(frozen=True)
class Ack:
    function: Function  # WRITE or RELAY


@dataclass(frozen=True)
class ErrorReply:
    function: Function
    errors: ErrorBits


Request = (
    ReadRequest | FollowUpRequest | AddressRequest | WriteRequest | TimeBroadcast | RelayRequest
)
Reply = ReadReply | AddressReply | Ack | ErrorReply
Message = Request | Reply

_RELAY_RESERVED: Final = 0x00  # N2


def _di(code: int) -> bytes:
    return code.to_bytes(4, "little")


def encode(address: str, message: Message) -> Frame:
    """The frame that carries ``message`` to or from ``address``."""
    match message:
        case ReadRequest(di):
            return Frame(address, Function.READ, _di(di))
        case FollowUpRequest(di, seq):
            return Frame(address, Function.READ_FOLLOW_UP, _di(di) + bytes([seq]))
        case AddressRequest():
            return Frame(address, Function.READ_ADDRESS)
        case WriteRequest(di, password, operator, data):
            body = _di(di) + password.wire + _operator_wire(operator) + data
            return Frame(address, Function.WRITE, body)
        case TimeBroadcast(when):
            return Frame(address, Function.BROADCAST_TIME, F.DATE_TIME.encode(when))
        case RelayRequest(command, password, operator, valid_until):
            body = password.wire + _operator_wire(operator)
            body += bytes([command, _RELAY_RESERVED]) + F.DATE_TIME.encode(valid_until)
            return Frame(address, Function.RELAY, body)
        case ReadReply(di, data, more, None):
            return Frame(address, control(Function.READ, reply=True, more=more), _di(di) + data)
        case ReadReply(di, data, more, seq):
            c = control(Function.READ_FOLLOW_UP, reply=True, more=more)
            return Frame(address, c, _di(di) + data + bytes([seq or 0]))
        case AddressReply(meter):
            return Frame(
                meter, control(Function.READ_ADDRESS, reply=True), bytes.fromhex(meter)[::-1]
            )
        case Ack(function):
            return Frame(address, control(function, reply=True))
        case ErrorReply(function, errors):
            return Frame(address, control(function, error=True), bytes([errors & 0xFF]))
    raise TypeError(f"not a DL/T 645 message: {message!r}")


def decode(frame: Frame) -> Message:
    """The message in ``frame``; :class:`MalformedFrame` for a function we do not implement or
    a data field that does not fit its function."""
    try:
        function = Function(frame.function)
    except ValueError:
        raise MalformedFrame(f"function {frame.function:02X} not implemented") from None
    try:
        if frame.from_meter:
            return _decode_reply(frame, function)
        return _decode_request(frame, function)
    except F.Unfit as exc:
        raise MalformedFrame(f"{frame.describe()}: {exc}") from None


def _bad(frame: Frame) -> MalformedFrame:
    return MalformedFrame(f"unexpected data field: {frame.describe()}")


def _decode_request(frame: Frame, function: Function) -> Request:
    data = frame.data
    size = len(data)
    if frame.control != function:  # error or follow-up bits in a request
        raise _bad(frame)
    if function is Function.READ and size == 4:
        return ReadRequest(di_code(data))
    if function is Function.READ_FOLLOW_UP and size == 5:
        return FollowUpRequest(di_code(data), data[4])
    if function is Function.READ_ADDRESS and size == 0:
        return AddressRequest()
    if function is Function.WRITE and size >= 12:
        operator = data[8:12][::-1].hex().upper()
        return WriteRequest(di_code(data), Password.from_wire(data[4:8]), operator, data[12:])
    if function is Function.BROADCAST_TIME and size == 6:
        return TimeBroadcast(F.DATE_TIME.decode(data))
    if function is Function.RELAY and size == 16:
        try:
            command = RelayCommand(data[8])
        except ValueError:
            raise _bad(frame) from None
        operator = data[4:8][::-1].hex().upper()
        until = F.DATE_TIME.decode(data[10:16])
        return RelayRequest(command, Password.from_wire(data[:4]), operator, until)
    raise _bad(frame)


def _decode_reply(frame: Frame, function: Function) -> Reply:
    data = frame.data
    size = len(data)
    if frame.is_error:
        if size not in (1, 2):
            raise _bad(frame)
        return ErrorReply(function, ErrorBits(data[0]))
    if function is Function.READ and size >= 4:
        return ReadReply(di_code(data), data[4:], frame.more)
    if function is Function.READ_FOLLOW_UP and size >= 5:
        return ReadReply(di_code(data), data[4:-1], frame.more, data[-1])
    if function is Function.READ_ADDRESS and size == 6:
        meter = address_text(data)
        if not is_address(meter) or "AA" in meter:
            raise _bad(frame)
        return AddressReply(meter)
    if function in (Function.WRITE, Function.RELAY) and size == 0:
        return Ack(function)
    raise _bad(frame)
