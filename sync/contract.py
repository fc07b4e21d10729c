"""The contract between a counter and the central marketing system: ``/api/v1``, JSON.

These pydantic models are the contract; both sides use them (the client validates every response
with them, the reference central server validates every request with them), and
``sync/openapi.json`` is generated from them by the station's FastAPI application
(:mod:`sync.central.api`; ``python -m sync.contract --write``; a test keeps the committed
document equal to the generated one).

Conventions:
- money is integer fen, energy integer Wh, times ISO 8601 with an offset;
- every record a counter posts carries a client-generated UUID; the central side inserts it
  idempotently (a repeat with the same body is ``duplicate``, the same UUID with another body is
  ``conflict``: 409 for a single post, a per-item result in a batch);
- every POST carries an ``Idempotency-Key`` header; a repeated key with the same body replays the
  first answer;
- pulls are pages after an opaque integer cursor (``after``), ``next_cursor`` is what to ask for
  next, ``has_more`` says whether to ask at once;
- errors are a :class:`Problem` body with a stable ``code``;
- a counter acts only in its own lane: its own office's customers and jobs, its own sales; a
  posted record outside it, or one that does not hold together, is refused with a stable code
  (:data:`REFUSALS`: a 403 or 422 Problem for a single post, a ``rejected`` item result carrying
  the code in a batch); a sale that is accepted but odd is flagged with a review code
  (:data:`REVIEWS`);
- POST and PUT bodies are ``application/json`` (415 otherwise), at most :data:`MAX_BODY` bytes
  (413); the bearer token is checked before a body is read.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import AwareDatetime
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from app.domain import ids

API_PREFIX = "/api/v1"
CONTRACT_VERSION = "1.0.0"
OPENAPI_FILE = Path(__file__).with_name("openapi.json")
MAX_PAGE = 5000  # largest page a client may ask for
MAX_BATCH = 1000  # most items in one batch post
# the largest request body the central system reads (413 beyond): a batch of MAX_BATCH sales as
# a counter writes them is about 0.5 MB (measured: 524,011 bytes with two settled refs each); a
# batch that the list and string limits below allow but that is larger (8.6 MB at worst for
# sales) is sent in halves by the client (sync.client)
MAX_BODY = 4 * 1024 * 1024
MAX_REFS = 32  # arrears items one sale may settle
MAX_ENTRIES = 32  # entries of an SMS request's params or a job result's write-back
BIGINT_MAX = 2**63 - 1  # the largest count or sequence number a database column holds

Fen = Annotated[int, Field(ge=-(10**12), le=10**12, description="money in fen (0.01 yuan)")]
NonNegFen = Annotated[int, Field(ge=0, le=10**12, description="money in fen (0.01 yuan)")]
# ids: the patterns of app.domain.ids (ASCII only, matched whole), one set for every party
Uuid = Annotated[str, Field(min_length=36, max_length=36, pattern=ids.UUID.pattern)]
Code = Annotated[str, Field(min_length=1, max_length=32, pattern=ids.CODE.pattern)]
Digits12 = Annotated[str, Field(pattern=ids.DIGITS12_PATTERN)]
Cursor = Annotated[int, Field(ge=0)]
Ref = Annotated[str, Field(min_length=1, max_length=40)]
Key = Annotated[str, Field(min_length=1, max_length=32)]
Text200 = Annotated[str, Field(max_length=200)]

# why the central system refuses a posted record (or a registration): code -> (HTTP status of a
# single post, what it means).  In a batch the item is ``rejected`` with the code.
REFUSALS: dict[str, tuple[int, str]] = {
    "counter_mismatch": (403, "the record's counter_id is not the counter the token belongs to"),
    "other_office": (
        403,
        "the customer or job belongs to another office than the counter's, or the record names "
        "another office",
    ),
    "not_own_sale": (403, "a reversal or rewrite of a sale that another counter made"),
    "approver_is_operator": (
        422,
        "a reversal approved by its own operator; a control lift with no approver but the operator",
    ),
    "does_not_add_up": (
        422,
        "a sale whose amount is not arrears + fees + credit, or a reversal whose amount is not "
        "the sale's",
    ),
    "cash_short": (422, "a sale whose cash_received is less than its amount"),
    "unknown_ref": (
        422,
        "a settled arrears ref that the central system does not hold for the sale's customer",
    ),
    "future_created_at": (
        422,
        "a record time (created_at, seen_at, done_at) ahead of the central clock by more than "
        "the allowed clock skew",
    ),
    "counter_id_taken": (
        409,
        "registration of a counter id that another counter holds: an existing counter registers "
        "again only with its current token or a one-time enrolment code",
    ),
    "meter_taken": (409, "a meter change to a meter number another customer holds"),
    "office_mismatch": (
        409,
        "registration with another office than the counter's (or than its enrolment code's)",
    ),
}
PROBLEM_CODES = (
    "bad_request",
    "unauthorized",
    "not_found",
    "conflict",
    "audit_diverged",
    "payload_too_large",
    "unsupported_media_type",
    "server_error",
    *REFUSALS,
    # statistics (GET /stats): an unknown region (404), one that does not contain the counter's
    # office (403), a period or filter that cannot be answered (422)
    "unknown_region",
    "region_not_allowed",
    "bad_period",
    "bad_filter",
    # third-party channels' payments (POST /channel/payments)
    "customer_not_allowed",
    "not_remote",
    "customer_closed",
    "future_paid_at",
    "stale_paid_at",
)
# why the central system flags an accepted sale for a supervisor's review
REVIEWS: dict[str, str] = {
    "unknown_customer": "the central archive has no such customer",
    "customer_closed": "the customer is closed centrally",
    "unknown_tariff": "the tariff plan or version is unknown",
    "purchase_count_gap": (
        "a card purchase count that does not follow the customer's last one; it moves neither "
        "the archive's purchase count nor its card serial"
    ),
}


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Problem(Model):
    """An error: ``code`` is stable (see the OpenAPI document), ``message`` is English."""

    code: str = Field(description="stable: one of " + ", ".join(PROBLEM_CODES))
    message: str
    ids: list[str] = Field(default_factory=list, description="records the error is about")


# --------------------------------------------------------------------------- counters


class RegisterRequest(Model):
    counter_id: Code
    office_code: Code
    name: str = Field(default="", max_length=64)


class RegisterResponse(Model):
    counter_id: Code
    office_code: Code
    token: str = Field(min_length=32, max_length=128)
    server_time: AwareDatetime
    receipt_key: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="key of the receipts' verification codes: new at the first registration, "
        "the same when the counter registers again with its current token, a new one when it "
        "is enrolled again with an enrolment code (the old keys still check older receipts)",
    )


class ReceiptCheck(Model):
    """Whether a receipt's verification code belongs to a sale the central system holds:
    HMAC-SHA256(receipt_key, "sale_id|customer_no|amount|credit"), first 5 bytes, base32."""

    sale_id: str
    valid: bool
    known: bool = Field(description="the central system holds this sale")
    amount: NonNegFen | None = Field(default=None, description="the sale's amount when valid")


class AuditHead(Model):
    """The counter's latest audit hash, and the hash its chain has now at the row it reported
    last time (``at_previous_seq``): a chain rewritten below the last report shows as a
    difference there."""

    seq: int = Field(ge=0, le=BIGINT_MAX)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    at: AwareDatetime
    previous_seq: int | None = Field(default=None, ge=0, le=BIGINT_MAX)
    at_previous_seq: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class AuditHeadAck(Model):
    seq: int
    hash: str
    received_at: AwareDatetime


# --------------------------------------------------------------------------- tariffs


class TariffVersionRecord(Model):
    plan_code: Code
    plan_name: str = Field(max_length=64)
    version_no: int = Field(ge=1, le=BIGINT_MAX)
    kind: Literal["flat", "tou", "tiered", "tou_tiered"]
    effective_from: AwareDatetime
    spec: dict[str, Any]
    seq: int = Field(ge=1, description="position in the tariff stream; cursor for the next pull")


class TariffPage(Model):
    items: list[TariffVersionRecord]
    next_cursor: Cursor
    has_more: bool


# --------------------------------------------------------------------------- customers


class ArrearsRecord(Model):
    ref: str = Field(min_length=1, max_length=40, description="the central system's id")
    kind: Literal["arrears", "fee"]
    description: str = Field(default="", max_length=120)
    amount: NonNegFen = Field(gt=0)
    must_collect: bool = True


class CustomerRecord(Model):
    """One customer as the central archive holds it now; ``arrears`` are the open items."""

    customer_no: Digits12
    name: str = Field(min_length=1, max_length=64)
    address: str = Field(default="", max_length=200)
    phone: str = Field(default="", max_length=24)
    meter_no: Digits12
    meter_kind: Literal["card", "remote"]
    status: Literal["active", "paused", "closed"]
    office_code: Code
    tariff_plan: Code
    ct_ratio: int = Field(default=1, ge=1, le=10000)
    pt_ratio: int = Field(default=1, ge=1, le=10000)
    alarm1: NonNegFen
    alarm2: NonNegFen
    overdraft_limit: NonNegFen
    credit_ceiling: NonNegFen
    card_serial: str | None = Field(default=None, max_length=32)
    purchase_count: int = Field(ge=0, description="highest completed card purchase known")
    arrears: list[ArrearsRecord] = Field(default_factory=list)
    seq: int = Field(ge=1, description="position in the archive stream; cursor for the next pull")


class CustomerPage(Model):
    items: list[CustomerRecord]
    next_cursor: Cursor
    has_more: bool


class ControlStatus(Model):
    """Charge control of one customer as the central system sees it: the balances from the
    card's write-back, the system's own balance, and the state against the thresholds."""

    customer_no: Digits12
    state: Literal["normal", "alarm1", "alarm2", "tripped", "closed", "unknown"]
    meter_remaining: Fen | None = None
    meter_purchase_count: int | None = None
    system_credit: NonNegFen = Field(description="credit sold to this customer, all counters")
    last_report_at: AwareDatetime | None = None
    # a remote fee-control customer under the station's charge control (None otherwise)
    remaining_fen: Fen | None = Field(
        default=None, description="the station's balance: opening + payments - consumption"
    )
    relay: Literal["closed", "open"] | None = None
    last_reading_at: AwareDatetime | None = None
    close_permit_sent_at: AwareDatetime | None = None
    # control lifted (an approved lift from a counter): no alarms or trips until it is resumed
    lifted_at: AwareDatetime | None = None
    # the control function tested with the first purchase (None: not asked for)
    commission: Literal["pending", "passed", "failed"] | None = None


class ControlLift(Model):
    """A counter lifts a remote customer's fee control (``lift``: a supervisor approved it at
    the counter; no more alarms or trips, the meter gets a close permit and an alarm release)
    or puts it back (``resume``).  Idempotent by ``id``."""

    id: Uuid
    action: Literal["lift", "resume"]
    reason: str = Field(default="", max_length=200)
    operator_id: Code
    approver_id: Code | None = Field(default=None, description="required for a lift")
    approval_id: Uuid | None = Field(default=None, description="the counter's approval request")
    created_at: AwareDatetime


class TerminalCondition(Model):
    """A remote meter's operating data the station called from it for the counter (condition
    release): relay, status words, the meter's clock and its energy register, when fetched."""

    customer_no: Digits12
    meter_no: Digits12
    relay: Literal["closed", "open"] | None = None
    status_words: list[int | None] = Field(max_length=16, description="status words 1..7")
    meter_time: AwareDatetime | None = Field(default=None, description="the meter's own clock")
    energy_wh: int | None = Field(default=None, ge=0, description="positive active energy, Wh")
    last_reading_at: AwareDatetime | None = Field(
        default=None, description="the control loop's last reading of this meter"
    )
    fetched_at: AwareDatetime


