"""APDU tracing at DEBUG with keys, MACs and challenges masked."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

_INS_NAMES = {
    0xA4: "SELECT",
    0xB0: "READ BINARY",
    0xD6: "UPDATE BINARY",
    0x84: "GET CHALLENGE",
    0x82: "EXTERNAL AUTHENTICATE",
    0xC0: "GET RESPONSE",
    0xE0: "ISSUE",
    0x0E: "ERASE",
    0xFA: "PSAM",
}


@dataclass(frozen=True)
class _Parsed:
    header: bytes
    data: bytes
    le: int | None
    well_formed: bool  # False: extended length or malformed; the whole body is masked


def _parse(apdu: bytes) -> _Parsed:
    header = apdu[:4]
    if len(apdu) <= 4:
        return _Parsed(header, b"", None, len(apdu) == 4)
    if len(apdu) == 5:
        return _Parsed(header, b"", apdu[4], True)
    lc = apdu[4]
    if lc and len(apdu) == 5 + lc:
        return _Parsed(header, apdu[5:], None, True)
    if lc and len(apdu) == 6 + lc:
        return _Parsed(header, apdu[5:-1], apdu[-1], True)
    return _Parsed(header, apdu[4:], None, False)


def _secure_messaging(cla: int) -> bool:
    return bool(cla & 0x0C)


def _masked_command_bytes(apdu: bytes, parsed: _Parsed) -> set[int]:
    n = len(parsed.data)
    if not parsed.well_formed or len(apdu) < 4:
        return set(range(n))
    cla, ins, p1 = apdu[0], apdu[1], apdu[2]
    if ins == 0x82:  # EXTERNAL AUTHENTICATE: the cryptogram
        return set(range(n))
    if cla == 0x80 and ins == 0xFA:  # PSAM (cardio/PROFILE.md)
        if p1 in (0x00, 0x02):  # challenge tail / write-back MAC at the end
            return set(range(max(0, n - 4), n))
        if p1 == 0x01:  # serial 8 || IV (challenge 8 || 00*8) || data: the challenge tail
            return set(range(12, min(16, n)))
        return set()
    if _secure_messaging(cla):  # the MAC
        return set(range(max(0, n - 4), n))
    return set()


def _masked_response_bytes(apdu: bytes, data: bytes) -> set[int]:
    n = len(data)
    if len(apdu) < 4:
        return set(range(n))
    cla, ins, p1 = apdu[0], apdu[1], apdu[2]
    if cla == 0x80 and ins == 0xFA and p1 in (0x00, 0x01, 0x03):  # cryptogram or MAC
        return set(range(n))
    if ins == 0x84 or _secure_messaging(cla):  # a challenge (secure commands answer the next one)
        return set(range(max(0, n - 4), n))
    return set()


def _hex(data: bytes, masked: Container[int] = ()) -> str:
    return " ".join("**" if i in masked else f"{b:02X}" for i, b in enumerate(data))


def trace_command(apdu: bytes) -> str:
    """A command APDU for the log, secrets masked: ``00 A4 04 00 Lc=07 A0 00 … Le=00 (13 B)``."""
    parsed = _parse(apdu)
    parts = [_hex(parsed.header)]
    if parsed.data:
        label = f"Lc={len(parsed.data):02X}" if parsed.well_formed else "body"
        parts += [label, _hex(parsed.data, _masked_command_bytes(apdu, parsed))]
    if parsed.le is not None:
        parts.append(f"Le={parsed.le:02X}")
    parts.append(f"({len(apdu)} B)")
    return " ".join(parts)


def trace_response(apdu: bytes, data: bytes, sw: int) -> str:
    """A response for the log, secrets masked: ``9000 (8 B) 01 02 03 04 ** ** ** **``."""
    text = f"{sw:04X} ({len(data)} B)"
    if data:
        text += " " + _hex(data, _masked_response_bytes(apdu, data))
    return text


def command_name(apdu: bytes) -> str:
    """``SELECT (00 A4 04 00)`` — names a command in an error message, never its data."""
    header = _hex(apdu[:4])
    name = _INS_NAMES.get(apdu[1]) if len(apdu) > 1 else None
    return f"{name} ({header})" if name else header


def _get_response_cla(cla: int) -> int:
    return cla & 0x03 if not cla & 0x80 else 0x00  # keep the logical channel, drop SM bits


def _with_le(apdu: bytes, le: int) -> bytes | None:
    """The same command with Le replaced (or added), for a 6Cxx answer."""
    parsed = _parse(apdu)
    if not parsed.well_formed:
        return None
    body = apdu if parsed.le is None else apdu[:-1]
    return body + bytes([le])
