"""Card benchmarks: a full user-card purchase write through pcscd + vpcd, and codec throughput.

    python -m tests.bench.bench_card [--writes N]

The purchase write is what a sale does to a card: select, authenticate, a MAC'd update of the
purchase file (with its purchase MAC from the key provider) and its read-back (cardio/PROFILE.md).  Targets: at most 10 APDUs, median at most
10 ms through pcscd + vpcd.  Needs pcscd and the vpcd driver (started here if not running).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.domain.card import CardKind
from app.domain.card import CardWrite
from app.domain.card import PurchaseRecord
from app.domain.card import TariffRecord
from app.domain.card import UpdateFlags
from app.domain.card import UserCardType
from app.domain.card import WriteBack
from app.domain.card import WriteBackStatus
from app.services import demo
from cardio import profile as P
from cardio.channel import EmulatedChannel
from cardio.emulator import CardImage
from cardio.emulator import UserCardOS
from cardio.keys import MasterKeys
from cardio.keys import SoftwareKeyProvider
from cardio.terminal import ApduTerminal
from tests.bench.common import bench_main
from tests.bench.common import emit
from tests.bench.common import median
from tests.bench.common import percentile
from tests.bench.common import rounded
from tests.rigs.user_card import user_params

CST = dt.timezone(dt.timedelta(hours=8))
READER = "Virtual PCD 00 00"
PARAMS = user_params(user_card_type=UserCardType.PURCHASE, update_flags=UpdateFlags.NONE)
_TOU, _TIERED = demo.PLANS["RES-TOU"][1], demo.PLANS["RES-TIER"][1]
TARIFF = TariffRecord(  # the demo's time-of-use periods with its tiers
    1,
    dt.datetime(2026, 1, 1, tzinfo=CST),
    {
        "kind": "tou_tiered",
        "flat_rate": None,
        "periods": _TOU["periods"],
        "schedule": _TOU["schedule"],
        "tiers": _TIERED["tiers"],
        "reset_month": _TIERED["reset_month"],
        "reset_day": _TIERED["reset_day"],
    },
)
WRITE_BACK = WriteBack(
    "200000000002",
    12345,
    0,
    7,
    123456789,
    WriteBackStatus.ALARM1,
    0,
    dt.datetime(2026, 3, 1, 9, 0, tzinfo=CST),
    1,
    b"\x00" * 4,
)


def purchase(n: int) -> PurchaseRecord:
    """A purchase record; the terminal puts the card's purchase MAC in when it writes it."""
    return PurchaseRecord(
        10000 + n,
        n,
        n.to_bytes(8, "big"),
        dt.datetime(2026, 3, 1, 9, 0, n % 60, tzinfo=CST),
        mac=bytes(4),
    )


@contextlib.contextmanager
def running_pcscd() -> Iterator[None]:
    from tests.pcsc_fixtures import pcscd_session

    with pcscd_session() as daemon:
        if READER not in daemon.readers:
            raise RuntimeError("pcscd shows no vpcd reader")
        yield


def make_card(folder: Path) -> tuple[UserCardOS, SoftwareKeyProvider]:
    master = MasterKeys.generate()
    serial = os.urandom(8)
    keys = {int(r): k for r, k in master.diversified_card_keys(serial).items()}
    path = folder / "card.json"
    CardImage.blank(serial, keys).save(path)
    return UserCardOS(CardImage.load(path), persist_path=path), SoftwareKeyProvider(master)


def timed_writes(terminal: ApduTerminal, writes: int) -> tuple[list[float], int]:
    terminal.write(CardWrite(parameters=PARAMS, purchase=purchase(1), current_tariff=TARIFF))
    times: list[float] = []
    apdus = 0
    for n in range(2, writes + 2):
        t0 = time.perf_counter()
        result = terminal.write(CardWrite(purchase=purchase(n)))
        times.append((time.perf_counter() - t0) * 1000)
        apdus = result.apdus
    return times, apdus


def bench_pcsc(writes: int) -> dict[str, Any]:
    from cardio.pcsc import PcscReaderPort
    from cardio.vpcd import VpcdCard

    with tempfile.TemporaryDirectory() as tmp, running_pcscd():
        card, keys = make_card(Path(tmp))
        server = VpcdCard(card, slot=0).start()
        port = PcscReaderPort()
        try:
            channel = port.connect(READER, timeout=15)
            terminal = ApduTerminal(channel, keys)
            terminal.issue(CardKind.USER)
            times, apdus = timed_writes(terminal, writes)
            rtt = []
            read = bytes.fromhex("00B0820000")
            for _ in range(200):
                t0 = time.perf_counter()
                channel.transmit(read)
                rtt.append((time.perf_counter() - t0) * 1000)
            channel.close()
        finally:
            server.stop()
            port.close()
    med = median(times)
    return {
        "bench": "card_purchase_write",
        "path": "pcscd+vpcd",
        "writes": writes,
        "apdus": apdus,
        "median_ms": rounded(med),
        "p95_ms": rounded(percentile(times, 95)),
        "max_ms": rounded(max(times)),
        "apdu_round_trip_median_ms": rounded(median(rtt)),
        "target": "apdus <= 10 and median_ms <= 10",
        "ok": apdus <= 10 and med <= 10,
    }


def bench_in_process(writes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        card, keys = make_card(Path(tmp))
        terminal = ApduTerminal(EmulatedChannel(card), keys)
        terminal.issue(CardKind.USER)
        times, apdus = timed_writes(terminal, writes)
    return {
        "bench": "card_purchase_write",
        "path": "in-process emulator (durable image file)",
        "writes": writes,
        "apdus": apdus,
        "median_ms": rounded(median(times)),
        "p95_ms": rounded(percentile(times, 95)),
        "target": "reference only",
        "ok": True,
    }


def throughput(name: str, fn: Callable[[], object], seconds: float = 0.5) -> dict[str, Any]:
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            fn()
        n += 100
    rate = n / (time.perf_counter() - t0)
    return {
        "bench": "card_codec",
        "kind": name,
        "per_s": round(rate),
        "target": "reference only",
        "ok": True,
    }


def bench_codecs() -> list[dict[str, Any]]:
    p, u, t, w = (
        P.encode_parameters(PARAMS),
        P.encode_purchase(purchase(5)),
        P.encode_tariff(TARIFF),
        P.encode_write_back(WRITE_BACK),
    )
    return [
        throughput("parameters_encode", lambda: P.encode_parameters(PARAMS)),
        throughput("parameters_decode", lambda: P.decode_parameters(p)),
        throughput("purchase_encode", lambda: P.encode_purchase(purchase(5))),
        throughput("purchase_decode", lambda: P.decode_purchase(u)),
        throughput("tariff_encode", lambda: P.encode_tariff(TARIFF)),
        throughput("tariff_decode", lambda: P.decode_tariff(t)),
        throughput("write_back_decode", lambda: P.decode_write_back(w)),
    ]


def run(writes: int = 200) -> list[dict[str, Any]]:
    records = [emit(r) for r in bench_codecs()]
    records.append(emit(bench_in_process(writes)))
    records.append(emit(bench_pcsc(writes)))
    return records


def main(argv: list[str] | None = None) -> int:
    return bench_main(__doc__, run, argv, writes=200)


if __name__ == "__main__":
    sys.exit(main())
