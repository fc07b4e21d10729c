"""The card operating system of cardio/emulator.py against cardio/PROFILE.md, in-process.

Cryptograms and MACs are computed here from the test master keys with cardio/crypto.py, the way a
key provider does, so the card's checks are verified independently of the PSAM emulator (tested in
tests/test_emulator_psam.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.domain.card import CardKind
from app.domain.card import CardRemoved
from app.ports import KeyRole
from cardio.channel import EmulatedChannel
from cardio.crypto import auth_cryptogram
from cardio.crypto import challenge_iv
from cardio.crypto import diversify_card_key
from cardio.crypto import mac4
from cardio.emulator import CardImage
from cardio.emulator import CardState
from cardio.emulator import CardVanished
from cardio.emulator import PsamOS
from cardio.emulator import UserCardOS
from cardio.emulator import diversified_card_keys
from cardio.profile import APP_AID
from cardio.profile import FILE_SIZES
from tests.rigs.emulator import GET_CHALLENGE
from tests.rigs.emulator import KEYS
from tests.rigs.emulator import MASTER
from tests.rigs.emulator import OTHER_SERIAL
from tests.rigs.emulator import PSAM_SERIAL
from tests.rigs.emulator import SELECT_APP_AID
from tests.rigs.emulator import SERIAL
from tests.rigs.emulator import authenticate
from tests.rigs.emulator import blank_card
from tests.rigs.emulator import counting_rng
from tests.rigs.emulator import ext_auth_apdu
from tests.rigs.emulator import get_challenge
from tests.rigs.emulator import issue_apdu
from tests.rigs.emulator import issued_card
from tests.rigs.emulator import read_apdu
from tests.rigs.emulator import tx

SELECT_MF = bytes.fromhex("00A40000023F00")
SELECT_APP_FID = bytes.fromhex("00A40000021001")
ERASE = bytes.fromhex("800E000000")


def secure_update_apdu(
    sfi: int, offset: int, data: bytes, challenge: bytes, mac_key: bytes
) -> bytes:
    header = bytes([0x04, 0xD6, 0x80 | sfi, offset, len(data) + 4])
    return header + data + mac4(mac_key, challenge_iv(challenge), header + data)


def fresh_update(card: UserCardOS, sfi: int, data: bytes, mac_key: bytes, offset: int = 0) -> int:
    """A secure UPDATE of ``data`` into file ``sfi`` under a fresh challenge: its status word."""
    challenge = get_challenge(card)
    return tx(card, secure_update_apdu(sfi, offset, data, challenge, mac_key))[1]


def fci_fields(fci: bytes) -> dict[str, bytes]:
    """The FCI of PROFILE.md, parsed strictly (tags in order, short lengths)."""
    assert fci[0] == 0x6F and fci[1] == len(fci) - 2
    assert fci[2] == 0x84
    name = fci[4 : 4 + fci[3]]
    rest = fci[4 + fci[3] :]
    assert rest[0] == 0xA5 and rest[1] == len(rest) - 2
    a5 = rest[2:]
    assert a5[:3] == b"\x9f\x0c\x08"
    serial = a5[3:11]
    assert a5[11:13] == b"\xc1\x01" and a5[14:16] == b"\xc2\x01" and a5[17:19] == b"\xc3\x01"
    assert len(a5) == 20
    return {
        "name": name,
        "serial": serial,
        "state": a5[13:14],
        "kind": a5[16:17],
        "version": a5[19:20],
    }


def counter_session(card: UserCardOS) -> bytes:
    """SELECT the application, authenticate as the counter; returns the challenge for a MAC."""
    assert tx(card, SELECT_APP_AID)[1] == 0x9000
    assert authenticate(card, KeyRole.COUNTER_AUTH) == 0x9000
    return get_challenge(card)


# --------------------------------------------------------------------------- ATR, SELECT, FCI


def test_atr_follows_the_profile() -> None:
    card = blank_card()
    assert card.atr[:-1] == bytes.fromhex("3B 8A 80 01 43 56 45 4C 45 43 00 00 00 00")
    tck = 0
    for b in card.atr[1:]:
        tck ^= b
    assert tck == 0
    issued = issued_card(CardKind.TARIFF)
    assert issued.atr[10:14] == bytes([0x11, 0x01, 0x00, 0x00])
    psam = PsamOS(MASTER, PSAM_SERIAL)
    assert psam.atr[:-1] == bytes.fromhex("3B 8A 80 01 43 56 50 53 41 4D 00 01 00 00")
    tck = 0
    for b in psam.atr[1:]:
        tck ^= b
    assert tck == 0


def test_blank_card_has_only_the_mf() -> None:
    card = blank_card()
    data, sw = tx(card, SELECT_MF)
    assert sw == 0x9000
    fci = fci_fields(data)
    assert fci == {
        "name": b"\x3f\x00",
        "serial": SERIAL,
        "state": b"\x00",
        "kind": b"\x00",
        "version": b"\x00",
    }
    assert tx(card, SELECT_APP_AID) == (b"", 0x6A82)
    assert tx(card, SELECT_APP_FID) == (b"", 0x6A82)
    assert tx(card, read_apdu(1))[1] == 0x6A82


def test_select_application_of_an_issued_card() -> None:
    card = issued_card(CardKind.USER)
    for apdu in (SELECT_APP_AID, SELECT_APP_FID, SELECT_APP_AID + b"\x00"):
        data, sw = tx(card, apdu)
        assert sw == 0x9000
        assert fci_fields(data) == {
            "name": APP_AID,
            "serial": SERIAL,
            "state": b"\x01",
            "kind": b"\x01",
            "version": b"\x02",
        }
    assert tx(card, bytes.fromhex("00A404000AD15600004356454C4544"))[1] == 0x6A82
    assert tx(card, bytes.fromhex("00A40000020002"))[1] == 0x6A82
    assert tx(card, bytes.fromhex("00A40000033F0000"))[1] == 0x6700
    assert tx(card, bytes.fromhex("00A40200023F00"))[1] == 0x6A86


# --------------------------------------------------------------------------- reading


def test_read_binary_needs_the_application_and_respects_the_file() -> None:
    card = issued_card()
    assert tx(card, read_apdu(1))[1] == 0x6A82  # MF selected after reset
    tx(card, SELECT_APP_AID)
    for sfi, size in FILE_SIZES.items():
        assert tx(card, read_apdu(sfi)) == (bytes(size), 0x9000)  # Le 00 = 256: to the end
    card.image.files[1][:4] = b"\x68\x00\x2d\x01"
    assert tx(card, read_apdu(1, 0, 4)) == (b"\x68\x00\x2d\x01", 0x9000)
    assert tx(card, read_apdu(1, 2, 1)) == (b"\x2d", 0x9000)
    assert tx(card, read_apdu(2, 31, 0)) == (b"\x00", 0x9000)
    assert tx(card, read_apdu(2, 32, 1))[1] == 0x6B00
    assert tx(card, read_apdu(7))[1] == 0x6A82
    assert tx(card, bytes([0x00, 0xB0, 0x00, 0x00, 0x10]))[1] == 0x6A86  # not SFI addressing
    assert tx(card, bytes([0x00, 0xB0, 0x80, 0x00, 0x10]))[1] == 0x6A86  # SFI 0
    assert tx(card, bytes([0x00, 0xB0, 0x81, 0x00]))[1] == 0x6700  # no Le


# --------------------------------------------------------------------------- issue / erase


def test_issue_erase_cycle() -> None:
    card = blank_card()
    assert tx(card, issue_apdu(CardKind.USER))[1] == 0x6982  # issuer not authenticated
    assert authenticate(card, KeyRole.COUNTER_AUTH) == 0x9000
    assert tx(card, issue_apdu(CardKind.USER))[1] == 0x6982  # wrong role
    assert authenticate(card, KeyRole.ISSUER) == 0x9000
    assert tx(card, issue_apdu(0x00))[1] == 0x6A86  # blank is not a kind to issue
    assert tx(card, issue_apdu(0x02))[1] == 0x6A86
    data, sw = tx(card, issue_apdu(CardKind.CHECK))
    assert sw == 0x9000
    assert fci_fields(data)["kind"] == b"\x14" and fci_fields(data)["state"] == b"\x01"
    assert card.image.state is CardState.ISSUED and card.image.kind == CardKind.CHECK
    assert {k: len(v) for k, v in card.image.files.items()} == FILE_SIZES
    assert all(not any(v) for v in card.image.files.values())
    # the new application is selected and readable
    assert tx(card, read_apdu(6)) == (bytes(48), 0x9000)

    assert authenticate(card, KeyRole.ISSUER) == 0x9000
    assert tx(card, issue_apdu(CardKind.USER))[1] == 0x6985  # already issued
    card.reset()
    assert tx(card, ERASE)[1] == 0x6982  # reset cleared the issuer state
    assert authenticate(card, KeyRole.ISSUER) == 0x9000
    assert tx(card, ERASE) == (b"", 0x9000)
    assert card.image.state is CardState.BLANK and card.image.files == {}
    assert card.image.kind == 0 and card.image.profile_version == 0
    assert tx(card, SELECT_APP_AID)[1] == 0x6A82
    assert authenticate(card, KeyRole.ISSUER) == 0x9000
    assert tx(card, ERASE)[1] == 0x6985  # nothing to erase
    # and again: a blank card can be issued anew with the same keys
    assert authenticate(card, KeyRole.ISSUER) == 0x9000
    assert tx(card, issue_apdu(CardKind.USER))[1] == 0x9000
    assert tx(card, bytes.fromhex("800E010000"))[1] == 0x6A86


# --------------------------------------------------------------------------- authenticated writes


def test_counter_writes_files_with_chained_challenges() -> None:
    card = issued_card()
    challenge = counter_session(card)
    purchase = bytes(range(1, 30))
    data, sw = tx(card, secure_update_apdu(2, 0, purchase, challenge, KEYS[2]))
    assert sw == 0x9000 and len(data) == 8 and data != challenge
    # the answer is the next challenge: the next file needs no GET CHALLENGE
    params = b"\x68" + bytes(50)
    data, sw = tx(card, secure_update_apdu(1, 0, params, data, KEYS[2]))
    assert sw == 0x9000
    data, sw = tx(card, secure_update_apdu(3, 100, b"\xaa" * 60, data, KEYS[2]))
    assert sw == 0x9000
    assert tx(card, read_apdu(2)) == (purchase + bytes(3), 0x9000)
    assert tx(card, read_apdu(1)) == (params + bytes(13), 0x9000)
    assert tx(card, read_apdu(3, 100)) == (b"\xaa" * 60, 0x9000)
    assert tx(card, read_apdu(3, 0, 100)) == (bytes(100), 0x9000)
    # job file too
    data, sw = tx(card, secure_update_apdu(6, 0, b"\x01" * 48, data, KEYS[2]))
    assert sw == 0x9000


def test_update_outside_the_file_is_refused_and_changes_nothing() -> None:
    card = issued_card()
    challenge = counter_session(card)
    assert tx(card, secure_update_apdu(2, 30, b"\x01\x02\x03", challenge, KEYS[2]))[1] == 0x6B00
    assert card.image.files[2] == bytes(32)
    assert fresh_update(card, 2, bytes(33), KEYS[2]) == 0x6B00
    assert fresh_update(card, 2, bytes(32), KEYS[2]) == 0x9000


def test_bad_mac_is_refused_and_uses_the_challenge_up() -> None:
    card = issued_card()
    challenge = counter_session(card)
    good = secure_update_apdu(2, 0, b"\x11" * 22, challenge, KEYS[2])
    bad = good[:-1] + bytes([good[-1] ^ 0x01])
    assert tx(card, bad) == (b"", 0x6988)
    assert card.image.files[2] == bytes(32)
    assert tx(card, good) == (b"", 0x6984)  # the challenge went with the bad MAC
    # a MAC made with the wrong key is a bad MAC too
    assert fresh_update(card, 2, b"\x11", KEYS[4]) == 0x6988
    # and one made for another card (other serial, other diversified key)
    other = diversified_card_keys(MASTER, OTHER_SERIAL)
    assert fresh_update(card, 2, b"\x11", other[2]) == 0x6988
    # changing the header breaks the MAC: it covers CLA INS P1 P2 Lc
    challenge = get_challenge(card)
    apdu = bytearray(secure_update_apdu(2, 0, b"\x11", challenge, KEYS[2]))
    apdu[3] = 1
    assert tx(card, bytes(apdu))[1] == 0x6988
    assert card.image.files[2] == bytes(32)


def test_replayed_update_is_refused() -> None:
    card = issued_card()
    challenge = counter_session(card)
    apdu = secure_update_apdu(2, 0, b"\x22" * 22, challenge, KEYS[2])
    assert tx(card, apdu)[1] == 0x9000
    assert tx(card, apdu) == (b"", 0x6988)  # the card now holds the next challenge
    card.image.files[2][:] = bytes(32)
    get_challenge(card)
    assert tx(card, apdu) == (b"", 0x6988)  # a fresh challenge does not revive it either
    assert card.image.files[2] == bytes(32)


def test_no_challenge() -> None:
    card = issued_card()
    tx(card, SELECT_APP_AID)
    cryptogram = auth_cryptogram(KEYS[1], b"\x00" * 8)
    assert tx(card, ext_auth_apdu(1, cryptogram)) == (b"", 0x6984)
    assert card.image.retries[1] == 5  # no challenge is no wrong answer
    assert authenticate(card, KeyRole.COUNTER_AUTH) == 0x9000
    assert tx(card, secure_update_apdu(2, 0, b"\x01", bytes(8), KEYS[2]))[1] == 0x6984


def test_challenge_is_single_use_for_external_authenticate() -> None:
    card = issued_card()
    challenge = get_challenge(card)
    apdu = ext_auth_apdu(1, auth_cryptogram(KEYS[1], challenge))
    assert tx(card, apdu)[1] == 0x9000
    assert tx(card, apdu)[1] == 0x6984  # replay: the challenge is gone
    challenge = get_challenge(card)
    assert tx(card, ext_auth_apdu(1, bytes(16)))[1] == 0x63C4
    # consumed by the failure as well
    assert tx(card, ext_auth_apdu(1, auth_cryptogram(KEYS[1], challenge)))[1] == 0x6984
    assert card.image.retries[1] == 4
    # a reset forgets the challenge
    challenge = get_challenge(card)
    card.reset()
    assert tx(card, ext_auth_apdu(1, auth_cryptogram(KEYS[1], challenge)))[1] == 0x6984


def test_wrong_key_counts_down_then_blocks(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = issued_card(persist_path=path)
    wrong = diversify_card_key(MASTER[2], SERIAL)  # a real key, but of another role
    answers = [authenticate(card, KeyRole.COUNTER_AUTH, wrong) for _ in range(5)]
    assert answers == [0x63C4, 0x63C3, 0x63C2, 0x63C1, 0x63C0]
    assert CardImage.load(path).retries[1] == 0
    assert authenticate(card, KeyRole.COUNTER_AUTH) == 0x6983  # blocked, even with the right key
    assert authenticate(card, KeyRole.COUNTER_AUTH, wrong) == 0x6983
    card.power_off()
    card.power_on()
    assert authenticate(card, KeyRole.COUNTER_AUTH) == 0x6983  # for good
    # other keys are not affected
    assert authenticate(card, KeyRole.METER_AUTH) == 0x9000
    reloaded = UserCardOS(CardImage.load(path), rng=counting_rng())
    assert authenticate(reloaded, KeyRole.COUNTER_AUTH) == 0x6983


def test_a_right_answer_resets_the_retry_counter(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = issued_card(persist_path=path)
    assert authenticate(card, KeyRole.ISSUER, bytes(16)) == 0x63C4
    assert authenticate(card, KeyRole.ISSUER, bytes(16)) == 0x63C3
    assert CardImage.load(path).retries[0] == 3
    assert authenticate(card, KeyRole.ISSUER) == 0x9000
    assert card.image.retries[0] == 5 and CardImage.load(path).retries[0] == 5
    assert authenticate(card, KeyRole.ISSUER, bytes(16)) == 0x63C4


def test_external_authenticate_syntax() -> None:
    card = blank_card()
    get_challenge(card)
    assert tx(card, ext_auth_apdu(5, bytes(16)))[1] == 0x6A86
    get_challenge(card)
    assert tx(card, bytes([0x00, 0x82, 0x01, 0x01, 0x10]) + bytes(16))[1] == 0x6A86
    get_challenge(card)
    assert tx(card, ext_auth_apdu(1, bytes(8)))[1] == 0x6700
    assert card.image.retries == dict.fromkeys(range(5), 5)


def test_update_needs_authentication() -> None:
    card = issued_card()
    tx(card, SELECT_APP_AID)
    assert fresh_update(card, 2, b"\x01", KEYS[2]) == 0x6982
    # plain UPDATE BINARY is never enough
    assert tx(card, bytes.fromhex("00D6820001FF"))[1] == 0x6982
    # the security state ends with a reset and with selecting another DF
    counter_session(card)
    card.reset()
    tx(card, SELECT_APP_AID)
    assert fresh_update(card, 2, b"\x01", KEYS[2]) == 0x6982
    counter_session(card)
    tx(card, SELECT_MF)
    tx(card, SELECT_APP_AID)
    assert fresh_update(card, 2, b"\x01", KEYS[2]) == 0x6982
    assert card.image.files[2] == bytes(32)


def test_roles_meter_and_counter_are_kept_apart() -> None:
    card = issued_card()
    tx(card, SELECT_APP_AID)
    assert authenticate(card, KeyRole.METER_AUTH) == 0x9000
    challenge = get_challenge(card)
    # the meter cannot write the purchase file, even with the counter's MAC key
    assert tx(card, secure_update_apdu(2, 0, b"\x01", challenge, KEYS[4]))[1] == 0x6982
    assert fresh_update(card, 2, b"\x01", KEYS[2]) == 0x6982
    # it writes the write-back, with the meter MAC key only
    assert fresh_update(card, 5, b"\x02", KEYS[2]) == 0x6988
    assert fresh_update(card, 5, b"\x02" * 46, KEYS[4]) == 0x9000
    card.reset()
    tx(card, SELECT_APP_AID)
    # the counter cannot write the write-back
    assert authenticate(card, KeyRole.COUNTER_AUTH) == 0x9000
    assert fresh_update(card, 5, b"\x03", KEYS[4]) == 0x6982
    assert fresh_update(card, 5, b"\x03", KEYS[2]) == 0x6982
    assert tx(card, read_apdu(5)) == (b"\x02" * 46 + bytes(18), 0x9000)
    # nor can the issuer write anything
    card.reset()
    tx(card, SELECT_APP_AID)
    assert authenticate(card, KeyRole.ISSUER) == 0x9000
    assert fresh_update(card, 1, b"\x03", KEYS[2]) == 0x6982


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00A4", 0x6700),  # too short
        ("00A4000002", 0x6700),  # SELECT without its data
        ("00A40000033F00", 0x6700),  # Lc says more than there is
        ("00A400000100003F00", 0x6700),  # extended length
        ("0084000010", 0x6700),  # GET CHALLENGE of 16 bytes
        ("00840000", 0x6700),
        ("0084010008", 0x6A86),
        ("00CA000000", 0x6D00),  # GET DATA: not supported
        ("04B0810000", 0x6D00),
        ("80CA000000", 0x6D00),
        ("A0A40000023F00", 0x6E00),
        ("01A40000023F00", 0x6E00),  # logical channels: not supported
        ("04D68200", 0x6700),  # secure update without data
        ("04D6820004AABBCCDD", 0x6700),  # only a MAC
        ("04D6020005AABBCCDDEE", 0x6A86),  # offset addressing instead of SFI
        ("80E000010101", 0x6700),  # ISSUE with data
    ],
)
def test_error_status_words(apdu: str, sw: int) -> None:
    card = issued_card()
    tx(card, SELECT_APP_AID)
    assert tx(card, bytes.fromhex(apdu)) == (b"", sw)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_any_bytes_get_a_status_word(raw: bytes) -> None:
    card = issued_card()
    tx(card, SELECT_APP_AID)
    before = card.image.copy()
    _, sw = tx(card, raw)
    assert sw >> 8 in (0x90, 0x63, 0x65, 0x67, 0x69, 0x6A, 0x6B, 0x6D, 0x6E)
    assert card.image == before  # random bytes never change a card


# --------------------------------------------------------------------------- persistence


def test_image_round_trip(tmp_path: Path) -> None:
    card = issued_card(CardKind.PARAMETERS)
    card.image.files[3][10:20] = b"\x5a" * 10
    card.image.retries[3] = 2
    path = tmp_path / "card.json"
    card.image.save(path)
    loaded = CardImage.load(path)
    assert loaded == card.image
    assert loaded.state is CardState.ISSUED and loaded.kind == CardKind.PARAMETERS
    raw = json.loads(path.read_text())
    assert raw["serial"] == SERIAL.hex() and raw["files"]["03"][20:40] == "5a" * 10
    assert os.stat(path).st_mode & 0o077 == 0  # the keys are not for other users
    blank = CardImage.blank(SERIAL, KEYS)
    blank.save(path)
    assert CardImage.load(path) == blank


def test_image_rejects_inconsistent_content() -> None:
    with pytest.raises(ValueError):
        CardImage.blank(SERIAL[:7], KEYS)
    with pytest.raises(ValueError):
        CardImage.blank(SERIAL, {k: v for k, v in KEYS.items() if k != 4})
    with pytest.raises(ValueError):
        CardImage(SERIAL, KEYS, state=CardState.ISSUED, kind=1, files={1: bytearray(64)})
    with pytest.raises(ValueError):
        CardImage(SERIAL, KEYS, files={1: bytearray(64)})


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "card.json"
    old = issued_card().image
    old.save(path)
    new = old.copy()
    new.files[2][:] = b"\xee" * 32

    def crash(*args: object) -> None:
        raise OSError("power failure")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power failure"):
        new.save(path)
    monkeypatch.undo()
    assert CardImage.load(path) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json"]  # no temp file left
    new.save(path)
    assert CardImage.load(path) == new


def test_every_change_is_saved_before_the_answer(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = blank_card(persist_path=path)
    card.image.save(path)
    assert authenticate(card, KeyRole.ISSUER) == 0x9000
    tx(card, issue_apdu(CardKind.USER))
    assert CardImage.load(path) == card.image and card.image.state is CardState.ISSUED
    challenge = counter_session(card)
    tx(card, secure_update_apdu(2, 0, b"\x44" * 5, challenge, KEYS[2]))
    assert CardImage.load(path).files[2][:5] == b"\x44" * 5
    assert authenticate(card, KeyRole.METER_AUTH, bytes(16)) == 0x63C4
    assert CardImage.load(path).retries[3] == 4
    assert authenticate(card, KeyRole.ISSUER) == 0x9000
    tx(card, ERASE)
    assert CardImage.load(path) == card.image and card.image.state is CardState.BLANK


def test_memory_failure_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "card.json"
    card = issued_card(persist_path=path)
    card.image.save(path)
    challenge = counter_session(card)

    def crash(*args: object) -> None:
        raise OSError("EEPROM worn out")

    monkeypatch.setattr(os, "replace", crash)
    assert tx(card, secure_update_apdu(2, 0, b"\x55" * 8, challenge, KEYS[2])) == (b"", 0x6581)
    monkeypatch.undo()
    assert card.image.files[2] == bytes(32)
    assert CardImage.load(path).files[2] == bytes(32)


# --------------------------------------------------------------------------- pulled cards

OLD_PURCHASE = bytes.fromhex("6800160000012C00000003") + bytes(21)
NEW_PURCHASE = bytes.fromhex("6800160000271000000004") + b"\xab" * 8 + bytes(13)
OLD_PARAMS = b"\x68\x00\x2d\x01" + b"\x11" * 60
NEW_PARAMS = b"\x68\x00\x2d\x01" + b"\x22" * 60
OLD_TARIFF = b"\x68\x00\x10" + b"\x33" * 157
NEW_TARIFF = b"\x68\x00\x10" + b"\x44" * 157


def pulled_card(tmp_path: Path) -> tuple[UserCardOS, Path]:
    path = tmp_path / "card.json"
    card = issued_card(persist_path=path)
    card.image.files[1][:] = OLD_PARAMS
    card.image.files[2][:] = OLD_PURCHASE
    card.image.files[3][:] = OLD_TARIFF
    card.image.save(path)
    return card, path


def purchase_sequence(channel: EmulatedChannel, files: list[tuple[int, bytes]]) -> None:
    """What the counter sends to write a purchase (PROFILE.md, 7 APDUs for one file)."""
    data, sw = channel.transmit(SELECT_APP_AID)
    assert sw == 0x9000
    serial = fci_fields(data)["serial"]
    keys = diversified_card_keys(MASTER, serial)
    assert channel.transmit(read_apdu(1))[1] == 0x9000
    challenge, sw = channel.transmit(GET_CHALLENGE)
    assert channel.transmit(ext_auth_apdu(1, auth_cryptogram(keys[1], challenge)))[1] == 0x9000
    challenge, sw = channel.transmit(GET_CHALLENGE)
    for sfi, content in files:
        challenge, sw = channel.transmit(secure_update_apdu(sfi, 0, content, challenge, keys[2]))
        assert sw == 0x9000
    for sfi, content in files:
        assert channel.transmit(read_apdu(sfi)) == (content, 0x9000)


def test_purchase_sequence_is_seven_apdus(tmp_path: Path) -> None:
    card, path = pulled_card(tmp_path)
    sent: list[bytes] = []
    original = card.process

    def counting(apdu: bytes) -> bytes:
        sent.append(apdu)
        return original(apdu)

    card.process = counting  # type: ignore[method-assign]
    purchase_sequence(EmulatedChannel(card), [(2, NEW_PURCHASE)])
    assert len(sent) == 7
    assert CardImage.load(path).files[2] == NEW_PURCHASE


@pytest.mark.parametrize("applied", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("n", range(1, 8))
def test_pulled_during_a_purchase_write(tmp_path: Path, n: int, applied: bool) -> None:
    card, path = pulled_card(tmp_path)
    card.pull_after(n, applied=applied)
    channel = EmulatedChannel(card)
    with pytest.raises(CardRemoved), channel.transaction():
        purchase_sequence(channel, [(2, NEW_PURCHASE)])
    with pytest.raises(CardRemoved):  # the channel stays dead
        channel.transmit(SELECT_APP_AID)
    assert channel.dead
    on_disk = CardImage.load(path)
    written = n == 7 or (n == 6 and applied)  # the 6th APDU is the UPDATE BINARY
    assert bytes(on_disk.files[2]) == (NEW_PURCHASE if written else OLD_PURCHASE)
    assert bytes(on_disk.files[1]) == OLD_PARAMS
    assert on_disk == card.image
    # the card comes back without its session: authentication is needed again
    again = EmulatedChannel(card)
    again.transmit(SELECT_APP_AID)
    challenge, _ = again.transmit(GET_CHALLENGE)
    assert again.transmit(secure_update_apdu(2, 0, b"\x01", challenge, KEYS[2]))[1] == 0x6982
    # and the counter can finish the sale on it
    purchase_sequence(again, [(2, NEW_PURCHASE)])


@pytest.mark.parametrize("applied", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("n", range(1, 12))
def test_pulled_during_a_three_file_write(tmp_path: Path, n: int, applied: bool) -> None:
    card, path = pulled_card(tmp_path)
    files = [(2, NEW_PURCHASE), (1, NEW_PARAMS), (3, NEW_TARIFF)]
    card.pull_after(n, applied=applied)
    with pytest.raises(CardRemoved):
        purchase_sequence(EmulatedChannel(card), files)
    on_disk = CardImage.load(path)
    old = {2: OLD_PURCHASE, 1: OLD_PARAMS, 3: OLD_TARIFF}
    new = dict(files)
    state = []
    for sfi in (2, 1, 3):
        content = bytes(on_disk.files[sfi])
        assert content in (old[sfi], new[sfi]), f"file {sfi} is neither old nor new"
        state.append(content == new[sfi])
    # updates are APDUs 6, 7, 8: exactly the ones that were applied are new
    applied_updates = max(0, min(3, n - 5 - (0 if applied else 1)))
    assert state == [i < applied_updates for i in range(3)]


@pytest.mark.parametrize("stored", [0, 5, 12])
def test_a_card_that_keeps_old_bytes_answers_success(tmp_path: Path, stored: int) -> None:
    """The fault mode for read-back tests: the update is acknowledged (9000 and the next
    challenge, so a chained update still works), but only ``stored`` bytes reach the memory."""
    card, path = pulled_card(tmp_path)
    card.keep_old_bytes(1, stored=stored, sfi=2)
    channel = EmulatedChannel(card)
    tx(card, SELECT_APP_AID)
    assert authenticate(card, 1) == 0x9000
    challenge = get_challenge(card)
    challenge, sw = tx(card, secure_update_apdu(2, 0, NEW_PURCHASE, challenge, KEYS[2]))
    assert sw == 0x9000 and len(challenge) == 8
    kept = NEW_PURCHASE[:stored] + OLD_PURCHASE[stored:]
    assert tx(card, read_apdu(2)) == (kept, 0x9000)
    assert bytes(CardImage.load(path).files[2]) == kept  # what the card keeps, persisted
    # the fault covered one update of file 2: the parameter file (chained) is written whole
    _, sw = tx(card, secure_update_apdu(1, 0, NEW_PARAMS, challenge, KEYS[2]))
    assert sw == 0x9000 and tx(card, read_apdu(1))[0] == NEW_PARAMS
    # and the next purchase write is whole again
    purchase_sequence(channel, [(2, NEW_PURCHASE)])


def test_keep_old_bytes_counts_updates_of_its_file_only() -> None:
    card = issued_card()
    card.keep_old_bytes(2, sfi=2)
    tx(card, SELECT_APP_AID)
    assert authenticate(card, 1) == 0x9000
    challenge = get_challenge(card)
    for sfi, data in ((1, NEW_PARAMS), (2, NEW_PURCHASE), (2, NEW_PURCHASE), (2, NEW_PURCHASE)):
        challenge, sw = tx(card, secure_update_apdu(sfi, 0, data, challenge, KEYS[2]))
        assert sw == 0x9000
    assert tx(card, read_apdu(1))[0] == NEW_PARAMS and tx(card, read_apdu(2))[0] == NEW_PURCHASE
    card.keep_old_bytes(1)
    card.cancel_faults()
    challenge, sw = tx(card, secure_update_apdu(1, 0, OLD_PARAMS, challenge, KEYS[2]))
    assert sw == 0x9000 and tx(card, read_apdu(1))[0] == OLD_PARAMS
    for bad in ({"updates": 0}, {"stored": -1}, {"sfi": 9}):
        with pytest.raises(ValueError):
            card.keep_old_bytes(**bad)  # type: ignore[arg-type]


def test_pull_after_counts_apdus_only_and_vanishes_once() -> None:
    card = issued_card()
    card.pull_after(2, applied=False)
    card.power_on()
    assert card.atr  # not an APDU
    assert tx(card, SELECT_APP_AID)[1] == 0x9000
    with pytest.raises(CardVanished):
        card.process(read_apdu(1))
    assert tx(card, SELECT_APP_AID)[1] == 0x9000  # a fresh insertion works
    card.pull_after(1, applied=True)
    card.cancel_pull()
    assert tx(card, read_apdu(1))[1] == 0x9000
    with pytest.raises(ValueError):
        card.pull_after(0, applied=True)


# --------------------------------------------------------------------------- channel


def test_emulated_channel() -> None:
    card = issued_card(CardKind.USER)
    channel = EmulatedChannel(card)
    assert channel.atr == card.atr
    with channel.transaction(), channel.transaction():  # re-entrant on the same thread
        data, sw = channel.transmit(SELECT_APP_AID)
    assert sw == 0x9000 and isinstance(sw, int)
    assert fci_fields(data)["serial"] == SERIAL
    assert channel.transmit(read_apdu(2)) == (bytes(32), 0x9000)
    channel.close()
    with pytest.raises(RuntimeError):
        channel.transmit(SELECT_APP_AID)
