"""Ports: the interfaces the core needs from devices and outside systems.

Each has a real implementation and a simulated one outside ``app/`` (``cardio/``, ``printing/``,
``sync/``), chosen by settings in the composition root.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol
from typing import TypedDict
from typing import Unpack

from app.domain.card import CardContents
from app.domain.card import CardWrite
from app.domain.card import WriteResult
from app.domain.receipt import ReceiptData

if TYPE_CHECKING:
    from app.services.auth import Principal
    from app.services.meter_reading import MeterReading


class KeyRole(enum.IntEnum):
    """The utility's master keys, by key id (cardio/PROFILE.md)."""

    ISSUER = 0
    COUNTER_AUTH = 1
    COUNTER_MAC = 2
    METER_AUTH = 3
    METER_MAC = 4
    WRITE_BACK = 5  # never on a card: the meter's write-back MAC key
    PURCHASE = 6  # never on a card: the purchase record MAC key (counter and meter only)


class KeyProvider(Protocol):
    """Computes what needs the utility's master keys, without handing the keys out.

    Implementations: a software keystore (master keys encrypted at rest under a passphrase) and
    a security access module (PSAM) card in a second reader slot."""

    def auth_cryptogram(self, role: KeyRole, card_serial: bytes, challenge: bytes) -> bytes:
        """16-byte answer to a card's 8-byte challenge for EXTERNAL AUTHENTICATE."""
        ...

    def command_mac(self, role: KeyRole, card_serial: bytes, iv: bytes, data: bytes) -> bytes:
        """4-byte MAC of a secure command (IV = card challenge || 00*8)."""
        ...

    def write_back_mac(self, card_serial: bytes, meter_no: str, body: bytes) -> bytes:
        """4-byte meter write-back MAC (what a genuine meter computes)."""
        ...

    def verify_write_back(self, card_serial: bytes, meter_no: str, body: bytes, mac: bytes) -> bool:
        """Whether a write-back was made by a meter holding the write-back key."""
        ...

    def purchase_mac(self, card_serial: bytes, body: bytes) -> bytes:
        """4-byte MAC of a purchase record (its 22-byte body) for the card ``card_serial``."""
        ...

    def verify_purchase(self, card_serial: bytes, body: bytes, mac: bytes) -> bool:
        """Whether a purchase record was made for this card by a holder of the purchase key."""
        ...


class PassphraseHandler(Protocol):
    """How device code asks the person for a secret (like Electrum's ``HardwareHandlerBase``):
    the GUI answers with a dialog on the GUI thread, the command line with a prompt on the main
    thread. Called from any thread; blocks until the person answers. ``None``: the person
    declined (or nobody can be asked)."""

    def passphrase(self, prompt: str) -> str | None: ...


class ApduChannel(Protocol):
    """A connection to one card: send an APDU, get data and the status word."""

    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...

    def transaction(self) -> AbstractContextManager[None]:
        """Exclusive access for a multi-APDU sequence (no other application interleaves)."""
        ...

    def close(self) -> None: ...

    @property
    def atr(self) -> bytes: ...


class CardEventKind(enum.Enum):
    READER_ADDED = "reader_added"
    READER_REMOVED = "reader_removed"
    CARD_INSERTED = "card_inserted"
    CARD_REMOVED = "card_removed"


@dataclass(frozen=True)
class CardEvent:
    kind: CardEventKind
    reader: str
    atr: bytes = b""


class CardWorker(Protocol):
    """The one card thread (built by the composition root): every card operation and every APDU
    runs on it, in submission order, without a hop between threads (in the spirit of Electrum's
    ``run_in_hwd_thread``). The thread starts on first use, so a process forked before that has
    its own."""

    def submit(self, fn: Callable[[], Any], /) -> Future[Any]:
        """Queue ``fn()`` on the card thread; its Future gives the result or the exception."""
        ...

    def is_current(self) -> bool:
        """Whether the caller runs on the card thread (a call from there runs inline)."""
        ...

    def shutdown(self, wait: bool = True) -> None:
        """Finish the queued work, then stop."""
        ...


class CardReaderPort(Protocol):
    """Readers, card presence and connections. Event callbacks arrive on the reader's own thread:
    hand them on (a queue, a Qt signal), never touch the UI there. ``close()`` releases the PC/SC
    context (after the subscriptions are stopped)."""

    def readers(self) -> list[str]: ...

    def connect(self, reader: str) -> ApduChannel: ...

    def subscribe(self, callback: Callable[[CardEvent], None]) -> Callable[[], None]:
        """Start delivering events; returns a function that stops them."""
        ...

    def close(self) -> None: ...


