"""What a receipt shows, independent of how it is rendered (PDF, ESC/POS) or in which language.

Money is integer fen, energy Wh, times timezone-aware (rendered in the office's time zone,
setting ``time_zone``). ``copy_no`` 0 is the original; a reprint is copy 1, 2, ... and is
marked 副本 / COPY with its number. A training-mode sale is marked on the receipt.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


def receipt_no(record_id: str) -> str:
    """The short number a person reads for a sale (or any record with a UUID): the id's first 8
    characters, upper case, as the receipt prints it beside the QR code."""
    return record_id[:8].upper()


@dataclass(frozen=True)
class ReceiptData:
    sale_id: str
    kind: str  # card | remote
    state: str  # completed | reversed | ...
    office_code: str
    office_name: str
    counter_id: str
    operator_id: str
    operator_name: str
    created_at: dt.datetime
    time_zone: str  # IANA name, e.g. Asia/Shanghai
    customer_no: str
    customer_name: str
    address: str
    meter_no: str
    purchase_count: int | None
    amount: int  # paid by the customer
    arrears: int  # deducted first
    fees: int  # deducted first
    credit: int  # loaded onto the card / meter
    tariff_plan: str
    tariff_name: str
    tariff_version_no: int
    energy_wh: int  # estimate at the tariff
    meter_balance: int | None  # the meter's remaining credit from the card's write-back
    cash_received: int | None
    change: int | None
    verification_code: str  # the central system checks it against the sale (see sync)
    copy_no: int = 0
    training: bool = False

    @property
    def short_id(self) -> str:
        """The receipt number printed beside the QR code (:func:`receipt_no`)."""
        return receipt_no(self.sale_id)

    @property
    def qr_payload(self) -> str:
        """What the QR code carries: scheme, sale UUID and verification code."""
        return f"CV1:{self.sale_id}:{self.verification_code}"

    @property
    def local_time(self) -> dt.datetime:
        """The sale's time in the office's time zone."""
        from app.localtime import local

        return local(self.created_at, self.time_zone)
