"""The master side: typed reads, writes and commands over any :class:`app.ports.MeterLink`.

    client = MeterClient(open_serial_link(SerialSettings("/dev/ttyUSB0")))
    fen = client.read("000000000001", REMAINING_AMOUNT)
    values = client.read_many("000000000001", [REMAINING_AMOUNT, POSITIVE_ENERGY, STATUS_WORD_3])
    client.relay("000000000001", RelayCommand.TRIP, valid_until, password=..., operator="f01")

* A read that the meter refuses raises :class:`MeterRefused` (:class:`MeterDataUnavailable` for
  data it does not have); :meth:`MeterClient.read_many` gives ``None`` for such a value instead.
  A meter that gives no answer at all raises :class:`MeterNoAnswer` (after the link's retries).
* Long answers come in follow-up frames (0x12); :meth:`MeterClient.read` collects them.
* Retries on timeouts and damaged frames happen in the link; an error reply is never retried.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any
from typing import Final
from typing import TypeVar

from app.errors import ValidationError
from app.i18n import N_
from app.ports import MeterLink
from cardio.dlt645.dataids import DataId
from cardio.dlt645.errors import FrameError
from cardio.dlt645.errors import MalformedFrame
from cardio.dlt645.errors import MeterNoAnswer
from cardio.dlt645.errors import MeterRefused
from cardio.dlt645.errors import ValueFormatError
from cardio.dlt645.frame import BROADCAST
from cardio.dlt645.frame import WILDCARD
from cardio.dlt645.frame import Function
from cardio.dlt645.frame import decode_frame
from cardio.dlt645.frame import is_address
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

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_FOLLOW_UPS: Final = 255  # the sequence number is one byte


class MeterClient:
    """DL/T 645-2007 master over ``link``; many meter addresses may share one link."""

    def __init__(self, link: MeterLink) -> None:
        self.link = link

    # ------------------------------------------------------------------ reads

    def read(self, address: str, di: DataId[T]) -> T:
        """The typed value of ``di``; follow-up frames are collected."""
        return di.decode(self.read_raw(address, di.code))

    def read_raw(self, address: str, code: int) -> bytes:
        """The data bytes of any data identifier (``code`` as written, e.g. 0x00900200)."""
        reply = self._read(address, ReadRequest(code), Function.READ)
        data = reply.data
        seq = 0
        while reply.more:
            seq += 1
            if seq > MAX_FOLLOW_UPS:
                raise MalformedFrame(f"more than {MAX_FOLLOW_UPS} follow-up frames for {code:08X}")
            reply = self._read(address, FollowUpRequest(code, seq), Function.READ_FOLLOW_UP)
            if reply.seq != seq:
                raise MalformedFrame(f"follow-up frame {reply.seq} where {seq} was asked for")
            data += reply.data
        return data

    def read_many(self, address: str, dis: Iterable[DataId[Any]]) -> dict[DataId[Any], Any]:
        """Each value, or ``None`` for one the meter refuses or does not answer.

        A meter that gives no answer at all to the first question raises :class:`MeterNoAnswer`
        (or the damaged-frame error) at once; once it has answered, a later silence or damaged
        answer makes that one value ``None``."""
        values: dict[DataId[Any], Any] = {}
        answered = False
        for di in dis:
            try:
                values[di] = self.read(address, di)
                answered = True
            except MeterRefused as exc:
                log.info("meter %s: %s refused (%s)", address, di.hex, exc.errors)
                values[di] = None
                answered = True
            except (MeterNoAnswer, FrameError) as exc:
                if not answered:
                    raise
                log.info("meter %s: %s not answered: %s", address, di.hex, exc)
                values[di] = None
        return values

    def read_address(self, pattern: str = WILDCARD) -> str:
        """The address of the one meter on the line (or the one matching ``pattern``)."""
        reply = self._exchange(pattern, AddressRequest(), Function.READ_ADDRESS)
        if not isinstance(reply, AddressReply):
            raise MalformedFrame(f"read address answered with {reply!r}")
        return reply.address

    # ------------------------------------------------------------------ writes and commands

    def write(
        self, address: str, di: DataId[T], value: T, password: Password, operator: str
    ) -> None:
        """Write ``value`` into ``di`` (with the password and the operator's code)."""
        if not di.writable:
            raise ValueFormatError(di.hex, value, N_("this register cannot be written"))
        request = WriteRequest(di.code, password, operator_code(operator), di.encode(value))
        self._acknowledged(address, request, Function.WRITE)

    def relay(
        self,
        address: str,
        command: RelayCommand,
        valid_until: dt.datetime,
        *,
        password: Password,
        operator: str,
    ) -> None:
        """Trip, permit closing, close, alarm, release the alarm, keep power or release it; the
        meter ignores the command after ``valid_until`` (aware)."""
        request = RelayRequest(command, password, operator_code(operator), valid_until)
        self._acknowledged(address, request, Function.RELAY)

    def broadcast_time(self, now: dt.datetime) -> None:
        """Set every meter's clock to ``now`` (aware); no meter answers a broadcast."""
        frame = encode(BROADCAST, TimeBroadcast(now))
        self.link.send(frame.encode())

    # ------------------------------------------------------------------ plumbing

    def _read(self, address: str, request: Message, function: Function) -> ReadReply:
        reply = self._exchange(address, request, function)
        code = request.di if isinstance(request, ReadRequest | FollowUpRequest) else -1
        if not isinstance(reply, ReadReply) or reply.di != code:
            raise MalformedFrame(f"a read of {code:08X} answered with {reply!r}")
        return reply

    def _acknowledged(self, address: str, request: Message, function: Function) -> None:
        reply = self._exchange(address, request, function)
        if not isinstance(reply, Ack):
            raise MalformedFrame(f"{function.name} answered with {reply!r}")

    def _exchange(
        self, address: str, request: Message, function: Function
    ) -> ReadReply | AddressReply | Ack:
        """The meter's reply to ``request``; an error reply raises :class:`MeterRefused`."""
        if not is_address(address):
            raise ValidationError(
                N_(
                    "The meter address {value!r} is not valid: it has 12 digits 0-9 (AA stands "
                    "for any two digits)."
                ),
                value=address,
            )
        answer = decode_frame(self.link.transact(encode(address, request).encode()))
        reply = decode(answer)
        if answer.function != function or not answer.from_meter:
            raise MalformedFrame(f"{function.name} answered by {answer.describe()}")
        if isinstance(reply, ErrorReply):
            raise MeterRefused.of(address, function, reply.errors)
        assert isinstance(reply, ReadReply | AddressReply | Ack)  # from_meter: a reply
        return reply
