"""The model side of the stateful sale test (tests/test_selling_stateful.py): the session's
template database, the simulated kill at a crash point, and fresh reads of the card image, the
meter state file and the database (``Snapshot``) that the invariants look at."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import event as hypothesis_event
from hypothesis.control import currently_in_test_context

from app import faults
from app.clock import FixedClock
from app.domain.ledger import SaleState
from app.persistence.db import Database
from app.services import auth
from app.services.auth import Principal
from app.services.demo import load_demo
from cardio import profile as P
from cardio.emulator import CardImage
from cardio.emulator import CardState
from cardio.keys import MasterKeys
from cardio.keys import SoftwareKeyProvider

CUSTOMER = "100000000002"  # demo: a card-meter customer without arrears or fees
METER_NO = "200000000002"  # its meter
COUNTER = "C01"
FLOAT = 10_000
T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
SELL_POINTS = ("read", "pending", "before_write", "written", "completed")
REVERSAL_POINTS = ("reversal_pending", "reversal_written")
UNRESOLVED_STATES = (SaleState.PENDING.value, SaleState.IN_DOUBT.value)
COMPLETED = SaleState.COMPLETED.value
# APDUs of a purchase-only card session: a read is SELECT + 5 READ BINARY (1-6); the write is
# SELECT, GET CHALLENGE, EXTERNAL AUTHENTICATE, GET CHALLENGE (7-10), UPDATE (11), READ (12)
WRITE_FIRST_APDU, PURCHASE_UPDATE_APDU = 7, 11
# replace_card: read (1-2), ISSUE session (3-13), write session (14-23): SELECT and
# authentication (14-17), UPDATE tariff (18), parameters (19), purchase (20), read-backs (21-23)
REPLACE_BOUND_APDU, REPLACE_PURCHASE_APDU = 14, 20
# card files and SQLite on tmpfs when there is one: the machine commits and fsyncs a lot
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def event(text: str) -> None:
    """Hypothesis' coverage note (shown by --hypothesis-show-statistics), also outside it."""
    if currently_in_test_context():
        hypothesis_event(text)


# --------------------------------------------------------------------------- shared template


@dataclass(frozen=True)
class Template:
    """Built once per session: a migrated database with the demo data, the keys, principals."""

    directory: Path
    db_file: Path
    master: MasterKeys
    keys: SoftwareKeyProvider
    teller: Principal
    supervisor: Principal


_TEMPLATE: list[Template] = []


def template() -> Template:
    """The session's template, built at first use."""
    if not _TEMPLATE:
        directory = Path(tempfile.mkdtemp(prefix="cv-stateful-", dir=SCRATCH))
        db_file = directory / "template.sqlite"
        clock = FixedClock(T0)
        db = Database(str(db_file))
        db.migrate()
        load_demo(db, clock)
        teller = auth.login(db, "t01", "demo-t01", counter_id=COUNTER, clock=clock)
        supervisor = auth.login(db, "s01", "demo-s01", counter_id=COUNTER, clock=clock)
        db.dispose()
        master = MasterKeys.generate()
        keys = SoftwareKeyProvider(master)
        _TEMPLATE.append(Template(directory, db_file, master, keys, teller, supervisor))
    return _TEMPLATE[0]


@pytest.fixture(scope="module", autouse=True)
def _template_cleanup() -> Iterator[None]:
    yield
    while _TEMPLATE:
        shutil.rmtree(_TEMPLATE.pop().directory, ignore_errors=True)


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy whatever the journal mode (the SQLite backup API)."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


# --------------------------------------------------------------------------- simulated kill


class Killed(BaseException):
    """The counter process died at a crash point (a BaseException: nothing may catch it)."""


@contextmanager
def kill_at(point: str | None) -> Iterator[None]:
    """Make ``checkpoint(point)`` kill the "process".  Every crash point lies outside any open
    transaction, so unwinding with an exception leaves exactly what SIGKILL would leave."""
    if point is None:
        yield
        return

    def checkpoint(name: str) -> None:
        if name == point:
            raise Killed(name)

    with mock.patch.object(faults, "checkpoint", checkpoint):
        yield


# --------------------------------------------------------------------------- fresh reads


def tag_of(sale_id: str) -> bytes:
    return uuid.UUID(sale_id).bytes[:8]


@dataclass(frozen=True)
class CardFile:
    serial: str
    issued: bool
    has_parameters: bool
    count: int  # purchase count on the card (0: none)
    tag: bytes | None
    amount: int
    wb_count: int | None  # purchase count in the meter's write-back on this card
    purchase_raw: bytes
    wb_meter: str | None = None  # the meter that wrote that write-back
    wb_remaining: int | None = None  # its remaining then


