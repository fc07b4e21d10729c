"""sync: central refs of arrears items, sale review flags, frozen outbox bodies, jobs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.types import UTCDateTime

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("arrears_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ref", sa.String(length=40), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_arrears_items_ref"), ["ref"])
    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review", sa.String(length=40), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body", sa.JSON(), nullable=True))
    op.create_table(
        "mgmt_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("meter_no", sa.String(length=12), nullable=False),
        sa.Column("office_code", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mgmt_jobs")),
    )
    with op.batch_alter_table("mgmt_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mgmt_jobs_customer_no"), ["customer_no"])


def downgrade() -> None:
    with op.batch_alter_table("mgmt_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mgmt_jobs_customer_no"))
    op.drop_table("mgmt_jobs")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("body")
    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.drop_column("review")
    with op.batch_alter_table("arrears_items", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_arrears_items_ref"), type_="unique")
        batch_op.drop_column("ref")
