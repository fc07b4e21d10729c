"""Payment channels: third parties' credentials, allowed customers, payments and reconciliations.

Revision ID: c0007
Revises: c0006
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.types import UTCDateTime

revision = "c0007"
down_revision = "c0006"


def upgrade() -> None:
    op.create_table(
        "central_channels",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("all_offices", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_channels")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_central_channels_token_hash")),
    )
    op.create_table(
        "central_channel_offices",
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("office_code", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["central_channels.id"],
            name=op.f("fk_central_channel_offices_channel_id_central_channels"),
        ),
        sa.PrimaryKeyConstraint("channel_id", "office_code", name="pk_central_channel_offices"),
    )
    op.create_table(
        "central_channel_payments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("txn_id", sa.String(length=64), nullable=False),
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("office_code", sa.String(length=32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["central_channels.id"],
            name=op.f("fk_central_channel_payments_channel_id_central_channels"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_channel_payments")),
        sa.UniqueConstraint("channel_id", "txn_id", name="uq_central_channel_payments_channel_txn"),
    )
    op.create_index(
        "ix_central_channel_payments_customer_received",
        "central_channel_payments",
        ["customer_no", "received_at"],
    )
    op.create_index(
        "ix_central_channel_payments_channel_paid",
        "central_channel_payments",
        ["channel_id", "paid_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_central_channel_payments_channel_paid", "central_channel_payments")
    op.drop_index("ix_central_channel_payments_customer_received", "central_channel_payments")
    op.drop_table("central_channel_payments")
    op.drop_table("central_channel_offices")
    op.drop_table("central_channels")