class ControlReport(Model):
    """A write-back the counter read off a customer's card."""

    id: Uuid
    customer_no: Digits12
    meter_remaining: Fen
    meter_purchase_count: int = Field(ge=0, le=BIGINT_MAX)
    seen_at: AwareDatetime
    counter_id: Code
    # the meter's illegal-insert count from the same write-back (None: not read); an increase
    # opens an exception at the station
    illegal_insert_count: int | None = Field(default=None, ge=0, le=BIGINT_MAX)


# --------------------------------------------------------------------------- exceptions queue

ExceptionState = Literal["new", "assigned", "explained", "resolved", "escalated"]
Note = Annotated[str, Field(max_length=300)]


class ExceptionItem(Model):
    """One exception of the station's queue (a customer of the counter's office)."""

    id: Uuid
    customer_no: str = Field(max_length=12)
    kind: str = Field(max_length=24)
    detail: str = Field(max_length=300)
    state: ExceptionState
    office_code: str = Field(max_length=32)
    assignee: str | None = Field(default=None, max_length=32)
    updated_by: str | None = Field(default=None, max_length=32)
    note: Note = ""
    created_at: AwareDatetime
    updated_at: AwareDatetime


class ExceptionEvent(Model):
    """One step of an exception's history (``operator_id`` None: the station opened it)."""

    action: Literal["opened", "assign", "explain", "resolve", "escalate"]
    from_state: ExceptionState | None = None
    to_state: ExceptionState
    operator_id: str | None = Field(default=None, max_length=32)
    counter_id: str | None = Field(default=None, max_length=32)
    note: Note = ""
    at: AwareDatetime


