"""Typed errors of the DL/T 645 layer: what a person reads when a meter cannot be used.

Everything here derives from :class:`MeterProtocolError` (a :class:`app.errors.CardVendError`):

* :class:`FrameError` -- a damaged frame on the line: :class:`ChecksumError`,
  :class:`FrameLengthError`, :class:`TruncatedFrame`.  The stream parser hands these out in
  stream order (it never raises them); the link retries on them.
* :class:`MalformedFrame` -- a well-formed frame whose content makes no sense (a read reply
  without its data identifier, a value that is not BCD).  Not retried.
* :class:`MeterNoAnswer` -- nothing usable came back within the timeout, after every retry.
* :class:`MeterRefused` -- the meter answered with an error reply; ``errors`` holds its error
  bits.  :class:`MeterPasswordRefused` and :class:`MeterDataUnavailable` name the common two.
* :class:`MeterLinkError` -- the terminal (concentrator) behind a TCP link cannot be reached.
* :class:`ValueFormatError` -- a value that does not fit its register's format (nothing sent).

Serial ports that cannot be opened keep their own :class:`cardio.serial_link.SerialPortError`.
The technical detail (bytes, positions) is kept in ``detail`` for the log, never shown.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from app.errors import CardVendError
from app.errors import KindError
from app.i18n import N_


class ErrorBits(enum.IntFlag):
    """The error information byte (ERR) of an error reply (control code ``function | 0xC0``)."""

    NONE = 0
    OTHER = 0x01  # 其他错误
    NO_DATA = 0x02  # 无请求数据
    UNAUTHORISED = 0x04  # 密码错/未授权
    BAUD_RATE = 0x08  # 通信速率不能更改
    YEAR_ZONES = 0x10  # 年时区数超
    DAY_PERIODS = 0x20  # 日时段数超
    TARIFFS = 0x40  # 费率数超


# the reason shown for a refusal: the first bit set in this order
_REFUSAL_REASONS: tuple[tuple[ErrorBits, str], ...] = (
    (ErrorBits.UNAUTHORISED, N_("wrong password or not authorised")),
    (ErrorBits.NO_DATA, N_("it has no such data")),
    (ErrorBits.BAUD_RATE, N_("the baud rate cannot be changed")),
    (ErrorBits.YEAR_ZONES, N_("too many year time zones")),
    (ErrorBits.DAY_PERIODS, N_("too many day periods")),
    (ErrorBits.TARIFFS, N_("too many tariffs")),
    (ErrorBits.OTHER, N_("the meter reports an error")),
)


class MeterProtocolError(CardVendError):
    """Base of every DL/T 645 error."""

    code: ClassVar[str] = "meter_protocol"
    template: ClassVar[str] = N_(
        "The meter cannot be used: {reason}. Check the meter and its connection and try again."
    )


class FrameError(MeterProtocolError):
    """A damaged frame on the line. ``detail`` says where (for the log)."""

    code: ClassVar[str] = "meter_frame"
    template: ClassVar[str] = N_(
        "A frame from the meter arrived damaged: {reason}. Check the cable and its "
        "connections and try again."
    )
    reason: ClassVar[str] = N_("it is damaged")

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(reason=self.reason)


class ChecksumError(FrameError):
    code = "meter_checksum"
    reason = N_("the checksum is wrong")


class FrameLengthError(FrameError):
    """The byte where the length field puts the end is not 0x16."""

    code = "meter_frame_length"
    reason = N_("its length field does not match where it ends")


class TruncatedFrame(FrameError):
    """The stream stopped (the reply timed out) inside a frame."""

    code = "meter_frame_truncated"
    reason = N_("it broke off before its end")


class MalformedFrame(MeterProtocolError):
    """A complete, undamaged frame whose content does not follow DL/T 645-2007."""

    code: ClassVar[str] = "meter_bad_frame"
    template: ClassVar[str] = N_(
        "The meter's answer cannot be understood (it does not follow DL/T 645-2007 as "
        "expected). Check that the device is a DL/T 645-2007 meter."
    )

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__()

    def __str__(self) -> str:
        return f"{super().__str__()} [{self.detail}]"


class MeterNoAnswer(MeterProtocolError):
    code: ClassVar[str] = "meter_no_answer"
    template: ClassVar[str] = N_(
        "The meter {address} did not answer within {seconds} s ({attempts} attempts). Check "
        "the meter address, that the meter has power, and the cable or the terminal's "
        "connection."
    )

    def __init__(self, address: str, seconds: float, attempts: int) -> None:
        self.address = address
        super().__init__(address=address, seconds=f"{seconds:.1f}", attempts=attempts)


class MeterRefused(MeterProtocolError):
    """The meter answered with an error reply."""

    code: ClassVar[str] = "meter_refused"
    template: ClassVar[str] = N_("The meter {address} refused the command: {reason}.")

    def __init__(self, address: str, function: int, errors: ErrorBits) -> None:
        self.address = address
        self.function = function
        self.errors = errors
        reason = next((text for bit, text in _REFUSAL_REASONS if bit & errors), None)
        super().__init__(address=address, reason=reason or _REFUSAL_REASONS[-1][1])

    @staticmethod
    def of(address: str, function: int, errors: ErrorBits) -> MeterRefused:
        """The most specific refusal for these error bits."""
        if errors & ErrorBits.UNAUTHORISED:
            return MeterPasswordRefused(address, function, errors)
        if errors & ErrorBits.NO_DATA:
            return MeterDataUnavailable(address, function, errors)
        return MeterRefused(address, function, errors)


class MeterPasswordRefused(MeterRefused):
    code = "meter_password"
    template = N_(
        "The meter {address} refused the command: wrong password or not authorised. Check "
        "the password and its level."
    )


class MeterDataUnavailable(MeterRefused):
    code = "meter_no_data"


# MeterLinkError kinds
REFUSED = "refused"
TIMEOUT = "timeout"
CLOSED = "closed"
UNREACHABLE = "unreachable"

_LINK_REASONS = {
    REFUSED: N_("nothing accepts connections there"),
    TIMEOUT: N_("the connection timed out"),
    CLOSED: N_("the terminal closed the connection"),
    UNREACHABLE: N_("the network cannot reach it"),
}


class MeterLinkError(KindError, MeterProtocolError):
    """The terminal (concentrator) at ``endpoint`` cannot be reached or dropped the line."""

    code: ClassVar[str] = "meter_link"
    template: ClassVar[str] = N_(
        "The meter terminal {endpoint} cannot be reached: {reason}. Check the address and "
        "port, the network, and that the terminal is running."
    )

    reasons = _LINK_REASONS
    default_kind = CLOSED

    def __init__(self, endpoint: str, kind: str, detail: str = "") -> None:
        self.endpoint = endpoint
        super().__init__(kind, detail, endpoint=endpoint)


class ValueFormatError(MeterProtocolError, ValueError):
    """A value that its register's format cannot carry; nothing was sent."""

    code: ClassVar[str] = "meter_value"
    template: ClassVar[str] = N_(
        "The value {value} does not fit the meter register {di}: {reason}."
    )

    def __init__(self, di: str, value: object, reason: str, **params: object) -> None:
        self.di = di
        super().__init__(di=di, value=value, reason=reason, **params)


class Refusal(Exception):
    """Raised by a meter's registers (:class:`cardio.dlt645.responder.MeterRegisters`) to have
    the responder answer with an error reply carrying ``errors``."""

    def __init__(self, errors: ErrorBits) -> None:
        self.errors = errors
        super().__init__(f"refused: {errors!r}")
