"""The emulated cards of tests/test_emulator.py and tests/test_emulator_psam.py: the test master
keys and serials, raw APDUs, a blank or issued user card, and the counter's authentication."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from app.domain.card import CardKind
from app.ports import KeyRole
from cardio.crypto import auth_cryptogram
from cardio.emulator import CardImage
from cardio.emulator import PsamOS
from cardio.emulator import UserCardOS
from cardio.emulator import diversified_card_keys
from cardio.profile import APP_AID

MASTER = {i: bytes([0x30 + i]) * 8 + bytes(range(i, i + 8)) for i in range(7)}
SERIAL = bytes.fromhex("8600000000001234")
OTHER_SERIAL = bytes.fromhex("8600000000009999")
KEYS = diversified_card_keys(MASTER, SERIAL)
PSAM_SERIAL = bytes.fromhex("5053414D00000001")
SELECT_APP_AID = bytes.fromhex("00A404000A") + APP_AID
GET_CHALLENGE = bytes.fromhex("0084000008")


def counting_rng() -> Callable[[int], bytes]:
    """Deterministic, never-repeating challenges."""
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


def tx(card: UserCardOS | PsamOS, apdu: bytes) -> tuple[bytes, int]:
    response = card.process(apdu)
    assert len(response) >= 2
    return response[:-2], int.from_bytes(response[-2:], "big")


def read_apdu(sfi: int, offset: int = 0, le: int = 0) -> bytes:
    return bytes([0x00, 0xB0, 0x80 | sfi, offset, le])


def ext_auth_apdu(key_id: int, cryptogram: bytes) -> bytes:
    return bytes([0x00, 0x82, 0x00, key_id, len(cryptogram)]) + cryptogram


def issue_apdu(kind: int) -> bytes:
    return bytes([0x80, 0xE0, 0x00, kind, 0x00])


def get_challenge(card: UserCardOS) -> bytes:
    data, sw = tx(card, GET_CHALLENGE)
    assert sw == 0x9000 and len(data) == 8
    return data


def authenticate(card: UserCardOS, key_id: int, key: bytes | None = None) -> int:
    challenge = get_challenge(card)
    cryptogram = auth_cryptogram(key if key is not None else KEYS[key_id], challenge)
    return tx(card, ext_auth_apdu(key_id, cryptogram))[1]


def blank_card(serial: bytes = SERIAL, **kw: object) -> UserCardOS:
    keys = diversified_card_keys(MASTER, serial)
    kw.setdefault("rng", counting_rng())
    return UserCardOS(CardImage.blank(serial, keys), **kw)  # type: ignore[arg-type]


def issued_card(kind: int = CardKind.USER, **kw: object) -> UserCardOS:
    card = blank_card(**kw)
    assert authenticate(card, KeyRole.ISSUER) == 0x9000
    assert tx(card, issue_apdu(kind))[1] == 0x9000
    card.reset()
    return card
