"""The settlement of a closed account: what the customer still had, what it paid off, and what
was handed back (the figures of the close's account event and of its printed statement)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

from app.i18n import N_

REFUND = "refund"  # the rest is handed back in cash on the open shift
CREDIT_NOTE = "credit_note"  # the rest is kept as a credit note
REFUND_MODES = (REFUND, CREDIT_NOTE)

ERASE = "erase"  # the card is erased (it can be issued again as a blank card)
KEEP = "keep"  # the customer keeps the card; its serial is blacklisted
CARD_OUTCOMES = (ERASE, KEEP)

# where the meter's remaining balance came from
FROM_WRITE_BACK = "write_back"  # the meter's last write-back (on the card, or noted earlier)
FROM_METER_READ = "meter_read"  # a technician's read of the meter
NOTHING_SOLD = "nothing_sold"  # a card meter that never had a purchase holds nothing

# what happened to the card
CARD_ERASED = "erased"
CARD_KEPT = "kept"  # read, kept by the customer, blacklisted
CARD_UNREADABLE = "unreadable"  # not presented or not readable: blacklisted
NO_CARD = "none"  # a remote fee-control customer, or a card customer without a card

CARD_TEXT = {
    CARD_ERASED: N_("erased"),
    CARD_KEPT: N_("kept by the customer, blacklisted"),
    CARD_UNREADABLE: N_("not read, blacklisted"),
    NO_CARD: N_("no card"),
}
MODE_TEXT = {REFUND: N_("refunded in cash"), CREDIT_NOTE: N_("kept as a credit note")}


@dataclass(frozen=True)
class Settlement:
    """The figures of one close, in fen.  ``balance`` = ``unloaded`` + ``meter_remaining`` -
    ``arrears`` - ``fees``; it is ``refund`` (cash) + ``credit_note``."""

    customer_no: str
    name: str
    address: str
    meter_no: str
    meter_kind: str
    card_serial: str | None
    card: str  # CARD_ERASED | CARD_KEPT | CARD_UNREADABLE | NO_CARD
    unloaded: int  # credit sold onto the card that the meter has not loaded
    unloaded_purchases: int
    meter_remaining: int  # negative: overdraft in use
    meter_count: int | None  # the purchase count the meter reported
    meter_source: str  # FROM_WRITE_BACK | FROM_METER_READ | NOTHING_SOLD
    arrears: int
    fees: int
    balance: int
    mode: str
    refund: int
    credit_note: int
    reason: str = ""
    event_id: str | None = None  # None: a preview, nothing closed yet
    closed_at: dt.datetime | None = None
    operator_id: str = ""
    approver_id: str | None = None
    counter_id: str = ""
    training: bool = False

    def detail(self) -> dict[str, Any]:
        """The plain values the close's account event keeps (and sends centrally)."""
        return {
            "card_serial": self.card_serial,
            "card": self.card,
            "unloaded": self.unloaded,
            "unloaded_purchases": self.unloaded_purchases,
            "meter_remaining": self.meter_remaining,
            "meter_count": self.meter_count,
            "meter_source": self.meter_source,
            "arrears": self.arrears,
            "fees": self.fees,
            "balance": self.balance,
            "mode": self.mode,
            "refund": self.refund,
            "credit_note": self.credit_note,
        }

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["closed_at"] = self.closed_at.isoformat() if self.closed_at else None
        return out
