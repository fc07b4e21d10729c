"""Serial lines over pyserial: the :class:`app.ports.ByteLink` of thermal printers and meters.

:func:`open_serial` is the :data:`app.ports.SerialOpener` the composition root hands to whatever
talks over a serial port (the ESC/POS printer backend in ``printing/``, the RS485 meter link).
The port is opened without flow control, 8N1 unless told otherwise (RS485 meters speak 8E1),
and locked for this process (``exclusive``), and bytes already waiting are discarded, so a late
answer to an earlier question is never taken for the answer to the next one.

Every failure is a :class:`SerialPortError` whose ``kind`` says what went wrong (``missing``,
``denied``, ``busy``, ``timeout``, ``io``, ``failed``), so a caller can turn it into its own
message (the printer backend: "the port is missing") without knowing pyserial.
"""

from __future__ import annotations

import errno
import logging
import time
from typing import ClassVar

import serial

try:  # POSIX: pyserial lets termios.error (not an OSError) through when a setting is refused
    from termios import error as _TermiosError
except ImportError:  # pragma: no cover - Windows
    _TermiosError = OSError  # type: ignore[assignment,misc]

from app.errors import KindError
from app.i18n import N_

log = logging.getLogger(__name__)

# a write may take this long plus twice the time its bytes need on the wire
WRITE_TIMEOUT = 2.0
DRAIN_POLL = 0.01
PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}

MISSING = "missing"
DENIED = "denied"
BUSY = "busy"
TIMEOUT = "timeout"
IO = "io"
FAILED = "failed"

_REASONS = {
    MISSING: N_("the port does not exist"),
    DENIED: N_("CardVend is not allowed to open it"),
    BUSY: N_("another program is using it"),
    TIMEOUT: N_("the device did not take the data in time"),
    IO: N_("the connection broke off"),
    FAILED: N_("it cannot be opened"),
}


class SerialPortError(KindError):
    """A serial port cannot be opened or used. ``kind`` is one of the module constants."""

    code: ClassVar[str] = "serial_port"
    template: ClassVar[str] = N_(
        "The serial port {port} cannot be used: {reason}. Check that the device is switched on "
        "and its cable is plugged in, that the port in the settings is right and that no other "
        "program holds the port."
    )

    reasons = _REASONS
    default_kind = FAILED

    def __init__(self, port: str, kind: str, detail: str = "") -> None:
        self.port = port
        super().__init__(kind, detail, port=port)


def _open_kind(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return MISSING
    if code in (errno.EACCES, errno.EPERM):
        return DENIED
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        return BUSY
    text = str(exc).lower()  # Windows: no errno, the message names the cause
    if "filenotfound" in text or "cannot find the file" in text:
        return MISSING
    if "access is denied" in text or "permissionerror" in text:
        return BUSY  # Windows denies a port that another program has open
    return FAILED


class SerialLink:
    """An open serial port (:class:`app.ports.ByteLink`)."""

    def __init__(
        self, port: serial.Serial, name: str, baudrate: int, bits_per_byte: int = 10
    ) -> None:
        self._port = port
        self.name = name
        self.baudrate = baudrate
        self.bits_per_byte = bits_per_byte  # start + data + parity + stop bits

    def line_time(self, size: int) -> float:
        """Seconds that ``size`` bytes take on the wire at this port's settings."""
        return size * self.bits_per_byte / self.baudrate

    def write(self, data: bytes) -> None:
        """Send ``data`` and wait until it has left the computer; a device that stops taking
        bytes (flow control, a hung adapter) gives ``SerialPortError(kind="timeout")``."""
        wire_time = self.line_time(len(data))
        deadline = time.monotonic() + WRITE_TIMEOUT + 2 * wire_time
        try:
            self._port.write_timeout = WRITE_TIMEOUT + 2 * wire_time
            self._port.write(data)
            while self._port.out_waiting > 0:
                if time.monotonic() > deadline:
                    raise serial.SerialTimeoutException("output not drained")
                time.sleep(DRAIN_POLL)
        except serial.SerialTimeoutException as exc:
            raise SerialPortError(self.name, TIMEOUT, str(exc)) from exc
        except (serial.SerialException, OSError, _TermiosError) as exc:
            raise SerialPortError(self.name, IO, str(exc)) from exc
        log.debug("%s: sent %d bytes", self.name, len(data))

    def read(self, size: int, timeout: float) -> bytes:
        """Up to ``size`` bytes; fewer (maybe none) when ``timeout`` seconds pass first."""
        try:
            if self._port.timeout != timeout:  # each change reconfigures the port
                self._port.timeout = timeout
            data: bytes = self._port.read(size)
        except (serial.SerialException, OSError, _TermiosError) as exc:
            raise SerialPortError(self.name, IO, str(exc)) from exc
        log.debug("%s: received %s", self.name, data.hex(" ") or "nothing")
        return data

    def close(self) -> None:
        try:
            self._port.close()
        except (serial.SerialException, OSError) as exc:  # closing never hides the real error
            log.warning("%s: closing failed: %s", self.name, exc)


def open_serial(
    port: str, baudrate: int, *, parity: str = "N", bytesize: int = 8, stopbits: int = 1
) -> SerialLink:
    """Open ``port`` (``/dev/ttyUSB0``, ``COM3``) at ``baudrate``, no flow control; ``parity``
    is ``N``, ``E`` or ``O``."""
    if not port:
        raise SerialPortError(port, MISSING, "no port configured")
    try:
        handle = serial.Serial(
            port,
            baudrate,
            bytesize=bytesize,
            parity=PARITIES[parity],
            stopbits=stopbits,
            timeout=1.0,
            write_timeout=WRITE_TIMEOUT,
            exclusive=True,
        )
    except (serial.SerialException, OSError, ValueError, KeyError) as exc:
        kind = FAILED if isinstance(exc, ValueError | KeyError) else _open_kind(exc)
        log.warning("cannot open serial port %s at %d baud (%s): %s", port, baudrate, kind, exc)
        raise SerialPortError(port, kind, str(exc)) from exc
    try:
        # set the settings once more: a device that dropped one (a pty has no parity) refuses
        # now, with a typed error, instead of at the first read
        handle.timeout = handle.timeout
        handle.reset_input_buffer()
    except _TermiosError as exc:
        handle.close()
        raise SerialPortError(port, FAILED, f"settings refused: {exc}") from exc
    except (serial.SerialException, OSError) as exc:
        handle.close()
        raise SerialPortError(port, IO, str(exc)) from exc
    log.debug("opened serial port %s at %d baud %d%s%d", port, baudrate, bytesize, parity, stopbits)
    bits = 1 + bytesize + (parity != "N") + stopbits
    return SerialLink(handle, port, baudrate, bits)
