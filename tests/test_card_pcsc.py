"""The whole card path for real: ApduTerminal -> PcscChannel (pyscard) -> pcscd -> vpcd ->
the emulated card OS, which persists its image after every change."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest

from app.domain.card import CardAuthError
from app.domain.card import CardKind
from app.domain.card import CardRemoved
from app.domain.card import CardWrite
from app.domain.card import ParameterRecord
from app.domain.card import PurchaseRecord
from app.ports import KeyRole
from cardio.emulator import CardImage
from cardio.emulator import UserCardOS
from cardio.keys import MasterKeys
from cardio.keys import SoftwareKeyProvider
from cardio.pcsc import PcscChannel
from cardio.pcsc import PcscReaderPort
from cardio.terminal import ApduTerminal
from cardio.vpcd import VpcdCard
from tests.pcsc_fixtures import READER_SLOT0
from tests.pcsc_fixtures import Pcscd
from tests.pcsc_fixtures import wait_card_absent
from tests.rigs.user_card import user_params

CST = dt.timezone(dt.timedelta(hours=8))
WAIT = 15.0


@dataclass
class Rig:
    master: MasterKeys
    keys: SoftwareKeyProvider
    card: UserCardOS
    server: VpcdCard
    port: PcscReaderPort
    path: Path
    channels: list[PcscChannel] = field(default_factory=list)

    def connect(self) -> PcscChannel:
        channel = self.port.connect(READER_SLOT0, timeout=WAIT)
        self.channels.append(channel)  # closed at teardown: an open one keeps the reader in use
        return channel

    def terminal(self, keys: object = None) -> ApduTerminal:
        return ApduTerminal(self.connect(), keys or self.keys, utility_code="100001")  # type: ignore[arg-type]

    def reinsert(self) -> None:
        self.server.insert()


def params(version: int = 1) -> ParameterRecord:
    return user_params(param_version=version)


def purchase(count: int, amount: int = 10000) -> PurchaseRecord:
    return PurchaseRecord(
        amount, count, count.to_bytes(8, "big"), dt.datetime(2026, 3, 1, 9, count % 60, tzinfo=CST)
    )


@pytest.fixture
def rig(pcscd: Pcscd, tmp_path: Path) -> Iterator[Rig]:
    master = MasterKeys.generate()
    serial = os.urandom(8)
    keys = {int(r): k for r, k in master.diversified_card_keys(serial).items()}
    path = tmp_path / "card.json"
    CardImage.blank(serial, keys).save(path)
    card = UserCardOS(CardImage.load(path), persist_path=path)
    server = VpcdCard(card, slot=0, min_out_time=1.0).start()
    port = PcscReaderPort()
    rig = Rig(master, SoftwareKeyProvider(master), card, server, port, path)
    try:
        ch = rig.connect()
        ApduTerminal(ch, rig.keys).issue(CardKind.USER)
        ch.close()
        yield rig
    finally:
        for channel in rig.channels:
            channel.close()
        server.stop()
        port.close()
        wait_card_absent()


def test_issue_write_read_through_pcscd(rig: Rig) -> None:
    t = rig.terminal()
    first = t.write(CardWrite(parameters=params(), purchase=purchase(1)))
    assert first.files == ("parameter file", "purchase file")
    t.apdu_count = 0
    result = t.write(CardWrite(purchase=purchase(2, 5000)), expect_serial=rig.card.serial)
    # select, challenge, external authenticate, challenge, secure update, read back
    assert result.apdus == t.apdu_count == 6
    contents = rig.terminal().read()
    assert contents.kind == CardKind.USER and contents.serial == rig.card.serial
    assert contents.parameters == params()
    assert contents.purchase == purchase(2, 5000)
    reloaded = CardImage.load(rig.path)  # the card persisted what it acknowledged
    assert reloaded.files == rig.card.image.files


def test_wrong_keys_and_bad_mac_are_refused(rig: Rig) -> None:
    t = rig.terminal()
    t.write(CardWrite(parameters=params(), purchase=purchase(1)))
    stranger = SoftwareKeyProvider(MasterKeys.generate())
    with pytest.raises(CardAuthError, match="4 tries left"):
        rig.terminal(stranger).write(CardWrite(purchase=purchase(2)))

    class BadMac(SoftwareKeyProvider):
        def command_mac(self, role: KeyRole, card_serial: bytes, iv: bytes, data: bytes) -> bytes:
            good = super().command_mac(role, card_serial, iv, data)
            return bytes([good[0] ^ 1]) + good[1:]

    with pytest.raises(CardAuthError, match="bad MAC"):
        rig.terminal(BadMac(rig.master)).write(CardWrite(purchase=purchase(2)))
    assert rig.terminal().read().purchase == purchase(1)  # nothing changed


@pytest.mark.parametrize("applied", [False, True], ids=["before", "after"])
def test_card_pulled_at_every_apdu_of_a_write(rig: Rig, applied: bool) -> None:
    rig.terminal().write(CardWrite(parameters=params(1), purchase=purchase(1)))
    old = (params(1), purchase(1))
    new = (params(2), purchase(2, 7777))
    apdus = 9  # select, challenge, auth, challenge, 2 updates, 2 read-backs (+1 spare)
    outcomes = set()
    for n in range(1, apdus + 1):
        terminal = rig.terminal()
        state_before = rig.terminal().read()
        current = (state_before.parameters, state_before.purchase)
        rig.card.pull_after(n, applied=applied)
        try:
            terminal.write(CardWrite(parameters=new[0], purchase=new[1]))
        except CardRemoved:
            rig.reinsert()
        else:
            rig.card.cancel_pull()
            outcomes.add("completed")
        after = rig.terminal().read()  # never a corrupt file
        assert after.parameters in (old[0], new[0], current[0])
        assert after.purchase in (old[1], new[1], current[1])
        persisted = UserCardOS(CardImage.load(rig.path))
        assert persisted.image.files == rig.card.image.files
        outcomes.add((after.parameters == new[0], after.purchase == new[1]))
        # back to the old content for the next round
        rig.terminal().write(CardWrite(parameters=old[0], purchase=old[1]))
    assert "completed" in outcomes  # the write fits in the APDUs tried
    assert (False, False) in outcomes
