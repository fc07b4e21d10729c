"""cardio/pcsc.py through a real pcscd and the vpcd virtual readers.

A small card stub in this file plays the card on the vpcd socket (../shared/TESTING.md).  The
``pcscd`` fixture reuses a running pcscd or starts its own and stops it again.  The restart test
needs a pcscd of its own; to run it next to a pcscd that is already running, use private
namespaces (root)::

    unshare --mount --net --pid --fork --mount-proc sh -c \\
      'mount -t tmpfs tmpfs /run/pcscd && ip link set lo up && .venv/bin/python -m pytest -q tests/test_pcsc.py'
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.domain.card import CardRemoved
from app.domain.card import NoCard
from app.domain.card import NoReader
from app.ports import CardEvent
from app.ports import CardEventKind
from cardio.pcsc import CardThread
from cardio.pcsc import PcscReaderPort
from cardio.pcsc import command_name
from cardio.pcsc import trace_command
from cardio.pcsc import trace_response
from cardio.vpcd import port_for_slot
from tests.pcsc_fixtures import Pcscd as SharedPcscd

READER = "Virtual PCD 00 00"
OTHER_READER = "Virtual PCD 00 01"
SLOTS = {READER: 0, OTHER_READER: 1}
WAIT = 10.0  # seconds: the most any event may take
BUSY_WAIT = 60.0  # seconds a reader may stay occupied by another test run's emulator


def _make_atr() -> bytes:
    # TS 3B, T0 88 (TD1, 8 historical bytes), TD1 80 (TD2, T=0), TD2 01 (T=1), "PCSCTEST", TCK
    body = bytes([0x88, 0x80, 0x01]) + b"PCSCTEST"
    return b"\x3b" + body + bytes([functools.reduce(operator.xor, body)])


ATR = _make_atr()
CHALLENGE = bytes.fromhex("C1C2C3C4C5C6C7C8")
NEXT_CHALLENGE = bytes.fromhex("D1D2D3D4D5D6D7D8")
LONG_ANSWER = bytes(range(0x20, 0x30))  # 16 bytes, fetched with GET RESPONSE

SELECT = bytes.fromhex("00A4040007A0000000031010")
PULL = bytes.fromhex("00EE0000")  # the stub closes its socket instead of answering


def echo(data: bytes) -> bytes:
    return bytes([0x80, 0xEC, 0x00, 0x00, len(data)]) + data + b"\x00"


# --------------------------------------------------------------------------- the card stub


class VirtualCard:
    """A card in a vpcd reader: answers a few test commands and records what reached it.

    Commands: SELECT (A4) → 9000; echo (80 EC) → its data; GET CHALLENGE (84) → 8 bytes;
    EXTERNAL AUTHENTICATE (82) → 9000; secure UPDATE BINARY (04 D6) → the next challenge;
    CA → 6110 then GET RESPONSE (C0) → 16 bytes; CB → 6C08 unless Le is 08; EE → the card is
    pulled while answering (the socket closes)."""

    def __init__(self, reader: str = READER, atr: bytes = ATR) -> None:
        self.reader = reader
        self.atr = atr
        self.commands: list[bytes] = []
        self.controls: list[int] = []
        self.removed = threading.Event()
        self._pending = b""
        self._sock = self._connect(port_for_slot(SLOTS[reader]))
        self._thread = threading.Thread(target=self._serve, name="vpcd-card", daemon=True)
        self._thread.start()

    @staticmethod
    def _connect(port: int) -> socket.socket:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
                break
            except OSError:  # vpcd is not listening yet (pcscd just started)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _recv(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _send(self, payload: bytes) -> None:
        self._sock.sendall(struct.pack(">H", len(payload)) + payload)

    def _serve(self) -> None:
        try:
            while True:
                (size,) = struct.unpack(">H", self._recv(2))
                message = self._recv(size)
                if len(message) == 1:
                    self.controls.append(message[0])
                    if message[0] == 4:
                        self._send(self.atr)
                    continue
                self.commands.append(message)
                answer = self.answer(message)
                if answer is None:
                    self.remove()
                    return
                self._send(answer)
        except (EOFError, OSError):
            pass
        finally:
            self.removed.set()

    def answer(self, apdu: bytes) -> bytes | None:
        cla, ins = apdu[0], apdu[1]
        le = apdu[4] if len(apdu) == 5 else None
        if ins == 0xA4 or ins == 0x82:
            return b"\x90\x00"
        if cla == 0x80 and ins == 0xEC:
            return apdu[5 : 5 + apdu[4]] + b"\x90\x00"
        if ins == 0x84:
            return CHALLENGE + b"\x90\x00"
        if cla == 0x04 and ins == 0xD6:
            return NEXT_CHALLENGE + b"\x90\x00"
        if ins == 0xCA:
            self._pending = LONG_ANSWER
            return bytes([0x61, len(LONG_ANSWER)])
        if ins == 0xC0:
            size = le or 256
            chunk, self._pending = self._pending[:size], self._pending[size:]
            return chunk + (bytes([0x61, len(self._pending)]) if self._pending else b"\x90\x00")
        if ins == 0xCB:
            return bytes(range(8)) + b"\x90\x00" if le == 8 else b"\x6c\x08"
        if ins == 0xEE:
            return None
        return b"\x6d\x00"

    def remove(self) -> None:
        """Take the card out (close the socket)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self.removed.set()


