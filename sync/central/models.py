"""Tables of the reference central server (SQLAlchemy Core, its own ``MetaData``).

The central side is not the counter: these tables never share a ``MetaData`` (or a migration
history) with ``app.persistence``; :meth:`CentralStore.__init__` creates them with
``metadata.create_all``.  Every table name starts with ``central_`` so that pointing the server at
a counter's database by mistake cannot mix the two.

Money is BigInteger fen, times are timezone-aware UTC (:class:`UTCDateTime`).  The ``seq``
columns are positions in a stream (see :func:`stream_sequence`): unique, indexed, allocated inside
the writing transaction.
"""

from __future__ import annotations

from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Column
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import PrimaryKeyConstraint
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import literal_column

from app.persistence.models import NAMING
from app.persistence.types import UTCDateTime

metadata = MetaData(naming_convention=NAMING)

# the streams a pull can follow: on PostgreSQL a sequence each (see stream_sequence), on
# SQLite a row each in central_streams
STREAMS = ("customers", "jobs", "remote", "sales", "tariffs")


def stream_sequence(stream: str) -> str:
    """The PostgreSQL sequence a stream's seqs come from (made by migration c0011)."""
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}")
    return f"central_seq_{stream}"


streams = Table(
    "central_streams",
    metadata,
    Column("name", String(16), primary_key=True),
    Column("last_seq", BigInteger, nullable=False, default=0),
)

counters = Table(
    "central_counters",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("office_code", String(32), nullable=False),
    Column("name", String(64), nullable=False, default=""),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex of the token
    # hex; kept when the counter registers again with its token, new after an enrolment code
    Column("receipt_key", String(64), nullable=False),
    Column("registered_at", UTCDateTime(), nullable=False),
    # the last authenticated request (kept to the minute): the sync lag a scrape reports
    Column("last_seen_at", UTCDateTime()),
    # an administrator revoked it: its token no longer opens anything; an enrolment code lets
    # the counter register again
    Column("revoked_at", UTCDateTime()),
)

# the offices and their region (province / city), which the statistics group by
offices = Table(
    "central_offices",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(64), nullable=False, default=""),
    Column("province", String(32), nullable=False, default=""),
    Column("city", String(32), nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
)

# the receipt keys a counter held before an enrolment code gave it a new one: receipts printed
# before still check
retired_receipt_keys = Table(
    "central_retired_receipt_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("counter_id", String(32), nullable=False, index=True),
    Column("receipt_key", String(64), nullable=False),
    Column("retired_at", UTCDateTime(), nullable=False),
)

# one-time re-enrolment codes the central administrator issues for a counter id (only the hash
# is kept); a code is used once, before it expires
enrolment_codes = Table(
    "central_enrolment_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),  # sha256 hex of the normalised code
    Column("counter_id", String(32), nullable=False, index=True),
    Column("office_code", String(32), nullable=False),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime()),
)

# every registration and how it was allowed (key, token, code, replay, direct)
enrolments = Table(
    "central_enrolments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("counter_id", String(32), nullable=False, index=True),
    Column("office_code", String(32), nullable=False),
    Column("how", String(12), nullable=False),
    # sha256 of the request's Idempotency-Key: a retry of a registration whose answer was lost
    Column("request_key_hash", String(64)),
    Column("at", UTCDateTime(), nullable=False),
)