class ExceptionDetail(ExceptionItem):
    history: list[ExceptionEvent]


class ExceptionList(Model):
    items: list[ExceptionItem]


class ExceptionAction(Model):
    """A supervisor's step on an exception, signed in at the counter that sends it."""

    action: Literal["assign", "explain", "resolve", "escalate"]
    operator_id: Code
    assignee: Code | None = Field(default=None, description="for assign: who takes it")
    note: Note = ""


# --------------------------------------------------------------------------- sales and events


class SaleRecord(Model):
    """A card sale or a remote payment, once settled on the counter (completed or failed)."""

    id: Uuid
    kind: Literal["card", "remote"]
    state: Literal["completed", "failed"]
    customer_no: Digits12
    purchase_count: int | None = Field(default=None, ge=1, le=BIGINT_MAX)
    amount: NonNegFen = Field(gt=0)
    arrears: NonNegFen
    fees: NonNegFen
    credit: NonNegFen
    energy_wh: int = Field(ge=0)
    tariff_plan: Code
    tariff_version_no: int = Field(ge=1, le=BIGINT_MAX)
    settled_refs: list[Ref] = Field(
        default_factory=list, max_length=MAX_REFS, description="arrears items it paid"
    )
    operator_id: Code
    counter_id: Code
    office_code: Code
    shift_id: Uuid
    card_serial: str | None = Field(default=None, max_length=32)
    cash_received: NonNegFen | None = None
    created_at: AwareDatetime


