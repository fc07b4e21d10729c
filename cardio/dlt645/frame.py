"""DL/T 645-2007 frames: ``[FE..] 68 A0..A5 68 C L DATA CS 16``.

* A preamble of ``FE`` bytes may come first (we send four); it is not part of the frame.
* The address ``A0..A5`` is 12 BCD digits, least significant byte first.  In code an address is
  the 12-character string as printed on the meter (``"000000000001"`` is sent ``01 00 00 00 00
  00``).  A byte ``AA`` is a wildcard (``"AAAAAAAAAAAA"`` addresses any meter; ``"AAAAAAAA0001"``
  any meter whose address ends in ``0001``); ``"999999999999"`` is the broadcast address, which
  meters never answer.
* The control code ``C``: bit 7 direction (1 = from the meter), bit 6 error reply, bit 5 a
  follow-up frame comes, bits 4..0 the function (:class:`Function`).
* ``L`` is the length of ``DATA``; every data byte is sent plus ``0x33`` (mod 256).
* ``CS`` is the sum (mod 256) of every byte from the first ``68`` to the last data byte.

:class:`Frame` holds the address, the control byte and the data *without* the ``0x33`` offset.
:func:`decode_frame` reads exactly one frame; :mod:`cardio.dlt645.parser` reads a byte stream.
"""

from __future__ import annotations

import enum
import re
from typing import Final
from typing import NamedTuple

from cardio.dlt645.errors import ChecksumError
from cardio.dlt645.errors import FrameLengthError
from cardio.dlt645.errors import MalformedFrame
from cardio.dlt645.errors import TruncatedFrame

START: Final = 0x68
END: Final = 0x16
PREAMBLE: Final = b"\xfe\xfe\xfe\xfe"
OFFSET: Final = 0x33
HEADER_SIZE: Final = 10  # 68 A0..A5 68 C L
MIN_FRAME: Final = 12  # header + CS + 16, no data
MAX_DATA: Final = 255

BROADCAST: Final = "999999999999"
WILDCARD: Final = "AAAAAAAAAAAA"

DIRECTION_BIT: Final = 0x80  # set in frames from the meter
ERROR_BIT: Final = 0x40  # set in error replies
MORE_BIT: Final = 0x20  # a follow-up frame comes
FUNCTION_MASK: Final = 0x1F

MASK: Final = bytes((b + OFFSET) & 0xFF for b in range(256))  # data -> line
UNMASK: Final = bytes((b - OFFSET) & 0xFF for b in range(256))  # line -> data


class Function(enum.IntEnum):
    """The functions we implement (bits 4..0 of the control code)."""

    BROADCAST_TIME = 0x08  # 广播校时
    READ = 0x11  # 读数据
    READ_FOLLOW_UP = 0x12  # 读后续数据
    READ_ADDRESS = 0x13  # 读通信地址
    WRITE = 0x14  # 写数据
    RELAY = 0x1C  # 跳合闸、报警、保电


# where a request's data field carries the password (PA P0 P1 P2)
_PASSWORD_AT: Final[dict[int, int]] = {Function.WRITE: 4, Function.RELAY: 0}
_ADDRESS = re.compile(r"(?:[0-9]{2}|AA){6}", re.ASCII)


def is_address(text: object) -> bool:
    """Whether ``text`` is an address we send: 12 digits, with ``AA`` wildcard bytes allowed."""
    return isinstance(text, str) and _ADDRESS.fullmatch(text) is not None


def is_meter_address(text: object) -> bool:
    """A single meter's address: 12 digits, no wildcard, not the broadcast address."""
    return (
        isinstance(text, str)
        and text.isascii()
        and text.isdigit()
        and len(text) == 12
        and (text != BROADCAST)
    )


def address_matches(pattern: str, address: str) -> bool:
    """Whether ``address`` is addressed by ``pattern`` (equal, or ``AA`` bytes in ``pattern``)."""
    if pattern == address:
        return True
    if "AA" not in pattern:
        return False
    return all(pattern[i : i + 2] in ("AA", address[i : i + 2]) for i in range(0, 12, 2))


def control(function: int, *, reply: bool = False, error: bool = False, more: bool = False) -> int:
    """The control byte for ``function``; an error reply is always a reply."""
    value = function & FUNCTION_MASK
    if reply or error:
        value |= DIRECTION_BIT
    if error:
        value |= ERROR_BIT
    if more:
        value |= MORE_BIT
    return value