# --------------------------------------------------------------------------- fixtures


class Pcscd:
    """The suite's pcscd (tests/pcsc_fixtures.py) with a probe to see its readers."""

    def __init__(self, shared: SharedPcscd) -> None:
        self.shared = shared
        self.probe_thread = CardThread("pcscd-probe")
        self.probe = PcscReaderPort(self.probe_thread)

    @property
    def owned(self) -> bool:
        return self.shared.owned

    def start(self) -> None:
        self.shared.start()
        self.wait_ready()

    def stop(self) -> None:
        self.shared.stop()

    def running(self) -> bool:
        return self.shared.running()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                if {READER, OTHER_READER} <= set(self.probe.readers()):
                    return
            except NoReader:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"pcscd shows no vpcd readers after {WAIT}s")
            time.sleep(0.05)

    def close(self) -> None:
        self.probe.close()
        self.probe_thread.shutdown()


@pytest.fixture(scope="module")
def pcscd(pcscd: SharedPcscd) -> Iterator[Pcscd]:
    """Overrides the suite's fixture of the same name, wrapping it."""
    daemon = Pcscd(pcscd)
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        if pcscd.owned and not pcscd.running():
            pcscd.start()  # the tests after this module need it
        daemon.close()


@pytest.fixture(scope="module")
def card_thread() -> Iterator[CardThread]:
    thread = CardThread("card")
    yield thread
    thread.shutdown()


@pytest.fixture
def port(pcscd: Pcscd, card_thread: CardThread) -> Iterator[PcscReaderPort]:
    reader_port = PcscReaderPort(card_thread, poll_interval=0.2)
    yield reader_port
    reader_port.close()


