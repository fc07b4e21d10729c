"""A remote purchase's status carries its sale's counter, indexed with the seq: a counter's
pull of its remote purchases walks its own rows instead of every counter's rows since its
cursor (which grew with the number of counters and the time between its pulls).

Revision ID: c0010
Revises: c0009
"""

import sqlalchemy as sa
from alembic import op

revision = "c0010"
down_revision = "c0009"


def upgrade() -> None:
    with op.batch_alter_table("central_remote_status") as batch:
        batch.add_column(sa.Column("counter_id", sa.String(length=32), nullable=True))
    op.execute(
        "UPDATE central_remote_status SET counter_id = (SELECT s.counter_id FROM central_sales s"
        " WHERE s.id = central_remote_status.sale_id)"
    )
    with op.batch_alter_table("central_remote_status") as batch:
        batch.alter_column("counter_id", existing_type=sa.String(length=32), nullable=False)
        batch.create_index(
            "ix_central_remote_status_counter_seq", ["counter_id", "seq"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("central_remote_status") as batch:
        batch.drop_index("ix_central_remote_status_counter_seq")
        batch.drop_column("counter_id")
