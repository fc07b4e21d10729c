"""Key providers (``app.ports.KeyProvider``): the utility's master keys in a software keystore or
in a security access module (PSAM), per ``cardio/PROFILE.md`` ("Keys and security", "Security
access module").

* :class:`MasterKeys` holds the seven master keys; its ``repr`` never shows them.
* :class:`SoftwareKeyProvider` computes cryptograms and MACs from :class:`MasterKeys`, which
  :func:`open_keystore` decrypts from a passphrase-protected keystore file
  (:func:`create_keystore` writes one: scrypt, AES-256-GCM, written atomically, mode 0600).
* :class:`PsamKeyProvider` asks a PSAM card for the same answers; the keys never leave it.

Both providers validate their arguments the same way (``ValueError``) and give the same answers
for the same master keys.  Nothing here logs a key, a passphrase or a derived secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import stat
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields
from pathlib import Path
from typing import Any
from typing import ClassVar
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.domain.card import CardAuthError
from app.domain.card import CardCommandError
from app.domain.card import CardError
from app.errors import CardVendError
from app.fileio import private_dir
from app.fileio import write_atomically
from app.i18n import N_
from app.ports import ApduChannel
from app.ports import KeyRole
from cardio import crypto
from cardio.profile import PSAM_AID
from cardio.profile import bcd_encode
from cardio.profile import parse_psam_fci

__all__ = [
    "CARD_ROLES",
    "MAX_MAC_DATA",
    "KeystoreError",
    "MasterKeys",
    "PsamKeyProvider",
    "SoftwareKeyProvider",
    "create_keystore",
    "derive_v1_purchase_key",
    "open_keystore",
]

log = logging.getLogger(__name__)

CARD_ROLES: Final = (
    KeyRole.ISSUER,
    KeyRole.COUNTER_AUTH,
    KeyRole.COUNTER_MAC,
    KeyRole.METER_AUTH,
    KeyRole.METER_MAC,
)
"""The roles whose diversified keys a card holds (key ids 00..04)."""

SERIAL_LEN: Final = 8
CHALLENGE_LEN: Final = 8
WRITE_BACK_BODY_LEN: Final = 37
PURCHASE_BODY_LEN: Final = 22
MAX_MAC_DATA: Final = 255 - SERIAL_LEN - crypto.BLOCK
"""The longest data a command MAC is computed over: what one PSAM command can carry."""

_ZERO_IV: Final = bytes(crypto.BLOCK)
_FIELDS: Final = (
    "issuer",
    "counter_auth",
    "counter_mac",
    "meter_auth",
    "meter_mac",
    "write_back",
    "purchase",
)
# A keystore of format version 1 holds the first six keys only.  Its purchase key is derived
# from its write-back key (held by the same parties: the counters' key providers and the
# meters), so every counter and meter of a utility on such a keystore derives the same one.
_V1_FIELDS: Final = _FIELDS[:6]
_V1_PURCHASE_LABEL: Final = b"CardVend-PURCHAS"  # 16 bytes, SM4-ECB encrypted under MK(05)


# ------------------------------------------------------------------------------ master keys


@dataclass(frozen=True, repr=False)
class MasterKeys:
    """The seven 16-byte SM4 master keys of the utility, one per :class:`KeyRole`."""

    issuer: bytes
    counter_auth: bytes
    counter_mac: bytes
    meter_auth: bytes
    meter_mac: bytes
    write_back: bytes
    purchase: bytes

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, bytes) or len(value) != crypto.KEY_LEN:
                # never show the value: it may be (most of) a key
                raise ValueError(f"master key {f.name} must be {crypto.KEY_LEN} bytes")

    def __repr__(self) -> str:
        return "MasterKeys(<7 keys hidden>)"

    __str__ = __repr__

    @classmethod
    def generate(cls) -> MasterKeys:
        """Seven fresh random keys (``os.urandom``)."""
        return cls(*(os.urandom(crypto.KEY_LEN) for _ in _FIELDS))

    @classmethod
    def from_roles(cls, keys: Mapping[KeyRole, bytes]) -> MasterKeys:
        """From a mapping of all seven roles to their keys."""
        if set(keys) != set(KeyRole):
            raise ValueError("master keys are needed for all seven roles")
        return cls(*(keys[role] for role in KeyRole))

    def key(self, role: KeyRole) -> bytes:
        value: bytes = getattr(self, _FIELDS[KeyRole(role)])
        return value

    def diversified_card_keys(self, serial: bytes) -> dict[KeyRole, bytes]:
        """The five keys a card with ``serial`` holds (roles 0..4), for the card factory."""
        _check_serial(serial)
        return {role: crypto.diversify_card_key(self.key(role), serial) for role in CARD_ROLES}

    def _pack(self) -> bytes:
        return b"".join(self.key(role) for role in KeyRole)

    @classmethod
    def _unpack(cls, data: bytes, version: int = 2) -> MasterKeys:
        count = len(_V1_FIELDS) if version == 1 else len(_FIELDS)
        if len(data) != crypto.KEY_LEN * count:
            raise ValueError("wrong length of the master keys")
        n = crypto.KEY_LEN
        keys = [data[i * n : (i + 1) * n] for i in range(count)]
        if version == 1:
            keys.append(derive_v1_purchase_key(keys[KeyRole.WRITE_BACK]))
        return cls(*keys)


def derive_v1_purchase_key(write_back_master: bytes) -> bytes:
    """The purchase master key of a version-1 keystore: ``SM4-ECB(MK(05), "CardVend-PURCHAS")``."""
    return crypto.sm4_ecb_encrypt(write_back_master, _V1_PURCHASE_LABEL)


# ------------------------------------------------------------------------------ argument checks
# Shared by both providers, so that they refuse exactly the same calls.


def _check_serial(card_serial: bytes) -> None:
    if not isinstance(card_serial, bytes | bytearray) or len(card_serial) != SERIAL_LEN:
        raise ValueError("a card serial is 8 bytes")


def _card_role(role: KeyRole) -> KeyRole:
    role = KeyRole(role)
    if role not in CARD_ROLES:
        raise ValueError(f"key {role.name} is not a card key")
    return role


def _check_auth(role: KeyRole, card_serial: bytes, challenge: bytes) -> KeyRole:
    _check_serial(card_serial)
    if len(challenge) != CHALLENGE_LEN:
        raise ValueError("a challenge is 8 bytes")
    return _card_role(role)


def _check_mac(role: KeyRole, card_serial: bytes, iv: bytes, data: bytes) -> KeyRole:
    _check_serial(card_serial)
    if len(iv) != crypto.BLOCK:
        raise ValueError("the IV of a command MAC is 16 bytes")
    if len(data) > MAX_MAC_DATA:
        raise ValueError(f"a command MAC covers at most {MAX_MAC_DATA} bytes, got {len(data)}")
    return _card_role(role)


def _meter_bcd(meter_no: str) -> bytes:
    try:
        return bcd_encode(meter_no, 6)
    except ValueError:
        raise ValueError("a meter number is 12 digits") from None


def _check_purchase(card_serial: bytes, body: bytes) -> None:
    _check_serial(card_serial)
    if len(body) != PURCHASE_BODY_LEN:
        raise ValueError(f"a purchase body is {PURCHASE_BODY_LEN} bytes, got {len(body)}")


def _check_write_back(card_serial: bytes, meter_no: str, body: bytes) -> bool:
    """Checks the arguments; True when ``body`` was written by meter ``meter_no``."""
    _check_serial(card_serial)
    if len(body) != WRITE_BACK_BODY_LEN:
        raise ValueError(f"a write-back body is {WRITE_BACK_BODY_LEN} bytes, got {len(body)}")
    return bytes(body[:6]) == _meter_bcd(meter_no)


# ------------------------------------------------------------------------------ software


class SoftwareKeyProvider:
    """Computes with master keys held in memory (from :func:`open_keystore`)."""

    def __init__(self, master: MasterKeys) -> None:
        if not isinstance(master, MasterKeys):
            raise TypeError("SoftwareKeyProvider needs MasterKeys")
        self._master = master

    def __repr__(self) -> str:
        return "SoftwareKeyProvider(<master keys hidden>)"

    __str__ = __repr__

    def _card_key(self, role: KeyRole, card_serial: bytes) -> bytes:
        return crypto.diversify_card_key(self._master.key(role), bytes(card_serial))

    def auth_cryptogram(self, role: KeyRole, card_serial: bytes, challenge: bytes) -> bytes:
        role = _check_auth(role, card_serial, challenge)
        return crypto.auth_cryptogram(self._card_key(role, card_serial), bytes(challenge))

    def command_mac(self, role: KeyRole, card_serial: bytes, iv: bytes, data: bytes) -> bytes:
        role = _check_mac(role, card_serial, iv, data)
        return crypto.mac4(self._card_key(role, card_serial), bytes(iv), bytes(data))

    def write_back_mac(self, card_serial: bytes, meter_no: str, body: bytes) -> bytes:
        if not _check_write_back(card_serial, meter_no, body):
            raise ValueError("the write-back body names another meter")
        return self._write_back_mac(bytes(card_serial), meter_no, bytes(body))

    def _write_back_mac(self, card_serial: bytes, meter_no: str, body: bytes) -> bytes:
        key = crypto.diversify_meter_key(self._master.write_back, _meter_bcd(meter_no))
        return crypto.mac4(key, _ZERO_IV, card_serial + body)

    def verify_write_back(self, card_serial: bytes, meter_no: str, body: bytes, mac: bytes) -> bool:
        if not _check_write_back(card_serial, meter_no, body) or len(mac) != crypto.MAC_LEN:
            return False
        expected = self._write_back_mac(bytes(card_serial), meter_no, bytes(body))
        return hmac.compare_digest(expected, bytes(mac))

    def purchase_mac(self, card_serial: bytes, body: bytes) -> bytes:
        _check_purchase(card_serial, body)
        return self._purchase_mac(bytes(card_serial), bytes(body))

    def _purchase_mac(self, card_serial: bytes, body: bytes) -> bytes:
        key = crypto.diversify_card_key(self._master.purchase, card_serial)
        return crypto.mac4(key, _ZERO_IV, card_serial + body)

    def verify_purchase(self, card_serial: bytes, body: bytes, mac: bytes) -> bool:
        _check_purchase(card_serial, body)
        if len(mac) != crypto.MAC_LEN:
            return False
        expected = self._purchase_mac(bytes(card_serial), bytes(body))
        return hmac.compare_digest(expected, bytes(mac))


# ------------------------------------------------------------------------------ PSAM

_SW_OK: Final = 0x9000
_SW_BAD_MAC: Final = 0x6988
_AUTH_SWS: Final = frozenset({0x6982, 0x6984, _SW_BAD_MAC})


def _psam_error(sw: int, command: str) -> CardError:
    if sw & 0xFFF0 == 0x63C0:
        return CardAuthError(
            detail=N_("the security module refused the key, {tries} tries left"), tries=sw & 0x0F
        )
    if sw == 0x6983:
        return CardAuthError(detail=N_("a key in the security module is blocked"))
    if sw in _AUTH_SWS:
        return CardAuthError(detail=N_("the security module answered {sw}"), sw=f"{sw:04X}")
    return CardCommandError(sw=f"{sw:04X}", command=command)


class PsamKeyProvider:
    """The client of a PSAM card on ``channel``: selects its application once, on first use,
    then sends it the ``80 FA`` commands of the profile."""

    CLA: ClassVar[int] = 0x80
    INS: ClassVar[int] = 0xFA

    def __init__(self, channel: ApduChannel) -> None:
        self._channel = channel
        self._selected = False
        self.serial: bytes | None = None  # the PSAM's own serial, known after the first use

    def __repr__(self) -> str:
        serial = self.serial.hex().upper() if self.serial else "not selected yet"
        return f"PsamKeyProvider(serial={serial})"

    def close(self) -> None:
        """Close the connection to the PSAM."""
        self._channel.close()

    __str__ = __repr__

    def _select(self) -> None:
        if self._selected:
            return
        data, sw = self._channel.transmit(bytes([0x00, 0xA4, 0x04, 0x00, len(PSAM_AID)]) + PSAM_AID)
        if sw != _SW_OK:
            raise _psam_error(sw, N_("selecting the security module"))
        self.serial = parse_psam_fci(data)
        self._selected = True

    def _call(self, p1: int, p2: int, data: bytes) -> tuple[bytes, int]:
        apdu = bytes([self.CLA, self.INS, p1, p2, len(data)]) + data
        with self._channel.transaction():
            self._select()
            return self._channel.transmit(apdu)

    def _expect(self, answer: tuple[bytes, int], length: int, command: str) -> bytes:
        data, sw = answer
        if sw != _SW_OK:
            raise _psam_error(sw, command)
        if len(data) != length:
            raise CardError(
                detail=N_("the security module answered {length} bytes instead of {expected}"),
                length=len(data),
                expected=length,
            )
        return bytes(data)

    def auth_cryptogram(self, role: KeyRole, card_serial: bytes, challenge: bytes) -> bytes:
        role = _check_auth(role, card_serial, challenge)
        command = N_("the security module's authentication cryptogram")
        answer = self._call(0x00, int(role), bytes(card_serial) + bytes(challenge))
        return self._expect(answer, crypto.BLOCK, command)

    def command_mac(self, role: KeyRole, card_serial: bytes, iv: bytes, data: bytes) -> bytes:
        role = _check_mac(role, card_serial, iv, data)
        command = N_("the security module's command MAC")
        answer = self._call(0x01, int(role), bytes(card_serial) + bytes(iv) + bytes(data))
        return self._expect(answer, crypto.MAC_LEN, command)

    def write_back_mac(self, card_serial: bytes, meter_no: str, body: bytes) -> bytes:
        if not _check_write_back(card_serial, meter_no, body):
            raise ValueError("the write-back body names another meter")
        command = N_("the security module's write-back MAC")
        answer = self._call(0x03, 0x00, bytes(card_serial) + bytes(body))
        return self._expect(answer, crypto.MAC_LEN, command)

    def verify_write_back(self, card_serial: bytes, meter_no: str, body: bytes, mac: bytes) -> bool:
        if not _check_write_back(card_serial, meter_no, body) or len(mac) != crypto.MAC_LEN:
            return False
        command = N_("the security module's write-back check")
        return self._verify(0x02, bytes(card_serial) + bytes(body) + bytes(mac), command)

    def purchase_mac(self, card_serial: bytes, body: bytes) -> bytes:
        _check_purchase(card_serial, body)
        command = N_("the security module's purchase MAC")
        answer = self._call(0x04, 0x00, bytes(card_serial) + bytes(body))
        return self._expect(answer, crypto.MAC_LEN, command)

    def verify_purchase(self, card_serial: bytes, body: bytes, mac: bytes) -> bool:
        _check_purchase(card_serial, body)
        if len(mac) != crypto.MAC_LEN:
            return False
        command = N_("the security module's purchase check")
        return self._verify(0x05, bytes(card_serial) + bytes(body) + bytes(mac), command)

    def _verify(self, p1: int, data: bytes, command: str) -> bool:
        """The security module's check ``p1`` of ``data``: True if the MAC is right, False if
        it is wrong; any other answer is an error."""
        _data, sw = self._call(p1, 0x00, data)
        if sw == _SW_BAD_MAC:
            return False
        if sw != _SW_OK:
            raise _psam_error(sw, command)
        return True


# ------------------------------------------------------------------------------ keystore

KEYSTORE_FORMAT: Final = "cardvend-keystore"
KEYSTORE_VERSION: Final = 2  # 2: seven master keys; 1 (six keys) is still read
KEYSTORE_READABLE: Final = frozenset({1, 2})
KDF: Final = "scrypt"
CIPHER: Final = "AES-256-GCM"
SCRYPT_N: Final = 2**15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_LEN: Final = 16
NONCE_LEN: Final = 12
_MAX_SCRYPT_MEMORY: Final = 2**28  # refuse parameters (of a doctored file) needing more
_HEADER_KEYS: Final = frozenset({"format", "version", "kdf", "kdf_params", "cipher", "nonce"})
_KDF_KEYS: Final = frozenset({"n", "r", "p", "salt"})

_MISSING: Final = N_("There is no keystore at {path}. Check the keystore setting or create one.")
_UNREADABLE: Final = N_(
    "The keystore {path} cannot be read. Check that CardVend may read the file."
)
_NOT_A_KEYSTORE: Final = N_("The file {path} is not a CardVend keystore, or it is damaged.")
_UNSUPPORTED: Final = N_(
    "The keystore {path} has format version {version}, which this CardVend cannot read."
)
_EXISTS: Final = N_("A keystore already exists at {path}. It was left unchanged.")
_UNWRITABLE: Final = N_(
    "The keystore could not be written to {path}. Check the folder and the free disk space; "
    "nothing was changed."
)
_EMPTY_PASSPHRASE: Final = N_("The keystore passphrase must not be empty.")


class KeystoreError(CardVendError):
    """The keystore cannot be created or opened (the message says why and what to do)."""

    code = "keystore"
    template = N_("The keystore passphrase is wrong or the keystore file is damaged.")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, length: int) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not base64 text")
    data = base64.b64decode(value.encode("ascii"), validate=True)
    if len(data) != length:
        raise ValueError("wrong length")
    return data


def _aad(header: Mapping[str, Any]) -> bytes:
    """The header, canonically serialized: associated data of the encryption."""
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2 * 128 * n * r)


def _exact_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not an integer")
    return value


def _parse_keystore(raw: bytes, path: Path) -> tuple[dict[str, Any], bytes]:
    """The header (as written) and the ciphertext; KeystoreError for anything malformed."""
    try:
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != KEYSTORE_FORMAT:
            raise ValueError("not a keystore")
        version = _exact_int(doc.get("version"))
        if version not in KEYSTORE_READABLE:
            raise KeystoreError(_UNSUPPORTED, path=str(path), version=version)
        if (
            set(doc) != _HEADER_KEYS | {"ciphertext"}
            or doc["kdf"] != KDF
            or doc["cipher"] != CIPHER
        ):
            raise ValueError("unknown layout")
        params = doc["kdf_params"]
        if not isinstance(params, dict) or set(params) != _KDF_KEYS:
            raise ValueError("unknown kdf parameters")
        n, r, p = (_exact_int(params[k]) for k in ("n", "r", "p"))
        if n < 2 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
            raise ValueError("bad kdf parameters")
        if 128 * n * r > _MAX_SCRYPT_MEMORY or n * r * p > 2**24:
            raise ValueError("kdf parameters too costly")
        _unb64(params["salt"], SALT_LEN)
        _unb64(doc["nonce"], NONCE_LEN)
        count = len(_V1_FIELDS) if version == 1 else len(_FIELDS)
        ciphertext = _unb64(doc["ciphertext"], crypto.KEY_LEN * count + 16)
    except KeystoreError:
        raise
    except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError, UnicodeDecodeError too
        raise KeystoreError(_NOT_A_KEYSTORE, path=str(path)) from exc
    header = {k: doc[k] for k in _HEADER_KEYS}
    return header, ciphertext


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same folder (mode 0600), fsync, then ``os.replace`` over ``path``."""
    write_atomically(path, data, mode=stat.S_IRUSR | stat.S_IWUSR)


