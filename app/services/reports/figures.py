"""What each report returns: its rows and totals (JSON-ready), and the labels of their values."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from app.domain.customers import CustomerStatus
from app.domain.customers import MeterKind
from app.domain.ledger import SaleState
from app.i18n import N_
from app.settings import TIME_ZONE

DEFAULT_TZ: str = TIME_ZONE.default
STATS_DAYS = 30
TAKEN = (SaleState.COMPLETED.value, SaleState.REVERSED.value)
STATE_ORDER = tuple(s.value for s in SaleState)  # pending, completed, failed, in_doubt, reversed
KIND_ORDER = tuple(k.value for k in MeterKind)
STATUS_ORDER = tuple(s.value for s in CustomerStatus)
# balance buckets from the card write-back, worst last but one; each customer is in exactly one
BUCKETS = ("normal", "alarm1", "alarm2", "tripped", "no_write_back")
BUCKET_LABELS = {
    "normal": N_("Normal"),
    "alarm1": N_("At or below alarm 1"),
    "alarm2": N_("At or below alarm 2"),
    "tripped": N_("Tripped"),
    "no_write_back": N_("No write-back yet"),
}
# the labels of sale and reversal states (the domain's; a reversal's states are sale states' too)
STATE_LABELS = {s.value: s.label for s in SaleState}
KIND_LABELS = {"card": N_("card"), "remote": N_("remote")}
STATUS_LABELS = {"active": N_("active"), "paused": N_("paused"), "closed": N_("closed")}


# --------------------------------------------------------------------------- JSON


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dt.date):  # datetime too
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


class _Json:
    def to_json(self) -> dict[str, Any]:
        data = _plain(self)
        assert isinstance(data, dict)
        return data


# --------------------------------------------------------------------------- shift report


@dataclasses.dataclass(frozen=True)
class ShiftSaleLine(_Json):
    at: dt.datetime  # local time
    sale_id: str
    short_id: str  # the first 8 characters, as on the receipt
    customer_no: str
    kind: str  # card | remote
    state: str
    purchase_count: int | None
    amount_fen: int  # paid by the customer
    arrears_fen: int
    fees_fen: int
    credit_fen: int
    cash_fen: int  # what it put in the drawer: the amount when it took money, else 0
    tendered_fen: int | None  # cash the customer handed over, when recorded


@dataclasses.dataclass(frozen=True)
class StateTotal(_Json):
    state: str
    count: int
    amount_fen: int


@dataclasses.dataclass(frozen=True)
class ReversalLine(_Json):
    at: dt.datetime  # local time it was made
    reversal_id: str
    sale_id: str
    short_id: str  # of the sale
    customer_no: str
    state: str  # pending | completed | failed
    amount_fen: int
    operator_id: str
    approver_id: str


@dataclasses.dataclass(frozen=True)
class FeePaymentLine(_Json):
    at: dt.datetime
    payment_id: str
    customer_no: str
    kind: str  # replacement
    amount_fen: int
    operator_id: str


@dataclasses.dataclass(frozen=True)
class RefundLine(_Json):
    """Cash handed back when an account was closed on the shift."""

    at: dt.datetime
    event_id: str
    customer_no: str
    amount_fen: int
    operator_id: str
    approver_id: str


@dataclasses.dataclass(frozen=True)
class ShiftReport(_Json):
    shift_id: str
    counter_id: str
    operator_id: str
    operator_name: str
    office_code: str | None
    office_name: str | None
    time_zone: str
    opened_at: dt.datetime  # local
    closed_at: dt.datetime | None
    closed_by: str | None
    generated_at: dt.datetime
    float_fen: int
    sales: tuple[ShiftSaleLine, ...]
    by_state: tuple[StateTotal, ...]  # every state, in STATE_ORDER, zeros included
    sales_count: int  # sales that took money (completed or reversed)
    sales_fen: int
    credit_fen: int  # completed sales
    arrears_fen: int
    fees_fen: int
    reversals: tuple[ReversalLine, ...]  # every reversal made in the shift
    reversals_count: int  # completed ones: cash handed back
    reversals_fen: int
    fee_payments: tuple[FeePaymentLine, ...]
    fee_payments_count: int
    fee_payments_fen: int
    net_cash_fen: int  # sales_fen + fee_payments_fen - reversals_fen - refunds_fen
    expected_cash_fen: int  # float + net cash; as stored at the close, provisional while open
    counted_cash_fen: int | None  # None while open
    variance_fen: int | None  # counted - expected; None while open
    # cash refunded to customers whose accounts were closed on the shift
    refunds: tuple[RefundLine, ...] = ()
    refunds_count: int = 0
    refunds_fen: int = 0

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "is_open": self.is_open}


# --------------------------------------------------------------------------- daily report


@dataclasses.dataclass(frozen=True)
class DailyRow(_Json):
    key: str  # operator id, counter id; "" for the totals
    name: str  # operator's name; "" for a counter
    sales_count: int
    sales_fen: int
    credit_fen: int
    arrears_fen: int
    fees_fen: int
    reversals_count: int
    reversals_fen: int
    fee_payments_count: int
    fee_payments_fen: int
    net_cash_fen: int  # sales + fee payments - handed back - refunds
    refunds_count: int = 0  # accounts closed with cash handed back
    refunds_fen: int = 0


@dataclasses.dataclass(frozen=True)
class DailyShift(_Json):
    shift_id: str
    counter_id: str
    operator_id: str
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    float_fen: int
    expected_cash_fen: int | None  # None while open
    counted_cash_fen: int | None
    variance_fen: int | None


@dataclasses.dataclass(frozen=True)
class DailyReport(_Json):
    office_code: str
    office_name: str
    day: dt.date
    time_zone: str
    start: dt.datetime  # local midnight
    end: dt.datetime  # the next local midnight (exclusive)
    generated_at: dt.datetime
    by_operator: tuple[DailyRow, ...]
    by_counter: tuple[DailyRow, ...]
    totals: DailyRow
    shifts: tuple[DailyShift, ...]  # shifts open at any moment of the day
    unresolved_count: int  # pending / in-doubt sales of the day (not counted above)
    failed_count: int  # failed sales of the day (took no money)


# --------------------------------------------------------------------------- statistics


@dataclasses.dataclass(frozen=True)
class CustomerCount(_Json):
    meter_kind: str
    status: str
    count: int


@dataclasses.dataclass(frozen=True)
class DayAmount(_Json):
    day: dt.date
    sales_count: int
    amount_fen: int
    credit_fen: int


@dataclasses.dataclass(frozen=True)
class PlanAmount(_Json):
    plan_code: str
    plan_name: str
    customers: int  # the office's customers on the plan
    sales_count: int  # completed sales in the period
    amount_fen: int
    credit_fen: int
    energy_wh: int


@dataclasses.dataclass(frozen=True)
class BalanceBucket(_Json):
    bucket: str  # one of BUCKETS
    count: int
    remaining_fen: int  # sum of the meters' remaining credit (0 for no_write_back)


@dataclasses.dataclass(frozen=True)
class StatsReport(_Json):
    office_code: str
    office_name: str
    time_zone: str
    generated_at: dt.datetime
    first_day: dt.date
    last_day: dt.date  # today (local)
    customers: tuple[CustomerCount, ...]  # card/remote x active/paused/closed, zeros included
    customers_total: int
    daily: tuple[DayAmount, ...]  # one per day, first_day..last_day
    plans: tuple[PlanAmount, ...]
    sold_count: int  # completed sales to the office's customers in the period
    sold_fen: int
    balances: tuple[BalanceBucket, ...]  # in BUCKETS order; card meters not closed
    balance_customers: int
    remaining_fen: int  # sum of remaining over those with a write-back
