"""SQLAlchemy 2 typed ORM models. Every schema change is an Alembic migration (see migrations/).

Money columns are BigInteger fen, energy columns BigInteger Wh, times are timezone-aware
(stored as UTC; SQLite keeps no offset, so reads go through :func:`app.clock.aware`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import CheckConstraint
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from app.persistence.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _unique_where(name: str, where: str, *columns: str) -> Index:
    """A partial unique index: ``columns`` are unique among the rows ``where`` holds for
    (the same condition on SQLite and PostgreSQL)."""
    return Index(
        name, *columns, unique=True, sqlite_where=text(where), postgresql_where=text(where)
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)

    type_annotation_map = {  # noqa: RUF012
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[dict[str, Any]]: JSON,
    }


class Office(Base):
    __tablename__ = "offices"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))


class Operator(Base):
    __tablename__ = "operators"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    office_code: Mapped[str | None] = mapped_column(ForeignKey("offices.code"))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[dt.datetime]
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[dt.datetime | None]
    password_changed_at: Mapped[dt.datetime | None]
    __table_args__ = (
        CheckConstraint(
            "role IN ('teller','supervisor','technician','admin','auditor')", name="role"
        ),
    )


class TariffPlan(Base):
    __tablename__ = "tariff_plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    versions: Mapped[list[TariffVersion]] = relationship(
        back_populates="plan", order_by="TariffVersion.effective_from"
    )


class TariffVersion(Base):
    """One dated version of a plan's prices; it is in force from ``effective_from`` (the
    switch-over time) until the next version of the same plan."""

    __tablename__ = "tariff_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("tariff_plans.id"))
    version_no: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    effective_from: Mapped[dt.datetime]
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime]
    plan: Mapped[TariffPlan] = relationship(back_populates="versions")
    __table_args__ = (
        UniqueConstraint("plan_id", "version_no", name="uq_tariff_versions_plan_version"),
        UniqueConstraint("plan_id", "effective_from", name="uq_tariff_versions_plan_from"),
        CheckConstraint("kind IN ('flat','tou','tiered','tou_tiered')", name="kind"),
    )


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_no: Mapped[str] = mapped_column(String(12), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(24), default="")
    # the phone's digits reversed, so a phone-suffix search is an indexed prefix search
    phone_rev: Mapped[str] = mapped_column(String(24), default="")
    meter_no: Mapped[str] = mapped_column(String(12), unique=True)
    meter_kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(8), default="active")
    office_code: Mapped[str] = mapped_column(ForeignKey("offices.code"))
    tariff_plan_id: Mapped[int] = mapped_column(ForeignKey("tariff_plans.id"))
    ct_ratio: Mapped[int] = mapped_column(Integer, default=1)
    pt_ratio: Mapped[int] = mapped_column(Integer, default=1)
    alarm1: Mapped[int] = mapped_column(BigInteger, default=2000)
    alarm2: Mapped[int] = mapped_column(BigInteger, default=1000)
    overdraft_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    credit_ceiling: Mapped[int] = mapped_column(BigInteger, default=99999999)
    card_serial: Mapped[str | None] = mapped_column(String(32), unique=True)
    # last completed card purchase count; a pending sale holds purchase_count + 1
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    # raised whenever thresholds, ratios or the tariff plan change; the card carries the
    # version last written to it, and a sale writes the parameter files when they differ
    param_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    card_param_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    card_tariff_version_id: Mapped[int | None] = mapped_column(Integer)
    # what the meter last wrote back (from the card), and when the counter saw it
    meter_purchase_count: Mapped[int | None] = mapped_column(Integer)
    meter_remaining: Mapped[int | None] = mapped_column(BigInteger)
    # the meter's illegal-insert count from the same write-back (migration 0013)
    meter_illegal_insert_count: Mapped[int | None] = mapped_column(Integer)
    write_back_seen_at: Mapped[dt.datetime | None]
    # why the account is paused or closed (migration 0010)
    status_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    updated_at: Mapped[dt.datetime]
    __table_args__ = (
        CheckConstraint("meter_kind IN ('card','remote')", name="meter_kind"),
        CheckConstraint("status IN ('active','paused','closed')", name="status"),
        CheckConstraint("ct_ratio >= 1 AND pt_ratio >= 1", name="ratios"),
        CheckConstraint("purchase_count >= 0", name="purchase_count"),
        Index("ix_customers_name", "name", postgresql_ops={"name": "text_pattern_ops"}),
        Index(
            "ix_customers_phone_rev", "phone_rev", postgresql_ops={"phone_rev": "text_pattern_ops"}
        ),
    )


class ArrearsItem(Base):
    """Money the customer owes: arrears (to collect before credit) or a fee."""

    __tablename__ = "arrears_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # arrears | fee
    description: Mapped[str] = mapped_column(String(120), default="")
    amount: Mapped[int] = mapped_column(BigInteger)
    must_collect: Mapped[bool] = mapped_column(Boolean, default=True)
    settled_by_sale_id: Mapped[str | None] = mapped_column(ForeignKey("sales.id"))
    created_at: Mapped[dt.datetime]
    # the central system's id of the item; None for an item only this counter knows
    ref: Mapped[str | None] = mapped_column(String(40), unique=True)
    __table_args__ = (
        CheckConstraint("kind IN ('arrears','fee')", name="kind"),
        CheckConstraint("amount > 0", name="amount"),
    )


class Shift(Base):
    __tablename__ = "shifts"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    counter_id: Mapped[str] = mapped_column(String(32))
    opened_at: Mapped[dt.datetime]
    float_amount: Mapped[int] = mapped_column(BigInteger)
    closed_at: Mapped[dt.datetime | None]
    closed_by: Mapped[str | None] = mapped_column(ForeignKey("operators.id"))
    expected_cash: Mapped[int | None] = mapped_column(BigInteger)
    counted_cash: Mapped[int | None] = mapped_column(BigInteger)
    variance: Mapped[int | None] = mapped_column(BigInteger)
    variance_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    __table_args__ = (
        # at most one open shift per counter
        _unique_where("uq_shifts_open_counter", "closed_at IS NULL", "counter_id"),
    )


class Sale(Base):
    __tablename__ = "sales"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # client-generated UUID
    kind: Mapped[str] = mapped_column(String(8))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    purchase_count: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)  # paid by the customer
    arrears: Mapped[int] = mapped_column(BigInteger, default=0)
    fees: Mapped[int] = mapped_column(BigInteger, default=0)
    credit: Mapped[int] = mapped_column(BigInteger)  # loaded onto the card / meter
    energy_wh: Mapped[int] = mapped_column(BigInteger, default=0)  # estimate at the tariff
    tariff_version_id: Mapped[int] = mapped_column(ForeignKey("tariff_versions.id"))
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    counter_id: Mapped[str] = mapped_column(String(32))
    shift_id: Mapped[str] = mapped_column(ForeignKey("shifts.id"), index=True)
    state: Mapped[str] = mapped_column(String(10))
    cash_received: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    note: Mapped[str] = mapped_column(Text, default="")
    card_serial: Mapped[str | None] = mapped_column(String(32))  # the card it was written to
    rewrites: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # remote fee-control payments: queued -> issued | failed, as the central system reports
    remote_status: Mapped[str | None] = mapped_column(String(10))
    # why it needs a supervisor's review (set by sync, e.g. the customer was closed centrally
    # while this sale was made offline); None when nothing is wrong
    review: Mapped[str | None] = mapped_column(String(40))
    # the meter's remaining credit from the card's write-back when the sale was made (receipt)
    meter_balance: Mapped[int | None] = mapped_column(BigInteger)
    # a training-mode sale (emulated cards, demo): marked on receipts, never synced
    training: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    __table_args__ = (
        CheckConstraint("kind IN ('card','remote')", name="kind"),
        CheckConstraint(
            "state IN ('pending','completed','failed','in_doubt','reversed')", name="state"
        ),
        CheckConstraint("amount > 0 AND credit >= 0 AND arrears >= 0 AND fees >= 0", name="money"),
        CheckConstraint("amount = arrears + fees + credit", name="split"),
        CheckConstraint("kind = 'remote' OR purchase_count >= 1", name="purchase_count"),
        Index("ix_sales_customer_created", "customer_id", "created_at"),
        Index("ix_sales_created", "created_at"),  # daily reports and statistics
        # One live sale per customer and purchase count: the database itself refuses a second
        # sale of the same purchase, also across counters sharing a PostgreSQL database.
        _unique_where(
            "uq_sales_customer_count_live",
            "state IN ('pending','in_doubt','completed') AND kind = 'card'",
            "customer_id",
            "purchase_count",
        ),
    )


class AuditEntry(Base):
    """One row of the tamper-evident audit log. ``hash`` = SHA-256 over the previous row's hash
    and this row's canonical content (app/domain/audit.py), so editing, deleting, inserting or
    reordering a row breaks the chain at that row."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[dt.datetime]
    operator_id: Mapped[str | None] = mapped_column(String(32))
    counter_id: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(120), default="")
    result: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # a sale's latest sealing row (app/domain/audit.py), found by audit verify for every sale
    __table_args__ = (Index("ix_audit_log_target_seq", "target", "seq"),)


