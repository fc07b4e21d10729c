"""The PSAM of cardio/emulator.py (the secure access module a counter or a meter computes
cryptograms and MACs with) against cardio/PROFILE.md, in-process: its answers agree with the
user card's checks for every key role, and it refuses what it must refuse."""

from __future__ import annotations

from app.domain.card import CardKind
from cardio.crypto import auth_cryptogram
from cardio.crypto import challenge_iv
from cardio.crypto import diversify_card_key
from cardio.crypto import diversify_meter_key
from cardio.crypto import mac4
from cardio.emulator import PsamOS
from cardio.profile import APP_AID
from cardio.profile import PSAM_AID
from tests.rigs.emulator import KEYS
from tests.rigs.emulator import MASTER
from tests.rigs.emulator import OTHER_SERIAL
from tests.rigs.emulator import PSAM_SERIAL
from tests.rigs.emulator import SELECT_APP_AID
from tests.rigs.emulator import SERIAL
from tests.rigs.emulator import blank_card
from tests.rigs.emulator import ext_auth_apdu
from tests.rigs.emulator import get_challenge
from tests.rigs.emulator import issue_apdu
from tests.rigs.emulator import issued_card
from tests.rigs.emulator import read_apdu
from tests.rigs.emulator import tx


def psam() -> PsamOS:
    module = PsamOS(MASTER, PSAM_SERIAL)
    data, sw = tx(module, bytes.fromhex("00A404000A") + PSAM_AID)
    assert sw == 0x9000
    assert data == bytes.fromhex("6F19840A") + PSAM_AID + bytes.fromhex("A50B9F0C08") + PSAM_SERIAL
    return module


def psam_cryptogram(module: PsamOS, key_id: int, serial: bytes, challenge: bytes) -> bytes:
    data, sw = tx(module, bytes([0x80, 0xFA, 0x00, key_id, 16]) + serial + challenge)
    assert sw == 0x9000 and len(data) == 16
    return data


def psam_mac(module: PsamOS, key_id: int, serial: bytes, iv: bytes, data: bytes) -> bytes:
    body = serial + iv + data
    mac, sw = tx(module, bytes([0x80, 0xFA, 0x01, key_id, len(body)]) + body)
    assert sw == 0x9000 and len(mac) == 4
    return mac


def test_psam_needs_selecting() -> None:
    module = PsamOS(MASTER, PSAM_SERIAL)
    assert tx(module, bytes([0x80, 0xFA, 0x00, 0x01, 16]) + bytes(16))[1] == 0x6985
    assert tx(module, bytes.fromhex("00A404000A") + APP_AID)[1] == 0x6A82
    module = psam()
    module.reset()
    assert tx(module, bytes([0x80, 0xFA, 0x00, 0x01, 16]) + bytes(16))[1] == 0x6985


def test_psam_cryptogram_authenticates_on_the_card() -> None:
    card = issued_card()
    module = psam()
    tx(card, SELECT_APP_AID)
    challenge = get_challenge(card)
    cryptogram = psam_cryptogram(module, 1, SERIAL, challenge)
    assert cryptogram == auth_cryptogram(KEYS[1], challenge)
    assert tx(card, ext_auth_apdu(1, cryptogram))[1] == 0x9000
    # the PSAM's MAC is accepted by the card's own verification
    challenge = get_challenge(card)
    body = b"\x68\x00\x16" + bytes(19)
    header = bytes([0x04, 0xD6, 0x82, 0x00, len(body) + 4])
    mac = psam_mac(module, 2, SERIAL, challenge_iv(challenge), header + body)
    next_challenge, sw = tx(card, header + body + mac)
    assert sw == 0x9000
    assert tx(card, read_apdu(2, 0, len(body))) == (body, 0x9000)
    # chained: the next challenge works with a PSAM MAC too
    header = bytes([0x04, 0xD6, 0x81, 0x00, 5])
    mac = psam_mac(module, 2, SERIAL, challenge_iv(next_challenge), header + b"\x68")
    assert tx(card, header + b"\x68" + mac)[1] == 0x9000
    # a cryptogram for another card's serial does not work here
    challenge = get_challenge(card)
    cryptogram = psam_cryptogram(module, 3, OTHER_SERIAL, challenge)
    assert tx(card, ext_auth_apdu(3, cryptogram))[1] == 0x63C4


def test_psam_issuer_and_meter_roles_work_on_a_blank_card() -> None:
    card = blank_card()
    module = psam()
    challenge = get_challenge(card)
    cryptogram = psam_cryptogram(module, 0, SERIAL, challenge)
    assert tx(card, ext_auth_apdu(0, cryptogram))[1] == 0x9000
    assert tx(card, issue_apdu(CardKind.USER))[1] == 0x9000
    challenge = get_challenge(card)
    assert tx(card, ext_auth_apdu(3, psam_cryptogram(module, 3, SERIAL, challenge)))[1] == 0x9000
    challenge = get_challenge(card)
    header = bytes([0x04, 0xD6, 0x85, 0x00, 6])
    mac = psam_mac(module, 4, SERIAL, challenge_iv(challenge), header + b"\x01\x02")
    assert tx(card, header + b"\x01\x02" + mac)[1] == 0x9000


