"""A payment channel's day: the station's statement file, and the channel's file compared with
what the station holds.

The file format both ways (CSV, UTF-8, comma, a header line then one payment a line)::

    txn_id,customer_no,amount_fen,paid_at
    B20260301-0001,100000000010,20000,2026-03-01T09:15:00+08:00

``amount_fen`` is an integer number of fen, ``paid_at`` ISO 8601 with an offset; a day is
:data:`~sync.central.channels.DAY_ZONE`'s.  The station writes its statement through
:mod:`app.csvsafe` (no cell a spreadsheet runs as a formula) and reads a file back undoing that
escape, so its own statement reconciles with itself.

Findings, by transaction id (a line whose id the station holds for another day is still
compared, so a payment near midnight is never "missing" on both sides):

- ``matched``: the station holds it with the same customer and amount;
- ``missing_at_station``: in the channel's file, not at the station (it never arrived, or was
  refused: the channel should post it again, or refund);
- ``missing_at_channel``: the station holds it for this day, the file does not list it;
- ``amount_differs`` / ``customer_differs``: both hold the id with another amount or customer.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Final

from app import csvsafe
from sync import contract as c
from sync.central.base import StoreBase
from sync.central.channels import DAY_ZONE
from sync.central.channels import day_payments
from sync.central.channels import payments_by_txn

HEADER: Final = ("txn_id", "customer_no", "amount_fen", "paid_at")
KINDS: Final = (
    "matched",
    "missing_at_station",
    "missing_at_channel",
    "amount_differs",
    "customer_differs",
)
MAX_LINES: Final = 1_000_000
_TXN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
_DIGITS12 = re.compile(r"[0-9]{12}", re.ASCII)
_FEN = re.compile(r"[0-9]{1,15}", re.ASCII)


class FileError(ValueError):
    """The channel's file is not in the format: ``line`` (1 = the header) and what is wrong."""

    def __init__(self, line: int, detail: str) -> None:
        super().__init__(f"line {line}: {detail}")
        self.line = line
        self.detail = detail


@dataclass(frozen=True)
class Line:
    txn_id: str
    customer_no: str
    amount_fen: int
    paid_at: dt.datetime


@dataclass(frozen=True)
class Finding:
    kind: str
    txn_id: str
    customer_no: str
    station_fen: int | None
    channel_fen: int | None
    station_customer: str | None = None
    channel_customer: str | None = None


@dataclass
class Reconciliation:
    channel_id: str
    day: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    station_fen: int = 0  # the day's total at the station
    channel_fen: int = 0  # the file's total
    findings: list[Finding] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind != "matched")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["differences"] = self.differences
        return out


def parse_time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("needs an offset")
    return value


def read_file(text: str) -> list[Line]:
    """The channel's file, strictly (ids ASCII and whole, amounts integer fen); raises
    :class:`FileError` at the first line that is not in the format."""
    rows = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = next(rows, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise FileError(1, f"the header must be {','.join(HEADER)}")
    lines: list[Line] = []
    seen: set[str] = set()
    for n, raw in enumerate(rows, start=2):
        if not raw or all(not cell.strip() for cell in raw):
            continue
        if n > MAX_LINES:
            raise FileError(n, f"more than {MAX_LINES} lines")
        if len(raw) != len(HEADER):
            raise FileError(n, f"{len(raw)} cells, not {len(HEADER)}")
        txn, customer, fen, paid = (csvsafe.unescape_cell(cell) for cell in raw)
        if not _TXN.fullmatch(txn):
            raise FileError(n, f"txn_id {txn!r} is not valid")
        if txn in seen:
            raise FileError(n, f"txn_id {txn} is listed twice")
        if not _DIGITS12.fullmatch(customer):
            raise FileError(n, f"customer_no {customer!r} is not 12 digits")
        if not _FEN.fullmatch(fen):
            raise FileError(n, f"amount_fen {fen!r} is not a whole number of fen")
        try:
            when = parse_time(paid)
        except ValueError:
            raise FileError(n, f"paid_at {paid!r} is not an ISO 8601 time with an offset") from None
        seen.add(txn)
        lines.append(Line(txn, customer, int(fen), when))
    return lines


def reconcile(store: StoreBase, channel_id: str, day: dt.date, lines: list[Line]) -> Reconciliation:
    """The channel's ``lines`` for ``day`` against what the station holds."""
    report = Reconciliation(channel_id, day.isoformat())
    held = payments_by_txn(store, channel_id, (ln.txn_id for ln in lines))
    of_day = {p.txn_id: p for p in day_payments(store, channel_id, day)}
    report.station_fen = sum(p.amount_fen for p in of_day.values())
    report.channel_fen = sum(ln.amount_fen for ln in lines)

    def found(kind: str, finding: Finding) -> None:
        report.counts[kind] += 1
        if kind != "matched":
            report.findings.append(finding)

    for ln in lines:
        p = held.get(ln.txn_id)
        if p is None:
            found(
                "missing_at_station",
                Finding("missing_at_station", ln.txn_id, ln.customer_no, None, ln.amount_fen),
            )
        elif p.customer_no != ln.customer_no:
            found(
                "customer_differs",
                Finding(
                    "customer_differs", ln.txn_id, p.customer_no, p.amount_fen, ln.amount_fen,
                    station_customer=p.customer_no, channel_customer=ln.customer_no,
                ),
            )  # fmt: skip
        elif p.amount_fen != ln.amount_fen:
            found(
                "amount_differs",
                Finding("amount_differs", ln.txn_id, p.customer_no, p.amount_fen, ln.amount_fen),
            )
        else:
            found("matched", Finding("matched", ln.txn_id, p.customer_no, p.amount_fen, None))
    listed = {ln.txn_id for ln in lines}
    for txn_id, p in of_day.items():
        if txn_id not in listed:
            found(
                "missing_at_channel",
                Finding("missing_at_channel", txn_id, p.customer_no, p.amount_fen, None),
            )
    return report


def statement_csv(payments: list[c.ChannelPayment]) -> bytes:
    """The station's file of a channel's day, in the format above (formula-safe)."""
    out = io.StringIO(newline="")
    w = csvsafe.writer(out, lineterminator="\r\n")
    w.writerow(HEADER)
    for p in payments:
        w.writerow(
            (
                p.txn_id,
                p.customer_no,
                p.amount_fen,
                p.paid_at.astimezone(DAY_ZONE).isoformat(timespec="seconds"),
            )
        )
    return out.getvalue().encode("utf-8")
