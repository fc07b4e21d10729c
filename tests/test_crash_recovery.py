"""Fault injection: the selling process is killed with SIGKILL at every named point of a card sale,
several times each, through pcscd + vpcd, and the next start must lose nothing.

The card is a :class:`cardio.vpcd.VpcdCard` in reader slot 0 served by *this* process (so it
outlives the kill) over a :class:`cardio.emulator.UserCardOS` that persists its image file.  The
selling process is a fresh Python interpreter running :data:`SELLER` (written to a temporary
file): it opens the SQLite database, signs t01 in and runs ``selling.sell`` through pcscd with a
``SoftwareKeyProvider`` over master keys saved here; ``CARDVEND_CRASH_AT=<point>`` makes it kill
itself there (app/faults.py).  The points are those of app/services/selling/ (``read``,
``pending``, ``before_write``, ``written``, ``completed``) and one before every APDU of the card
write (``apdu_N``, cardio/terminal.py), counted once by a sale without a crash.

After every kill this process plays the next start: ``recover_at_start`` for the counter, then
the card is presented (``recover_with_card``) and put into the meter.  Then:

* the sale is completed iff the card holds its purchase (count and sale tag), failed iff the
  card is still at the count before, and no sale is left pending or in doubt;
* the card's purchase count is the ledger's, which is the number of completed sales;
* every credit on the card and in the meter belongs to a completed sale.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from app.clock import FixedClock
from app.domain.card import CardContents
from app.domain.ledger import SaleState
from app.persistence.db import Database
from app.persistence.models import Customer
from app.persistence.models import Sale
from app.ports import KeyRole
from app.services import auth
from app.services import selling
from app.services import shifts
from app.services.demo import load_demo
from app.settings import Settings
from cardio.emulator import CardImage
from cardio.emulator import UserCardOS
from cardio.keys import MasterKeys
from cardio.keys import SoftwareKeyProvider
from cardio.meter_sim import MeterSimulator
from cardio.pcsc import PcscReaderPort
from cardio.terminal import ApduTerminal
from cardio.vpcd import VpcdCard
from tests.pcsc_fixtures import READER_SLOT0
from tests.pcsc_fixtures import Pcscd
from tests.pcsc_fixtures import wait_card_absent
from tests.rigs.env import child_env
from tests.rigs.kill import wait_reader_ready

pytestmark = pytest.mark.usefixtures("pcscd")  # skipped cleanly without pcscd and vpcd

ROOT = Path(__file__).resolve().parent.parent
CUSTOMER = "100000000002"  # a card-meter demo customer without arrears or fees
COUNTER = "C01"
AMOUNT = 1000  # fen per sale
NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
ROUNDS = 3  # kills per point
WAIT = 15.0  # seconds to wait for the card or for pcscd
# a purchase-only write: SELECT, GET CHALLENGE, EXTERNAL AUTHENTICATE, GET CHALLENGE,
# UPDATE BINARY (purchase file), READ BINARY (read-back) -- checked by the sale without a crash
WRITE_APDUS = 6
# the points of the sale other than its write APDUs, in the order the sale passes them
BEFORE_WRITE = ("read", "pending", "before_write")
AFTER_WRITE = ("written", "completed")
# the 5th APDU of the write updates the purchase file: a kill before it leaves the card as it was
UPDATE_APDU = 5

SELLER = """\
import datetime as dt, json, sys
from app.clock import FixedClock
from app.persistence.db import Database
from app.ports import KeyRole
from app.services import auth, selling
from app.settings import Settings
from cardio.keys import MasterKeys, SoftwareKeyProvider
from cardio.pcsc import PcscReaderPort
from cardio.terminal import ApduTerminal
from tests.rigs.env import child_env

