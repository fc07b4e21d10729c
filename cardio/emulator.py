"""A card operating system in Python: the CardVend user card and the PSAM (cardio/PROFILE.md).

Used by the tests and by the demo mode, in-process (:mod:`cardio.channel`) or as a virtual card
behind pcscd (:mod:`cardio.vpcd`).  The card OS treats file contents as opaque bytes; it knows the
file system, the access conditions, the keys it was made with and the status words.

:class:`CardImage` is what a card keeps in its non-volatile memory (EEPROM): serial, state, kind,
files, its own five diversified keys and their retry counters.  It can be saved to a JSON file
atomically; :class:`UserCardOS` saves it before it answers a command that changed it, so a card
pulled in the middle of a command leaves every file with its old or its new content.

Volatile state (selected DF, security state, challenge) lives in :class:`UserCardOS` and is lost
on reset and power off.  Nothing here logs a key, a cryptogram or a MAC.
"""

from __future__ import annotations

import enum
import hmac
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from app.domain.card import PROFILE_VERSION, CardKind
from app.errors import CardVendError
from app.fileio import write_atomically
from app.files import file_problem
from app.i18n import N_
from app.ports import KeyRole
from cardio.crypto import (
    BLOCK,
    KEY_LEN,
    MAC_LEN,
    auth_cryptogram,
    challenge_iv,
    diversify_card_key,
    diversify_meter_key,
    mac4,
)
from cardio.profile import (
    APP_AID,
    APP_FID,
    FILE_SIZES,
    MF_FID,
    PSAM_AID,
    SFI_BACKUP_TARIFF,
    SFI_CURRENT_TARIFF,
    SFI_JOB,
    SFI_PARAMETERS,
    SFI_PURCHASE,
    SFI_WRITE_BACK,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- profile constants

# the layout is cardio/profile.py's; the card OS treats file contents as opaque bytes
__all__ = [
    "APP_AID",
    "APP_FID",
    "FILE_SIZES",
    "MF_FID",
    "PSAM_AID",
    "SFI_BACKUP_TARIFF",
    "SFI_CURRENT_TARIFF",
    "SFI_JOB",
    "SFI_PARAMETERS",
    "SFI_PURCHASE",
    "SFI_WRITE_BACK",
    "CardImage",
    "CardImageError",
    "CardOS",
    "CardState",
    "CardVanished",
    "PsamOS",
    "UserCardOS",
]

CARD_KEY_IDS = (
    KeyRole.ISSUER,
    KeyRole.COUNTER_AUTH,
    KeyRole.COUNTER_MAC,
    KeyRole.METER_AUTH,
    KeyRole.METER_MAC,
)
MAX_TRIES = 5
CHALLENGE_LEN = 8
SERIAL_LEN = 8
WRITE_BACK_BODY_LEN = 37
PURCHASE_BODY_LEN = 22
ISSUABLE_KINDS = frozenset(k.value for k in CardKind if k is not CardKind.BLANK)

# status words
SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_NOT_AUTHENTICATED = 0x6982
SW_KEY_BLOCKED = 0x6983
SW_NO_CHALLENGE = 0x6984
SW_CONDITIONS = 0x6985
SW_BAD_MAC = 0x6988
SW_MEMORY_FAILURE = 0x6581
SW_NOT_FOUND = 0x6A82
SW_WRONG_P1P2 = 0x6A86
SW_WRONG_OFFSET = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_UNKNOWN_ERROR = 0x6F00


def sw_tries_left(tries: int) -> int:
    """``63Cx``: authentication failed, x tries left."""
    return 0x63C0 | (tries & 0x0F)


def make_atr(historical: bytes) -> bytes:
    """``3B 8K 80 01 <historical K bytes> TCK`` (T=1); TCK is the XOR of every byte after TS."""
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes([tck])


def diversified_card_keys(master_keys: Mapping[int, bytes], serial: bytes) -> dict[int, bytes]:
    """The five keys a card is made with: K_card(id) for key ids 00..04 (what the card factory
    writes into a card's key file)."""
    return {int(i): diversify_card_key(master_keys[i], serial) for i in CARD_KEY_IDS}


class CardVanished(Exception):
    """The card left the reader during a command (fault injection: :meth:`pull_after`).

    Raised by ``process``; the transports turn it into a removed card (closed vpcd socket,
    :class:`app.domain.card.CardRemoved` on the in-process channel)."""


class CardOS(Protocol):
    """What a transport needs from an emulated card."""

    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> None: ...

    def reset(self) -> None: ...

    def power_off(self) -> None: ...

    def process(self, apdu: bytes) -> bytes: ...


# --------------------------------------------------------------------------- card image


class CardState(enum.IntEnum):
    BLANK = 0
    ISSUED = 1


IMAGE_FORMAT = 1


@dataclass
class CardImage:
    """A card's non-volatile memory. ``files`` (SFI -> content of the fixed size) exist only on an
    issued card; ``keys`` are the card's own diversified keys (its secret memory)."""

    serial: bytes
    keys: dict[int, bytes]
    state: CardState = CardState.BLANK
    kind: int = 0
    profile_version: int = 0
    files: dict[int, bytearray] = field(default_factory=dict)
    retries: dict[int, int] = field(default_factory=lambda: dict.fromkeys(CARD_KEY_IDS, MAX_TRIES))

    def __post_init__(self) -> None:
        self.serial = bytes(self.serial)
        if len(self.serial) != SERIAL_LEN:
            raise ValueError("a card serial is 8 bytes")
        self.state = CardState(self.state)
        self.keys = {int(k): bytes(v) for k, v in self.keys.items()}
        if set(self.keys) != {int(i) for i in CARD_KEY_IDS}:
            raise ValueError("a card holds exactly the keys 00..04")
        if any(len(v) != KEY_LEN for v in self.keys.values()):
            raise ValueError("card keys are 16 bytes")
        self.retries = {int(k): int(v) for k, v in self.retries.items()}
        for key_id in self.keys:
            self.retries.setdefault(key_id, MAX_TRIES)
            if not 0 <= self.retries[key_id] <= MAX_TRIES:
                raise ValueError(f"retry counter of key {key_id} out of range")
        self.files = {int(k): bytearray(v) for k, v in self.files.items()}
        if self.state is CardState.ISSUED:
            if set(self.files) != set(FILE_SIZES):
                raise ValueError("an issued card has the files 01..06")
            for sfi, content in self.files.items():
                if len(content) != FILE_SIZES[sfi]:
                    raise ValueError(f"file {sfi:02X} must be {FILE_SIZES[sfi]} bytes")
        elif self.files:
            raise ValueError("a blank card has no application files")

    @classmethod
    def blank(cls, serial: bytes, keys: Mapping[int, bytes]) -> CardImage:
        """A card as it leaves the factory: MF and its diversified keys, no application."""
        return cls(serial=serial, keys=dict(keys))

    def copy(self) -> CardImage:
        return CardImage(
            serial=self.serial,
            keys=dict(self.keys),
            state=self.state,
            kind=self.kind,
            profile_version=self.profile_version,
            files={k: bytearray(v) for k, v in self.files.items()},
            retries=dict(self.retries),
        )

    # ---- persistence

    def to_json(self) -> dict[str, Any]:
        return {
            "format": IMAGE_FORMAT,
            "serial": self.serial.hex(),
            "state": int(self.state),
            "kind": self.kind,
            "profile_version": self.profile_version,
            "files": {f"{k:02X}": bytes(v).hex() for k, v in sorted(self.files.items())},
            "keys": {f"{k:02X}": v.hex() for k, v in sorted(self.keys.items())},
            "retries": {f"{k:02X}": v for k, v in sorted(self.retries.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CardImage:
        if data.get("format") != IMAGE_FORMAT:
            raise ValueError(f"unknown card image format {data.get('format')!r}")
        return cls(
            serial=bytes.fromhex(data["serial"]),
            keys={int(k, 16): bytes.fromhex(v) for k, v in data["keys"].items()},
            state=CardState(data["state"]),
            kind=int(data["kind"]),
            profile_version=int(data["profile_version"]),
            files={int(k, 16): bytearray.fromhex(v) for k, v in data["files"].items()},
            retries={int(k, 16): int(v) for k, v in data["retries"].items()},
        )

    def to_bytes(self) -> bytes:
        """The image file's content (:meth:`load` reads it back)."""
        return json.dumps(self.to_json(), indent=1, sort_keys=True).encode("ascii")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the image atomically (app.fileio): a crash leaves the old or the new image."""
        write_atomically(path, self.to_bytes(), mode=0o600)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CardImage:
        """Read an image file; anything that is not a card image this CardVend wrote raises
        :class:`CardImageError` (one line that names the file and what is wrong with it)."""
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_IMAGE_BYTES + 1)
        except OSError as exc:
            raise CardImageError(path=str(path), reason=file_problem(exc)) from None
        if not raw.strip():
            raise CardImageError(path=str(path), reason=N_("the file is empty"))
        if len(raw) > MAX_IMAGE_BYTES:
            raise CardImageError(path=str(path), reason=N_("the file is far too large"))
        try:
            data = json.loads(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise CardImageError(
                path=str(path), reason=N_("it is not a card image (not JSON text)")
            ) from None
        if not isinstance(data, dict) or data.get("format") != IMAGE_FORMAT:
            raise CardImageError(path=str(path), reason=N_("it is not a card image"))
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            raise CardImageError(
                path=str(path), reason=N_("its content is damaged or incomplete")
            ) from None


MAX_IMAGE_BYTES = 64 * 1024  # a saved image is about 2 KB


class CardImageError(CardVendError, ValueError):
    """A card image file that cannot be used."""

    code = "card_image"
    template = N_(
        "The card image {path} cannot be used: {reason}. Use another image, or make a new "
        "blank card with 'cardvend card blank'."
    )


# --------------------------------------------------------------------------- APDU plumbing


class _Status(Exception):
    """An error status word; the command is answered with it."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass(frozen=True)
class _Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None: no Le; 256 for Le 00
    lc_present: bool

    @property
    def header(self) -> bytes:
        """``CLA INS P1 P2 Lc`` as sent (what a secure command's MAC covers)."""
        return bytes([self.cla, self.ins, self.p1, self.p2, len(self.data)])

    def expect_no_data(self) -> None:
        if self.lc_present:
            raise _Status(SW_WRONG_LENGTH)

    def expect_data(self) -> bytes:
        if not self.lc_present:
            raise _Status(SW_WRONG_LENGTH)
        return self.data


def _parse(raw: bytes) -> _Apdu:
    """Short APDUs only (cases 1 to 4); extended lengths and inconsistent Lc answer 6700."""
    if len(raw) < 4:
        raise _Status(SW_WRONG_LENGTH)
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    if len(raw) == 4:
        return _Apdu(cla, ins, p1, p2, b"", None, False)
    if len(raw) == 5:
        return _Apdu(cla, ins, p1, p2, b"", raw[4] or 256, False)
    lc = raw[4]
    if lc == 0:  # extended length
        raise _Status(SW_WRONG_LENGTH)
    if len(raw) == 5 + lc:
        return _Apdu(cla, ins, p1, p2, bytes(raw[5:]), None, True)
    if len(raw) == 6 + lc:
        return _Apdu(cla, ins, p1, p2, bytes(raw[5:-1]), raw[-1] or 256, True)
    raise _Status(SW_WRONG_LENGTH)


def _tlv(tag: bytes, value: bytes) -> bytes:
    if len(value) > 0x7F:
        raise ValueError("short TLV lengths only")
    return tag + bytes([len(value)]) + value


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


# --------------------------------------------------------------------------- common card base


class _EmulatedCard:
    """Locking, power and the fault hook shared by the user card and the PSAM."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pull: tuple[int, bool] | None = None

    @property
    def atr(self) -> bytes:
        raise NotImplementedError

    def power_on(self) -> None:
        with self._lock:
            self._clear_volatile()

    def reset(self) -> None:
        with self._lock:
            self._clear_volatile()

    def power_off(self) -> None:
        with self._lock:
            self._clear_volatile()

    def _clear_volatile(self) -> None:
        raise NotImplementedError

    def pull_after(self, n: int, *, applied: bool) -> None:
        """Fault injection: the card vanishes at the ``n``-th APDU from now (1 = the next one).

        ``applied=False``: before the card does anything with it.  ``applied=True``: after it has
        applied the command and persisted the result, but before it answers.  Either way
        :meth:`process` raises :class:`CardVanished` and the volatile state is lost."""
        if n < 1:
            raise ValueError("n counts APDUs from 1")
        with self._lock:
            self._pull = (n, applied)

    def cancel_pull(self) -> None:
        with self._lock:
            self._pull = None

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with response data followed by SW1 SW2."""
        with self._lock:
            vanish_after = False
            if self._pull is not None:
                n, applied = self._pull
                if n > 1:
                    self._pull = (n - 1, applied)
                else:
                    self._pull = None
                    if not applied:
                        self._vanish()
                    vanish_after = True
            try:
                response = self._dispatch(_parse(bytes(apdu)))
            except _Status as status:
                response = _sw(status.sw)
            except Exception:
                log.exception("card emulator failed on a command")
                response = _sw(SW_UNKNOWN_ERROR)
            if vanish_after:
                self._vanish()
            return response

    def _vanish(self) -> None:
        self._clear_volatile()
        raise CardVanished("the card was pulled")

    def _dispatch(self, apdu: _Apdu) -> bytes:
        raise NotImplementedError


# --------------------------------------------------------------------------- user card


class _Df(enum.Enum):
    MF = "MF"
    APP = "APP"


@dataclass(frozen=True)
class _SilentFault:
    updates: int  # secure updates still to be kept only in part
    stored: int  # bytes of each update's data that reach the memory
    sfi: int | None  # only updates of this file; None: any file


class UserCardOS(_EmulatedCard):
    """The operating system of a CardVend card (user and management cards alike).

    ``persist_path``: where the image is saved (atomically) after every change, before the
    answer.  Without it the image lives only in memory.  ``rng`` gives the challenges."""

    def __init__(
        self,
        image: CardImage,
        *,
        persist_path: str | os.PathLike[str] | None = None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__()
        self.image = image
        self.persist_path = Path(persist_path) if persist_path is not None else None
        self._rng = rng
        self._selected = _Df.MF
        self._authenticated: set[int] = set()
        self._challenge: bytes | None = None
        self._silent: _SilentFault | None = None

    # ---- fault injection

    def keep_old_bytes(self, updates: int = 1, *, stored: int = 0, sfi: int | None = None) -> None:
        """Fault injection: a card whose memory fails without saying so.  The next ``updates``
        secure UPDATE BINARY commands (of file ``sfi`` only, when given) are answered as if
        they succeeded (9000 and the next challenge), but the card stores only the first
        ``stored`` bytes of each one's data: the rest of the file keeps its old bytes.  Only a
        read-back shows it.  Works the same in-process and behind vpcd (it is the card's)."""
        if updates < 1 or stored < 0:
            raise ValueError("updates counts from 1 and stored is not negative")
        if sfi is not None and sfi not in FILE_SIZES:
            raise ValueError(f"no file with SFI {sfi}")
        with self._lock:
            self._silent = _SilentFault(updates, stored, sfi)

    def cancel_faults(self) -> None:
        """Ends :meth:`keep_old_bytes` and :meth:`pull_after`."""
        with self._lock:
            self._silent = None
        self.cancel_pull()

    def _stored_part(self, sfi: int, length: int) -> int:
        """How many bytes of an update of ``length`` bytes to file ``sfi`` the memory keeps."""
        fault = self._silent
        if fault is None or (fault.sfi is not None and fault.sfi != sfi):
            return length
        left = fault.updates - 1
        self._silent = _SilentFault(left, fault.stored, fault.sfi) if left else None
        return min(fault.stored, length)

    # ---- volatile state

    def _clear_volatile(self) -> None:
        self._selected = _Df.MF
        self._authenticated = set()
        self._challenge = None

    @property
    def serial(self) -> bytes:
        return self.image.serial

    @property
    def authenticated(self) -> frozenset[int]:
        """Key ids whose EXTERNAL AUTHENTICATE succeeded since the last reset (for tests)."""
        with self._lock:
            return frozenset(self._authenticated)

    @property
    def atr(self) -> bytes:
        with self._lock:
            kind = self.image.kind if self.image.state is CardState.ISSUED else 0
            hist = b"CVELEC" + bytes([kind, int(self.image.state), 0, 0])
            return make_atr(hist)

    # ---- persistence

    def _commit(self, change: Callable[[CardImage], None]) -> None:
        """Apply ``change`` to a copy of the image, save the copy, then swap it in.  If saving
        fails the card answers 6581 and nothing has changed."""
        new = self.image.copy()
        change(new)
        if self.persist_path is not None:
            try:
                new.save(self.persist_path)
            except OSError:
                log.exception("card emulator could not save its image")
                raise _Status(SW_MEMORY_FAILURE) from None
        for f in fields(CardImage):
            setattr(self.image, f.name, getattr(new, f.name))

    # ---- dispatch

    def _dispatch(self, apdu: _Apdu) -> bytes:
        if apdu.cla == 0x00:
            handler = {
                0xA4: self._select,
                0xB0: self._read_binary,
                0x84: self._get_challenge,
                0x82: self._external_authenticate,
                0xD6: self._plain_update,
            }.get(apdu.ins)
        elif apdu.cla == 0x04:
            handler = {0xD6: self._secure_update}.get(apdu.ins)
        elif apdu.cla == 0x80:
            handler = {0xE0: self._issue, 0x0E: self._erase}.get(apdu.ins)
        else:
            raise _Status(SW_CLA_NOT_SUPPORTED)
        if handler is None:
            raise _Status(SW_INS_NOT_SUPPORTED)
        return handler(apdu)

    def _fci(self, name: bytes) -> bytes:
        issued = self.image.state is CardState.ISSUED
        a5 = (
            _tlv(b"\x9f\x0c", self.image.serial)
            + _tlv(b"\xc1", bytes([int(self.image.state)]))
            + _tlv(b"\xc2", bytes([self.image.kind if issued else 0]))
            + _tlv(b"\xc3", bytes([self.image.profile_version if issued else 0]))
        )
        return _tlv(b"\x6f", _tlv(b"\x84", name) + _tlv(b"\xa5", a5))

    def _enter(self, df: _Df) -> None:
        if df is not self._selected:
            self._authenticated = set()  # the security state belongs to the DF left behind
        self._selected = df

    def _select(self, apdu: _Apdu) -> bytes:
        data = apdu.expect_data()
        if apdu.p2 != 0x00:
            raise _Status(SW_WRONG_P1P2)
        if apdu.p1 == 0x00:
            if len(data) != 2:
                raise _Status(SW_WRONG_LENGTH)
            fid = int.from_bytes(data, "big")
            if fid == MF_FID:
                self._enter(_Df.MF)
                return self._fci(data) + _sw(SW_OK)
            if fid != APP_FID:
                raise _Status(SW_NOT_FOUND)
        elif apdu.p1 == 0x04:
            if data != APP_AID:
                raise _Status(SW_NOT_FOUND)
        else:
            raise _Status(SW_WRONG_P1P2)
        if self.image.state is not CardState.ISSUED:
            raise _Status(SW_NOT_FOUND)
        self._enter(_Df.APP)
        return self._fci(APP_AID) + _sw(SW_OK)

    def _file(self, p1: int) -> tuple[int, bytearray]:
        """The EF addressed by ``P1 = 80 + SFI`` in the selected application."""
        if p1 & 0xE0 != 0x80 or p1 & 0x1F == 0:
            raise _Status(SW_WRONG_P1P2)
        sfi = p1 & 0x1F
        if self._selected is not _Df.APP or sfi not in self.image.files:
            raise _Status(SW_NOT_FOUND)
        return sfi, self.image.files[sfi]

    def _read_binary(self, apdu: _Apdu) -> bytes:
        apdu.expect_no_data()
        if apdu.le is None:
            raise _Status(SW_WRONG_LENGTH)
        _, content = self._file(apdu.p1)
        offset = apdu.p2
        if offset >= len(content):
            raise _Status(SW_WRONG_OFFSET)
        return bytes(content[offset : offset + apdu.le]) + _sw(SW_OK)

    def _get_challenge(self, apdu: _Apdu) -> bytes:
        apdu.expect_no_data()
        if apdu.le != CHALLENGE_LEN:
            raise _Status(SW_WRONG_LENGTH)
        if apdu.p1 or apdu.p2:
            raise _Status(SW_WRONG_P1P2)
        self._challenge = self._new_challenge()
        return self._challenge + _sw(SW_OK)

    def _new_challenge(self) -> bytes:
        challenge = bytes(self._rng(CHALLENGE_LEN))
        if len(challenge) != CHALLENGE_LEN:
            raise RuntimeError("the challenge source gave the wrong length")
        return challenge

    def _take_challenge(self) -> bytes | None:
        challenge, self._challenge = self._challenge, None
        return challenge

    def _external_authenticate(self, apdu: _Apdu) -> bytes:
        challenge = self._take_challenge()  # consumed whatever the outcome
        data = apdu.expect_data()
        if len(data) != 2 * CHALLENGE_LEN:
            raise _Status(SW_WRONG_LENGTH)
        key_id = apdu.p2
        if apdu.p1 != 0x00 or key_id not in self.image.keys:
            raise _Status(SW_WRONG_P1P2)
        tries = self.image.retries[key_id]
        if tries == 0:
            raise _Status(SW_KEY_BLOCKED)
        if challenge is None:
            raise _Status(SW_NO_CHALLENGE)
        expected = auth_cryptogram(self.image.keys[key_id], challenge)
        if not hmac.compare_digest(expected, data):
            left = tries - 1

            def count_failure(img: CardImage) -> None:
                img.retries[key_id] = left

            self._commit(count_failure)
            raise _Status(sw_tries_left(left))
        if tries != MAX_TRIES:

            def reset_counter(img: CardImage) -> None:
                img.retries[key_id] = MAX_TRIES

            self._commit(reset_counter)
        self._authenticated.add(key_id)
        return _sw(SW_OK)

    @staticmethod
    def _roles_for(sfi: int) -> tuple[int, int]:
        """(authentication key id, MAC key id) that guard updates of a file."""
        if sfi == SFI_WRITE_BACK:
            return KeyRole.METER_AUTH, KeyRole.METER_MAC
        return KeyRole.COUNTER_AUTH, KeyRole.COUNTER_MAC

    def _plain_update(self, apdu: _Apdu) -> bytes:
        """UPDATE BINARY without secure messaging: every file needs a MAC, so it is refused."""
        apdu.expect_data()
        self._file(apdu.p1)
        raise _Status(SW_NOT_AUTHENTICATED)

    def _secure_update(self, apdu: _Apdu) -> bytes:
        challenge = self._take_challenge()  # any MAC attempt uses the challenge up
        data = apdu.expect_data()
        if len(data) <= MAC_LEN:
            raise _Status(SW_WRONG_LENGTH)
        sfi, content = self._file(apdu.p1)
        auth_key, mac_key = self._roles_for(sfi)
        if auth_key not in self._authenticated:
            raise _Status(SW_NOT_AUTHENTICATED)
        if challenge is None:
            raise _Status(SW_NO_CHALLENGE)
        body, mac = data[:-MAC_LEN], data[-MAC_LEN:]
        expected = mac4(self.image.keys[mac_key], challenge_iv(challenge), apdu.header + body)
        if not hmac.compare_digest(expected, mac):
            raise _Status(SW_BAD_MAC)
        offset = apdu.p2
        if offset + len(body) > len(content):
            raise _Status(SW_WRONG_OFFSET)
        new_content = bytearray(content)
        kept = self._stored_part(sfi, len(body))  # all of it, unless a fault is injected
        new_content[offset : offset + kept] = body[:kept]

        def write(img: CardImage) -> None:
            img.files[sfi] = new_content

        self._commit(write)
        self._challenge = self._new_challenge()
        return self._challenge + _sw(SW_OK)

    def _issue(self, apdu: _Apdu) -> bytes:
        apdu.expect_no_data()
        kind = apdu.p2
        if apdu.p1 != 0x00 or kind not in ISSUABLE_KINDS:
            raise _Status(SW_WRONG_P1P2)
        if self.image.state is CardState.ISSUED:
            raise _Status(SW_CONDITIONS)
        if KeyRole.ISSUER not in self._authenticated:
            raise _Status(SW_NOT_AUTHENTICATED)

        def issue(img: CardImage) -> None:
            img.state = CardState.ISSUED
            img.kind = kind
            img.profile_version = PROFILE_VERSION
            img.files = {sfi: bytearray(size) for sfi, size in FILE_SIZES.items()}

        self._commit(issue)
        self._selected = _Df.APP
        self._authenticated = set()
        return self._fci(APP_AID) + _sw(SW_OK)

    def _erase(self, apdu: _Apdu) -> bytes:
        apdu.expect_no_data()
        if apdu.p1 or apdu.p2:
            raise _Status(SW_WRONG_P1P2)
        if self.image.state is not CardState.ISSUED:
            raise _Status(SW_CONDITIONS)
        if KeyRole.ISSUER not in self._authenticated:
            raise _Status(SW_NOT_AUTHENTICATED)

        def erase(img: CardImage) -> None:
            img.state = CardState.BLANK
            img.kind = 0
            img.profile_version = 0
            img.files = {}

        self._commit(erase)
        self._selected = _Df.MF
        self._authenticated = set()
        return _sw(SW_OK)


# --------------------------------------------------------------------------- PSAM


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
        if p2 != 0x00:
            raise _Status(SW_WRONG_P1P2)
        if len(data) != SERIAL_LEN + WRITE_BACK_BODY_LEN + MAC_LEN:
            raise _Status(SW_WRONG_LENGTH)
        serial, body = data[:SERIAL_LEN], data[SERIAL_LEN:-MAC_LEN]
        if not hmac.compare_digest(self._write_back_mac(serial, body), data[-MAC_LEN:]):
            raise _Status(SW_BAD_MAC)
        return b""

    def _compute_write_back(self, p2: int, data: bytes) -> bytes:
        if p2 != 0x00:
            raise _Status(SW_WRONG_P1P2)
        if len(data) != SERIAL_LEN + WRITE_BACK_BODY_LEN:
            raise _Status(SW_WRONG_LENGTH)
        return self._write_back_mac(data[:SERIAL_LEN], data[SERIAL_LEN:])

    def _purchase_mac(self, serial: bytes, body: bytes) -> bytes:
        master = self._keys.get(KeyRole.PURCHASE)
        if master is None:
            raise _Status(SW_CONDITIONS)
        return mac4(diversify_card_key(master, serial), bytes(BLOCK), serial + body)

    def _compute_purchase(self, p2: int, data: bytes) -> bytes:
        if p2 != 0x00:
            raise _Status(SW_WRONG_P1P2)
        if len(data) != SERIAL_LEN + PURCHASE_BODY_LEN:
            raise _Status(SW_WRONG_LENGTH)
        return self._purchase_mac(data[:SERIAL_LEN], data[SERIAL_LEN:])

    def _verify_purchase(self, p2: int, data: bytes) -> bytes:
        if p2 != 0x00:
            raise _Status(SW_WRONG_P1P2)
        if len(data) != SERIAL_LEN + PURCHASE_BODY_LEN + MAC_LEN:
            raise _Status(SW_WRONG_LENGTH)
        serial, body = data[:SERIAL_LEN], data[SERIAL_LEN:-MAC_LEN]
        if not hmac.compare_digest(self._purchase_mac(serial, body), data[-MAC_LEN:]):
            raise _Status(SW_BAD_MAC)
        return b""