# every record (or registration) the central system refused, and why
refusals = Table(
    "central_refusals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("counter_id", String(32), nullable=False),
    Column("resource", String(32), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("code", String(32), nullable=False),
    Column("message", String(300), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)

tariff_versions = Table(
    "central_tariff_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_code", String(32), nullable=False),
    Column("plan_name", String(64), nullable=False),
    Column("version_no", BigInteger, nullable=False),
    Column("kind", String(12), nullable=False),
    Column("effective_from", UTCDateTime(), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("seq", BigInteger, nullable=False, unique=True),
    UniqueConstraint("plan_code", "version_no", name="uq_central_tariff_versions_plan_version"),
)

customers = Table(
    "central_customers",
    metadata,
    Column("customer_no", String(12), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("address", String(200), nullable=False, default=""),
    Column("phone", String(24), nullable=False, default=""),
    Column("meter_no", String(12), nullable=False),
    Column("meter_kind", String(8), nullable=False),
    Column("status", String(8), nullable=False),
    Column("office_code", String(32), nullable=False),
    Column("tariff_plan", String(32), nullable=False),
    Column("ct_ratio", Integer, nullable=False, default=1),
    Column("pt_ratio", Integer, nullable=False, default=1),
    Column("alarm1", BigInteger, nullable=False),
    Column("alarm2", BigInteger, nullable=False),
    Column("overdraft_limit", BigInteger, nullable=False),
    Column("credit_ceiling", BigInteger, nullable=False),
    Column("card_serial", String(32)),
    Column("purchase_count", BigInteger, nullable=False, default=0),
    Column("seq", BigInteger, nullable=False, unique=True),
)

arrears_items = Table(
    "central_arrears_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ref", String(40), nullable=False, unique=True),
    Column(
        "customer_no",
        String(12),
        ForeignKey("central_customers.customer_no"),
        nullable=False,
        index=True,
    ),
    Column("kind", String(8), nullable=False),
    Column("description", String(120), nullable=False, default=""),
    Column("amount", BigInteger, nullable=False),
    Column("must_collect", Boolean, nullable=False, default=True),
    Column("settled_by_sale", String(36)),  # the sale that paid it; NULL while open
)

sales = Table(
    "central_sales",
    metadata,
    Column("id", String(36), primary_key=True),  # the counter's sale UUID: unique by construction
    Column("counter_id", String(32), nullable=False),
    Column("customer_no", String(12), nullable=False, index=True),
    Column("kind", String(8), nullable=False),
    Column("state", String(10), nullable=False),
    Column("credit", BigInteger, nullable=False),
    Column("body", JSON, nullable=False),
    Column("body_hash", String(64), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("review", String(40)),
    Column("reversed", Boolean, nullable=False, default=False),
    Column("seq", BigInteger, nullable=False, unique=True),
)

# reversals, rewrites, replacements, card bindings, control reports, SMS requests, job results
events = Table(
    "central_events",
    metadata,
    Column("kind", String(20), nullable=False),
    Column("id", String(36), nullable=False),
    # what it is about: the sale (reversals, rewrites), the job (job results), else the customer
    Column("subject", String(36), nullable=False, index=True),
    Column("counter_id", String(32), nullable=False),
    Column("body", JSON, nullable=False),
    Column("body_hash", String(64), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("kind", "id", name="pk_central_events"),  # UNIQUE(kind, id)
)

remote_status = Table(
    "central_remote_status",
    metadata,
    Column("sale_id", String(36), ForeignKey("central_sales.id"), primary_key=True),
    Column("status", String(8), nullable=False),  # queued | issued | failed
    Column("reason", String(200), nullable=False, default=""),
    Column("seq", BigInteger, nullable=False, unique=True),
    # the sale's counter, kept here so that a counter's pull walks its own rows (c0010)
    Column("counter_id", String(32), nullable=False),
)

jobs = Table(
    "central_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("customer_no", String(12), nullable=False),
    Column("meter_no", String(12), nullable=False),
    Column("office_code", String(32), nullable=False),
    Column("params", JSON, nullable=False),
    Column("status", String(10), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("seq", BigInteger, nullable=False, unique=True),
)

control_status = Table(
    "central_control_status",
    metadata,
    Column("customer_no", String(12), primary_key=True),
    Column("meter_remaining", BigInteger, nullable=False),
    Column("meter_purchase_count", BigInteger, nullable=False),
    Column("last_report_at", UTCDateTime(), nullable=False),
)

audit_heads = Table(
    "central_audit_heads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("counter_id", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("previous_seq", BigInteger),
    Column("at_previous_seq", String(64)),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("counter_id", "seq", name="uq_central_audit_heads_counter_seq"),
)

# the audit heads a counter reported before an enrolment code gave its id to a new install
# (which starts an audit history of its own)
retired_audit_heads = Table(
    "central_retired_audit_heads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("counter_id", String(32), nullable=False, index=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("retired_at", UTCDateTime(), nullable=False),
)

idempotency_keys = Table(
    "central_idempotency_keys",
    metadata,
    Column("counter_id", String(32), nullable=False),
    Column("key", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("counter_id", "key", name="pk_central_idempotency_keys"),
)

# pulls filter by counter / office and walk by seq
Index("ix_central_sales_counter_seq", sales.c.counter_id, sales.c.seq)
Index("ix_central_remote_status_counter_seq", remote_status.c.counter_id, remote_status.c.seq)
Index("ix_central_jobs_office_seq", jobs.c.office_code, jobs.c.seq)
Index("ix_central_customers_office_seq", customers.c.office_code, customers.c.seq)
Index("ix_central_refusals_counter_at", refusals.c.counter_id, refusals.c.at)

# --------------------------------------------------------------------------- charge control
# (control.py: readings from remote meters, balances, alarm / trip / close permit commands)

# one row a customer under fee control: the balance and where the control stands
control = Table(
    "central_control",
    metadata,
    Column("customer_no", String(12), primary_key=True),
    Column("meter_no", String(12), nullable=False),
    Column("state", String(8), nullable=False),  # normal | alarm1 | alarm2 | tripped
    Column("opening_fen", BigInteger, nullable=False),  # the balance it came under control with
    Column("paid_fen", BigInteger, nullable=False),  # remote payments since (credits)
    # consumption since, as fen x RATE_SCALE (exact; rounded up once in remaining_fen)
    Column("cost_num", BigInteger, nullable=False),
    Column("remaining_fen", BigInteger, nullable=False),
    Column("energy_wh", BigInteger),  # the last reading taken as consumption
    Column("read_at", UTCDateTime()),
    Column("relay", String(8)),  # as the meter last said: closed | open
    Column("enrolled_at", UTCDateTime(), nullable=False),  # payments from then on count
    Column("state_since", UTCDateTime(), nullable=False),
    Column("close_permit_at", UTCDateTime()),  # when the last close permit reached the meter
    Column("updated_at", UTCDateTime(), nullable=False),
    # c0006: the last reading taken as consumption, so a run reads only this table
    Column("rates_wh", JSON),  # [rate 1 .. rate 4] of that reading
    Column("meter_time", UTCDateTime()),  # the meter's own clock at that reading
    # consumption in the tier year that starts at tier_year_start (priced tiers follow it)
    Column("tier_year_used_wh", BigInteger, nullable=False, default=0, server_default="0"),
    Column("tier_year_start", UTCDateTime()),
    # commissioning with the first purchase: pending | passed | failed (NULL: not needed, e.g.
    # a customer under control before commissioning existed), and when it was decided
    Column("commission", String(8)),
    Column("commission_at", UTCDateTime()),
    Column("params_at", UTCDateTime()),  # when the control parameters reached the meter
    # control lifted (an approved counter request): no alarms or trips while set
    Column("lifted_at", UTCDateTime()),
    Column("lift_event", String(36)),  # the central_events row (kind control_lift) that did it
)

readings = Table(
    "central_readings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_no", String(12), nullable=False),
    Column("meter_no", String(12), nullable=False),
    Column("read_at", UTCDateTime(), nullable=False),
    Column("meter_time", UTCDateTime()),
    Column("energy_wh", BigInteger, nullable=False),
    Column("rates_wh", JSON, nullable=False),  # [rate 1 .. rate 4]
    Column("relay", String(8)),
    Column("cost_num", BigInteger, nullable=False),  # the consumption since the last, priced
    Column("status", String(10), nullable=False),  # billed | first | exception
)

commands = Table(
    "central_commands",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("customer_no", String(12), nullable=False),
    Column("meter_no", String(12), nullable=False),
    Column("command", String(16), nullable=False),  # alarm | alarm_release | trip | close
    Column("reason", String(40), nullable=False),
    Column("status", String(8), nullable=False),  # pending | done | failed | dropped
    Column("attempts", Integer, nullable=False),
    Column("next_at", UTCDateTime(), nullable=False),
    Column("last_error", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("done_at", UTCDateTime()),
)

exceptions = Table(
    "central_exceptions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("customer_no", String(12), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("detail", String(300), nullable=False),
    Column(
        "state", String(10), nullable=False
    ),  # new | assigned | explained | resolved | escalated
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# who runs the control loop now: one holder across workers and hosts, until its lease ends
leases = Table(
    "central_leases",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("until", UTCDateTime(), nullable=False),
)

Index("ix_central_readings_customer_id", readings.c.customer_no, readings.c.id)
Index("ix_central_commands_status_next", commands.c.status, commands.c.next_at)
Index("ix_central_commands_customer_status", commands.c.customer_no, commands.c.status)
Index("ix_central_exceptions_customer_kind", exceptions.c.customer_no, exceptions.c.kind)

# --------------------------------------------------------------------------- exceptions workflow
# (exceptions.py, migration c0004: the queue's workflow, its history, the customer's office on
# each exception, and the last illegal-insert count a card write-back reported)

exceptions.append_column(Column("office_code", String(32), nullable=False, default=""))
exceptions.append_column(Column("assignee", String(32)))  # the operator it is assigned to
exceptions.append_column(Column("updated_by", String(32)))  # who moved it last
exceptions.append_column(Column("note", String(300), nullable=False, default=""))
control_status.append_column(Column("illegal_insert_count", BigInteger))

# every step of an exception: opened, assigned, explained, resolved, escalated
exception_events = Table(
    "central_exception_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("exception_id", String(36), nullable=False),
    Column("action", String(12), nullable=False),
    Column("from_state", String(10)),  # None when opened
    Column("to_state", String(10), nullable=False),
    Column("operator_id", String(32)),  # None: the station itself
    Column("counter_id", String(32)),
    Column("note", String(300), nullable=False, default=""),
    Column("at", UTCDateTime(), nullable=False),
)

Index(
    "ix_central_exception_events_exception", exception_events.c.exception_id, exception_events.c.id
)
Index("ix_central_exceptions_office_state", exceptions.c.office_code, exceptions.c.state)

# --------------------------------------------------------------------------- SMS notices, arrears
# control and condition release (sms.py, arrears.py, condition.py; migration c0005)

# when an arrears item falls due (NULL: no due date given, never judged overdue)
arrears_items.append_column(Column("due_at", UTCDateTime()))

# the SMS outbox: one row a notice, once per (kind, cause) whatever how often the loop runs
sms_outbox = Table(
    "central_sms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_no", String(12), nullable=False),
    Column("phone", String(24), nullable=False),
    Column("kind", String(12), nullable=False),  # alarm1 | alarm2 | trip | close | arrears
    Column("cause", String(64), nullable=False),  # what caused it (a command id, a reminder)
    Column("language", String(8), nullable=False),
    Column("text", String(500), nullable=False),
    Column("status", String(8), nullable=False),  # pending | sent | failed | unsent
    Column("attempts", Integer, nullable=False),
    Column("next_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("last_error", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("kind", "cause", name="uq_central_sms_kind_cause"),
)

# a customer's SMS language and opt-out (no row: Chinese, notices on)
sms_prefs = Table(
    "central_sms_prefs",
    metadata,
    Column("customer_no", String(12), primary_key=True),
    Column("language", String(8), nullable=False),
    Column("opted_out", Boolean, nullable=False, default=False),
)

# a customer whose overdue arrears put under arrears control, until lifted on payment
arrears_control = Table(
    "central_arrears_control",
    metadata,
    Column("customer_no", String(12), primary_key=True),
    Column("state", String(8), nullable=False),  # active | lifted
    Column("since", UTCDateTime(), nullable=False),
    Column("reminders", Integer, nullable=False),
    Column("last_reminder_at", UTCDateTime()),
    Column("lifted_at", UTCDateTime()),
)

# the operating data last called from a customer's meter for a counter (condition release)
conditions = Table(
    "central_conditions",
    metadata,
    Column("customer_no", String(12), primary_key=True),
    Column("meter_no", String(12), nullable=False),
    Column("relay", String(8)),
    Column("status_words", JSON, nullable=False),
    Column("meter_time", UTCDateTime()),
    Column("energy_wh", BigInteger),
    Column("fetched_at", UTCDateTime(), nullable=False),
    Column("counter_id", String(32), nullable=False),
)

Index("ix_central_sms_status_next", sms_outbox.c.status, sms_outbox.c.next_at)

# --------------------------------------------------------------------------- payment channels
# (channels.py, api_channels.py; migration c0007: third parties that take payments for remote
# fee-control customers, each with its own token and the offices whose customers it may serve)

# a bank, a mobile app or an agent; only its token's hash is kept
channels = Table(
    "central_channels",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, default=""),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex of the token
    Column("all_offices", Boolean, nullable=False, default=False),  # else central_channel_offices
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),  # revoked: its token opens nothing
)

# the offices whose customers a channel may take payments for (unless all_offices)
channel_offices = Table(
    "central_channel_offices",
    metadata,
    Column("channel_id", String(32), ForeignKey("central_channels.id"), nullable=False),
    Column("office_code", String(32), nullable=False),
    PrimaryKeyConstraint("channel_id", "office_code", name="pk_central_channel_offices"),
)

# one row a payment a channel made, once per (channel, its transaction id)
channel_payments = Table(
    "central_channel_payments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel_id", String(32), ForeignKey("central_channels.id"), nullable=False),
    Column("txn_id", String(64), nullable=False),  # the channel's transaction id
    Column("customer_no", String(12), nullable=False),
    Column("office_code", String(32), nullable=False),  # the customer's, when paid
    Column("amount_fen", BigInteger, nullable=False),
    Column("paid_at", UTCDateTime(), nullable=False),  # the channel's time: the day it reconciles
    Column("received_at", UTCDateTime(), nullable=False),  # the station's: the balance counts it
    Column("body_hash", String(64), nullable=False),  # the request (same id, other body: 409)
    UniqueConstraint("channel_id", "txn_id", name="uq_central_channel_payments_channel_txn"),
)

Index(
    "ix_central_channel_payments_customer_received",
    channel_payments.c.customer_no,
    channel_payments.c.received_at,
)
Index(
    "ix_central_channel_payments_channel_paid",
    channel_payments.c.channel_id,
    channel_payments.c.paid_at,
)

# --------------------------------------------------------------------------- SMS completion:
# purchase confirmations, the rate limit per customer, delivery status (sms.py, sms_admin.py;
# migration c0008)

# the message id a gateway answered with, when it gives one (a delivery receipt to quote)
sms_outbox.append_column(Column("gateway_id", String(64)))

# the purchase step finds the sales received lately; the rate limit counts a customer's sent SMS
Index("ix_central_sales_received_at", sales.c.received_at)
Index("ix_central_sms_customer_sent", sms_outbox.c.customer_no, sms_outbox.c.sent_at)
Index("ix_central_sms_kind_created", sms_outbox.c.kind, sms_outbox.c.created_at)

# --------------------------------------------------------------------------- measurement tasks
# (tasks.py, cli_tasks.py; migration c0009: which customers' meters the control loop reads, how
# often and which registers; no task at all: every controlled meter each run)

measurement_tasks = Table(
    "central_measurement_tasks",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("office_code", String(32)),  # NULL: every office
    Column("tariff_plan", String(32)),  # NULL: every plan
    Column("every_min", Integer, nullable=False),  # read a matched meter this often
    Column("registers", JSON, nullable=False),  # ["energy", "status", "clock"]: energy always
    Column("created_at", UTCDateTime(), nullable=False),
)

# --------------------------------------------------------------------------- purchase-count gaps
# (apply.advance_purchase_counts; migration c0012): the sales waiting for a purchase count are
# found by customer without reading the customer's whole history of sales.  The predicate is a
# literal in the index and in the query alike, so that a prepared (generic) plan can use it.
REVIEW_GAP = "purchase_count_gap"  # rules.REVIEW_PURCHASE_COUNT_GAP
SALE_WAITS_FOR_COUNT = sales.c.review == literal_column(f"'{REVIEW_GAP}'")
Index(
    "ix_central_sales_gaps",
    sales.c.customer_no,
    postgresql_where=SALE_WAITS_FOR_COUNT,
    sqlite_where=SALE_WAITS_FOR_COUNT,
)
