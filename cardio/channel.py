"""An in-process :class:`app.ports.ApduChannel` to an emulated card (no pcscd needed).

Used by the fast tests and by the demo mode.  A card that vanishes during a command
(:meth:`cardio.emulator.UserCardOS.pull_after`) raises :class:`app.domain.card.CardRemoved`, and
the channel stays dead from then on, as a PC/SC connection to a pulled card does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from app.domain.card import CardRemoved
from cardio.emulator import CardOS
from cardio.emulator import CardVanished


class EmulatedChannel:
    """A connection to ``card_os``: the card is powered on when the channel opens."""

    def __init__(self, card_os: CardOS) -> None:
        self._card = card_os
        self._lock = threading.RLock()
        self._dead = False
        self._closed = False
        card_os.power_on()
        self._atr = card_os.atr

    @property
    def atr(self) -> bytes:
        """The ATR the card gave when the channel was opened."""
        return self._atr

    @property
    def dead(self) -> bool:
        """True once the card has left (the channel then only raises ``CardRemoved``)."""
        return self._dead

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        with self._lock:
            if self._closed:
                raise RuntimeError("transmit on a closed channel")
            if self._dead:
                raise CardRemoved()
            try:
                response = self._card.process(bytes(apdu))
            except CardVanished:
                self._dead = True
                raise CardRemoved() from None
        return response[:-2], int.from_bytes(response[-2:], "big")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Exclusive access for a multi-APDU sequence (re-entrant on the same thread)."""
        with self._lock:
            yield

    def close(self) -> None:
        with self._lock:
            if not self._closed and not self._dead:
                self._card.power_off()
            self._closed = True

    def __enter__(self) -> EmulatedChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