class Events:
    """A subscription whose events are queued for the test thread."""

    def __init__(self, reader_port: PcscReaderPort) -> None:
        self.queue: queue.Queue[CardEvent] = queue.Queue()
        self.threads: set[str] = set()
        self.seen: list[CardEvent] = []
        self.unsubscribe = reader_port.subscribe(self._on_event)

    def _on_event(self, event: CardEvent) -> None:
        self.threads.add(threading.current_thread().name)
        self.queue.put(event)

    def wait_for(
        self, kind: CardEventKind, reader: str, atr: bytes | None = None, timeout: float = WAIT
    ) -> CardEvent:
        """The next ``kind`` event for ``reader`` (and ``atr`` if given); others are skipped."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.queue.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(event)
            if event.kind is kind and event.reader == reader and atr in (None, event.atr):
                return event
        raise AssertionError(f"no {kind.value} event for {reader!r} in {timeout}s; got {self.seen}")


@pytest.fixture
def events(port: PcscReaderPort) -> Iterator[Events]:
    subscription = Events(port)
    yield subscription
    subscription.unsubscribe()


class Cards:
    """Inserts stub cards; whatever a test leaves in a reader is taken out afterwards."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.inserted: list[VirtualCard] = []

    def insert(self, reader: str = READER) -> VirtualCard:
        card = VirtualCard(reader)
        self.inserted.append(card)
        try:
            # vpcd serves one card per reader: while another emulator is connected (another test
            # run on the same pcscd), the stub waits in the listen queue until that card goes
            self.events.wait_for(CardEventKind.CARD_INSERTED, reader, ATR, timeout=BUSY_WAIT)
        except AssertionError:
            foreign = [e.atr.hex() for e in self.events.seen if e.atr not in (b"", ATR)]
            if foreign:
                raise AssertionError(
                    f"{reader} stayed busy with another card emulator (ATR {foreign[-1]}) "
                    f"for {BUSY_WAIT}s: another test run is using this pcscd's vpcd readers"
                ) from None
            raise
        return card

    def remove(self, card: VirtualCard) -> None:
        card.remove()
        self.events.wait_for(CardEventKind.CARD_REMOVED, card.reader)

    def remove_all(self) -> None:
        for card in self.inserted:
            card.remove()


@pytest.fixture
def cards(events: Events) -> Iterator[Cards]:
    inserter = Cards(events)
    yield inserter
    inserter.remove_all()


@pytest.fixture
def card(cards: Cards) -> Iterator[VirtualCard]:
    virtual = cards.insert()
    yield virtual
    if not virtual.removed.is_set():
        cards.remove(virtual)


# --------------------------------------------------------------------------- without pcscd


def test_card_thread_runs_calls_on_one_named_thread() -> None:
    worker = CardThread("card-unit")
    try:
        assert worker.run(lambda: threading.current_thread().name) == "card-unit"
        assert worker.run(operator.add, 2, 3) == 5
        # nested: a call made on the card thread runs inline instead of deadlocking
        assert worker.run(lambda: worker.run(lambda: worker.is_current())) is True
        assert not worker.is_current()

        boom = ValueError("boom")

        def fail() -> None:
            raise boom

        with pytest.raises(ValueError) as caught:
            worker.run(fail)
        assert caught.value is boom

        release = threading.Event()
        with pytest.raises(TimeoutError):
            worker.run(release.wait, 5.0, timeout=0.05)
        later = worker.submit(lambda: "after")  # queued behind the waiting call, in order
        release.set()
        assert later.result(WAIT) == "after"
    finally:
        worker.shutdown()
    with pytest.raises(RuntimeError):
        worker.submit(lambda: None)


def test_card_thread_starts_on_first_use_and_again_in_a_forked_child() -> None:
    """The composition root builds the card thread before the benchmarks fork: a thread started
    before ``fork`` does not exist in the child, so it starts on first use, per process."""
    worker = CardThread("card-lazy")
    try:
        assert not any(t.name == "card-lazy" for t in threading.enumerate())
        parent = worker.run(threading.get_ident)
        assert any(t.name == "card-lazy" for t in threading.enumerate())
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the parent's card thread is gone, a new one runs the call
            try:
                name = worker.run(lambda: threading.current_thread().name, timeout=WAIT)
                os.write(write, name.encode())
            finally:
                os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read, "rb") as answer:
            assert answer.read() == b"card-lazy"
        assert os.waitstatus_to_exitcode(status) == 0
        assert worker.run(threading.get_ident) == parent  # the parent's thread is untouched
    finally:
        worker.shutdown()


