"""Sale benchmark: a card sale from card presented to completed, through pcscd + vpcd.

    python -m tests.bench.bench_sale [--sales N]

Each sale is a real ``selling.sell`` on a SQLite database as the counter keeps it (WAL,
``synchronous=FULL``) over a card served by vpcd: read the card, the checks (``assess``: identify
the customer, compare purchase counts; the offline limits), commit the pending sale, build the
card change, write and verify the card, commit the completed sale.  The service pieces are
wrapped with timers so the steps are measured inside the real call, and the total is the call
itself.  Between sales the meter simulator loads the purchase through the same channel (not
timed), so every sale starts from a card the meter has loaded.  Target: median at most 30 ms.
Needs pcscd and the vpcd driver (started here if not running).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import TypeVar

from sqlalchemy import text

from app.clock import FixedClock
from app.domain.card import CardContents
from app.domain.card import CardWrite
from app.domain.card import WriteResult
from app.persistence.db import Database
from app.services import auth
from app.services import ledger
from app.services import selling
from app.services import shifts
from app.services.demo import load_demo
from app.services.selling import sale as selling_sale
from app.settings import Settings
from cardio.emulator import CardImage
from cardio.emulator import UserCardOS
from cardio.keys import MasterKeys
from cardio.keys import SoftwareKeyProvider
from cardio.meter_sim import MeterSimulator
from cardio.terminal import ApduTerminal
from tests.bench.bench_card import READER
from tests.bench.bench_card import running_pcscd
from tests.bench.common import bench_main
from tests.bench.common import emit
from tests.bench.common import median
from tests.bench.common import percentile
from tests.bench.common import progress
from tests.bench.common import rounded
from tests.pcsc_fixtures import exclusive_virtual_readers

CUSTOMER = "100000000002"  # a card-meter demo customer without arrears or fees
AMOUNT = 1000  # fen
WARMUP = 5
TARGET_MS = 30.0
# the steps of selling.sell, in order; "other" is the rest of the call (authorisation, the
# card-change transaction, bookkeeping between the steps)
STEPS = ("read", "assess", "offline_check", "begin_pending", "card_change", "write", "complete")

T = TypeVar("T")


class Timings:
    """Milliseconds per step of the sale under way."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}

    def wrap(self, step: str, fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> T:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                ms = (time.perf_counter() - t0) * 1000
                self.current[step] = self.current.get(step, 0.0) + ms

        return timed


class TimedTerminal(ApduTerminal):
    """The counter's terminal, timing the card read and the card write of a sale."""

    timings: Timings

    def read(self) -> CardContents:
        return self.timings.wrap("read", super().read)()

    def write(self, change: CardWrite, *, expect_serial: bytes | None = None) -> WriteResult:
        return self.timings.wrap("write", super().write)(change, expect_serial=expect_serial)


@contextlib.contextmanager
def timed_services(timings: Timings) -> Iterator[None]:
    """Wrap the service functions ``selling.sell`` calls with timers, for the benchmark only."""
    patches = [
        (selling_sale, "assess", "assess"),
        (selling_sale, "check_offline_limits", "offline_check"),
        (selling_sale, "card_change", "card_change"),
        (ledger, "begin_card_sale", "begin_pending"),
        (ledger, "complete_sale", "complete"),
    ]
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    try:
        for module, name, step in patches:
            setattr(module, name, timings.wrap(step, getattr(module, name)))
        yield
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)


def sqlite_durability(db: Database) -> str:
    with db.read() as session:
        mode = session.execute(text("PRAGMA journal_mode")).scalar()
        sync = session.execute(text("PRAGMA synchronous")).scalar()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return f"{str(mode).upper()}+{names.get(sync, sync)}"


