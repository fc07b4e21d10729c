"""PsamOS: the emulated security module (PSAM) that holds the master keys."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from collections.abc import Mapping

from app.ports import KeyRole
from cardio.crypto import BLOCK
from cardio.crypto import KEY_LEN
from cardio.crypto import MAC_LEN
from cardio.crypto import auth_cryptogram
from cardio.crypto import diversify_card_key
from cardio.crypto import diversify_meter_key
from cardio.crypto import mac4
from cardio.emulator.base import _Apdu
from cardio.emulator.base import _EmulatedCard
from cardio.emulator.base import _Status
from cardio.emulator.base import _sw
from cardio.emulator.base import _tlv
from cardio.emulator.image import CARD_KEY_IDS
from cardio.emulator.image import CHALLENGE_LEN
from cardio.emulator.image import PURCHASE_BODY_LEN
from cardio.emulator.image import SERIAL_LEN
from cardio.emulator.image import SW_BAD_MAC
from cardio.emulator.image import SW_CLA_NOT_SUPPORTED
from cardio.emulator.image import SW_CONDITIONS
from cardio.emulator.image import SW_INS_NOT_SUPPORTED
from cardio.emulator.image import SW_NOT_FOUND
from cardio.emulator.image import SW_OK
from cardio.emulator.image import SW_WRONG_LENGTH
from cardio.emulator.image import SW_WRONG_P1P2
from cardio.emulator.image import WRITE_BACK_BODY_LEN
from cardio.emulator.image import make_atr
from cardio.profile import PSAM_AID


class PsamOS(_EmulatedCard):
    """The security access module: holds the utility's seven master keys and computes, never
    reveals.  Its application must be selected (by AID) after power on; before that its
    commands answer 6985."""

    def __init__(self, master_keys: Mapping[int, bytes], serial: bytes) -> None:
        super().__init__()
        keys = {int(k): bytes(v) for k, v in master_keys.items()}
        if any(len(v) != KEY_LEN for v in keys.values()):
            raise ValueError("master keys are 16 bytes")
        if len(serial) != SERIAL_LEN:
            raise ValueError("a PSAM serial is 8 bytes")
        self._keys = keys
        self.serial = bytes(serial)
        self._selected = False

    def _clear_volatile(self) -> None:
        self._selected = False

    @property
    def atr(self) -> bytes:
        return make_atr(b"CVPSAM" + bytes([0x00, 0x01, 0x00, 0x00]))

    def _dispatch(self, apdu: _Apdu) -> bytes:
        if apdu.cla == 0x00:
            if apdu.ins != 0xA4:
                raise _Status(SW_INS_NOT_SUPPORTED)
            return self._select(apdu)
        if apdu.cla != 0x80:
            raise _Status(SW_CLA_NOT_SUPPORTED)
        if apdu.ins != 0xFA:
            raise _Status(SW_INS_NOT_SUPPORTED)
        data = apdu.expect_data()
        handler = {
            0x00: self._auth_cryptogram,
            0x01: self._command_mac,
            0x02: self._verify_write_back,
            0x03: self._compute_write_back,
            0x04: self._compute_purchase,
            0x05: self._verify_purchase,
        }.get(apdu.p1)
        if handler is None:
            raise _Status(SW_WRONG_P1P2)
        if not self._selected:
            raise _Status(SW_CONDITIONS)
        return handler(apdu.p2, data) + _sw(SW_OK)

    def _select(self, apdu: _Apdu) -> bytes:
        data = apdu.expect_data()
        if apdu.p1 != 0x04 or apdu.p2 != 0x00:
            raise _Status(SW_WRONG_P1P2)
        if data != PSAM_AID:
            raise _Status(SW_NOT_FOUND)
        self._selected = True
        fci = _tlv(b"\x6f", _tlv(b"\x84", PSAM_AID) + _tlv(b"\xa5", _tlv(b"\x9f\x0c", self.serial)))
        return fci + _sw(SW_OK)

    def _card_key(self, key_id: int, serial: bytes) -> bytes:
        if key_id not in CARD_KEY_IDS or key_id not in self._keys:
            raise _Status(SW_WRONG_P1P2)  # 05 and 06 never leave as card keys
        return diversify_card_key(self._keys[key_id], serial)

    def _write_back_mac(self, serial: bytes, body: bytes) -> bytes:
        master = self._keys.get(KeyRole.WRITE_BACK)
        if master is None:
            raise _Status(SW_CONDITIONS)
        k_wb = diversify_meter_key(master, body[:6])
        return mac4(k_wb, bytes(BLOCK), serial + body)

    def _auth_cryptogram(self, key_id: int, data: bytes) -> bytes:
        if len(data) != SERIAL_LEN + CHALLENGE_LEN:
            raise _Status(SW_WRONG_LENGTH)
        key = self._card_key(key_id, data[:SERIAL_LEN])
        return auth_cryptogram(key, data[SERIAL_LEN:])

    def _command_mac(self, key_id: int, data: bytes) -> bytes:
        if len(data) < SERIAL_LEN + BLOCK:
            raise _Status(SW_WRONG_LENGTH)
        key = self._card_key(key_id, data[:SERIAL_LEN])
        iv = data[SERIAL_LEN : SERIAL_LEN + BLOCK]
        return mac4(key, iv, data[SERIAL_LEN + BLOCK :])

    def _verify_write_back(self, p2: int, data: bytes) -> bytes:
        return _verify(p2, data, WRITE_BACK_BODY_LEN, self._write_back_mac)

    def _compute_write_back(self, p2: int, data: bytes) -> bytes:
        return self._write_back_mac(*_signed_data(p2, data, WRITE_BACK_BODY_LEN))

    def _purchase_mac(self, serial: bytes, body: bytes) -> bytes:
        master = self._keys.get(KeyRole.PURCHASE)
        if master is None:
            raise _Status(SW_CONDITIONS)
        return mac4(diversify_card_key(master, serial), bytes(BLOCK), serial + body)

    def _compute_purchase(self, p2: int, data: bytes) -> bytes:
        return self._purchase_mac(*_signed_data(p2, data, PURCHASE_BODY_LEN))

    def _verify_purchase(self, p2: int, data: bytes) -> bytes:
        return _verify(p2, data, PURCHASE_BODY_LEN, self._purchase_mac)


def _signed_data(p2: int, data: bytes, body_len: int) -> tuple[bytes, bytes]:
    """The card serial and the body of a MAC command: P2 is 00 and the data exactly a serial
    and a body of ``body_len`` bytes."""
    if p2 != 0x00:
        raise _Status(SW_WRONG_P1P2)
    if len(data) != SERIAL_LEN + body_len:
        raise _Status(SW_WRONG_LENGTH)
    return data[:SERIAL_LEN], data[SERIAL_LEN:]


def _verify(p2: int, data: bytes, body_len: int, mac_of: Callable[[bytes, bytes], bytes]) -> bytes:
    """Check the MAC after a serial and a body: nothing if ``mac_of`` gives that MAC, SW_BAD_MAC
    otherwise."""
    serial, signed = _signed_data(p2, data, body_len + MAC_LEN)
    body, mac = signed[:-MAC_LEN], signed[-MAC_LEN:]
    if not hmac.compare_digest(mac_of(serial, body), mac):
        raise _Status(SW_BAD_MAC)
    return b""