def test_trace_masks_keys_macs_and_challenges() -> None:
    cryptogram = bytes.fromhex("A1A2A3A4A5A6A7A8A9AAABACADAEAFB0")
    text = trace_command(bytes.fromhex("0082000110") + cryptogram)
    assert text == "00 82 00 01 Lc=10 " + " ".join(["**"] * 16) + " (21 B)"

    mac = bytes.fromhex("5A5B5C5D")
    update = bytes.fromhex("04D682000A") + bytes.fromhex("010203040506") + mac
    assert trace_command(update) == "04 D6 82 00 Lc=0A 01 02 03 04 05 06 ** ** ** ** (15 B)"
    assert trace_response(update, NEXT_CHALLENGE, 0x9000) == "9000 (8 B) D1 D2 D3 D4 ** ** ** **"

    get_challenge = bytes.fromhex("0084000008")
    assert trace_command(get_challenge) == "00 84 00 00 Le=08 (5 B)"
    assert trace_response(get_challenge, CHALLENGE, 0x9000) == "9000 (8 B) C1 C2 C3 C4 ** ** ** **"

    assert trace_command(SELECT) == "00 A4 04 00 Lc=07 A0 00 00 00 03 10 10 (12 B)"
    assert trace_response(SELECT, b"\x6f\x00", 0x9000) == "9000 (2 B) 6F 00"
    assert trace_command(bytes.fromhex("00B0810010")) == "00 B0 81 00 Le=10 (5 B)"

    # the PSAM's answers are cryptograms and MACs; its inputs end with a challenge or a MAC
    psam_auth = bytes.fromhex("80FA000110") + bytes(8) + CHALLENGE
    assert trace_command(psam_auth).endswith("C1 C2 C3 C4 ** ** ** ** (21 B)")
    assert "A1" not in trace_response(psam_auth, cryptogram, 0x9000)
    psam_mac = bytes.fromhex("80FA010220") + bytes(8) + CHALLENGE + bytes(8) + b"data"
    assert "C5" not in trace_command(psam_mac)

    # a body that is not a short APDU (extended length) is masked whole
    assert trace_command(bytes.fromhex("0082000000001011223344")) == (
        "00 82 00 00 body ** ** ** ** ** ** ** (11 B)"
    )
    assert command_name(update) == "UPDATE BINARY (04 D6 82 00)"


# --------------------------------------------------------------------------- through pcscd


def test_readers_lists_both_virtual_readers(port: PcscReaderPort) -> None:
    names = port.readers()
    assert READER in names
    assert OTHER_READER in names


def test_subscribe_reports_readers_and_card_insert_and_removal(
    port: PcscReaderPort, events: Events, cards: Cards
) -> None:
    events.wait_for(CardEventKind.READER_ADDED, READER)
    events.wait_for(CardEventKind.READER_ADDED, OTHER_READER)

    card = cards.insert()

    # a later subscriber starts with the current state, card included
    late = Events(port)
    try:
        late.wait_for(CardEventKind.READER_ADDED, READER)
        assert late.wait_for(CardEventKind.CARD_INSERTED, READER).atr == ATR
        late.wait_for(CardEventKind.READER_ADDED, OTHER_READER)

        card.remove()
        removed = events.wait_for(CardEventKind.CARD_REMOVED, READER)
        assert removed.atr == ATR
        late.wait_for(CardEventKind.CARD_REMOVED, READER)
    finally:
        late.unsubscribe()

    # callbacks ran on the monitor thread, never on the card thread or the test's
    assert events.threads == late.threads == {"pcsc-monitor"}

    late.unsubscribe()  # twice is harmless
    events.unsubscribe()
    alive = [t for t in threading.enumerate() if t.name == "pcsc-monitor"]
    assert alive == [], "the monitor thread ends with the last subscription"


