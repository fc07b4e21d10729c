"""Tests for cardio/keys.py: master keys, the keystore file and the two key providers.

The reference values are computed here with ``cryptography``'s SM4 directly (not through
cardio.crypto), anchored on the SM4 standard vector (GB/T 32907-2016, example 1).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers import modes
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.domain.card import CardAuthError
from app.domain.card import CardCommandError
from app.domain.card import PurchaseRecord
from app.domain.card import WriteBack
from app.domain.card import WriteBackStatus
from app.errors import CardVendError
from app.ports import KeyProvider
from app.ports import KeyRole
from cardio import profile as P
from cardio.keys import CARD_ROLES
from cardio.keys import KeystoreError
from cardio.keys import MasterKeys
from cardio.keys import PsamKeyProvider
from cardio.keys import SoftwareKeyProvider
from cardio.keys import create_keystore
from cardio.keys import derive_v1_purchase_key
from cardio.keys import open_keystore

FAST = settings(max_examples=50, deadline=None, database=None)
STD_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
STD_CIPHERTEXT = bytes.fromhex("681edf34d206965e86b3e94f536e4246")  # SM4(STD_KEY, STD_KEY)
PASSPHRASE = "correct horse 电池 staple"


def sm4_ecb(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def sm4_cbc_mac4(key: bytes, iv: bytes, data: bytes) -> bytes:
    padded = data + b"\x80" + bytes(-(len(data) + 1) % 16)
    enc = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    return (enc.update(padded) + enc.finalize())[-16:][:4]


def distinct_master() -> MasterKeys:
    return MasterKeys(*(bytes([i + 1]) * 16 for i in range(7)))


def secrets_of(master: MasterKeys) -> list[bytes]:
    return [master.key(role) for role in KeyRole]


def appearances(secret: bytes) -> list[str]:
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        repr(secret),
        secret.decode("latin-1"),
    ]


def assert_hides(text: str, master: MasterKeys) -> None:
    for secret in secrets_of(master):
        for shape in appearances(secret):
            assert shape not in text


def purchase_body(amount: int = 10_000, count: int = 3) -> bytes:
    rec = PurchaseRecord(amount, count, bytes.fromhex("0102030405060708"), None)
    return P.encode_purchase_body(rec)


def write_back_body(meter_no: str = "202400000042") -> bytes:
    wb = WriteBack(
        meter_no=meter_no,
        remaining=1234,
        overdraft_used=0,
        purchase_count=4,
        total_energy_wh=99_000,
        status=WriteBackStatus.ALARM1,
        illegal_insert_count=0,
        time=dt.datetime(2026, 3, 1, 8, tzinfo=P.BEIJING),
        param_version=2,
        mac=bytes(4),
    )
    return P.encode_write_back_body(wb)


# ------------------------------------------------------------------------------- master keys


def test_master_keys_hide_themselves() -> None:
    master = distinct_master()
    provider = SoftwareKeyProvider(master)
    for text in (repr(master), str(master), repr(provider), str(provider), f"{master!r}"):
        assert_hides(text, master)
    assert "hidden" in repr(master)
    with pytest.raises(ValueError) as info:
        MasterKeys(b"\x11" * 15, *secrets_of(master)[1:])
    assert "11" not in str(info.value)


def test_generate_and_roles() -> None:
    a, b = MasterKeys.generate(), MasterKeys.generate()
    assert a != b
    assert len({a.key(role) for role in KeyRole}) == 7
    assert all(len(a.key(role)) == 16 for role in KeyRole)
    assert MasterKeys.from_roles({role: a.key(role) for role in KeyRole}) == a
    with pytest.raises(ValueError):
        MasterKeys.from_roles({KeyRole.ISSUER: a.key(KeyRole.ISSUER)})


def test_diversified_card_keys_standard_vector() -> None:
    """serial || ~serial of serial 0123456789ABCDEF is exactly the SM4 standard plaintext."""
    master = MasterKeys(*([STD_KEY] * 7))
    keys = master.diversified_card_keys(bytes.fromhex("0123456789abcdef"))
    assert set(keys) == set(CARD_ROLES) == set(KeyRole) - {KeyRole.WRITE_BACK, KeyRole.PURCHASE}
    assert all(k == STD_CIPHERTEXT for k in keys.values())
    other = distinct_master().diversified_card_keys(bytes(8))
    assert other[KeyRole.COUNTER_MAC] == sm4_ecb(b"\x03" * 16, bytes(8) + b"\xff" * 8)


# ------------------------------------------------------------------------------- software provider


def test_cryptogram_known_answer() -> None:
    provider: KeyProvider = SoftwareKeyProvider(MasterKeys(*([STD_KEY] * 7)))
    serial = bytes.fromhex("0123456789abcdef")
    challenge = bytes.fromhex("1122334455667788")
    expected = sm4_ecb(STD_CIPHERTEXT, challenge + bytes(8))
    assert provider.auth_cryptogram(KeyRole.COUNTER_AUTH, serial, challenge) == expected
    assert expected.hex() == "453857d38d5ec40779132fd048958294"


def test_cryptogram_and_mac_use_the_role_key() -> None:
    master = distinct_master()
    provider = SoftwareKeyProvider(master)
    serial, challenge = bytes.fromhex("A0A1A2A3A4A5A6A7"), bytes(range(8))
    answers = {provider.auth_cryptogram(role, serial, challenge) for role in CARD_ROLES}
    assert len(answers) == 5
    card_key = sm4_ecb(master.key(KeyRole.COUNTER_MAC), serial + bytes(b ^ 0xFF for b in serial))
    iv = challenge + bytes(8)
    data = bytes([0x04, 0xD6, 0x82, 0x00, 36]) + bytes(range(32))
    assert provider.command_mac(KeyRole.COUNTER_MAC, serial, iv, data) == sm4_cbc_mac4(
        card_key, iv, data
    )


def test_provider_refuses_bad_arguments() -> None:
    provider = SoftwareKeyProvider(distinct_master())
    serial = bytes(8)
    with pytest.raises(ValueError):
        provider.auth_cryptogram(KeyRole.WRITE_BACK, serial, bytes(8))
    with pytest.raises(ValueError):
        provider.auth_cryptogram(KeyRole.ISSUER, bytes(7), bytes(8))
    with pytest.raises(ValueError):
        provider.auth_cryptogram(KeyRole.ISSUER, serial, bytes(9))
    with pytest.raises(ValueError):
        provider.command_mac(KeyRole.COUNTER_MAC, serial, bytes(8), b"x")
    with pytest.raises(ValueError):
        provider.command_mac(KeyRole.COUNTER_MAC, serial, bytes(16), bytes(232))
    with pytest.raises(ValueError):
        provider.write_back_mac(serial, "202400000042", bytes(36))
    with pytest.raises(ValueError):  # the body was written by another meter
        provider.write_back_mac(serial, "202400000043", write_back_body("202400000042"))
    for role in (KeyRole.WRITE_BACK, KeyRole.PURCHASE):  # never a card key
        with pytest.raises(ValueError):
            provider.auth_cryptogram(role, serial, bytes(8))
        with pytest.raises(ValueError):
            provider.command_mac(role, serial, bytes(16), purchase_body())
    with pytest.raises(ValueError):
        provider.purchase_mac(serial, purchase_body() + b"x")
    with pytest.raises(ValueError):
        provider.purchase_mac(bytes(7), purchase_body())
    with pytest.raises(ValueError):
        provider.verify_purchase(serial, purchase_body()[:-1], bytes(4))


def test_write_back_mac() -> None:
    master = distinct_master()
    provider = SoftwareKeyProvider(master)
    serial, meter = bytes.fromhex("0102030405060708"), "202400000042"
    body = write_back_body(meter)
    mac = provider.write_back_mac(serial, meter, body)
    meter_key = sm4_ecb(
        master.key(KeyRole.WRITE_BACK),
        bytes.fromhex("2024000000420000") + bytes.fromhex("DFDBFFFFFFBDFFFF"),
    )
    assert mac == sm4_cbc_mac4(meter_key, bytes(16), serial + body)
    assert provider.verify_write_back(serial, meter, body, mac)
    for i in range(len(body)):
        changed = bytearray(body)
        changed[i] ^= 0x01
        assert not provider.verify_write_back(serial, meter, bytes(changed), mac), i
    assert not provider.verify_write_back(bytes.fromhex("0102030405060709"), meter, body, mac)
    assert not provider.verify_write_back(serial, meter, body, bytes([mac[0] ^ 0x80]) + mac[1:])
    assert not provider.verify_write_back(serial, meter, body, mac[:3])
    assert not provider.verify_write_back(serial, "202400000043", body, mac)
    # a meter without the write-back key (other master keys) cannot make a genuine MAC
    forged = SoftwareKeyProvider(MasterKeys.generate()).write_back_mac(serial, meter, body)
    assert not provider.verify_write_back(serial, meter, body, forged)


def test_purchase_mac() -> None:
    """MAC = CBC-MAC(K_pur(card), IV 0, serial || body), K_pur = SM4(MK06, serial || ~serial)."""
    master = distinct_master()
    provider: KeyProvider = SoftwareKeyProvider(master)
    serial = bytes.fromhex("0102030405060708")
    body = purchase_body()
    mac = provider.purchase_mac(serial, body)
    card_key = sm4_ecb(master.key(KeyRole.PURCHASE), serial + bytes(b ^ 0xFF for b in serial))
    assert mac == sm4_cbc_mac4(card_key, bytes(16), serial + body)
    assert provider.verify_purchase(serial, body, mac)
    for i in range(len(body)):  # any byte changed: the amount, the count, the tag, the time
        changed = bytearray(body)
        changed[i] ^= 0x01
        assert not provider.verify_purchase(serial, bytes(changed), mac), i
    # the record of another card (copied), a changed or short MAC
    assert not provider.verify_purchase(bytes.fromhex("0102030405060709"), body, mac)
    assert not provider.verify_purchase(serial, body, bytes([mac[0] ^ 0x80]) + mac[1:])
    assert not provider.verify_purchase(serial, body, mac[:3])
    # a holder of the card's own keys (all five) cannot make it: the purchase key is not one
    for role in CARD_ROLES:
        card_key_of_role = master.diversified_card_keys(serial)[role]
        assert sm4_cbc_mac4(card_key_of_role, bytes(16), serial + body) != mac
    forged = SoftwareKeyProvider(MasterKeys.generate()).purchase_mac(serial, body)
    assert not provider.verify_purchase(serial, body, forged)


# ------------------------------------------------------------------------------- PSAM client


class FakePsamChannel:
    """A test double of a PSAM on an APDU channel, answering the 80 FA commands of
    cardio/PROFILE.md with SoftwareKeyProvider (the real emulator lives in cardio/emulator.py)."""

    def __init__(self, master: MasterKeys, serial: bytes = bytes.fromhex("5053414D00000001")):
        self.software = SoftwareKeyProvider(master)
        self.serial = serial
        self.apdus: list[bytes] = []
        self.force_sw: int | None = None  # answer every 80 FA command with this SW
        self.select_sw = 0x9000
        self.transactions = 0

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.apdus.append(apdu)
        if apdu[:4] == bytes([0x00, 0xA4, 0x04, 0x00]):
            if apdu[4:] != bytes([len(P.PSAM_AID)]) + P.PSAM_AID or self.select_sw != 0x9000:
                return b"", 0x6A82 if self.select_sw == 0x9000 else self.select_sw
            return P.build_psam_fci(self.serial), 0x9000
        if apdu[:2] != bytes([0x80, 0xFA]):
            return b"", 0x6D00
        if self.force_sw is not None:
            return b"", self.force_sw
        p1, p2, lc, data = apdu[2], apdu[3], apdu[4], apdu[5:]
        if lc != len(data):
            return b"", 0x6700
        serial, rest = data[:8], data[8:]
        if p1 in (0, 1) and p2 not in range(5):
            return b"", 0x6A86
        if p1 == 4 and len(rest) == 22:
            return self.software.purchase_mac(serial, rest), 0x9000
        if p1 == 5 and len(rest) == 26:
            ok = self.software.verify_purchase(serial, rest[:22], rest[22:])
            return b"", 0x9000 if ok else 0x6988
        if p1 == 0 and len(rest) == 8:
            return self.software.auth_cryptogram(KeyRole(p2), serial, rest), 0x9000
        if p1 == 1 and len(rest) >= 16:
            return self.software.command_mac(KeyRole(p2), serial, rest[:16], rest[16:]), 0x9000
        if p1 == 2 and len(rest) == 41:
            body, mac = rest[:37], rest[37:]
            meter = P.bcd_decode(body[:6])
            return b"", 0x9000 if self.software.verify_write_back(
                serial, meter, body, mac
            ) else 0x6988
        if p1 == 3 and len(rest) == 37:
            return self.software.write_back_mac(serial, P.bcd_decode(rest[:6]), rest), 0x9000
        return b"", 0x6A86

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.transactions += 1
        yield

    def close(self) -> None:
        pass

    @property
    def atr(self) -> bytes:
        return P.build_psam_atr()


def selects(channel: FakePsamChannel) -> int:
    return sum(1 for apdu in channel.apdus if apdu[1] == 0xA4)


@FAST
@given(
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=8, max_size=8),
    st.sampled_from(CARD_ROLES),
    st.binary(max_size=200),
)
def test_psam_agrees_with_software(
    serial: bytes, challenge: bytes, role: KeyRole, data: bytes
) -> None:
    master = distinct_master()
    software = SoftwareKeyProvider(master)
    channel = FakePsamChannel(master)
    psam: KeyProvider = PsamKeyProvider(channel)
    assert psam.auth_cryptogram(role, serial, challenge) == software.auth_cryptogram(
        role, serial, challenge
    )
    iv = challenge + bytes(8)
    assert psam.command_mac(role, serial, iv, data) == software.command_mac(role, serial, iv, data)
    body = write_back_body("000000000001")
    mac = psam.write_back_mac(serial, "000000000001", body)
    assert mac == software.write_back_mac(serial, "000000000001", body)
    assert psam.verify_write_back(serial, "000000000001", body, mac)
    assert not psam.verify_write_back(serial, "000000000001", body, bytes([mac[0] ^ 1]) + mac[1:])
    pbody = purchase_body(int.from_bytes(challenge[:4], "big"))
    pmac = psam.purchase_mac(serial, pbody)
    assert pmac == software.purchase_mac(serial, pbody)
    assert psam.verify_purchase(serial, pbody, pmac)
    assert not psam.verify_purchase(serial, pbody, bytes([pmac[0] ^ 1]) + pmac[1:])
    assert selects(channel) == 1  # selected once, on first use


def test_psam_commands_on_the_wire() -> None:
    channel = FakePsamChannel(distinct_master())
    psam = PsamKeyProvider(channel)
    assert channel.apdus == []  # lazily selected
    serial = bytes(range(8))
    psam.auth_cryptogram(KeyRole.METER_AUTH, serial, bytes(8))
    assert channel.apdus[0] == bytes.fromhex("00A404000A D156000043565053414D")
    assert channel.apdus[1] == bytes.fromhex("80FA0003 10") + serial + bytes(8)
    assert psam.serial == channel.serial
    psam.command_mac(KeyRole.METER_MAC, serial, bytes(16), b"\x04\xd6")
    assert channel.apdus[2] == bytes.fromhex("80FA0104 1A") + serial + bytes(16) + b"\x04\xd6"
    assert channel.transactions == 2
    assert "serial=5053414D00000001" in repr(psam)
    psam.purchase_mac(serial, purchase_body())
    assert channel.apdus[3] == bytes.fromhex("80FA0400 1E") + serial + purchase_body()
    psam.verify_purchase(serial, purchase_body(), b"\x01\x02\x03\x04")
    assert channel.apdus[4] == (
        bytes.fromhex("80FA0500 22") + serial + purchase_body() + b"\x01\x02\x03\x04"
    )


def test_psam_status_words() -> None:
    channel = FakePsamChannel(distinct_master())
    psam = PsamKeyProvider(channel)
    serial, body = bytes(8), write_back_body()
    expectations: list[tuple[int, type[CardVendError]]] = [
        (0x6983, CardAuthError),
        (0x63C2, CardAuthError),
        (0x6982, CardAuthError),
        (0x6A86, CardCommandError),
        (0x6700, CardCommandError),
        (0x6581, CardCommandError),
    ]
    for sw, error in expectations:
        channel.force_sw = sw
        with pytest.raises(error) as info:
            psam.auth_cryptogram(KeyRole.COUNTER_AUTH, serial, bytes(8))
        assert "{" not in str(info.value)
    channel.force_sw = 0x6988
    with pytest.raises(CardAuthError):  # a bad-MAC answer to a MAC computation is an error ...
        psam.write_back_mac(serial, "202400000042", body)
    assert psam.verify_write_back(serial, "202400000042", body, bytes(4)) is False  # ... not here
    with pytest.raises(CardAuthError):
        psam.purchase_mac(serial, purchase_body())
    assert psam.verify_purchase(serial, purchase_body(), bytes(4)) is False
    channel.force_sw = 0x6A86
    with pytest.raises(CardCommandError):
        psam.verify_write_back(serial, "202400000042", body, bytes(4))
    with pytest.raises(CardCommandError):
        psam.verify_purchase(serial, purchase_body(), bytes(4))


def test_psam_refuses_what_software_refuses() -> None:
    psam = PsamKeyProvider(FakePsamChannel(distinct_master()))
    with pytest.raises(ValueError):
        psam.auth_cryptogram(KeyRole.WRITE_BACK, bytes(8), bytes(8))
    with pytest.raises(ValueError):
        psam.auth_cryptogram(KeyRole.PURCHASE, bytes(8), bytes(8))
    with pytest.raises(ValueError):
        psam.command_mac(KeyRole.PURCHASE, bytes(8), bytes(16), purchase_body())
    with pytest.raises(ValueError):
        psam.purchase_mac(bytes(8), purchase_body() + b"x")
    with pytest.raises(ValueError):
        psam.command_mac(KeyRole.COUNTER_MAC, bytes(8), bytes(16), bytes(232))
    assert psam.command_mac(KeyRole.COUNTER_MAC, bytes(8), bytes(16), bytes(231))


def test_psam_select_failure_is_retried_next_time() -> None:
    channel = FakePsamChannel(distinct_master())
    channel.select_sw = 0x6A82
    psam = PsamKeyProvider(channel)
    with pytest.raises(CardCommandError) as info:
        psam.auth_cryptogram(KeyRole.ISSUER, bytes(8), bytes(8))
    assert "6A82" in str(info.value)
    channel.select_sw = 0x9000
    assert len(psam.auth_cryptogram(KeyRole.ISSUER, bytes(8), bytes(8))) == 16
    assert selects(channel) == 2


# ------------------------------------------------------------------------------- keystore


def test_keystore_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.keystore"
    master = create_keystore(path, PASSPHRASE)
    assert open_keystore(path, PASSPHRASE) == master
    assert os.listdir(path.parent) == ["master.keystore"]  # no temp file left behind
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    text = path.read_text(encoding="utf-8")
    doc = json.loads(text)
    assert doc["version"] == 2 and doc["kdf"] == "scrypt" and doc["cipher"] == "AES-256-GCM"
    assert {k: doc["kdf_params"][k] for k in "nrp"} == {"n": 2**15, "r": 8, "p": 1}
    assert len(base64.b64decode(doc["kdf_params"]["salt"])) == 16
    assert len(base64.b64decode(doc["nonce"])) == 12
    assert_hides(text, master)
    assert PASSPHRASE not in text and "horse" not in text


def test_keystore_keeps_given_keys_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "master.keystore"
    master = distinct_master()
    assert create_keystore(path, "first passphrase", master) is master
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        create_keystore(path, "second passphrase")
    assert path.read_bytes() == before
    # changing the passphrase: the same keys, written again over the old file
    create_keystore(
        path, "second passphrase", open_keystore(path, "first passphrase"), overwrite=True
    )
    assert open_keystore(path, "second passphrase") == master
    with pytest.raises(KeystoreError):
        open_keystore(path, "first passphrase")
    with pytest.raises(KeystoreError):
        create_keystore(tmp_path / "other.keystore", "")


def test_wrong_passphrase_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "master.keystore"
    master = create_keystore(path, PASSPHRASE)
    with pytest.raises(KeystoreError) as info:
        open_keystore(path, PASSPHRASE + "!")
    err = info.value
    assert str(err) == "The keystore passphrase is wrong or the keystore file is damaged."
    assert isinstance(err, CardVendError)
    assert_hides(repr(err) + str(err) + repr(err.params), master)
    assert PASSPHRASE not in repr(err.params)
    with pytest.raises(KeystoreError, match="There is no keystore at"):
        open_keystore(tmp_path / "nothing.keystore", PASSPHRASE)


def test_a_tampered_keystore_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.keystore"
    create_keystore(path, PASSPHRASE, distinct_master())
    original = path.read_text(encoding="utf-8")
    doc = json.loads(original)

    def flip_b64(value: str) -> str:
        raw = bytearray(base64.b64decode(value))
        raw[len(raw) // 2] ^= 0x01
        return base64.b64encode(bytes(raw)).decode()

    variants = {
        "ciphertext": {**doc, "ciphertext": flip_b64(doc["ciphertext"])},
        "nonce": {**doc, "nonce": flip_b64(doc["nonce"])},
        "version": {**doc, "version": 3},
        "seven keys as version 1": {**doc, "version": 1},
        "cost": {**doc, "kdf_params": {**doc["kdf_params"], "n": 2**30}},
        "extra": {**doc, "note": "x"},
    }
    for name, variant in variants.items():
        path.write_text(json.dumps(variant), encoding="utf-8")
        with pytest.raises(KeystoreError):
            open_keystore(path, PASSPHRASE)
        assert name
    for damaged in (original[:-20], original.replace('"scrypt"', '"scrypx"'), "", "[]", "\xff"):
        path.write_text(damaged, encoding="utf-8")
        with pytest.raises(KeystoreError):
            open_keystore(path, PASSPHRASE)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(KeystoreError):
        open_keystore(path, PASSPHRASE)


def test_keystore_messages_in_chinese(tmp_path: Path) -> None:
    assert KeystoreError().localized("zh_CN") == "密钥库口令错误，或密钥库文件已损坏。"
    with pytest.raises(KeystoreError) as info:
        open_keystore(tmp_path / "none.keystore", "x")
    text = info.value.localized("zh_CN")
    assert "密钥库" in text and str(tmp_path) in text


def test_a_version_1_keystore_opens_with_a_derived_purchase_key(tmp_path: Path) -> None:
    """A keystore written before the purchase key (six keys, format version 1) still opens:
    its purchase key is SM4-ECB(MK05, "CardVend-PURCHAS"), the same on every counter and meter
    that holds those keys; written again it is a version-2 keystore with the same seven keys."""
    import cardio.keys as K

    six = [bytes([i + 1]) * 16 for i in range(6)]
    salt, nonce = os.urandom(16), os.urandom(12)
    header = {
        "format": K.KEYSTORE_FORMAT,
        "version": 1,
        "kdf": "scrypt",
        "kdf_params": {"n": 2**14, "r": 8, "p": 1, "salt": base64.b64encode(salt).decode()},
        "cipher": "AES-256-GCM",
        "nonce": base64.b64encode(nonce).decode(),
    }
    secret = K._derive(PASSPHRASE, salt, 2**14, 8, 1)
    ciphertext = K.AESGCM(secret).encrypt(nonce, b"".join(six), K._aad(header))
    path = tmp_path / "old.keystore"
    path.write_text(json.dumps({**header, "ciphertext": base64.b64encode(ciphertext).decode()}))
    master = open_keystore(path, PASSPHRASE)
    assert [master.key(role) for role in KeyRole][:6] == six
    derived = sm4_ecb(six[KeyRole.WRITE_BACK], b"CardVend-PURCHAS")
    assert master.key(KeyRole.PURCHASE) == derived == derive_v1_purchase_key(six[5])
    assert derived not in six
    create_keystore(path, PASSPHRASE, master, overwrite=True)
    assert json.loads(path.read_text())["version"] == 2
    assert open_keystore(path, PASSPHRASE) == master


# --------------------------------------------------------------------------- one key provider


def _ctx_with_cards(home: Path, count: int, passphrase: str) -> tuple[Any, list[Path]]:
    from cardio import wiring
    from cardio.emulator import CardImage
    from tests.rigs.context import make_ctx

    ctx = make_ctx(home)
    master = create_keystore(wiring.keystore_path(ctx), passphrase)
    images = []
    for n in range(count):
        serial = os.urandom(8)
        image = home / f"card{n}.json"
        keys = {int(r): k for r, k in master.diversified_card_keys(serial).items()}
        CardImage.blank(serial, keys).save(image)
        images.append(image)
    return ctx, images


def test_the_keystore_is_derived_once_for_many_cards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key provider is built once per program, not per card terminal: one scrypt
    derivation for N cards."""
    import main as composition
    from cardio import wiring

    monkeypatch.delenv(wiring.PASSPHRASE_ENV, raising=False)
    ctx, images = _ctx_with_cards(tmp_path, 4, wiring.DEMO_PASSPHRASE)
    opened: list[Path] = []
    real_open = wiring.open_keystore

    def counting_open(path: Path, passphrase: str) -> MasterKeys:
        opened.append(path)
        return real_open(path, passphrase)

    monkeypatch.setattr(wiring, "open_keystore", counting_open)
    keys = composition.wire_cards(ctx)
    terminals = [ctx.open_terminal(None, str(image)) for image in images]
    for terminal in terminals:  # each card issued (authenticated, MAC'd) with the one provider
        terminal.issue(1)
    assert len(opened) == 1
    assert len({id(t.keys) for t in terminals}) == 1  # type: ignore[attr-defined]
    keys.close()


def test_a_passphrase_the_environment_does_not_give_is_asked_through_the_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    import main as composition
    from cardio import wiring

    monkeypatch.delenv(wiring.PASSPHRASE_ENV, raising=False)
    ctx, images = _ctx_with_cards(tmp_path, 2, "not the demo one")

    def no_getpass(prompt: str = "") -> str:
        raise AssertionError("getpass called")

    monkeypatch.setattr(getpass, "getpass", no_getpass)
    asked: list[str] = []

    class Answer:
        def passphrase(self, prompt: str) -> str | None:
            asked.append(prompt)
            return "not the demo one"

    composition.wire_cards(ctx, Answer())
    for image in images:
        ctx.open_terminal(None, str(image)).issue(1)
    assert asked == ["Keystore passphrase"]