def test_psam_refuses_the_write_back_key_and_long_data() -> None:
    module = psam()
    assert tx(module, bytes([0x80, 0xFA, 0x00, 0x05, 16]) + bytes(16))[1] == 0x6A86
    assert tx(module, bytes([0x80, 0xFA, 0x01, 0x05, 25]) + bytes(25))[1] == 0x6A86
    assert tx(module, bytes([0x80, 0xFA, 0x00, 0x06, 16]) + bytes(16))[1] == 0x6A86
    assert tx(module, bytes([0x80, 0xFA, 0x01, 0x06, 25]) + bytes(25))[1] == 0x6A86
    assert tx(module, bytes([0x80, 0xFA, 0x00, 0x07, 16]) + bytes(16))[1] == 0x6A86
    assert tx(module, bytes([0x80, 0xFA, 0x06, 0x00, 16]) + bytes(16))[1] == 0x6A86
    assert tx(module, bytes([0x80, 0xFA, 0x04, 0x00, 16]) + bytes(16))[1] == 0x6700
    assert tx(module, bytes([0x80, 0xFA, 0x04, 0x01, 30]) + bytes(30))[1] == 0x6A86
    assert tx(module, bytes([0x80, 0xFA, 0x05, 0x00, 30]) + bytes(30))[1] == 0x6700
    assert tx(module, bytes([0x80, 0xFA, 0x00, 0x01, 15]) + bytes(15))[1] == 0x6700
    assert tx(module, bytes([0x80, 0xFA, 0x01, 0x02, 23]) + bytes(23))[1] == 0x6700
    too_long = bytes([0x80, 0xFA, 0x01, 0x02, 0x00, 0x01, 0x00]) + bytes(256)
    assert tx(module, too_long)[1] == 0x6700
    assert tx(module, bytes([0x80, 0xFA, 0x02, 0x00, 48]) + bytes(48))[1] == 0x6700
    assert tx(module, bytes([0x80, 0xFA, 0x03, 0x00, 46]) + bytes(46))[1] == 0x6700
    assert tx(module, bytes([0x80, 0xFA, 0x03, 0x01, 45]) + bytes(45))[1] == 0x6A86
    assert tx(module, bytes.fromhex("80CA000000"))[1] == 0x6D00
    assert tx(module, bytes.fromhex("00B0810000"))[1] == 0x6D00
    assert tx(module, bytes.fromhex("A0FA000010") + bytes(16))[1] == 0x6E00
    # the maximum short data is fine
    assert len(psam_mac(module, 2, SERIAL, bytes(16), bytes(255 - 24))) == 4


def test_psam_write_back_mac() -> None:
    module = psam()
    meter_no = bytes.fromhex("000012345678")
    body = meter_no + bytes(range(31))
    assert len(body) == 37
    mac, sw = tx(module, bytes([0x80, 0xFA, 0x03, 0x00, 45]) + SERIAL + body)
    assert sw == 0x9000
    # exactly PROFILE.md's derivation, computed here independently
    k_wb = diversify_meter_key(MASTER[5], meter_no)
    assert mac == mac4(k_wb, bytes(16), SERIAL + body)

    def verify(serial: bytes, body: bytes, mac: bytes) -> int:
        return tx(module, bytes([0x80, 0xFA, 0x02, 0x00, 49]) + serial + body + mac)[1]

    assert verify(SERIAL, body, mac) == 0x9000
    assert verify(OTHER_SERIAL, body, mac) == 0x6988  # copied from another card
    tampered = body[:10] + b"\xff" + body[11:]
    assert verify(SERIAL, tampered, mac) == 0x6988
    other_meter = bytes.fromhex("000012345679") + body[6:]
    assert verify(SERIAL, other_meter, mac) == 0x6988
    # a write-back made with a wrong meter key is refused
    forged = mac4(diversify_meter_key(MASTER[4], meter_no), bytes(16), SERIAL + body)
    assert verify(SERIAL, body, forged) == 0x6988


def test_psam_purchase_mac() -> None:
    module = psam()
    body = bytes.fromhex("00002710 00000004") + b"\xab" * 8 + bytes.fromhex("260301093000")
    assert len(body) == 22
    mac, sw = tx(module, bytes([0x80, 0xFA, 0x04, 0x00, 30]) + SERIAL + body)
    assert sw == 0x9000
    # exactly PROFILE.md's derivation: the purchase key 06 diversified by the card serial
    assert mac == mac4(diversify_card_key(MASTER[6], SERIAL), bytes(16), SERIAL + body)

    def verify(serial: bytes, body: bytes, mac: bytes) -> int:
        return tx(module, bytes([0x80, 0xFA, 0x05, 0x00, 34]) + serial + body + mac)[1]

    assert verify(SERIAL, body, mac) == 0x9000
    assert verify(OTHER_SERIAL, body, mac) == 0x6988  # copied from another card
    raised = bytes.fromhex("000F4240") + body[4:]  # the amount raised to 10,000.00 yuan
    assert verify(SERIAL, raised, mac) == 0x6988
    # a card's own MAC key (which a card holds) does not make a purchase MAC
    assert verify(SERIAL, body, mac4(KEYS[2], bytes(16), SERIAL + body)) == 0x6988
    # a PSAM without the purchase key (six keys) cannot make or check one
    old = PsamOS({i: MASTER[i] for i in range(6)}, PSAM_SERIAL)
    tx(old, bytes.fromhex("00A404000A") + PSAM_AID)
    assert tx(old, bytes([0x80, 0xFA, 0x04, 0x00, 30]) + SERIAL + body)[1] == 0x6985


def test_psam_agrees_with_the_card_keys_for_every_role() -> None:
    module = psam()
    for key_id in range(5):
        challenge = bytes([key_id]) * 8
        assert psam_cryptogram(module, key_id, SERIAL, challenge) == auth_cryptogram(
            KEYS[key_id], challenge
        )
        assert KEYS[key_id] == diversify_card_key(MASTER[key_id], SERIAL)