def create_keystore(
    path: str | os.PathLike[str],
    passphrase: str,
    master: MasterKeys | None = None,
    *,
    overwrite: bool = False,
) -> MasterKeys:
    """Encrypt ``master`` (fresh random keys when ``None``) under ``passphrase`` into ``path``.

    The file is JSON: format, version, kdf "scrypt" with its parameters and salt, cipher
    "AES-256-GCM", nonce, and the ciphertext of the keys; everything but the ciphertext is the
    associated data, so no part can be changed unnoticed.  An existing file is only replaced
    with ``overwrite=True`` (losing master keys makes every card unusable).  Returns the keys.
    """
    if not isinstance(passphrase, str) or not passphrase:
        raise KeystoreError(_EMPTY_PASSPHRASE)
    keys = MasterKeys.generate() if master is None else master
    target = Path(path)
    if not overwrite and target.exists():
        raise KeystoreError(_EXISTS, path=str(target))
    salt, nonce = os.urandom(SALT_LEN), os.urandom(NONCE_LEN)
    header: dict[str, Any] = {
        "format": KEYSTORE_FORMAT,
        "version": KEYSTORE_VERSION,
        "kdf": KDF,
        "kdf_params": {"n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "cipher": CIPHER,
        "nonce": _b64(nonce),
    }
    secret = _derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    ciphertext = AESGCM(secret).encrypt(nonce, keys._pack(), _aad(header))
    document = dict(header, ciphertext=_b64(ciphertext))
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    try:
        private_dir(target.parent)
        _write_atomically(target, text.encode("utf-8"))
    except OSError as exc:
        raise KeystoreError(_UNWRITABLE, path=str(target)) from exc
    log.info("keystore written to %s", target)
    return keys


def open_keystore(path: str | os.PathLike[str], passphrase: str) -> MasterKeys:
    """Decrypt the master keys of the keystore at ``path``.

    KeystoreError when the file is missing or unreadable, is not a keystore, or the passphrase
    is wrong or the file was changed (the two cannot be told apart).  A keystore of format
    version 1 (six keys) opens with its purchase key derived (:func:`derive_v1_purchase_key`);
    writing it again (:func:`create_keystore`) stores all seven keys in version 2.
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
        mode = source.stat().st_mode
    except FileNotFoundError:
        raise KeystoreError(_MISSING, path=str(source)) from None
    except OSError as exc:
        raise KeystoreError(_UNREADABLE, path=str(source)) from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("keystore %s can be read by other users (mode %o)", source, mode & 0o777)
    header, ciphertext = _parse_keystore(raw, source)
    params = header["kdf_params"]
    secret = _derive(
        passphrase if isinstance(passphrase, str) else "",
        _unb64(params["salt"], SALT_LEN),
        params["n"],
        params["r"],
        params["p"],
    )
    try:
        plain = AESGCM(secret).decrypt(_unb64(header["nonce"], NONCE_LEN), ciphertext, _aad(header))
        return MasterKeys._unpack(plain, header["version"])
    except (InvalidTag, ValueError):
        raise KeystoreError(path=str(source)) from None
