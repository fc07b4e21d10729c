"""APDU building and status words → typed errors (cardio/PROFILE.md, "Status words")."""

from __future__ import annotations

import logging

from app.domain.card import CardAuthError
from app.domain.card import CardCommandError
from app.domain.card import CardError
from app.domain.card import ForeignCard
from app.domain.card import UnissuedCard
from app.domain.card import WrongCardKind
from app.i18n import N_

log = logging.getLogger(__name__)

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_SECURITY = 0x6982
SW_BLOCKED = 0x6983
SW_NO_CHALLENGE = 0x6984
SW_CONDITIONS = 0x6985
SW_BAD_MAC = 0x6988
SW_MEMORY = 0x6581
SW_NOT_FOUND = 0x6A82
SW_BAD_P1P2 = 0x6A86
SW_OFFSET = 0x6B00
SW_INS = 0x6D00
SW_CLA = 0x6E00

INS_SELECT = 0xA4
INS_READ = 0xB0
INS_UPDATE = 0xD6
INS_CHALLENGE = 0x84
INS_EXT_AUTH = 0x82
INS_ISSUE = 0xE0
INS_ERASE = 0x0E


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    if len(data) > 255:
        raise ValueError("short APDUs carry at most 255 bytes")
    out = bytes([cla, ins, p1, p2])
    if data:
        out += bytes([len(data)]) + data
    if le is not None:
        out += bytes([le & 0xFF])
    return out


def select_aid(aid: bytes) -> bytes:
    return apdu(0x00, INS_SELECT, 0x04, 0x00, aid)


def select_fid(fid: int) -> bytes:
    return apdu(0x00, INS_SELECT, 0x00, 0x00, fid.to_bytes(2, "big"))


def read_binary(sfi: int, offset: int, length: int) -> bytes:
    return apdu(0x00, INS_READ, 0x80 | sfi, offset, le=length & 0xFF)


def get_challenge() -> bytes:
    return apdu(0x00, INS_CHALLENGE, 0x00, 0x00, le=8)


def external_authenticate(key_id: int, cryptogram: bytes) -> bytes:
    return apdu(0x00, INS_EXT_AUTH, 0x00, key_id, cryptogram)


def secure_update_header(sfi: int, offset: int, data_len: int) -> bytes:
    """CLA INS P1 P2 Lc of a secure UPDATE BINARY (Lc counts the 4-byte MAC)."""
    return bytes([0x04, INS_UPDATE, 0x80 | sfi, offset, data_len + 4])


def sw_text(sw: int) -> str:
    return f"{sw:04X}"


def raise_for_sw(sw: int, command: str) -> None:
    """Turn a status word other than 9000 into the typed error a teller understands."""
    if sw == SW_OK:
        return
    raise error_for_sw(sw, command)


def error_for_sw(sw: int, command: str) -> CardError:
    if sw & 0xFFF0 == 0x63C0:
        return CardAuthError(detail=N_("authentication failed, {tries} tries left"), tries=sw & 0xF)
    if sw == SW_BLOCKED:
        return CardAuthError(detail=N_("the card's key is blocked"))
    if sw == SW_BAD_MAC:
        return CardAuthError(detail=N_("bad MAC"))
    if sw in (SW_SECURITY, SW_NO_CHALLENGE):
        return CardAuthError(detail=N_("not authenticated"))
    if sw == SW_NOT_FOUND and command == "SELECT":
        return UnissuedCard()
    if sw in (SW_INS, SW_CLA):
        return ForeignCard(detail=N_("it does not understand the commands"))
    if sw == SW_CONDITIONS:
        return WrongCardKind(
            found=N_("card in another state"), expected=N_("card for this operation")
        )
    return CardCommandError(sw=sw_text(sw), command=command)
