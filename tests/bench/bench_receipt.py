"""Receipt rendering benchmark: PDF per layout and language, and the ESC/POS job.

    python -m tests.bench.bench_receipt [--renders N]

* ``pdf``: ``printing.receipt.render_receipt_pdf`` for each layout (80 mm and 58 mm rolls, A5
  and A4 statements) in Chinese and English, ``--renders`` times each (default 200) after one
  warm-up render; the font is registered once, before timing (its one-off cost is reported as
  ``font_load``).  Target: median at most 20 ms per receipt.  Each render gets a different
  sale id and verification code, so every QR code is encoded anew, as at the counter.
* ``escpos``: ``printing.escpos.receipt_escpos`` at 48 columns; reference only.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from app.domain.receipt import ReceiptData
from printing import fonts
from printing.escpos import receipt_escpos
from printing.receipt import SIZES
from printing.receipt import render_receipt_pdf
from tests.bench.common import bench_main
from tests.bench.common import emit
from tests.bench.common import median
from tests.bench.common import percentile
from tests.bench.common import progress
from tests.bench.common import rounded
from tests.rigs.receipts import RECEIPT

TARGET_MEDIAN_MS = 20.0
LANGUAGES = ("zh_CN", "en")


def receipt(i: int) -> ReceiptData:
    """The i-th receipt: a different sale id and verification code (so a different QR code),
    a copy and a training mark now and then."""
    sale_id = str(uuid.UUID(int=(0x5EED << 64) + i * 7919, version=4))
    return dataclasses.replace(
        RECEIPT,
        sale_id=sale_id,
        verification_code=f"{(i * 2654435761) % 36**8:08X}"[-8:],
        purchase_count=1 + i % 400,
        copy_no=1 if i % 10 == 9 else 0,
        training=i % 25 == 24,
    )


def time_calls(fn: Callable[[int], object], n: int) -> list[float]:
    fn(-1)  # warm-up
    times: list[float] = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return times


def bench_pdf(size: str, language: str, renders: int) -> dict[str, Any]:
    sizes: list[int] = []

    def render(i: int) -> None:
        sizes.append(len(render_receipt_pdf(receipt(i), size=size, language=language)))

    times = time_calls(render, renders)
    med = median(times) * 1000
    return {
        "bench": "receipt",
        "kind": "pdf",
        "size": size,
        "language": language,
        "renders": renders,
        "median_ms": rounded(med),
        "p95_ms": rounded(percentile(times, 95) * 1000),
        "max_ms": rounded(max(times) * 1000),
        "kb": rounded(median([float(s) for s in sizes]) / 1024, 1),
        "target": f"median <= {TARGET_MEDIAN_MS:g} ms",
        "ok": med <= TARGET_MEDIAN_MS,
    }


def bench_escpos(renders: int) -> dict[str, Any]:
    times = time_calls(lambda i: receipt_escpos(receipt(i), language="zh_CN", width=48), renders)
    return {
        "bench": "receipt",
        "kind": "escpos",
        "width": 48,
        "renders": renders,
        "median_ms": rounded(median(times) * 1000),
        "p95_ms": rounded(percentile(times, 95) * 1000),
        "target": "reference only",
        "ok": True,
    }


def run(renders: int = 200) -> list[dict[str, Any]]:
    t = time.perf_counter()
    fonts.font_name()
    records = [
        emit(
            {
                "bench": "receipt",
                "kind": "font_load",
                "ms": rounded((time.perf_counter() - t) * 1000),
                "target": "reference only (once per process)",
                "ok": True,
            }
        )
    ]
    for size in SIZES:
        for language in LANGUAGES:
            progress(f"rendering {renders} receipts, {size} {language} ...")
            records.append(emit(bench_pdf(size, language, renders)))
    records.append(emit(bench_escpos(renders)))
    return records


def main(argv: list[str] | None = None) -> int:
    return bench_main(__doc__, run, argv, renders=200)


if __name__ == "__main__":
    sys.exit(main())
