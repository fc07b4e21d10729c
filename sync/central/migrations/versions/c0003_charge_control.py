"""Charge control: each controlled customer's balance and state, meter readings, relay and
alarm commands, the exceptions queue, and the lease that lets one worker run the loop.

Revision ID: c0003
Revises: c0002
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.types import UTCDateTime

revision = "c0003"
down_revision = "c0002"


def upgrade() -> None:
    op.create_table(
        "central_control",
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("meter_no", sa.String(length=12), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("opening_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_fen", sa.BigInteger(), nullable=False),
        sa.Column("cost_num", sa.BigInteger(), nullable=False),
        sa.Column("remaining_fen", sa.BigInteger(), nullable=False),
        sa.Column("energy_wh", sa.BigInteger(), nullable=True),
        sa.Column("read_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("relay", sa.String(length=8), nullable=True),
        sa.Column("enrolled_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("state_since", UTCDateTime(timezone=True), nullable=False),
        sa.Column("close_permit_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_no", name=op.f("pk_central_control")),
    )
    op.create_table(
        "central_readings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("meter_no", sa.String(length=12), nullable=False),
        sa.Column("read_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("meter_time", UTCDateTime(timezone=True), nullable=True),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("rates_wh", sa.JSON(), nullable=False),
        sa.Column("relay", sa.String(length=8), nullable=True),
        sa.Column("cost_num", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_readings")),
    )
    op.create_index("ix_central_readings_customer_id", "central_readings", ["customer_no", "id"])
    op.create_table(
        "central_commands",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("meter_no", sa.String(length=12), nullable=False),
        sa.Column("command", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("done_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_commands")),
    )
    op.create_index("ix_central_commands_status_next", "central_commands", ["status", "next_at"])
    op.create_index(
        "ix_central_commands_customer_status", "central_commands", ["customer_no", "status"]
    )
    op.create_table(
        "central_exceptions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_exceptions")),
    )
    op.create_index(
        "ix_central_exceptions_customer_kind", "central_exceptions", ["customer_no", "kind"]
    )
    op.create_table(
        "central_leases",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("until", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_central_leases")),
    )


def downgrade() -> None:
    op.drop_table("central_leases")
    op.drop_index("ix_central_exceptions_customer_kind", table_name="central_exceptions")
    op.drop_table("central_exceptions")
    op.drop_index("ix_central_commands_customer_status", table_name="central_commands")
    op.drop_index("ix_central_commands_status_next", table_name="central_commands")
    op.drop_table("central_commands")
    op.drop_index("ix_central_readings_customer_id", table_name="central_readings")
    op.drop_table("central_readings")
    op.drop_table("central_control")
