"""SM4 primitives of the card profile (cardio/PROFILE.md, "Keys and security").

Uses the SM4 block cipher of ``cryptography``.  Nothing here logs or keeps a key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers import modes

BLOCK = 16
KEY_LEN = 16
MAC_LEN = 4


def sm4_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    if len(key) != KEY_LEN or len(data) % BLOCK:
        raise ValueError("SM4 needs a 16-byte key and whole 16-byte blocks")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def pad_m2(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2: 80 then 00 up to a whole block."""
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % BLOCK)


def cbc_mac(key: bytes, iv: bytes, data: bytes) -> bytes:
    """Full 16-byte CBC-MAC of ``pad_m2(data)``; callers use the first 4 bytes."""
    if len(iv) != BLOCK:
        raise ValueError("the IV must be 16 bytes")
    enc = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    out = enc.update(pad_m2(data)) + enc.finalize()
    return out[-BLOCK:]


def mac4(key: bytes, iv: bytes, data: bytes) -> bytes:
    return cbc_mac(key, iv, data)[:MAC_LEN]


def _invert(b: bytes) -> bytes:
    return bytes(x ^ 0xFF for x in b)


def diversify_card_key(master: bytes, serial: bytes) -> bytes:
    """K_card = SM4-ECB(MK, serial || serial XOR FF*8)."""
    if len(serial) != 8:
        raise ValueError("a card serial is 8 bytes")
    return sm4_ecb_encrypt(master, serial + _invert(serial))


def diversify_meter_key(master: bytes, meter_no_bcd: bytes) -> bytes:
    """K_wb(meter) = SM4-ECB(MK05, m || ~m) with m = meter_no bcd6 || 00 00."""
    if len(meter_no_bcd) != 6:
        raise ValueError("a meter number is 6 BCD bytes")
    m = meter_no_bcd + b"\x00\x00"
    return sm4_ecb_encrypt(master, m + _invert(m))


def auth_cryptogram(card_key: bytes, challenge: bytes) -> bytes:
    """Answer to an 8-byte challenge: SM4-ECB(K_card, R || 00*8)."""
    if len(challenge) != 8:
        raise ValueError("a challenge is 8 bytes")
    return sm4_ecb_encrypt(card_key, challenge + b"\x00" * 8)


def challenge_iv(challenge: bytes) -> bytes:
    return challenge + b"\x00" * 8


def crc16_x25(data: bytes) -> int:
    """CRC-16/X-25: poly 0x1021 reflected (0x8408), init 0xFFFF, xorout 0xFFFF."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF
