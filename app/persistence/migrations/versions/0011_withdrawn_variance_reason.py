"""approval_requests: a request its requester withdrew; shifts: why the cash differed

A teller who cancels while waiting for a supervisor withdraws the request: it leaves the
approval queue, and an approval given later can no longer start the operation.  A shift closed
with a variance (counted cash other than expected) says why, in ``variance_reason``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"

_BEFORE = "state IN ('pending','approved','rejected','expired','used')"
_AFTER = "state IN ('pending','approved','rejected','expired','used','withdrawn')"


def _states(condition: str) -> None:
    with op.batch_alter_table("approval_requests") as batch:
        batch.drop_constraint(op.f("ck_approval_requests_state"), type_="check")
        batch.create_check_constraint(op.f("ck_approval_requests_state"), condition)


def upgrade() -> None:
    _states(_AFTER)
    with op.batch_alter_table("shifts") as batch:
        batch.add_column(sa.Column("variance_reason", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("shifts") as batch:
        batch.drop_column("variance_reason")
    op.execute("UPDATE approval_requests SET state = 'expired' WHERE state = 'withdrawn'")
    _states(_BEFORE)
