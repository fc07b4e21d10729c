"""The central system's trust rules, as plain functions: what a counter may post and what it
must hold together.  Each refusal has a stable code (``sync.contract.REFUSALS``); the store
applies the rules (``sync.central.apply``) and the HTTP layer only maps a refusal to a status.

A counter acts only in its own lane:

- sales (card and remote), card bindings, replacements, control reports and SMS requests only
  for customers of the counter's office (the office it registered with), and a sale names that
  office; job results only for jobs of that office;
- reversals and rewrites only of sales this same counter made; a reversal's approver is not its
  operator, and its amount is the sale's;
- a sale adds up: amount = arrears + fees + credit; the cash received (when given) covers the
  amount; every settled arrears ref is held centrally for the sale's customer;
- no record's time is ahead of the central clock by more than the clock-skew allowance.

A customer the central archive does not know is not refused (the sale is flagged
``unknown_customer`` and changes nothing): the rules refuse what is demonstrably outside the
lane or inconsistent, never what the central side merely has not heard of yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sync import contract as c

COUNTER_MISMATCH = "counter_mismatch"
OTHER_OFFICE = "other_office"
NOT_OWN_SALE = "not_own_sale"
APPROVER_IS_OPERATOR = "approver_is_operator"
DOES_NOT_ADD_UP = "does_not_add_up"
CASH_SHORT = "cash_short"
UNKNOWN_REF = "unknown_ref"
FUTURE_CREATED_AT = "future_created_at"
COUNTER_ID_TAKEN = "counter_id_taken"
OFFICE_MISMATCH = "office_mismatch"
METER_TAKEN = "meter_taken"
UNAUTHORIZED = "unauthorized"

REVIEW_UNKNOWN_CUSTOMER = "unknown_customer"
REVIEW_CUSTOMER_CLOSED = "customer_closed"
REVIEW_UNKNOWN_TARIFF = "unknown_tariff"
REVIEW_PURCHASE_COUNT_GAP = "purchase_count_gap"

assert {
    COUNTER_MISMATCH,
    OTHER_OFFICE,
    NOT_OWN_SALE,
    APPROVER_IS_OPERATOR,
    DOES_NOT_ADD_UP,
    CASH_SHORT,
    UNKNOWN_REF,
    FUTURE_CREATED_AT,
    COUNTER_ID_TAKEN,
    OFFICE_MISMATCH,
    METER_TAKEN,
} == set(c.REFUSALS)
assert {
    REVIEW_UNKNOWN_CUSTOMER,
    REVIEW_CUSTOMER_CLOSED,
    REVIEW_UNKNOWN_TARIFF,
    REVIEW_PURCHASE_COUNT_GAP,
} == set(c.REVIEWS)


@dataclass(frozen=True)
class Refusal:
    """Why one record (or a registration) is refused: a stable code and an English message."""

    code: str
    message: str

    @property
    def status(self) -> int:
        """The HTTP status of a single post refused for this reason."""
        if self.code == UNAUTHORIZED:
            return 401
        return c.REFUSALS[self.code][0]


class Refused(Exception):
    """A request the rules refuse as a whole (registration); carries the refusal."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(slots=True)
class CustomerFacts:
    """What the rules read of a customer in the central archive (applying a batch of sales
    follows the purchase count and card serial in it as the batch runs)."""

    office_code: str
    status: str
    meter_kind: str
    purchase_count: int
    card_serial: str | None


# --------------------------------------------------------------------------- single checks


def own_counter(item_counter: str, counter_id: str) -> Refusal | None:
    if item_counter != counter_id:
        return Refusal(
            COUNTER_MISMATCH,
            f"counter_id {item_counter!r} is not the counter this token belongs to "
            f"({counter_id!r})",
        )
    return None


def not_in_future(
    when: dt.datetime, now: dt.datetime, skew: dt.timedelta, field: str = "created_at"
) -> Refusal | None:
    if when > now + skew:
        return Refusal(
            FUTURE_CREATED_AT,
            f"{field} {when.isoformat()} is ahead of the central clock "
            f"({now.isoformat()}) by more than {int(skew.total_seconds())} s",
        )
    return None


