"""DL/T 645-2007, our own implementation: codec, parser, links, client and responder.

Read ``PROTOCOL.md`` (beside this file) for what we implement and the data identifier table.

* :mod:`.frame` -- frames, addresses, control codes; :mod:`.parser` -- the byte-stream parser.
* :mod:`.formats`, :mod:`.dataids` -- value formats and the data identifiers (typed values).
* :mod:`.messages` -- typed requests and replies <-> frames.
* :mod:`.link` -- :class:`app.ports.MeterLink` over a serial line or a TCP terminal connection.
* :mod:`.client` -- :class:`MeterClient`: read, read_many, read_address, write, relay,
  broadcast_time.
* :mod:`.registers`, :mod:`.responder`, :mod:`.server` -- the meter side: the registers a meter
  exposes, the responder that answers frames for one or many meters, serial and TCP serving.
* :mod:`.errors` -- the typed errors.
"""

from cardio.dlt645.client import MeterClient
from cardio.dlt645.errors import (
    ChecksumError,
    ErrorBits,
    FrameError,
    FrameLengthError,
    MalformedFrame,
    MeterDataUnavailable,
    MeterLinkError,
    MeterNoAnswer,
    MeterPasswordRefused,
    MeterProtocolError,
    MeterRefused,
    TruncatedFrame,
    ValueFormatError,
)
from cardio.dlt645.frame import BROADCAST, WILDCARD, Frame, Function, decode_frame
from cardio.dlt645.link import (
    FrameLink,
    SerialSettings,
    TcpSettings,
    connect_tcp_link,
    open_serial_link,
)
from cardio.dlt645.messages import Password, RelayCommand, operator_code
from cardio.dlt645.parser import FrameParser
from cardio.dlt645.registers import MemoryMeter, MeterRegisters
from cardio.dlt645.responder import Responder
from cardio.dlt645.server import SerialServer, TcpServer

__all__ = [
    "BROADCAST",
    "WILDCARD",
    "ChecksumError",
    "ErrorBits",
    "Frame",
    "FrameError",
    "FrameLengthError",
    "FrameLink",
    "FrameParser",
    "Function",
    "MalformedFrame",
    "MemoryMeter",
    "MeterClient",
    "MeterDataUnavailable",
    "MeterLinkError",
    "MeterNoAnswer",
    "MeterPasswordRefused",
    "MeterProtocolError",
    "MeterRefused",
    "MeterRegisters",
    "Password",
    "RelayCommand",
    "Responder",
    "SerialServer",
    "SerialSettings",
    "TcpServer",
    "TcpSettings",
    "TruncatedFrame",
    "ValueFormatError",
    "connect_tcp_link",
    "decode_frame",
    "open_serial_link",
    "operator_code",
]
