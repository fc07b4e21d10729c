"""receipts and reports: reprints, the meter balance a sale was made at, training sales, an
index of sales by time

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.types import UTCDateTime

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.add_column(sa.Column("meter_balance", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("training", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.create_index("ix_sales_created", ["created_at"])
    op.create_table(
        "receipt_prints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sale_id", sa.String(length=36), nullable=False),
        sa.Column("copy_no", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("approval_id", sa.String(length=36), nullable=True),
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.Column("printed_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_receipt_prints_operator_id_operators")
        ),
        sa.ForeignKeyConstraint(
            ["sale_id"], ["sales.id"], name=op.f("fk_receipt_prints_sale_id_sales")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipt_prints")),
        sa.UniqueConstraint("sale_id", "copy_no", name="uq_receipt_prints_sale_copy"),
    )
    with op.batch_alter_table("receipt_prints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_receipt_prints_sale_id"), ["sale_id"])


def downgrade() -> None:
    with op.batch_alter_table("receipt_prints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_receipt_prints_sale_id"))
    op.drop_table("receipt_prints")
    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.drop_index("ix_sales_created")
    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.drop_column("training")
        batch_op.drop_column("meter_balance")
