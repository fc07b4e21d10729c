"""The meter side of DL/T 645-2007: answers frames for one meter or many (a concentrator).

:meth:`Responder.handle` takes a frame and returns the answer, or ``None`` when no answer is due:

* frames from a meter (bit 7 set) are never answered;
* the broadcast address (999999999999) is never answered; a broadcast time sets every meter's
  clock;
* a meter's own address is answered by that meter; an address with ``AA`` wildcard bytes is
  answered when exactly one meter matches it (two meters on a bus would answer at once and
  garble each other, so a concentrator stays silent);
* any other address is not ours: no answer.

For the addressed meter:

* read (0x11): the value from :class:`~cardio.dlt645.registers.MeterRegisters`; a block is the
  meter's value for the block when it has one (read at one moment), else its members up to
  the first one the meter does not have.  Unknown identifiers, and data the meter
  does not have, get an error reply with ``NO_DATA``.  An answer longer than ``max_data`` bytes
  goes out in follow-up frames (bit 5 set), which the master asks for with 0x12 and the
  sequence number 1, 2, ...; a sequence number out of turn gets ``NO_DATA``;
* write (0x14): a wrong password gets ``UNAUTHORISED``; an unknown identifier ``NO_DATA``; a
  read-only one or a value that does not decode ``OTHER``; a :class:`Refusal` of the registers
  its own bits;
* relay (0x1C): a wrong password gets ``UNAUTHORISED``; a command whose valid-until time has
  passed on the meter's clock ``OTHER``; a :class:`Refusal` its bits;
* a request that does not decode (a function we do not implement, a wrong length) gets ``OTHER``.

The responder is thread-safe (one lock); the servers in :mod:`cardio.dlt645.server` call it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any
from typing import Final

from cardio.dlt645 import dataids as D
from cardio.dlt645.errors import ErrorBits
from cardio.dlt645.errors import MalformedFrame
from cardio.dlt645.errors import Refusal
from cardio.dlt645.errors import ValueFormatError
from cardio.dlt645.frame import BROADCAST
from cardio.dlt645.frame import Frame
from cardio.dlt645.frame import Function
from cardio.dlt645.frame import address_matches
from cardio.dlt645.frame import control
from cardio.dlt645.messages import Ack as _Ack
from cardio.dlt645.messages import AddressReply
from cardio.dlt645.messages import AddressRequest
from cardio.dlt645.messages import ErrorReply
from cardio.dlt645.messages import FollowUpRequest
from cardio.dlt645.messages import Message
from cardio.dlt645.messages import ReadReply
from cardio.dlt645.messages import ReadRequest
from cardio.dlt645.messages import RelayRequest
from cardio.dlt645.messages import Reply
from cardio.dlt645.messages import TimeBroadcast
from cardio.dlt645.messages import WriteRequest
from cardio.dlt645.messages import decode
from cardio.dlt645.messages import encode
from cardio.dlt645.registers import MeterRegisters

log = logging.getLogger(__name__)

MAX_DATA: Final = 200  # DL/T 645: a read answer's data field holds at most 200 bytes
DI_SIZE: Final = 4


class Responder:
    """Answers DL/T 645 frames for the meters added to it (see the module for the rules)."""

    def __init__(self, meters: Iterable[MeterRegisters] = (), *, max_data: int = MAX_DATA) -> None:
        if max_data < DI_SIZE + 2:
            raise ValueError("max_data must leave room for the DI, a byte and the sequence")
        self.max_data = max_data
        self._meters: dict[str, MeterRegisters] = {}
        self._follow_ups: dict[str, tuple[int, list[bytes]]] = {}
        self._lock = threading.Lock()
        for meter in meters:
            self.add(meter)

    def add(self, meter: MeterRegisters) -> None:
        with self._lock:
            self._meters[meter.address] = meter

    def remove(self, address: str) -> None:
        with self._lock:
            self._meters.pop(address, None)
            self._follow_ups.pop(address, None)

    def __len__(self) -> int:
        return len(self._meters)

    def handle(self, frame: Frame) -> Frame | None:
        """The answer to ``frame``, or ``None`` when none is due."""
        if frame.from_meter:
            return None
        with self._lock:
            if frame.address == BROADCAST:
                self._broadcast(frame)
                return None
            meter = self._addressed(frame.address)
            if meter is None:
                return None
            try:
                reply = self._answer(meter, decode(frame))
            except MalformedFrame as exc:
                log.info("meter %s: %s", meter.address, exc)
                error = bytes([ErrorBits.OTHER])
                return Frame(meter.address, control(frame.function, error=True), error)
            return None if reply is None else encode(meter.address, reply)

    def _addressed(self, address: str) -> MeterRegisters | None:
        meter = self._meters.get(address)
        if meter is not None or "AA" not in address:
            return meter
        found = [m for a, m in self._meters.items() if address_matches(address, a)]
        return found[0] if len(found) == 1 else None

    def _broadcast(self, frame: Frame) -> None:
        try:
            message = decode(frame)
        except MalformedFrame as exc:
            log.info("broadcast ignored: %s", exc)
            return
        if isinstance(message, TimeBroadcast):
            for meter in self._meters.values():
                meter.set_clock(message.when)

    def _answer(self, meter: MeterRegisters, message: Message) -> Reply | None:
        match message:
            case ReadRequest(di):
                return self._read(meter, di)
            case FollowUpRequest(di, seq):
                return self._follow_up(meter, di, seq)
            case AddressRequest():
                return AddressReply(meter.address)
            case WriteRequest():
                return self._write(meter, message)
            case RelayRequest():
                return self._relay(meter, message)
        return None  # a time broadcast to one address, or a reply: not answered

    def _read(self, meter: MeterRegisters, code: int) -> Reply:
        self._follow_ups.pop(meter.address, None)
        di = D.lookup(code)
        data = None if di is None else _encoded(meter, di)
        if data is None:
            return ErrorReply(Function.READ, ErrorBits.NO_DATA)
        room = self.max_data - DI_SIZE
        if len(data) <= room:
            return ReadReply(code, data)
        rest = data[room:]
        step = room - 1  # a follow-up answer also carries its sequence number
        chunks = [rest[k : k + step] for k in range(0, len(rest), step)]
        self._follow_ups[meter.address] = (code, chunks)
        return ReadReply(code, data[:room], more=True)

    def _follow_up(self, meter: MeterRegisters, code: int, seq: int) -> Reply:
        pending = self._follow_ups.get(meter.address)
        if pending is None or pending[0] != code or not 1 <= seq <= len(pending[1]):
            return ErrorReply(Function.READ_FOLLOW_UP, ErrorBits.NO_DATA)
        chunks = pending[1]
        if seq == len(chunks):
            del self._follow_ups[meter.address]
        return ReadReply(code, chunks[seq - 1], more=seq < len(chunks), seq=seq)

    def _write(self, meter: MeterRegisters, request: WriteRequest) -> Reply:
        if not meter.password_ok(request.password):
            return ErrorReply(Function.WRITE, ErrorBits.UNAUTHORISED)
        di = D.lookup(request.di)
        if di is None:
            return ErrorReply(Function.WRITE, ErrorBits.NO_DATA)
        try:
            if not di.writable:
                raise Refusal(ErrorBits.OTHER)
            meter.write(di, di.decode(request.data), request.operator)
        except Refusal as exc:
            return ErrorReply(Function.WRITE, exc.errors)
        except MalformedFrame as exc:
            log.info("meter %s: write refused: %s", meter.address, exc)
            return ErrorReply(Function.WRITE, ErrorBits.OTHER)
        return _Ack(Function.WRITE)

    def _relay(self, meter: MeterRegisters, request: RelayRequest) -> Reply:
        if not meter.password_ok(request.password):
            return ErrorReply(Function.RELAY, ErrorBits.UNAUTHORISED)
        if request.valid_until < meter.clock():
            log.info(
                "meter %s: %s expired at %s",
                meter.address,
                request.command.name,
                request.valid_until,
            )
            return ErrorReply(Function.RELAY, ErrorBits.OTHER)
        try:
            meter.relay(request.command, request.operator)
        except Refusal as exc:
            return ErrorReply(Function.RELAY, exc.errors)
        return _Ack(Function.RELAY)


def _encoded(meter: MeterRegisters, di: D.DataId[Any]) -> bytes | None:
    """The bytes the meter sends for ``di``; ``None`` when it has no such data. A value its
    register cannot carry (a negative remaining amount) is logged and not sent."""
    try:
        value = meter.value(di)  # a block too: a meter may read it whole, at one moment
        if value is not None or not di.members:
            return None if value is None else di.encode(value)
        parts = []
        for member in di.members:
            value = meter.value(member)
            if value is None:
                break
            parts.append(member.encode(value))
        return b"".join(parts) or None
    except ValueFormatError as exc:
        log.warning("meter %s: %s cannot be sent: %s", meter.address, di.hex, exc)
        return None