class CardTerminal(Protocol):
    """What the services do with a card: read everything, write in one authenticated session
    (with read-back), issue a blank card into a kind, erase it back to blank. ``close()`` ends
    the card connection."""

    def read(self) -> CardContents: ...

    def write(self, change: CardWrite, *, expect_serial: bytes | None = None) -> WriteResult: ...

    def issue(self, kind: int) -> CardContents: ...

    def erase(self) -> CardContents: ...

    def close(self) -> None: ...


class BackgroundSync(Protocol):
    """The sync worker as the window sees it: started with the window, stopped at exit, woken
    by "sync now". Its outcome is read from the database (app/services/sync_status.py)."""

    def start(self) -> BackgroundSync: ...

    def sync_now(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...


class StatsFilter(TypedDict, total=False):
    """What a statistics request asks for (each may be left out): ``region`` (an office code,
    ``city:NAME``, ``province:NAME``), the period ``date_from``/``date_to`` in office days, a
    tariff ``plan``, a control ``state``."""

    region: str | None
    date_from: dt.date | None
    date_to: dt.date | None
    plan: str | None
    state: str | None


class StationViews(Protocol):
    """What the counter's pages read from the charge-control station (sync/ implements it over
    the contract; main.py sets ``AppContext.station``).  Answers are the contract's models as
    plain mappings (JSON values); a failure is a typed error (not registered, unreachable,
    refused) whose text says what to do."""

    def control_status(self, customer_no: str) -> Mapping[str, Any]:
        """A customer's charge control: state, remaining_fen, relay, last_reading_at, ..."""
        ...

    def terminal_condition(self, customer_no: str) -> Mapping[str, Any]:
        """The station calls the customer's remote meter now (condition release): relay,
        status_words, meter_time, energy_wh, last_reading_at, fetched_at.  Refusals are typed
        errors with ``code`` ``terminal_no_answer`` (the meter did not answer), ``no_terminals``
        (the station has no terminals), ``not_remote`` or ``not_found``; may take seconds."""
        ...

    def stats(self, **filters: Unpack[StatsFilter]) -> Mapping[str, Any]:
        """Charge-control statistics of this office, its city or its province."""
        ...

    def exceptions(self, state: str | None = None, limit: int = 100) -> Mapping[str, Any]:
        """The office's exceptions queue, newest first: ``{"items": [...]}`` (``state``: one
        state, "open" for those not closed, None for all)."""
        ...

    def exception(self, exception_id: str) -> Mapping[str, Any]:
        """One exception of the office with its ``history`` (who, when, from and to state)."""
        ...

    def act_on_exception(self, exception_id: str, step: Mapping[str, Any]) -> Mapping[str, Any]:
        """A supervisor's step (the contract's ExceptionAction); the exception after it, or a
        typed error (``exception_not_found``, ``illegal_transition``)."""
        ...


class ReceiptRenderer(Protocol):
    """Renders receipts as PDF (printing/). ``size``: "80", "58" (mm rolls), "a5", "a4"."""

    def receipt_pdf(self, receipt: ReceiptData, *, size: str, language: str) -> bytes: ...


class Printer(Protocol):
    """A receipt printer (a PDF folder, the system printer, an ESC/POS thermal printer).
    Raises :class:`app.errors.PrinterError` saying what is wrong (offline, paper out, port
    missing); a printer fault never touches the sale."""

    name: str

    def print_receipt(self, receipt: ReceiptData, *, language: str) -> None: ...


class ByteLink(Protocol):
    """A serial line (cardio/ opens it with pyserial): a thermal printer, a meter's RS485."""

    def write(self, data: bytes) -> None: ...

    def read(self, size: int, timeout: float) -> bytes: ...

    def close(self) -> None: ...


# (port name, baud rate) -> an open serial line; raises a typed error naming the port if it
# cannot be opened (cardio.serial_link.SerialPortError)
SerialOpener = Callable[[str, int], ByteLink]


class MeterLink(Protocol):
    """A line to DL/T 645-2007 meters: a serial RS485 bus, or a TCP connection to a terminal
    (concentrator) that carries frames for many meter addresses. cardio/dlt645 implements it
    and speaks the protocol over it (``MeterClient``).

    Frames are passed as the bytes on the line. ``transact`` sends one request frame and returns
    the meter's answer to it (one complete frame, checksum verified, from the addressed meter,
    for the same function), retrying on timeouts and damaged frames; it raises a typed error
    when nothing usable comes back. ``send`` sends a frame no meter answers (a broadcast)."""

    def transact(self, request: bytes) -> bytes: ...

    def send(self, request: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TrayCard:
    """An emulated card in the training card tray."""

    card_id: str
    label: str  # what the tray shows: "blank card 3", "王丽 100000000002"
    customer_no: str | None = None


class CardTray(Protocol):
    """Training mode without a reader: emulated cards a person inserts into the (virtual)
    reader, takes out, and takes to the simulated meter (cardio/ implements it)."""

    def cards(self) -> list[TrayCard]: ...

    def new_blank(self) -> TrayCard: ...

    def inserted(self) -> TrayCard | None: ...

    def insert(self, card_id: str) -> None: ...

    def remove(self) -> None: ...

    def to_meter(self, card_id: str, *, hours: float = 0.0, load_kw: float = 0.0) -> str:
        """The simulated meter takes the card (uses energy first); a summary to show."""
        ...

    def terminal(self) -> CardTerminal:
        """The inserted card, for the services; raises a typed error when none is in."""
        ...


class SlipRenderer(Protocol):
    """Renders lifecycle slips as PDF (printing/): ``change`` is an
    :class:`app.services.lifecycle.meter_change.MeterChange`; times in the time zone ``tz``."""

    def meter_change_pdf(self, change: Any, *, language: str, tz: str) -> bytes: ...


class ReportRenderer(Protocol):
    """Renders reports as PDF or CSV (printing/). ``report`` is one of the report dataclasses
    of app/services/reports.py (ShiftReport, DailyReport, StatsReport), or the settlement
    statement of a closed account (app/domain/settlement.py ``Settlement``, PDF only)."""

    def report_pdf(self, report: object, *, language: str) -> bytes: ...

    def report_csv(self, report: object) -> str: ...


# (central URL, enrolment key or None, the signed-in administrator) -> what to tell the person
# (counter and office registered); raises a typed error saying what went wrong. sync/
# implements it (audited; registering again sends the counter's current token).
CounterRegistrar = Callable[[str, str | None, "Principal"], str]


class SetupProbe(Protocol):
    """What the first-run set-up (app/services/setup.py) asks of the parts app/ may not import;
    main.py wires it (cardio/ readers and keystores, printing/ the test receipt, sync/ the
    registration). Each raises a typed error saying what is wrong."""

    def readers(self) -> list[str]:
        """The PC/SC readers pcscd sees."""
        ...

    def read_card(self, reader: str) -> CardContents:
        """Read the card in ``reader`` without keys (kind and serial; NoCard when none)."""
        ...

    def open_keystore(self, path: str, passphrase: str) -> None:
        """Open the keystore at ``path`` (KeystoreError when the passphrase is wrong)."""
        ...

    def open_psam(self, reader: str) -> None:
        """Connect to the PSAM in ``reader`` and select its application."""
        ...

    def test_print(self, settings: Any, receipt: ReceiptData) -> str:
        """Print ``receipt`` on the printer ``settings`` name; says which printer it went to."""
        ...

    def register(
        self, ctx: Any, url: str, key: str | None, code: str | None, operator: Principal
    ) -> str:
        """Register the counter of ``ctx`` with the central system at ``url``."""
        ...


class DiagProbe(Protocol):
    """What ``cardvend selftest`` and ``cardvend diag`` ask of the parts app/ may not import
    (cardio/ readers and keys, printing/ the printer, sync/ the central system); main.py wires
    it. Each raises a typed error saying what is wrong."""

    def readers(self) -> list[str]:
        """The PC/SC readers pcscd sees."""
        ...

    def read_card(self, reader: str) -> CardContents:
        """Read the card in ``reader`` without keys (NoCard when none)."""
        ...

    def load_keys(self) -> str:
        """Build the configured key provider; says which (keystore file or PSAM reader)."""
        ...

    def printer_status(self) -> str | None:
        """Whether the configured printer can be reached; None: no printer configured."""
        ...

    def central_time(self) -> Any:
        """The central system's clock (an aware datetime), or None when not registered."""
        ...

    def secrets(self) -> list[str]:
        """Secrets held outside the settings (the central token): never in a bundle."""
        ...


@dataclass(frozen=True)
class ControlParameters:
    """What the station puts into a remote fee-control meter when the customer comes under
    control (fen): the two alarm thresholds and the overdraft allowance, from the archive."""

    alarm1_fen: int
    alarm2_fen: int
    overdraft_limit_fen: int


class RemoteMeters(Protocol):
    """The remote fee-control meters the charge-control station reaches through its terminals
    (DL/T 645-2007 over TCP or RS485; built by the composition root from ``cardio/``).  A meter
    that does not answer or refuses raises a typed error (a :class:`app.errors.CardVendError`)."""

    def read(self, meter_no: str, registers: Collection[str] | None = None) -> MeterReading:
        """Energy by rate, relay, status words and clock of the meter; ``registers`` (a subset
        of ``energy``, ``status``, ``clock``; None: all) reads only those, the rest ``None``."""
        ...

    def command(self, meter_no: str, command: str, operator: str) -> None:
        """``trip``, ``close`` (permit), ``alarm`` or ``release`` (the alarm)."""
        ...

    def set_parameters(
        self, meter_no: str, params: ControlParameters, operator: str
    ) -> ControlParameters:
        """Write the control parameters into the meter and read them back: what it holds."""
        ...

    def close(self) -> None: ...
