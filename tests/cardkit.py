"""Emulated cards for service tests: blank images made with a fresh set of master keys."""

from __future__ import annotations

import os
from pathlib import Path

from cardio.channel import EmulatedChannel
from cardio.emulator import CardImage
from cardio.emulator import UserCardOS
from cardio.keys import MasterKeys
from cardio.keys import SoftwareKeyProvider
from cardio.terminal import ApduTerminal

UTILITY = "100001"


class CardKit:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.master = MasterKeys.generate()
        self.keys = SoftwareKeyProvider(self.master)
        self._n = 0

    def blank(self) -> Path:
        self._n += 1
        serial = os.urandom(8)
        keys = {int(r): k for r, k in self.master.diversified_card_keys(serial).items()}
        path = self.folder / f"card{self._n}.json"
        CardImage.blank(serial, keys).save(path)
        return path

    def os(self, image: Path) -> UserCardOS:
        return UserCardOS(CardImage.load(image), persist_path=image)

    def terminal(self, image: Path, card: UserCardOS | None = None) -> ApduTerminal:
        """The card in a reader: a fresh power-on of the image (or of ``card``)."""
        return ApduTerminal(
            EmulatedChannel(card or self.os(image)), self.keys, utility_code=UTILITY
        )
