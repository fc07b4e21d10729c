"""customers: the meter's illegal-insert count from the last card write-back

The card's write-back file carries the meter's count of illegal inserts (blank, foreign or
corrupt cards).  The counter keeps the count of the last write-back it noted beside the remaining
credit and purchase count, and the next control report sends it to the station, which opens an
``illegal_insert`` exception when it rose.  NULL: no write-back noted since this revision.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("meter_illegal_insert_count", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("meter_illegal_insert_count")