class AuditHead(Base):
    """The chain's last row, one row only: locked by whoever appends, so appends are serial."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    __table_args__ = (CheckConstraint("id = 1", name="single"),)


class ApprovalRule(Base):
    """Which approvals an action kind needs: an ordered list of steps, each a role and whether
    the approver must be someone other than the operator who asked (and the earlier approvers)."""

    __tablename__ = "approval_rules"
    action: Mapped[str] = mapped_column(String(40), primary_key=True)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    ttl_minutes: Mapped[int] = mapped_column(Integer, default=60)


class ApprovalRequest(Base):
    __tablename__ = "approval_requests"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(120))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    counter_id: Mapped[str] = mapped_column(String(32))
    requested_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    state: Mapped[str] = mapped_column(String(10), index=True)
    approvals: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # [{operator, role, at}]
    decided_at: Mapped[dt.datetime | None]
    used_at: Mapped[dt.datetime | None]
    reason: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (
        CheckConstraint(
            "state IN ('pending','approved','rejected','expired','used','withdrawn')",
            name="state",
        ),
    )


class OutboxEntry(Base):
    """What must reach the central system, written in the same transaction as the fact it
    reports; the sync worker sends it and marks it sent (exactly once on the central side,
    which inserts idempotently by ``ref_id``)."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    ref_id: Mapped[str] = mapped_column(String(36))
    # the counter whose fact this is: only that counter sends it (counters may share a
    # database); "" for a row nobody could be named for, taken by the first counter that syncs
    counter_id: Mapped[str] = mapped_column(String(32), server_default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)  # money it carries, for limits
    created_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    # the contract body, frozen at the first attempt so every retry sends the same bytes
    body: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # set aside: the contract check (code "invalid") or the central system ("rejected",
    # "conflict") refused it; not sent again until a person re-queues it (sync retry)
    refused_at: Mapped[dt.datetime | None]
    refused_code: Mapped[str] = mapped_column(String(40), server_default="")
    refused_reason: Mapped[str] = mapped_column(Text, server_default="")
    __table_args__ = (
        UniqueConstraint("kind", "ref_id", name="uq_outbox_kind_ref"),
        Index("ix_outbox_counter_sent", "counter_id", "sent_at"),
    )


