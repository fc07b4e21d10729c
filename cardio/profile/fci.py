"""The FCI templates and ATRs of user cards and the PSAM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from app.domain.card import PROFILE_VERSION
from app.domain.card import CardKind
from app.domain.card import UnsupportedProfile
from app.i18n import N_
from cardio.profile.codec import _as_bytes
from cardio.profile.codec import _corrupt
from cardio.profile.codec import _decoding
from cardio.profile.codec import _int
from cardio.profile.codec import _raw
from cardio.profile.layout import _U8
from cardio.profile.layout import _U16
from cardio.profile.layout import FCI_NAME
from cardio.profile.layout import PSAM_AID
from cardio.profile.layout import STATE_BLANK
from cardio.profile.layout import STATE_ISSUED


@dataclass(frozen=True)
class Fci:
    """What a card answers to SELECT.

    ``kind`` is a :class:`CardKind` when the code is known, else the raw code (a foreign or newer
    card); ``name`` is the AID or FID that was selected.
    """

    serial: bytes
    issued: bool
    kind: int
    profile_version: int
    name: bytes = b""

    @property
    def serial_hex(self) -> str:
        return self.serial.hex().upper()


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) > 0x7F:
        raise ValueError("FCI values are shorter than 128 bytes")
    tag_bytes = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    return tag_bytes + bytes([len(value)]) + value


def _name_bytes(aid_or_fid: bytes | int) -> bytes:
    if isinstance(aid_or_fid, int):
        return _int(aid_or_fid, 0, _U16, "fid").to_bytes(2, "big")
    if not 2 <= len(aid_or_fid) <= 16:
        raise ValueError(f"an AID is 5 to 16 bytes and a FID 2, got {len(aid_or_fid)}")
    return bytes(aid_or_fid)


def build_fci(aid_or_fid: bytes | int, serial: bytes, state: int, kind: int, version: int) -> bytes:
    """``6F L | 84 L name | A5 L | 9F0C 08 serial | C1 01 state | C2 01 kind | C3 01 version``."""
    proprietary = b"".join(
        [
            _tlv(0x9F0C, _raw(serial, 8, "serial")),
            _tlv(0xC1, bytes([_int(state, 0, 1, "state")])),
            _tlv(0xC2, bytes([_int(kind, 0, _U8, "kind")])),
            _tlv(0xC3, bytes([_int(version, 0, _U8, "version")])),
        ]
    )
    return _tlv(0x6F, _tlv(0x84, _name_bytes(aid_or_fid)) + _tlv(0xA5, proprietary))


def build_psam_fci(serial: bytes) -> bytes:
    """The security module's answer to SELECT: ``6F L | 84 L AID | A5 L | 9F0C 08 serial``."""
    return _tlv(0x6F, _tlv(0x84, PSAM_AID) + _tlv(0xA5, _tlv(0x9F0C, _raw(serial, 8, "serial"))))


def _parse_tlvs(data: bytes, file_name: str) -> dict[int, bytes]:
    """One level of BER-TLV objects (tags of up to 3 bytes, lengths up to 82 xx xx)."""
    found: dict[int, bytes] = {}
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            _corrupt(file_name, N_("the answer is cut short"))
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    while pos < len(data):
        first = take(1)[0]
        tag = first
        if first & 0x1F == 0x1F:
            for _ in range(2):
                byte = take(1)[0]
                tag = tag << 8 | byte
                if not byte & 0x80:
                    break
            else:
                _corrupt(file_name, N_("the answer is not a valid FCI"))
        length = take(1)[0]
        if length == 0x81:
            length = take(1)[0]
        elif length == 0x82:
            length = int.from_bytes(take(2), "big")
        elif length > 0x7F:
            _corrupt(file_name, N_("the answer is not a valid FCI"))
        value = take(length)
        if tag in found:
            _corrupt(file_name, N_("the answer is not a valid FCI"))
        found[tag] = value
    return found


