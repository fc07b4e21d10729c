"""A card image (what a card holds, saved as JSON), the status words, keys and ATRs of the emulated cards."""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol

from app.domain.card import CardKind
from app.errors import CardVendError
from app.fileio import write_atomically
from app.files import file_problem
from app.i18n import N_
from app.ports import KeyRole
from cardio.crypto import KEY_LEN
from cardio.crypto import diversify_card_key
from cardio.profile import FILE_SIZES

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