def test_transmit_runs_on_the_card_thread_and_is_traced(
    port: PcscReaderPort, card: VirtualCard, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cardio.pcsc")
    with port.connect(READER) as channel:
        assert channel.atr == ATR
        assert channel.transmit(SELECT) == (b"", 0x9000)
        assert channel.transmit(echo(b"hello")) == (b"hello", 0x9000)
        assert channel.transmit(bytes.fromhex("00DD0000")) == (b"", 0x6D00)
    assert card.commands == [SELECT, echo(b"hello"), bytes.fromhex("00DD0000")]

    traced = [r for r in caplog.records if r.getMessage().startswith("APDU")]
    assert len(traced) == 6  # a command and a response line per exchange
    assert {r.threadName for r in traced} == {"card"}
    assert "00 A4 04 00 Lc=07 A0 00 00 00 03 10 10 (12 B)" in traced[0].getMessage()
    assert "9000 (5 B) 68 65 6C 6C 6F" in traced[3].getMessage()


def test_get_response_and_wrong_le_are_handled(port: PcscReaderPort, card: VirtualCard) -> None:
    with port.connect(READER) as channel:
        assert channel.transmit(bytes.fromhex("00CA0000")) == (LONG_ANSWER, 0x9000)
        assert channel.transmit(bytes.fromhex("00CB000000")) == (bytes(range(8)), 0x9000)
    assert card.commands == [
        bytes.fromhex("00CA0000"),
        bytes.fromhex("00C0000010"),  # 6110: GET RESPONSE for 16 bytes
        bytes.fromhex("00CB000000"),
        bytes.fromhex("00CB000008"),  # 6C08: sent again with Le 08
    ]


def test_trace_masks_secrets_sent_to_a_real_card(
    port: PcscReaderPort, card: VirtualCard, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cardio.pcsc")
    cryptogram = bytes.fromhex("A1A2A3A4A5A6A7A8A9AAABACADAEAFB0")
    mac = bytes.fromhex("5A5B5C5D")
    update = bytes.fromhex("04D682000A") + bytes.fromhex("010203040506") + mac
    with port.connect(READER) as channel, channel.transaction():
        assert channel.transmit(bytes.fromhex("0084000008")) == (CHALLENGE, 0x9000)
        assert channel.transmit(bytes.fromhex("0082000110") + cryptogram) == (b"", 0x9000)
        assert channel.transmit(update) == (NEXT_CHALLENGE, 0x9000)
    assert card.commands[1][5:] == cryptogram  # the card got the real bytes
    log_text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (cryptogram[:4], cryptogram[-4:], mac, CHALLENGE[4:], NEXT_CHALLENGE[4:]):
        assert secret.hex(" ").upper() not in log_text
    assert "C1 C2 C3 C4 ** ** ** **" in log_text
    assert "01 02 03 04 05 06 ** ** ** **" in log_text


def test_card_pulled_during_a_command_raises_card_removed(
    port: PcscReaderPort, card: VirtualCard
) -> None:
    with port.connect(READER) as channel:
        with pytest.raises(CardRemoved), channel.transaction():
            assert channel.transmit(SELECT) == (b"", 0x9000)
            channel.transmit(PULL)
        with pytest.raises(CardRemoved):
            channel.transmit(SELECT)


def test_card_removed_between_commands_raises_card_removed(
    port: PcscReaderPort, card: VirtualCard, events: Events
) -> None:
    with port.connect(READER) as channel:
        with pytest.raises(CardRemoved), channel.transaction():
            assert channel.transmit(SELECT) == (b"", 0x9000)
            card.remove()
            events.wait_for(CardEventKind.CARD_REMOVED, READER)
            channel.transmit(SELECT)


def test_no_card_and_unknown_reader(port: PcscReaderPort, events: Events) -> None:
    events.wait_for(CardEventKind.READER_ADDED, READER)
    with pytest.raises(NoCard) as caught:
        port.connect(READER)
    assert caught.value.params == {"reader": READER}
    assert READER in str(caught.value)
    started = time.monotonic()
    with pytest.raises(NoCard):
        port.connect(READER, timeout=0.3)
    assert time.monotonic() - started >= 0.3
    with pytest.raises(NoReader):
        port.connect("No Such Reader 00 00")


def test_connect_waits_for_a_card(port: PcscReaderPort, cards: Cards) -> None:
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(port.connect, READER, timeout=WAIT)
        card = cards.insert()
        with pending.result(WAIT) as channel:
            assert channel.atr == ATR
            assert channel.transmit(SELECT) == (b"", 0x9000)
    cards.remove(card)


def test_transaction_excludes_other_connections_and_threads(
    port: PcscReaderPort, card: VirtualCard
) -> None:
    """A second PcscReaderPort (as another program would) and a second thread of ours both wait
    until the transaction ends; nested transactions unlock only at the outermost exit."""
    other_thread = CardThread("other-app")
    other_port = PcscReaderPort(other_thread)
    first = port.connect(READER)
    second = other_port.connect(READER)
    try:
        with ThreadPoolExecutor(1) as pool:
            with first.transaction():
                first.transmit(echo(b"A"))
                other_app = other_thread.submit(second.transmit, echo(b"X"))
                same_app = pool.submit(first.transmit, echo(b"Y"))
                with pytest.raises(TimeoutError):
                    other_app.result(timeout=0.5)
                with first.transaction():  # nested
                    first.transmit(echo(b"B"))
                assert not other_app.done() and not same_app.done()
                first.transmit(echo(b"C"))
            assert other_app.result(WAIT) == (b"X", 0x9000)
            assert same_app.result(WAIT) == (b"Y", 0x9000)
    finally:
        second.close()
        first.close()
        other_port.close()
        other_thread.shutdown()
    sent = [c[5:-1] for c in card.commands if c[:2] == b"\x80\xec"]
    assert sent[:3] == [b"A", b"B", b"C"]
    assert sorted(sent[3:]) == [b"X", b"Y"]


def test_recovers_after_pcscd_restart(
    pcscd: Pcscd, port: PcscReaderPort, events: Events, cards: Cards
) -> None:
    if not pcscd.owned:
        pytest.skip("pcscd was already running: restarting it needs the suite's own pcscd")
    assert READER in port.readers()
    events.wait_for(CardEventKind.READER_ADDED, READER)
    try:
        pcscd.stop()
        events.wait_for(CardEventKind.READER_REMOVED, READER)
        events.wait_for(CardEventKind.READER_REMOVED, OTHER_READER)
        with pytest.raises(NoReader):
            port.readers()
        with pytest.raises(NoReader):
            port.connect(READER)
    finally:
        if not pcscd.running():
            pcscd.start()
    # the same port, the same monitor: both find the new pcscd
    assert {READER, OTHER_READER} <= set(port.readers())
    events.wait_for(CardEventKind.READER_ADDED, READER)
    card = cards.insert()
    with port.connect(READER) as channel:
        assert channel.transmit(SELECT) == (b"", 0x9000)
    cards.remove(card)


def _in_use(reader: str) -> bool:
    """Whether some program holds a connection to the card in ``reader`` (pcscd's view)."""
    from smartcard import scard

    hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hr == scard.SCARD_S_SUCCESS
    try:
        hr, states = scard.SCardGetStatusChange(context, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        assert hr == scard.SCARD_S_SUCCESS
        return bool(int(states[0][1]) & scard.SCARD_STATE_INUSE)
    finally:
        scard.SCardReleaseContext(context)


@pytest.mark.drops_card_connection
def test_a_channel_dropped_while_connected_is_closed_when_collected(
    port: PcscReaderPort, card: VirtualCard, caplog: pytest.LogCaptureFixture
) -> None:
    """A channel nobody closed would hold the reader ("in use" for every other program) until
    the process ends; it is closed when it is collected, with a warning."""
    import gc

    from cardio.pcsc import channel as channel_module

    dropped = channel_module.dropped_connected
    channel = port.connect(READER)
    assert channel.transmit(SELECT) == (b"", 0x9000)
    assert _in_use(READER)
    with caplog.at_level(logging.WARNING, logger="cardio.pcsc.channel"):
        del channel
        gc.collect()
    assert channel_module.dropped_connected == dropped + 1
    assert "dropped without close()" in caplog.text
    deadline = time.monotonic() + WAIT
    while _in_use(READER) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _in_use(READER)  # the reader is free for other programs again