class Frame(NamedTuple):
    """One frame: ``address`` as printed (A5..A0), the control byte, the data without offset."""

    address: str
    control: int
    data: bytes = b""

    @property
    def function(self) -> int:
        return self.control & FUNCTION_MASK

    @property
    def from_meter(self) -> bool:
        return bool(self.control & DIRECTION_BIT)

    @property
    def is_error(self) -> bool:
        return bool(self.control & ERROR_BIT)

    @property
    def more(self) -> bool:
        return bool(self.control & MORE_BIT)

    def encode(self, *, preamble: bool = True) -> bytes:
        """The bytes on the line (with the ``FE FE FE FE`` preamble unless told otherwise).

        Raises ``ValueError`` for an address that is not 12 hex digits, a control byte out of
        range or more than 255 data bytes (a programming error, not a line condition)."""
        if len(self.data) > MAX_DATA:
            raise ValueError(f"DL/T 645 data field of {len(self.data)} bytes (at most 255)")
        if not 0 <= self.control <= 0xFF:
            raise ValueError(f"control byte {self.control!r} out of range")
        body = bytearray(HEADER_SIZE + len(self.data) + 2)
        body[0] = START
        body[1:7] = address_bytes(self.address)
        body[7] = START
        body[8] = self.control
        body[9] = len(self.data)
        body[HEADER_SIZE : HEADER_SIZE + len(self.data)] = self.data.translate(MASK)
        body[-2] = sum(body[:-2]) & 0xFF
        body[-1] = END
        return PREAMBLE + bytes(body) if preamble else bytes(body)

    def describe(self) -> str:
        """For the log: ``000000000001 C=91 L=8 DATA=...`` (data without offset; the password
        of a write or relay request is masked)."""
        data = self.data.hex(" ")
        if not self.from_meter and self.function in _PASSWORD_AT:
            at = _PASSWORD_AT[self.function]
            data = " ".join(
                "**" if at <= k < at + 4 else f"{b:02x}" for k, b in enumerate(self.data)
            )
        return f"{self.address} C={self.control:02X} L={len(self.data)} DATA={data}"


def address_bytes(address: str) -> bytes:
    """``A0..A5`` for an address as printed; ``ValueError`` unless 12 hex digits."""
    if len(address) != 12:
        raise ValueError(f"a DL/T 645 address has 12 digits, not {address!r}")
    return bytes.fromhex(address)[::-1]


def address_text(a0_a5: bytes) -> str:
    """The address as printed for the six address bytes as sent (any bytes, upper-case hex)."""
    return a0_a5[::-1].hex().upper()


def checksum(data: bytes | bytearray) -> int:
    return sum(data) & 0xFF


def decode_frame(raw: bytes) -> Frame:
    """Exactly one frame (after an optional ``FE`` preamble), nothing after it.

    Raises :class:`TruncatedFrame` when bytes are missing, :class:`FrameLengthError` when the
    length field does not lead to the end byte, :class:`ChecksumError`, and
    :class:`MalformedFrame` when the bytes do not begin with a frame or go on after it."""
    start = 0
    while start < len(raw) and raw[start] == 0xFE:
        start += 1
    body = raw[start:]
    if not body or body[0] != START:
        raise MalformedFrame(f"no frame start (68) at offset {start}: {raw[:16].hex(' ')}")
    if len(body) < HEADER_SIZE:
        raise TruncatedFrame(f"{len(body)} bytes of a frame header")
    if body[7] != START:
        raise MalformedFrame(f"no second 68 after the address: {body[:8].hex(' ')}")
    end = HEADER_SIZE + body[9] + 2
    if len(body) < end:
        raise TruncatedFrame(f"{len(body)} of {end} bytes")
    if body[end - 1] != END:
        raise FrameLengthError(f"L={body[9]} but byte {end - 1} is {body[end - 1]:02X}")
    if checksum(body[: end - 2]) != body[end - 2]:
        raise ChecksumError(
            f"checksum {body[end - 2]:02X}, computed {checksum(body[: end - 2]):02X}"
        )
    if len(body) > end:
        raise MalformedFrame(f"{len(body) - end} bytes after the frame")
    return Frame(
        address_text(body[1:7]), body[8], bytes(body[HEADER_SIZE : end - 2]).translate(UNMASK)
    )