class ReversalRecord(Model):
    id: Uuid
    sale_id: Uuid
    amount: NonNegFen
    operator_id: Code
    approver_id: Code
    counter_id: Code
    created_at: AwareDatetime


class RewriteRecord(Model):
    id: Uuid
    sale_id: Uuid
    rewrite_no: int = Field(ge=1, le=BIGINT_MAX)
    operator_id: Code
    counter_id: Code
    created_at: AwareDatetime


class ReplacementRecord(Model):
    id: Uuid
    customer_no: Digits12
    old_serial: str | None = Field(default=None, max_length=32)
    new_serial: str = Field(max_length=32)
    fee: NonNegFen
    operator_id: Code
    counter_id: Code
    created_at: AwareDatetime
    # lost: a blank card replaced a lost card (补卡); damaged: the customer's damaged or faulty
    # card was exchanged (换卡). Records from counters before the exchange mode say nothing.
    mode: Literal["lost", "damaged"] = "lost"


class CardBindingRecord(Model):
    id: Uuid
    customer_no: Digits12
    serial: str = Field(max_length=32)
    operator_id: Code
    counter_id: Code
    created_at: AwareDatetime


class SmsRequest(Model):
    id: Uuid
    customer_no: Digits12
    template: Literal["low_balance", "payment_received", "remote_issued"]
    params: dict[Key, Text200 | int] = Field(default_factory=dict, max_length=MAX_ENTRIES)
    counter_id: Code
    created_at: AwareDatetime


class JobResultRecord(Model):
    id: Uuid
    job_id: Uuid
    outcome: Literal["done", "failed"]
    technician_id: Code
    counter_id: Code
    done_at: AwareDatetime
    write_back: dict[Key, Text200 | int | bool | None] = Field(
        default_factory=dict, max_length=MAX_ENTRIES
    )
    note: str = Field(default="", max_length=200)


class AccountEventRecord(Model):
    """A step of a customer's lifecycle made at a counter: a meter change (``new_meter_no``;
    the old meter's state carried over in ``detail``), a close (settled; ``refund`` handed back
    in cash), a pause or a resume (``reason``)."""

    id: Uuid
    customer_no: Digits12
    kind: Literal["meter_change", "close", "pause", "resume"]
    reason: Text200 = ""
    new_meter_no: Digits12 | None = None
    refund: NonNegFen = 0
    detail: dict[Key, Text200 | int | bool | None] = Field(
        default_factory=dict, max_length=MAX_ENTRIES
    )
    operator_id: Code
    approver_id: Code | None = None
    counter_id: Code
    created_at: AwareDatetime