class ReceiptPrint(Base):
    """A reprint of a sale's receipt (the original, copy 0, is not recorded here)."""

    __tablename__ = "receipt_prints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sale_id: Mapped[str] = mapped_column(ForeignKey("sales.id"), index=True)
    copy_no: Mapped[int] = mapped_column(Integer)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    approval_id: Mapped[str | None] = mapped_column(String(36))
    counter_id: Mapped[str] = mapped_column(String(32))
    printed_at: Mapped[dt.datetime]
    __table_args__ = (UniqueConstraint("sale_id", "copy_no", name="uq_receipt_prints_sale_copy"),)


class MgmtJob(Base):
    """A management-card job pulled from the central system (a price adjustment, purchase
    parameters or reading day it failed to issue remotely)."""

    __tablename__ = "mgmt_jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    customer_no: Mapped[str] = mapped_column(String(12), index=True)
    meter_no: Mapped[str] = mapped_column(String(12))
    office_code: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    # the technician's side (app/services/jobs.py): who holds it, the management card's
    # lifecycle (issued -> applied on site -> returned -> closed) and the meter's result
    taken_by: Mapped[str | None] = mapped_column(String(32))
    taken_at: Mapped[dt.datetime | None]
    card_serial: Mapped[str | None] = mapped_column(String(32))
    card_state: Mapped[str | None] = mapped_column(String(10))
    issued_at: Mapped[dt.datetime | None]
    # the card's write-back MAC when it was programmed: a returned card still holding it has
    # not been to a meter since
    issued_wb_mac: Mapped[str | None] = mapped_column(String(8))
    applied_at: Mapped[dt.datetime | None]  # meter time of the write-back
    returned_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    result: Mapped[str | None] = mapped_column(String(12))  # applied | refused | wrong_meter
    result_reason: Mapped[str] = mapped_column(String(40), server_default="")
    result_id: Mapped[str | None] = mapped_column(String(36))  # the JobResultRecord's UUID
    write_back: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    __table_args__ = (
        CheckConstraint(
            "card_state IS NULL OR card_state IN ('issued','applied','returned','closed')",
            name="card_state",
        ),
        Index("ix_mgmt_jobs_office_status", "office_code", "status"),
    )


