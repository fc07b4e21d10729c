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
from cardio.dlt645.errors import ChecksumError
from cardio.dlt645.errors import ErrorBits
from cardio.dlt645.errors import FrameError
from cardio.dlt645.errors import FrameLengthError
from cardio.dlt645.errors import MalformedFrame
from cardio.dlt645.errors import MeterDataUnavailable
from cardio.dlt645.errors import MeterLinkError
from cardio.dlt645.errors import MeterNoAnswer
from cardio.dlt645.errors import MeterPasswordRefused
from cardio.dlt645.errors import MeterProtocolError
from cardio.dlt645.errors import MeterRefused
from cardio.dlt645.errors import TruncatedFrame
from cardio.dlt645.errors import ValueFormatError
from cardio.dlt645.frame import BROADCAST
from cardio.dlt645.frame import WILDCARD
from cardio.dlt645.frame import Frame
from cardio.dlt645.frame import Function
from cardio.dlt645.frame import decode_frame
from cardio.dlt645.link import FrameLink
from cardio.dlt645.link import SerialSettings
from cardio.dlt645.link import TcpSettings
from cardio.dlt645.link import connect_tcp_link
from cardio.dlt645.link import open_serial_link
from cardio.dlt645.messages import Password
from cardio.dlt645.messages import RelayCommand
from cardio.dlt645.messages import operator_code
from cardio.dlt645.parser import FrameParser
from cardio.dlt645.registers import MemoryMeter
from cardio.dlt645.registers import MeterRegisters
from cardio.dlt645.responder import Responder
from cardio.dlt645.server import SerialServer
from cardio.dlt645.server import TcpServer

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