def _fci_parts(data: object, file_name: str) -> tuple[bytes, dict[int, bytes]]:
    raw = _as_bytes(data)
    outer = _parse_tlvs(raw, file_name)
    if set(outer) != {0x6F}:
        _corrupt(file_name, N_("the answer is not a valid FCI"))
    inner = _parse_tlvs(outer[0x6F], file_name)
    if 0x84 not in inner or 0xA5 not in inner:
        _corrupt(file_name, N_("the answer is not a valid FCI"))
    return inner[0x84], _parse_tlvs(inner[0xA5], file_name)


def _one(fields: dict[int, bytes], tag: int, size: int, file_name: str) -> bytes:
    value = fields.get(tag)
    if value is None or len(value) != size:
        _corrupt(file_name, N_("the answer is not a valid FCI"))
    return value


def parse_fci(data: bytes) -> Fci:
    """The FCI of a card (application DF or MF).

    Raises CorruptCardFile for a malformed answer and UnsupportedProfile for an issued card of
    another profile version.  A kind code this profile does not know is returned as a plain int.
    """
    name = FCI_NAME
    with _decoding(name):
        selected, fields = _fci_parts(data, name)
        serial = _one(fields, 0x9F0C, 8, name)
        state = _one(fields, 0xC1, 1, name)[0]
        kind = _one(fields, 0xC2, 1, name)[0]
        version = _one(fields, 0xC3, 1, name)[0]
        if state == STATE_BLANK:
            if kind != CardKind.BLANK or version != 0:
                _corrupt(name, N_("a blank card must not have a kind or profile version"))
        elif state == STATE_ISSUED:
            if version != PROFILE_VERSION:
                raise UnsupportedProfile(version=version)
            if kind == CardKind.BLANK:
                _corrupt(name, N_("an issued card must have a kind"))
        else:
            _corrupt(name, N_("{field} is out of range ({value})"), field="state", value=state)
        known = CardKind(kind) if kind in CardKind._value2member_map_ else kind
        return Fci(serial, state == STATE_ISSUED, known, version, selected)


def parse_psam_fci(data: bytes) -> bytes:
    """The serial in a security module's answer to SELECT (CorruptCardFile if malformed)."""
    name = N_("security module information")
    with _decoding(name):
        _selected, fields = _fci_parts(data, name)
        return _one(fields, 0x9F0C, 8, name)


_ATR_PREFIX: Final = bytes([0x3B, 0x8A, 0x80, 0x01])


_CARD_HISTORY: Final = b"CVELEC"


_PSAM_HISTORY: Final = b"CVPSAM"


def _atr(history: bytes) -> bytes:
    body = _ATR_PREFIX + history
    tck = 0
    for byte in body[1:]:
        tck ^= byte
    return body + bytes([tck])


def build_card_atr(kind: int, state: int) -> bytes:
    """``3B 8A 80 01 "CVELEC" kind state 00 00 TCK`` (T=1)."""
    return _atr(
        _CARD_HISTORY + bytes([_int(kind, 0, _U8, "kind"), _int(state, 0, 1, "state"), 0, 0])
    )


def build_psam_atr() -> bytes:
    """``3B 8A 80 01 "CVPSAM" 00 01 00 00 TCK``."""
    return _atr(_PSAM_HISTORY + bytes([0, 1, 0, 0]))


def _valid_atr(atr: bytes, history: bytes) -> bool:
    return (
        len(atr) == 15
        and atr[:4] == _ATR_PREFIX
        and atr[4:10] == history
        and _atr(atr[4:14]) == atr
    )


def parse_card_atr(atr: bytes) -> tuple[int, int] | None:
    """``(kind, state)`` of a CardVend card's ATR; ``None`` for any other ATR."""
    atr = bytes(atr)
    if not _valid_atr(atr, _CARD_HISTORY):
        return None
    return atr[10], atr[11]


def is_psam_atr(atr: bytes) -> bool:
    """Whether ``atr`` is the ATR of a CardVend security module."""
    return _valid_atr(bytes(atr), _PSAM_HISTORY)