class ItemResult(Model):
    id: str
    status: Literal["created", "duplicate", "conflict", "rejected"]
    review: str | None = Field(
        default=None, description="why the central side flagged it: one of " + ", ".join(REVIEWS)
    )
    message: str = ""
    code: str | None = Field(
        default=None,
        description="why it was refused (status rejected: one of the refusal codes; conflict: "
        "conflict)",
    )


class BatchResult(Model):
    results: list[ItemResult] = Field(max_length=MAX_BATCH)


def batch_of(item: type[Model]) -> type[Model]:
    """The batch body for ``item``: ``{"items": [...]}``, 1 to MAX_BATCH items."""
    name = item.__name__.removesuffix("Record").removesuffix("Request").removesuffix("Report")
    return type(
        f"{name}Batch",
        (Model,),
        {
            "__annotations__": {"items": list[item]},  # type: ignore[valid-type]
            "items": Field(min_length=1, max_length=MAX_BATCH),
            "__module__": __name__,
        },
    )


# the records a counter posts: resource path -> item model
POSTED: dict[str, type[Model]] = {
    "sales": SaleRecord,
    "reversals": ReversalRecord,
    "rewrites": RewriteRecord,
    "replacements": ReplacementRecord,
    "card-bindings": CardBindingRecord,
    "control-reports": ControlReport,
    "sms": SmsRequest,
    "job-results": JobResultRecord,
    "account-events": AccountEventRecord,
}
BATCHES: dict[str, type[Model]] = {path: batch_of(model) for path, model in POSTED.items()}


class CounterSale(Model):
    """A sale as the central system holds it for a counter (reconciliation)."""

    sale: SaleRecord
    received_at: AwareDatetime
    reversed: bool
    review: str | None = None
    seq: int = Field(ge=1)


class CounterSalePage(Model):
    items: list[CounterSale]
    next_cursor: Cursor
    has_more: bool


class RemoteStatus(Model):
    sale_id: Uuid
    status: Literal["queued", "issued", "failed"]
    reason: str = ""
    seq: int = Field(ge=1)


class RemoteStatusPage(Model):
    items: list[RemoteStatus]
    next_cursor: Cursor
    has_more: bool


# --------------------------------------------------------------------------- management-card jobs


class Job(Model):
    """A job the central system failed to issue remotely; a technician does it with a
    management card."""

    id: Uuid
    # onsite_control: the station gave up a control command or commissioning of a remote meter;
    # the technician re-issues its control parameters with a parameters card and checks it
    kind: Literal["price", "purchase_params", "reading_day", "onsite_control"]
    customer_no: Digits12
    meter_no: Digits12
    office_code: Code
    params: dict[str, Any] = Field(max_length=64)
    status: Literal["open", "done", "failed", "cancelled"]
    created_at: AwareDatetime
    seq: int = Field(ge=1)


class JobPage(Model):
    items: list[Job]
    next_cursor: Cursor
    has_more: bool


# --------------------------------------------------------------------------- statistics

StatsState = Literal["normal", "alarm1", "alarm2", "tripped"]
Count = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
Wh = Annotated[int, Field(ge=-BIGINT_MAX, le=BIGINT_MAX, description="energy in Wh")]
TotalFen = Annotated[
    int, Field(ge=-BIGINT_MAX, le=BIGINT_MAX, description="a sum of money in fen (0.01 yuan)")
]


class StatsArea(Model):
    """One area one level below the region (a province, a city or an office)."""

    area: str = Field(max_length=64, description="province or city name, or office code")
    name: str = Field(max_length=64)
    controlled: Count
    alarm: Count
    tripped: Count
    balance_fen: TotalFen
    sold_fen: TotalFen
    consumption_wh: Wh
    cost_fen: TotalFen


class StatsDay(Model):
    """One office day of the period."""

    day: dt.date
    sold_fen: TotalFen
    consumption_wh: Wh
    cost_fen: TotalFen