class Reversal(Base):
    __tablename__ = "reversals"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sale_id: Mapped[str] = mapped_column(ForeignKey("sales.id"), index=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    approver_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    counter_id: Mapped[str] = mapped_column(String(32))
    shift_id: Mapped[str] = mapped_column(ForeignKey("shifts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)  # cash handed back
    # pending: the card is being restored; completed: restored and taken out of the ledger;
    # failed: the card kept the purchase, so the sale stands
    state: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[dt.datetime]
    completed_at: Mapped[dt.datetime | None]


class AccountEvent(Base):
    """A step of a customer's lifecycle at the counter (migration 0010): a meter change, a
    close, a pause or a resume, with its kind-specific facts in ``detail``."""

    __tablename__ = "account_events"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    refund: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # cash out
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    approver_id: Mapped[str | None] = mapped_column(ForeignKey("operators.id"))
    counter_id: Mapped[str] = mapped_column(String(32))
    shift_id: Mapped[str | None] = mapped_column(ForeignKey("shifts.id"), index=True)
    created_at: Mapped[dt.datetime]
    __table_args__ = (
        CheckConstraint("kind IN ('meter_change','close','pause','resume')", name="kind"),
        CheckConstraint("refund >= 0", name="refund"),
    )


class CardBlacklist(Base):
    """Card serials that must never be accepted again (a lost card after its replacement)."""

    __tablename__ = "card_blacklist"
    serial: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    reason: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime]


class FeePayment(Base):
    """A fee paid in cash at the counter outside a sale (a replacement card)."""

    __tablename__ = "fee_payments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    counter_id: Mapped[str] = mapped_column(String(32))
    shift_id: Mapped[str] = mapped_column(ForeignKey("shifts.id"), index=True)
    created_at: Mapped[dt.datetime]
    __table_args__ = (CheckConstraint("amount >= 0", name="amount"),)


class Setting(Base):
    """Settings that belong to the database (shared by the counters of an office)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