def same_office(
    customer_no: str, customer: CustomerFacts | None, office_code: str
) -> Refusal | None:
    """A customer the archive does not know passes (the sale is flagged instead)."""
    if customer is not None and customer.office_code != office_code:
        return Refusal(
            OTHER_OFFICE, f"customer {customer_no} does not belong to office {office_code!r}"
        )
    return None


def own_sale(sale_id: str, sale_counter: str | None, counter_id: str) -> Refusal | None:
    """A sale the central system does not hold yet passes (a reversal may come first; it is
    applied when its sale arrives, and only if the same counter made it)."""
    if sale_counter is not None and sale_counter != counter_id:
        return Refusal(NOT_OWN_SALE, f"sale {sale_id} was made by another counter")
    return None


# --------------------------------------------------------------------------- records


def vet_sale(
    sale: c.SaleRecord,
    customer: CustomerFacts | None,
    refs: Mapping[str, str],
    office_code: str,
    now: dt.datetime,
    skew: dt.timedelta,
) -> Refusal | None:
    """The rules of a sale; ``refs`` maps the arrears refs the central system holds (of the
    refs the sale names) to their customer."""
    if sale.office_code != office_code:
        return Refusal(
            OTHER_OFFICE,
            f"the sale names office {sale.office_code!r}; this counter is of {office_code!r}",
        )
    refused = same_office(sale.customer_no, customer, office_code)
    if refused is not None:
        return refused
    if sale.amount != sale.arrears + sale.fees + sale.credit:
        return Refusal(
            DOES_NOT_ADD_UP,
            f"amount {sale.amount} is not arrears {sale.arrears} + fees {sale.fees} + credit "
            f"{sale.credit}",
        )
    if sale.cash_received is not None and sale.cash_received < sale.amount:
        return Refusal(
            CASH_SHORT, f"cash received {sale.cash_received} is less than the amount {sale.amount}"
        )
    for ref in sale.settled_refs:
        if refs.get(ref) != sale.customer_no:
            return Refusal(
                UNKNOWN_REF,
                f"arrears item {ref[:40]!r} is not held for customer {sale.customer_no}",
            )
    return not_in_future(sale.created_at, now, skew)


def vet_reversal(
    rev: c.ReversalRecord,
    sale: tuple[str, int] | None,
    counter_id: str,
    now: dt.datetime,
    skew: dt.timedelta,
) -> Refusal | None:
    """``sale``: the reversed sale's (counter, amount) when the central system holds it."""
    if sale is not None:
        refused = own_sale(rev.sale_id, sale[0], counter_id)
        if refused is not None:
            return refused
    if rev.approver_id == rev.operator_id:
        return Refusal(
            APPROVER_IS_OPERATOR,
            f"reversal {rev.id} is approved by its own operator {rev.operator_id!r}",
        )
    if sale is not None:
        if rev.amount != sale[1]:
            return Refusal(
                DOES_NOT_ADD_UP,
                f"the reversal's amount {rev.amount} is not the sale's amount {sale[1]}",
            )
    return not_in_future(rev.created_at, now, skew)


def record_time(item: c.Model) -> tuple[str, dt.datetime] | None:
    """The time a posted record says it was made (field name, value)."""
    for name in ("created_at", "seen_at", "done_at"):
        value = getattr(item, name, None)
        if isinstance(value, dt.datetime):
            return name, value
    return None


def vet_time(item: c.Model, now: dt.datetime, skew: dt.timedelta) -> Refusal | None:
    found = record_time(item)
    if found is None:
        return None
    return not_in_future(found[1], now, skew, found[0])


def purchase_follows(sale: c.SaleRecord, last: int) -> bool:
    """A completed card sale's purchase count follows the customer's last one."""
    return sale.purchase_count is not None and sale.purchase_count == last + 1
