"""The exceptions queue's workflow and history, and the balance comparison of card customers.

Each exception carries its customer's office (counters see their office's only), the operator
it is assigned to, who moved it last and the last note; ``central_exception_events`` keeps every
step.  ``central_control_status`` keeps the illegal-insert count of the last write-back, so an
increase opens an exception.

Revision ID: c0004
Revises: c0003
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.types import UTCDateTime

revision = "c0004"
down_revision = "c0003"


def upgrade() -> None:
    with op.batch_alter_table("central_exceptions") as batch:
        batch.add_column(
            sa.Column("office_code", sa.String(length=32), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("assignee", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("updated_by", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column("note", sa.String(length=300), nullable=False, server_default="")
        )
    # the office of the exceptions opened before: their customer's
    op.execute(
        "UPDATE central_exceptions SET office_code = COALESCE((SELECT c.office_code FROM "
        "central_customers c WHERE c.customer_no = central_exceptions.customer_no), '')"
    )
    op.create_index(
        "ix_central_exceptions_office_state", "central_exceptions", ["office_code", "state"]
    )
    op.create_table(
        "central_exception_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("exception_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=12), nullable=False),
        sa.Column("from_state", sa.String(length=10), nullable=True),
        sa.Column("to_state", sa.String(length=10), nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=True),
        sa.Column("counter_id", sa.String(length=32), nullable=True),
        sa.Column("note", sa.String(length=300), nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_exception_events")),
    )
    op.create_index(
        "ix_central_exception_events_exception",
        "central_exception_events",
        ["exception_id", "id"],
    )
    # the history of the exceptions opened before: their opening
    op.execute(
        "INSERT INTO central_exception_events (exception_id, action, from_state, to_state, "
        "note, at) SELECT id, 'opened', NULL, state, '', created_at FROM central_exceptions"
    )
    with op.batch_alter_table("central_control_status") as batch:
        batch.add_column(sa.Column("illegal_insert_count", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("central_control_status") as batch:
        batch.drop_column("illegal_insert_count")
    op.drop_index("ix_central_exception_events_exception", table_name="central_exception_events")
    op.drop_table("central_exception_events")
    op.drop_index("ix_central_exceptions_office_state", table_name="central_exceptions")
    with op.batch_alter_table("central_exceptions") as batch:
        batch.drop_column("note")
        batch.drop_column("updated_by")
        batch.drop_column("assignee")
        batch.drop_column("office_code")
