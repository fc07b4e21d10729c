"""SMS notices, arrears control and condition release: the SMS outbox and preferences, a due
date on arrears items, the arrears control rows, and the operating data called from meters.

Revision ID: c0005
Revises: c0004
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.types import UTCDateTime

revision = "c0005"
down_revision = "c0004"


def upgrade() -> None:
    with op.batch_alter_table("central_arrears_items") as batch:
        batch.add_column(sa.Column("due_at", UTCDateTime(timezone=True), nullable=True))
    op.create_table(
        "central_sms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("phone", sa.String(length=24), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("cause", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_sms")),
        sa.UniqueConstraint("kind", "cause", name="uq_central_sms_kind_cause"),
    )
    op.create_index("ix_central_sms_status_next", "central_sms", ["status", "next_at"])
    op.create_table(
        "central_sms_prefs",
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("customer_no", name=op.f("pk_central_sms_prefs")),
    )
    op.create_table(
        "central_arrears_control",
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("since", UTCDateTime(timezone=True), nullable=False),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("last_reminder_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("lifted_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("customer_no", name=op.f("pk_central_arrears_control")),
    )
    op.create_table(
        "central_conditions",
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("meter_no", sa.String(length=12), nullable=False),
        sa.Column("relay", sa.String(length=8), nullable=True),
        sa.Column("status_words", sa.JSON(), nullable=False),
        sa.Column("meter_time", UTCDateTime(timezone=True), nullable=True),
        sa.Column("energy_wh", sa.BigInteger(), nullable=True),
        sa.Column("fetched_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("customer_no", name=op.f("pk_central_conditions")),
    )


def downgrade() -> None:
    op.drop_table("central_conditions")
    op.drop_table("central_arrears_control")
    op.drop_table("central_sms_prefs")
    op.drop_index("ix_central_sms_status_next", table_name="central_sms")
    op.drop_table("central_sms")
    with op.batch_alter_table("central_arrears_items") as batch:
        batch.drop_column("due_at")
