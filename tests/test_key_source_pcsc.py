"""The program's one key provider with a PSAM, for real: the security module sits in the second
vpcd slot behind pcscd, user cards come and go in the first. ``KeySource`` connects to the PSAM
once for any number of cards and gives the reader back on ``close()``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.context import AppContext
from app.domain.card import CardKind
from app.ports import KeyRole
from cardio import wiring
from cardio.emulator import CardImage
from cardio.emulator import PsamOS
from cardio.emulator import UserCardOS
from cardio.keys import MasterKeys
from cardio.pcsc import PcscReaderPort
from cardio.terminal import ApduTerminal
from cardio.vpcd import VpcdCard
from tests.pcsc_fixtures import READER_SLOT0
from tests.pcsc_fixtures import READER_SLOT1
from tests.pcsc_fixtures import Pcscd
from tests.pcsc_fixtures import wait_card_absent
from tests.rigs.context import make_ctx

WAIT = 15.0


class CountingPsam(PsamOS):
    """The emulated PSAM, counting the sessions opened on it (each one selects it) and the
    resets a reader gave it (a disconnect resets it, so nobody inherits its state)."""

    selects = 0
    resets = 0

    def process(self, apdu: bytes) -> bytes:
        if apdu[1:2] == b"\xa4":
            type(self).selects += 1
        return super().process(apdu)

    def reset(self) -> None:
        type(self).resets += 1
        super().reset()


@pytest.fixture
def psam_and_card(pcscd: Pcscd, tmp_path: Path) -> Iterator[tuple[AppContext, Path]]:
    master = MasterKeys.generate()
    CountingPsam.selects = CountingPsam.resets = 0
    module = CountingPsam({int(r): master.key(r) for r in KeyRole}, b"PSAM" + os.urandom(4))
    serial = os.urandom(8)
    image = tmp_path / "card.json"
    CardImage.blank(
        serial, {int(r): k for r, k in master.diversified_card_keys(serial).items()}
    ).save(image)
    card = UserCardOS(CardImage.load(image), persist_path=image)
    ctx = make_ctx(tmp_path / "home", key_provider="psam", psam_reader=READER_SLOT1)
    with VpcdCard(module, slot=1), VpcdCard(card, slot=0, min_out_time=1.0):
        for reader in (READER_SLOT1, READER_SLOT0):  # both seen by pcscd before the test starts
            PcscReaderPort().connect(reader, timeout=WAIT).close()
        yield ctx, image
    wait_card_absent(READER_SLOT0)
    wait_card_absent(READER_SLOT1)


def test_one_psam_session_serves_many_cards_and_close_gives_the_reader_back(
    psam_and_card: tuple[AppContext, Path],
) -> None:
    ctx, _ = psam_and_card
    source = wiring.KeySource(ctx)
    port = PcscReaderPort()
    keys = source.get()
    assert source.get() is keys  # built once
    for kind in (CardKind.USER, CardKind.CHECK, CardKind.USER):  # three card sessions
        channel = port.connect(READER_SLOT0, timeout=WAIT)
        try:
            terminal = ApduTerminal(channel, source.get(), utility_code="100001")
            terminal.issue(kind)  # authenticated and MAC'd by the PSAM
            assert terminal.read().kind is kind
            terminal.erase()
        finally:
            channel.close()
    assert CountingPsam.selects == 1  # one PSAM session for all of them
    channel = keys._channel  # type: ignore[attr-defined]
    assert not channel.closed
    resets = CountingPsam.resets
    source.close()
    assert channel.closed
    deadline = time.monotonic() + WAIT  # the reset reaches the module through pcscd and vpcd
    while CountingPsam.resets == resets and time.monotonic() < deadline:
        time.sleep(0.05)
    assert CountingPsam.resets > resets  # disconnected with a reset: the reader is given back
    again = source.get()  # a closed source builds a new provider (a new session) on next use
    assert again is not keys
    source.close()