def read_card(path: Path) -> CardFile:
    img = CardImage.load(path)
    serial = img.serial.hex().upper()
    if img.state is not CardState.ISSUED:
        return CardFile(serial, False, False, 0, None, 0, None, b"")
    raw = bytes(img.files[P.SFI_PURCHASE])
    purchase = P.decode_purchase(raw)
    wb = P.decode_write_back(bytes(img.files[P.SFI_WRITE_BACK]))
    params = P.decode_parameters(bytes(img.files[P.SFI_PARAMETERS]))
    return CardFile(
        serial,
        True,
        params is not None,
        purchase.purchase_count if purchase else 0,
        purchase.sale_tag if purchase else None,
        purchase.amount if purchase else 0,
        wb.purchase_count if wb else None,
        raw,
        wb.meter_no if wb else None,
        wb.remaining if wb else None,
    )


@dataclass(frozen=True)
class Transfer:
    """A meter change's transfer record as the model expects it on the card: the account's
    purchase count, the carried credit (the old meter's remaining + ``unloaded``) and the part
    of it that was a purchase the old meter had not loaded (sale credit not delivered yet)."""

    count: int
    amount: int
    unloaded: int


@dataclass(frozen=True)
class SaleRow:
    id: str
    state: str
    count: int
    amount: int
    credit: int
    shift_id: str
    card_serial: str | None  # the card it was (last) written to

    @property
    def tag(self) -> bytes:
        return tag_of(self.id)


@dataclass(frozen=True)
class RevRow:
    id: str
    sale_id: str
    state: str
    amount: int
    shift_id: str


@dataclass(frozen=True)
class Snapshot:
    ledger_count: int  # the customer's purchase_count
    card_serial: str | None  # the customer's card
    known_meter_count: int | None  # the last write-back the counter saw
    sales: tuple[SaleRow, ...]  # card sales, oldest first
    reversals: tuple[RevRow, ...]
    fees: tuple[tuple[str, int], ...]
    blacklist: frozenset[str]
    shift_id: str | None
    card: CardFile
    meter_count: int  # purchases the meter credited, or has announced on a card (pending)
    meter_remaining: int  # its remaining, with such an announced pending purchase credited
    meter_credited: int  # purchases the meter has credited (its state file's purchase_count)

    def by_state(self, *states: str) -> list[SaleRow]:
        return [s for s in self.sales if s.state in states]

    @property
    def unresolved(self) -> list[SaleRow]:
        return self.by_state(*UNRESOLVED_STATES)

    @property
    def pending_reversals(self) -> list[RevRow]:
        return [r for r in self.reversals if r.state == "pending"]

    def sale(self, sale_id: str) -> SaleRow:
        return next(s for s in self.sales if s.id == sale_id)

    def last_completed(self) -> SaleRow | None:
        return next((s for s in self.by_state(COMPLETED) if s.count == self.ledger_count), None)

    def card_holds(self, sale: SaleRow) -> bool:
        return self.card.count == sale.count and self.card.tag == sale.tag

    def resolved_ledger_count(self) -> int:
        """The ledger's count once the card decided: an unresolved sale the card holds
        completes (one it does not hold fails); a pending reversal finishes when the card was
        restored (fails when it was not)."""
        ledger_count = self.ledger_count
        for sale in self.unresolved:
            if self.card_holds(sale):
                ledger_count = sale.count
        for rev in self.pending_reversals:
            if self.card.count == self.sale(rev.sale_id).count - 1:
                ledger_count -= 1
        return ledger_count

    def situation(self) -> str:
        """What ``assess`` must say of the card (after resolving what the card decides)."""
        ledger_count = self.resolved_ledger_count()
        if self.card.count < ledger_count:
            return "behind"
        # the counter knows the meter only from a write-back: this card's, or the last one it
        # saw on any card of the customer (a replacement card has none of its own yet)
        meter = self.card.wb_count if self.card.wb_count is not None else self.known_meter_count
        if self.card.count > 0 and (meter is None or self.card.count > meter):
            return "unloaded"
        return "ready"


def remove_template() -> None:
    """Remove the template's directory (the end of a test module that built it)."""
    while _TEMPLATE:
        shutil.rmtree(_TEMPLATE.pop().directory, ignore_errors=True)


def breaks_replacement(pull: tuple[int, bool] | None) -> bool:
    """Whether a card pulled during a replacement at ``pull`` (APDU n, whether it was applied)
    is left bound without its purchase: unusable until the teller puts it back."""
    if pull is None:
        return False
    n, applied = pull
    return REPLACE_BOUND_APDU <= n < REPLACE_PURCHASE_APDU or (
        n == REPLACE_PURCHASE_APDU and not applied
    )