db_path, keys_path, reader, amount, now = sys.argv[1:6]
saved = json.loads(open(keys_path, encoding="ascii").read())
keys = SoftwareKeyProvider(
    MasterKeys.from_roles({KeyRole[k]: bytes.fromhex(v) for k, v in saved.items()})
)
clock = FixedClock(dt.datetime.fromisoformat(now))
db = Database(db_path)
actor = auth.login(db, "t01", "demo-t01", counter_id="C01", clock=clock)
channel = PcscReaderPort().connect(reader, timeout=15)
terminal = ApduTerminal(channel, keys, utility_code="100001")
outcome = selling.sell(
    db, terminal, actor=actor, amount=int(amount), clock=clock, settings=Settings()
)
channel.close()
print(json.dumps({
    "sale_id": outcome.sale.sale_id,
    "state": outcome.sale.state,
    "apdus": terminal.apdu_count,
    "write_apdus": outcome.apdus,
}))
"""


# --------------------------------------------------------------------------- the rig


@dataclass
class Rig:
    db: Database
    db_path: Path
    keys: SoftwareKeyProvider
    keys_path: Path
    seller: Path
    card: UserCardOS
    server: VpcdCard
    port: PcscReaderPort
    meter: MeterSimulator
    clock: FixedClock
    settings: Settings
    meter_base: int  # remaining on the meter before the first sale
    read_apdus: int = 0  # APDUs of the sale before its write (set by the sale without a crash)

    @contextlib.contextmanager
    def terminal(self) -> Iterator[ApduTerminal]:
        channel = self.port.connect(READER_SLOT0, timeout=WAIT)
        try:
            yield ApduTerminal(channel, self.keys, utility_code="100001")
        finally:
            channel.close()

    def sell(self, crash_at: str | None) -> subprocess.CompletedProcess[str]:
        """Run one sale in a selling process of its own; ``crash_at`` kills it there."""
        env = child_env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["CARDVEND_LANG"] = "en"
        if crash_at is not None:
            env["CARDVEND_CRASH_AT"] = crash_at
        args = [str(self.db_path), str(self.keys_path), READER_SLOT0, str(AMOUNT), NOW.isoformat()]
        return subprocess.run(
            [sys.executable, str(self.seller), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )


def save_master_keys(master: MasterKeys, path: Path) -> None:
    path.write_text(json.dumps({r.name: master.key(r).hex() for r in KeyRole}), encoding="ascii")
    path.chmod(0o600)


@pytest.fixture(scope="module")
def rig(pcscd: Pcscd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("crash")
    clock = FixedClock(NOW)
    settings = Settings()
    db_path = tmp / "cardvend.db"
    db = Database(str(db_path))
    db.migrate()
    load_demo(db, clock)
    teller = auth.login(db, "t01", "demo-t01", counter_id=COUNTER, clock=clock)
    shifts.open_shift(db, actor=teller, float_fen=0, clock=clock)

    master = MasterKeys.generate()
    keys_path = tmp / "master-keys.json"
    save_master_keys(master, keys_path)
    keys = SoftwareKeyProvider(master)
    serial = os.urandom(8)
    image_path = tmp / "card.json"
    card_keys = {int(r): k for r, k in master.diversified_card_keys(serial).items()}
    CardImage.blank(serial, card_keys).save(image_path)
    card = UserCardOS(CardImage.load(image_path), persist_path=image_path)
    server = VpcdCard(card, slot=0).start()
    port = PcscReaderPort()
    seller = tmp / "seller.py"
    seller.write_text(SELLER, encoding="utf-8")
    try:
        meter = MeterSimulator(tmp / "meter.json", keys, clock=clock)
        rig = Rig(
            db=db,
            db_path=db_path,
            keys=keys,
            keys_path=keys_path,
            seller=seller,
            card=card,
            server=server,
            port=port,
            meter=meter,
            clock=clock,
            settings=settings,
            meter_base=0,
        )
        with rig.terminal() as t:
            selling.open_account(
                db, t, actor=teller, customer_no=CUSTOMER, clock=clock, settings=settings
            )
        with rig.terminal() as t:
            assert meter.insert(t).accepted  # the meter binds the card
        rig.meter_base = meter.state.remaining
        yield rig
    finally:
        server.stop()
        port.close()
        db.dispose()
        wait_card_absent()


# --------------------------------------------------------------------------- checks


def sales(db: Database) -> dict[str, Sale]:
    with db.read() as session:
        customer_id = session.scalar(select(Customer.id).where(Customer.customer_no == CUSTOMER))
        rows = session.scalars(select(Sale).where(Sale.customer_id == customer_id)).all()
        session.expunge_all()
        return {s.id: s for s in rows}


def ledger_count(db: Database) -> int:
    with db.read() as session:
        count = session.scalar(
            select(Customer.purchase_count).where(Customer.customer_no == CUSTOMER)
        )
        assert count is not None
        return count


def tag(sale: Sale) -> bytes:
    return uuid.UUID(sale.id).bytes[:8]


def next_start(rig: Rig) -> CardContents:
    """What the counter does when it starts again and the customer presents the card; returns
    the card as the recovery read it.  The card then goes into the meter."""
    wait_reader_ready(READER_SLOT0)  # the killed seller's connection gone
    selling.recover_at_start(rig.db, COUNTER, rig.clock)
    with rig.terminal() as t:
        assessment = selling.recover_with_card(rig.db, t, clock=rig.clock, settings=rig.settings)
    assert assessment.customer.customer_no == CUSTOMER
    if assessment.situation == "unloaded":
        with rig.terminal() as t:
            result = rig.meter.insert(t)
        assert result.accepted and result.reason is None, result
    else:
        assert assessment.situation == "ready", assessment.situation
    return assessment.contents


def check_books(rig: Rig, card: CardContents) -> None:
    """The invariants that hold after every recovery."""
    assert selling.unresolved(rig.db) == []
    all_sales = sales(rig.db)
    assert all(
        s.state in (SaleState.COMPLETED.value, SaleState.FAILED.value) for s in all_sales.values()
    ), {s.id: s.state for s in all_sales.values()}
    completed = [s for s in all_sales.values() if s.state == SaleState.COMPLETED.value]
    on_card = card.purchase.purchase_count if card.purchase else 0
    assert on_card == ledger_count(rig.db) == len(completed)
    assert sorted(s.purchase_count for s in completed) == list(range(1, len(completed) + 1))
    if on_card:  # the credit on the card is the last completed sale's
        assert card.purchase is not None
        last = next(s for s in completed if s.purchase_count == on_card)
        assert (card.purchase.sale_tag, card.purchase.amount) == (tag(last), last.credit)
    meter = rig.meter.state  # every credit the meter loaded was sold
    assert meter.purchase_count == on_card
    assert meter.remaining == rig.meter_base + sum(s.credit for s in completed)


def crash(rig: Rig, point: str) -> None:
    before = sales(rig.db)
    count_before = ledger_count(rig.db)
    proc = rig.sell(point)
    assert proc.returncode == -signal.SIGKILL, (
        f"the seller was not killed at {point!r}: exit {proc.returncode}\n{proc.stdout}\n"
        f"{proc.stderr}"
    )
    new = [s for sid, s in sales(rig.db).items() if sid not in before]
    assert len(new) <= 1
    sale = new[0] if new else None
    # what the kill left behind, before any recovery
    if point == "read":
        assert sale is None  # killed before the sale was recorded
    else:
        assert sale is not None and sale.purchase_count == count_before + 1
        assert sale.state == ("completed" if point == "completed" else "pending"), sale.state

    card = next_start(rig)

    on_card = card.purchase or selling.EMPTY_PURCHASE
    if sale is not None:
        sale = sales(rig.db)[sale.id]
        holds = (on_card.purchase_count, on_card.sale_tag) == (sale.purchase_count, tag(sale))
        behind = on_card.purchase_count == count_before
        seen = (sale.state, on_card.purchase_count, count_before)
        assert (sale.state == SaleState.COMPLETED.value) == holds, seen
        assert (sale.state == SaleState.FAILED.value) == behind, seen
        expected = "completed" if expect_on_card(rig, point) else "failed"
        assert sale.state == expected, f"{point}: {sale.state}"
    else:
        assert on_card.purchase_count == count_before
    check_books(rig, card)


def expect_on_card(rig: Rig, point: str) -> bool:
    """Whether the card got the purchase before the kill at ``point``."""
    if point in BEFORE_WRITE:
        return False
    if point in AFTER_WRITE:
        return True
    n = int(point.removeprefix("apdu_")) - rig.read_apdus  # the n-th APDU of the write
    return n > UPDATE_APDU


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def counted(rig: Rig) -> Rig:
    """One sale without a crash: it completes, and it counts the APDUs before and of the write."""
    proc = rig.sell(None)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["state"] == "completed"
    assert out["write_apdus"] == WRITE_APDUS, out
    rig.read_apdus = out["apdus"] - out["write_apdus"]
    assert rig.read_apdus > 0
    check_books(rig, next_start(rig))
    return rig


POINTS = [
    *BEFORE_WRITE,
    *(f"write_apdu_{i}" for i in range(1, WRITE_APDUS + 1)),
    *AFTER_WRITE,
]


def crash_point(rig: Rig, point: str) -> str:
    """The checkpoint name: ``write_apdu_i`` (the i-th APDU of the write) is ``apdu_N`` of
    the selling process, N counting the APDUs of the card read before it."""
    if point.startswith("write_apdu_"):
        return f"apdu_{rig.read_apdus + int(point.removeprefix('write_apdu_'))}"
    return point


@pytest.mark.parametrize("point", POINTS)
def test_killed_at_every_point_of_a_sale(counted: Rig, point: str) -> None:
    for _ in range(ROUNDS):
        crash(counted, crash_point(counted, point))


def test_points_cover_the_sale(counted: Rig) -> None:
    """At least 8 distinct points, both outcomes among them and in the ledger."""
    names = {crash_point(counted, p) for p in POINTS}
    assert len(names) == len(POINTS) >= 8
    assert {expect_on_card(counted, p) for p in names} == {True, False}
    done = sales(counted.db).values()
    assert any(s.state == "completed" for s in done) and any(s.state == "failed" for s in done)


def test_a_sale_after_all_the_crashes_goes_through(counted: Rig) -> None:
    proc = counted.sell(None)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "completed"
    check_books(counted, next_start(counted))
