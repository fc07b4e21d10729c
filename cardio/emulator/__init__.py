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

from cardio.emulator.image import CardImage
from cardio.emulator.image import CardImageError
from cardio.emulator.image import CardOS
from cardio.emulator.image import CardState
from cardio.emulator.image import CardVanished
from cardio.emulator.image import diversified_card_keys
from cardio.emulator.psam import PsamOS
from cardio.emulator.user_card import UserCardOS

__all__ = [
    "CardImage",
    "CardImageError",
    "CardOS",
    "CardState",
    "CardVanished",
    "PsamOS",
    "UserCardOS",
    "diversified_card_keys",
]