class Stats(Model):
    """Charge-control statistics of a region over a period of office days (inclusive).

    Control figures are now; sales are credit completed and not reversed, received by the
    station in the period; consumption is the billed readings taken in the period (energy since
    the reading before, and its priced cost rounded up to the fen)."""

    region: str = Field(max_length=80)
    level: Literal["all", "province", "city", "office"]
    date_from: dt.date
    date_to: dt.date
    time_zone: str = Field(max_length=64)
    plan: str | None = Field(default=None, max_length=32)
    state: StatsState | None = None
    controlled: Count = Field(description="customers under fee control")
    normal: Count
    alarm1: Count
    alarm2: Count
    tripped: Count
    close_permits_pending: Count = Field(description="customers with a close permit waiting")
    sales: Count
    sold_fen: TotalFen
    sold_by_kind: dict[str, TotalFen] = Field(max_length=8)
    consumption_wh: Wh
    cost_fen: TotalFen
    balance_fen: TotalFen = Field(description="sum of the controlled customers' remaining_fen")
    relay_closed: Count
    relay_open: Count
    relay_unknown: Count
    reading_missing: Count = Field(description="meters with an open reading_missing exception")
    not_read_recently: Count = Field(description="meters not read in the last stale_hours")
    stale_hours: Count
    by_area: list[StatsArea] = Field(max_length=5000)
    by_day: list[StatsDay] = Field(max_length=366)
    generated_at: AwareDatetime


class Health(Model):
    status: Literal["ok"]
    contract: str
    server_time: AwareDatetime


# --------------------------------------------------------------------------- payment channels
# (a bank, a mobile app, an agent: its own bearer token, the customers of the offices it serves;
# the station's sync.central.channels holds the rules)

CHANNEL_PREFIX = "/channel"
CHANNEL_MAX_FEN = 10_000_000  # 100,000.00 yuan: the most one channel payment may be
TxnId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="the channel's own transaction id: unique per channel, the idempotency key",
    ),
]
# why the station refuses a channel's payment: code -> (HTTP status, what it means)
CHANNEL_REFUSALS: dict[str, tuple[int, str]] = {
    "customer_not_allowed": (
        403,
        "no customer of the offices this channel serves has this number (unknown, or another "
        "office's)",
    ),
    "not_remote": (
        409,
        "a card-meter customer: the credit must be written onto the card at a counter",
    ),
    "customer_closed": (409, "the customer's account is closed"),
    "future_paid_at": (
        422,
        "paid_at is ahead of the station's clock by more than the allowed clock skew",
    ),
    "stale_paid_at": (422, "paid_at is more than 3 days before the station's clock"),
}


class ChannelPaymentRequest(Model):
    """A payment a channel took for a remote fee-control customer.  The same ``txn_id`` with
    the same body answers the same payment again; with another body it is a 409 ``conflict``."""

    txn_id: TxnId
    customer_no: Digits12
    amount_fen: int = Field(ge=1, le=CHANNEL_MAX_FEN, description="money in fen (0.01 yuan)")
    paid_at: AwareDatetime = Field(description="when the channel took it: the day it reconciles")


class ChannelPayment(Model):
    """A payment the station holds: it counts in the customer's balance from ``received_at``."""

    channel_id: Code
    txn_id: TxnId
    customer_no: Digits12
    amount_fen: int = Field(ge=1, le=CHANNEL_MAX_FEN)
    paid_at: AwareDatetime
    received_at: AwareDatetime


# --------------------------------------------------------------------------- the document


def description() -> str:
    """The contract's description in the OpenAPI document: these conventions and the codes."""
    refusals = "\n".join(
        f"- `{code}` ({status}): {meaning}" for code, (status, meaning) in REFUSALS.items()
    )
    reviews = "\n".join(f"- `{code}`: {meaning}" for code, meaning in REVIEWS.items())
    channel = "\n".join(
        f"- `{code}` ({status}): {meaning}" for code, (status, meaning) in CHANNEL_REFUSALS.items()
    )
    return (
        f"{(__doc__ or '').strip()}\n\nRefusal codes (the HTTP status of a single post or of "
        f"a registration):\n{refusals}\n\nReview codes of accepted sales:\n{reviews}\n\n"
        f"Payment channels (`{API_PREFIX}{CHANNEL_PREFIX}/...`, a channel's own bearer token) "
        f"are refused with:\n{channel}"
    )


if __name__ == "__main__":  # pragma: no cover
    # the document is generated by the station's FastAPI application from these models
    from sync.central.api import openapi_text

    if "--write" in sys.argv:
        OPENAPI_FILE.write_text(openapi_text(), encoding="utf-8")
    else:
        sys.stdout.write(openapi_text())