def bench_sales(sales: int) -> dict[str, Any]:
    from cardio.pcsc import PcscReaderPort
    from cardio.vpcd import VpcdCard

    clock = FixedClock(dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC))
    settings = Settings()
    with (
        tempfile.TemporaryDirectory(prefix="cardvend-bench-sale-") as tmp,
        exclusive_virtual_readers(),  # a test session may be using the virtual card slots
        running_pcscd(),
    ):
        folder = Path(tmp)
        db = Database(str(folder / "cardvend.db"))
        db.migrate()
        load_demo(db, clock)
        teller = auth.login(db, "t01", "demo-t01", counter_id="C01", clock=clock)
        shifts.open_shift(db, actor=teller, float_fen=0, clock=clock)
        durability = sqlite_durability(db)

        master = MasterKeys.generate()
        keys = SoftwareKeyProvider(master)
        serial = os.urandom(8)
        image = folder / "card.json"
        card_keys = {int(r): k for r, k in master.diversified_card_keys(serial).items()}
        CardImage.blank(serial, card_keys).save(image)
        server = VpcdCard(UserCardOS(CardImage.load(image), persist_path=image), slot=0).start()
        port = PcscReaderPort()
        timings = Timings()
        try:
            channel = port.connect(READER, timeout=15)
            terminal = TimedTerminal(channel, keys, utility_code="100001")
            terminal.timings = timings
            meter = MeterSimulator(folder / "meter.json", keys, clock=clock)
            selling.open_account(
                db, terminal, actor=teller, customer_no=CUSTOMER, clock=clock, settings=settings
            )
            meter.insert(terminal)

            totals: list[float] = []
            steps: dict[str, list[float]] = {s: [] for s in (*STEPS, "other")}
            apdus: tuple[int, int] = (0, 0)
            with timed_services(timings):
                for n in range(WARMUP + sales):
                    timings.current = {}  # the meter's card read is not the sale's
                    first_apdu = terminal.apdu_count
                    t0 = time.perf_counter()
                    outcome = selling.sell(
                        db, terminal, actor=teller, amount=AMOUNT, clock=clock, settings=settings
                    )
                    total = (time.perf_counter() - t0) * 1000
                    sale_apdus = terminal.apdu_count - first_apdu
                    measured, timings.current = timings.current, {}
                    if outcome.sale.state != "completed":
                        raise RuntimeError(f"sale {n} ended {outcome.sale.state}")
                    loaded = meter.insert(terminal)  # the customer loads it: not timed
                    if not loaded.accepted or loaded.credited != outcome.sale.credit_fen:
                        raise RuntimeError(f"the meter did not load sale {n}: {loaded}")
                    if n < WARMUP:
                        continue
                    totals.append(total)
                    for s in STEPS:
                        steps[s].append(measured.get(s, 0.0))
                    steps["other"].append(total - sum(measured.values()))
                    apdus = (sale_apdus, outcome.apdus)
            channel.close()
        finally:
            server.stop()
            port.close()
            db.dispose()
    med = median(totals)
    step_medians = {s: rounded(median(v)) for s, v in steps.items()}
    progress(
        f"sale: median {med:.1f} ms over {sales} sales, {apdus[0]} APDUs ({apdus[1]} in the "
        "write); steps (median ms): " + ", ".join(f"{s} {v}" for s, v in step_medians.items())
    )
    return {
        "bench": "sale",
        "path": "pcscd+vpcd",
        "sqlite": durability,
        "sales": sales,
        "apdus": apdus[0],
        "read_apdus": apdus[0] - apdus[1],
        "write_apdus": apdus[1],
        "median_ms": rounded(med),
        "p95_ms": rounded(percentile(totals, 95)),
        "max_ms": rounded(max(totals)),
        "steps_median_ms": step_medians,
        "steps_p95_ms": {s: rounded(percentile(v, 95)) for s, v in steps.items()},
        "target": f"median_ms <= {TARGET_MS:g}",
        "ok": med <= TARGET_MS,
    }


def run(sales: int = 100) -> list[dict[str, Any]]:
    return [emit(bench_sales(sales))]


def main(argv: list[str] | None = None) -> int:
    return bench_main(__doc__, run, argv, sales=100)


if __name__ == "__main__":
    sys.exit(main())
