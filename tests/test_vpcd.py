"""The card emulator as a virtual card behind a real pcscd (vpcd driver), driven through pyscard.

The session fixture ``pcscd`` comes from tests/pcsc_fixtures.py through conftest."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterator

import pytest

from app.domain.card import CardKind
from app.errors import ValidationError
from app.ports import KeyRole
from cardio.crypto import auth_cryptogram
from cardio.crypto import challenge_iv
from cardio.crypto import mac4
from cardio.emulator import CardImage
from cardio.emulator import PsamOS
from cardio.emulator import UserCardOS
from cardio.emulator import diversified_card_keys
from cardio.profile import APP_AID
from cardio.profile import PSAM_AID
from cardio.vpcd import VPCD_PORT
from cardio.vpcd import VPCD_PORT_ENV
from cardio.vpcd import VPCD_SLOTS
from cardio.vpcd import VpcdCard
from cardio.vpcd import port_for_slot
from tests.pcsc_fixtures import READER_SLOT0
from tests.pcsc_fixtures import READER_SLOT1
from tests.pcsc_fixtures import Pcscd
from tests.pcsc_fixtures import free_vpcd_port

MASTER = {i: bytes([0x50 + i]) * 16 for i in range(6)}
SELECT_APP = bytes.fromhex("00A404000A") + APP_AID
GET_CHALLENGE = bytes.fromhex("0084000008")
READ_PARAMS = bytes.fromhex("00B0810000")
READ_PURCHASE = bytes.fromhex("00B0820000")
POLL = 0.02
CARD_TIMEOUT = 10.0


def _pcsc() -> tuple[object, type[Exception], type[Exception]]:
    from smartcard.Exceptions import CardConnectionException
    from smartcard.Exceptions import NoCardException
    from smartcard.System import readers

    return readers, NoCardException, CardConnectionException


def wait_for_card(reader_name: str, atr: bytes, timeout: float = CARD_TIMEOUT) -> object:
    """A connected pyscard connection once pcscd sees a card with ``atr`` in the reader."""
    readers, no_card, conn_error = _pcsc()
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        reader = next((r for r in readers() if str(r) == reader_name), None)  # type: ignore[operator]
        if reader is not None:
            connection = reader.createConnection()
            try:
                connection.connect()
            except (no_card, conn_error) as exc:
                last = exc
            else:
                if bytes(connection.getATR()) == atr:
                    return connection
            disconnect(connection)
        time.sleep(POLL)
    pytest.fail(
        f"no card in {reader_name!r} after {timeout:.0f} s (last error: {last}); a vpcd slot "
        "serves one card: is a test outside the pcscd fixture's lock using it right now?"
    )


def send(connection: object, apdu: bytes) -> tuple[bytes, int]:
    data, sw1, sw2 = connection.transmit(list(apdu))  # type: ignore[attr-defined]
    return bytes(data), (sw1 << 8) | sw2


def disconnect(connection: object) -> None:
    """Disconnect and release the connection's own PC/SC context now, not in ``__del__`` (which
    would complain after a pcscd started for the session has gone)."""
    with contextlib.suppress(Exception):
        connection.disconnect()  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        connection.release()  # type: ignore[attr-defined]


def new_user_card() -> UserCardOS:
    serial = b"\x86" + os.urandom(7)  # unique: tells our card from anything else in the slot
    image = CardImage.blank(serial, diversified_card_keys(MASTER, serial))
    card = UserCardOS(image)
    challenge = card.process(GET_CHALLENGE)[:-2]
    key = image.keys[KeyRole.ISSUER]
    assert card.process(bytes.fromhex("0082000010") + auth_cryptogram(key, challenge))[-2:] == (
        b"\x90\x00"
    )
    assert card.process(bytes([0x80, 0xE0, 0x00, CardKind.USER, 0x00]))[-2:] == b"\x90\x00"
    card.reset()
    return card


@pytest.fixture
def served(pcscd: Pcscd) -> Iterator[tuple[UserCardOS, VpcdCard]]:
    card = new_user_card()
    virtual = VpcdCard(card, slot=0).start()
    try:
        yield card, virtual
    finally:
        virtual.stop()


def test_pcscd_lists_the_virtual_readers(pcscd: Pcscd) -> None:
    assert READER_SLOT0 in pcscd.readers


def test_select_read_and_write_through_pcscd(served: tuple[UserCardOS, VpcdCard]) -> None:
    card, _ = served
    connection = wait_for_card(READER_SLOT0, card.atr)
    try:
        assert bytes(connection.getATR()) == card.atr  # type: ignore[attr-defined]
        assert card.atr[:10] == bytes.fromhex("3B8A80014356454C4543")
        fci, sw = send(connection, SELECT_APP)
        assert sw == 0x9000 and card.serial in fci
        assert send(connection, READ_PARAMS) == (bytes(64), 0x9000)
        # the 7-APDU purchase write, through pcscd
        keys = card.image.keys
        challenge, sw = send(connection, GET_CHALLENGE)
        cryptogram = auth_cryptogram(keys[KeyRole.COUNTER_AUTH], challenge)
        assert send(connection, bytes.fromhex("0082000110") + cryptogram)[1] == 0x9000
        challenge, sw = send(connection, GET_CHALLENGE)
        body = b"\x68\x00\x16" + bytes(range(22)) + b"\x12\x34\x16"
        header = bytes([0x04, 0xD6, 0x82, 0x00, len(body) + 4])
        mac = mac4(keys[KeyRole.COUNTER_MAC], challenge_iv(challenge), header + body)
        next_challenge, sw = send(connection, header + body + mac)
        assert sw == 0x9000 and len(next_challenge) == 8
        assert send(connection, READ_PURCHASE) == (body + bytes(4), 0x9000)
        # the replayed update is refused
        assert send(connection, header + body + mac)[1] == 0x6988
    finally:
        disconnect(connection)


def test_round_trip_time(
    served: tuple[UserCardOS, VpcdCard], capsys: pytest.CaptureFixture[str]
) -> None:
    card, _ = served
    connection = wait_for_card(READER_SLOT0, card.atr)
    try:
        assert send(connection, SELECT_APP)[1] == 0x9000
        send(connection, READ_PARAMS)  # warm up
        count = 50
        start = time.perf_counter()
        for _ in range(count):
            assert send(connection, READ_PARAMS)[1] == 0x9000
        elapsed = time.perf_counter() - start
    finally:
        disconnect(connection)
    with capsys.disabled():
        print(
            f"\nvpcd round trip: {elapsed / count * 1000:.3f} ms per APDU "
            f"({count} READ BINARY of 64 bytes through pcscd, {elapsed * 1000:.1f} ms in all)"
        )


def test_remove_and_insert(served: tuple[UserCardOS, VpcdCard]) -> None:
    _, no_card, conn_error = _pcsc()
    card, virtual = served
    connection = wait_for_card(READER_SLOT0, card.atr)
    assert send(connection, SELECT_APP)[1] == 0x9000
    assert send(connection, bytes.fromhex("0082000110") + bytes(16))[1] == 0x6984
    virtual.remove()
    assert not virtual.connected and not virtual.inserted
    with pytest.raises((no_card, conn_error)):
        send(connection, READ_PARAMS)
    disconnect(connection)

    virtual.insert()
    connection = wait_for_card(READER_SLOT0, card.atr)
    try:
        assert virtual.connected
        assert send(connection, SELECT_APP)[1] == 0x9000
        assert send(connection, READ_PARAMS) == (bytes(64), 0x9000)
    finally:
        disconnect(connection)


def test_card_vanishing_mid_command_closes_the_link(served: tuple[UserCardOS, VpcdCard]) -> None:
    _, no_card, conn_error = _pcsc()
    card, virtual = served
    connection = wait_for_card(READER_SLOT0, card.atr)
    assert send(connection, SELECT_APP)[1] == 0x9000
    card.pull_after(1, applied=False)
    with pytest.raises((no_card, conn_error)):
        send(connection, READ_PARAMS)
    disconnect(connection)
    deadline = time.monotonic() + CARD_TIMEOUT
    while virtual.connected and time.monotonic() < deadline:
        time.sleep(POLL)
    assert not virtual.connected and not virtual.inserted  # out until put back
    virtual.insert()
    connection = wait_for_card(READER_SLOT0, card.atr)
    try:
        assert send(connection, SELECT_APP)[1] == 0x9000
    finally:
        disconnect(connection)


def test_psam_in_the_second_slot_authenticates_the_user_card(
    served: tuple[UserCardOS, VpcdCard],
) -> None:
    card, _ = served
    module = PsamOS(MASTER, b"\x50\x53\x41\x4d" + os.urandom(4))
    with VpcdCard(module, slot=1):
        sam = wait_for_card(READER_SLOT1, module.atr)
        user = wait_for_card(READER_SLOT0, card.atr)
        try:
            assert send(sam, bytes.fromhex("00A404000A") + PSAM_AID)[1] == 0x9000
            assert send(user, SELECT_APP)[1] == 0x9000
            challenge, _ = send(user, GET_CHALLENGE)
            cryptogram, sw = send(sam, bytes.fromhex("80FA000110") + card.serial + challenge)
            assert sw == 0x9000
            assert send(user, bytes.fromhex("0082000110") + cryptogram)[1] == 0x9000
        finally:
            disconnect(sam)
            disconnect(user)


def test_a_pcscd_started_here_moves_off_a_taken_vpcd_port(pcscd: Pcscd) -> None:
    """A CI run once found the driver's default port held by another process: the driver could
    not listen, pcscd listed no reader, and every card test failed.  A pcscd started by the suite
    listens on the next free ports, and the emulator, told by CARDVEND_VPCD_PORT, follows."""
    if not pcscd.owned:
        pytest.skip("the running pcscd was not started by this test session")
    taken = pcscd.port
    pcscd.stop()
    moved = Pcscd(pcscd.binary)
    try:
        with socket.create_server(("0.0.0.0", taken)):  # another program's server on the port
            moved.start()
            assert moved.port != taken
            assert os.environ[VPCD_PORT_ENV] == str(moved.port)
            card = new_user_card()
            with VpcdCard(card, slot=0) as virtual:
                assert virtual.address == ("127.0.0.1", moved.port)
                connection = wait_for_card(READER_SLOT0, card.atr)
                try:
                    assert send(connection, SELECT_APP)[1] == 0x9000
                finally:
                    disconnect(connection)
    finally:
        moved.stop()
        if moved.config is not None:
            shutil.rmtree(moved.config, ignore_errors=True)
        pcscd.start()  # the tests after this one need the session's pcscd, on its own port
    assert os.environ[VPCD_PORT_ENV] == str(pcscd.port)


def test_the_vpcd_ports_skip_a_port_in_use_and_the_emulator_reads_its_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        chosen = free_vpcd_port(port)
        assert chosen != port and chosen > port
        assert chosen % VPCD_SLOTS == port % VPCD_SLOTS  # pairs move whole
    monkeypatch.setenv(VPCD_PORT_ENV, "40100")
    assert port_for_slot(1) == 40101
    assert VpcdCard(new_user_card(), slot=1).address == ("127.0.0.1", 40101)
    for bad in ("http", "-1", "0", "65535", "４０１００"):
        monkeypatch.setenv(VPCD_PORT_ENV, bad)
        with pytest.raises(ValidationError, match=VPCD_PORT_ENV):
            port_for_slot(0)
    monkeypatch.delenv(VPCD_PORT_ENV)
    assert port_for_slot(0) == VPCD_PORT
