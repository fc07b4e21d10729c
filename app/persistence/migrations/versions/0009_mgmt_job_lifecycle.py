"""mgmt_jobs: the technician's side of a management-card job

Who took the job, the management card's lifecycle (issued, applied on site, returned, closed),
the meter's result read off the returned card and the id of the result sent to the central
system (app/services/jobs.py).

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.types import UTCDateTime

revision = "0009"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("mgmt_jobs") as batch:
        batch.add_column(sa.Column("taken_by", sa.String(32), nullable=True))
        batch.add_column(sa.Column("taken_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("card_serial", sa.String(32), nullable=True))
        batch.add_column(sa.Column("card_state", sa.String(10), nullable=True))
        batch.add_column(sa.Column("issued_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("issued_wb_mac", sa.String(8), nullable=True))
        batch.add_column(sa.Column("applied_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("returned_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("closed_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("result", sa.String(12), nullable=True))
        batch.add_column(
            sa.Column("result_reason", sa.String(40), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("result_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("write_back", sa.JSON(), nullable=True))
        batch.create_check_constraint(
            op.f("ck_mgmt_jobs_card_state"),
            "card_state IS NULL OR card_state IN ('issued','applied','returned','closed')",
        )
        batch.create_index("ix_mgmt_jobs_office_status", ["office_code", "status"])


def downgrade() -> None:
    with op.batch_alter_table("mgmt_jobs") as batch:
        batch.drop_index("ix_mgmt_jobs_office_status")
        batch.drop_constraint(op.f("ck_mgmt_jobs_card_state"), type_="check")
        for name in (
            "write_back",
            "result_id",
            "result_reason",
            "result",
            "closed_at",
            "returned_at",
            "applied_at",
            "issued_wb_mac",
            "issued_at",
            "card_state",
            "card_serial",
            "taken_at",
            "taken_by",
        ):
            batch.drop_column(name)
