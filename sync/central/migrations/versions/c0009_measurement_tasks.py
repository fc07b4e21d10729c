"""Measurement tasks: which customers' meters are read, how often, and which registers.

Revision ID: c0009
Revises: c0008
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.types import UTCDateTime

revision = "c0009"
down_revision = "c0008"


def upgrade() -> None:
    op.create_table(
        "central_measurement_tasks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("office_code", sa.String(length=32), nullable=True),
        sa.Column("tariff_plan", sa.String(length=32), nullable=True),
        sa.Column("every_min", sa.Integer(), nullable=False),
        sa.Column("registers", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_central_measurement_tasks")),
    )


def downgrade() -> None:
    op.drop_table("central_measurement_tasks")
