"""What the emulated cards share: APDU parsing, status words as exceptions, the file system walk, faults for tests."""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass

from cardio.emulator.image import SW_UNKNOWN_ERROR
from cardio.emulator.image import SW_WRONG_LENGTH
from cardio.emulator.image import CardVanished

log = logging.getLogger(__name__)


class _Status(Exception):
    """An error status word; the command is answered with it."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass(frozen=True)
class _Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None: no Le; 256 for Le 00
    lc_present: bool

    @property
    def header(self) -> bytes:
        """``CLA INS P1 P2 Lc`` as sent (what a secure command's MAC covers)."""
        return bytes([self.cla, self.ins, self.p1, self.p2, len(self.data)])

    def expect_no_data(self) -> None:
        if self.lc_present:
            raise _Status(SW_WRONG_LENGTH)

    def expect_data(self) -> bytes:
        if not self.lc_present:
            raise _Status(SW_WRONG_LENGTH)
        return self.data


def _parse(raw: bytes) -> _Apdu:
    """Short APDUs only (cases 1 to 4); extended lengths and inconsistent Lc answer 6700."""
    if len(raw) < 4:
        raise _Status(SW_WRONG_LENGTH)
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    if len(raw) == 4:
        return _Apdu(cla, ins, p1, p2, b"", None, False)
    if len(raw) == 5:
        return _Apdu(cla, ins, p1, p2, b"", raw[4] or 256, False)
    lc = raw[4]
    if lc == 0:  # extended length
        raise _Status(SW_WRONG_LENGTH)
    if len(raw) == 5 + lc:
        return _Apdu(cla, ins, p1, p2, bytes(raw[5:]), None, True)
    if len(raw) == 6 + lc:
        return _Apdu(cla, ins, p1, p2, bytes(raw[5:-1]), raw[-1] or 256, True)
    raise _Status(SW_WRONG_LENGTH)


def _tlv(tag: bytes, value: bytes) -> bytes:
    if len(value) > 0x7F:
        raise ValueError("short TLV lengths only")
    return tag + bytes([len(value)]) + value


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


class _EmulatedCard:
    """Locking, power and the fault hook shared by the user card and the PSAM."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pull: tuple[int, bool] | None = None

    @property
    def atr(self) -> bytes:
        raise NotImplementedError

    def power_on(self) -> None:
        with self._lock:
            self._clear_volatile()

    def reset(self) -> None:
        with self._lock:
            self._clear_volatile()

    def power_off(self) -> None:
        with self._lock:
            self._clear_volatile()

    def _clear_volatile(self) -> None:
        raise NotImplementedError

    def pull_after(self, n: int, *, applied: bool) -> None:
        """Fault injection: the card vanishes at the ``n``-th APDU from now (1 = the next one).

        ``applied=False``: before the card does anything with it.  ``applied=True``: after it has
        applied the command and persisted the result, but before it answers.  Either way
        :meth:`process` raises :class:`CardVanished` and the volatile state is lost."""
        if n < 1:
            raise ValueError("n counts APDUs from 1")
        with self._lock:
            self._pull = (n, applied)

    def cancel_pull(self) -> None:
        with self._lock:
            self._pull = None

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with response data followed by SW1 SW2."""
        with self._lock:
            vanish_after = False
            if self._pull is not None:
                n, applied = self._pull
                if n > 1:
                    self._pull = (n - 1, applied)
                else:
                    self._pull = None
                    if not applied:
                        self._vanish()
                    vanish_after = True
            try:
                response = self._dispatch(_parse(bytes(apdu)))
            except _Status as status:
                response = _sw(status.sw)
            except Exception:
                log.exception("card emulator failed on a command")
                response = _sw(SW_UNKNOWN_ERROR)
            if vanish_after:
                self._vanish()
            return response

    def _vanish(self) -> None:
        self._clear_volatile()
        raise CardVanished("the card was pulled")

    def _dispatch(self, apdu: _Apdu) -> bytes:
        raise NotImplementedError


class _Df(enum.Enum):
    MF = "MF"
    APP = "APP"


@dataclass(frozen=True)
class _SilentFault:
    updates: int  # secure updates still to be kept only in part
    stored: int  # bytes of each update's data that reach the memory
    sfi: int | None  # only updates of this file; None: any file
