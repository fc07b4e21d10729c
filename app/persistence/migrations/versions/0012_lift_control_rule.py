"""approval_rules: lifting a remote customer's fee control needs a supervisor

A lift stops the station's alarms and trips for the customer (and sends a close permit), so
one distinct supervisor signs it, within 60 minutes, as for a close or a meter change.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

_RULES = sa.table(
    "approval_rules", sa.column("action"), sa.column("steps", sa.JSON), sa.column("ttl_minutes")
)
NEW_RULES = ("lift_control",)

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.bulk_insert(
        _RULES,
        [
            {"action": a, "steps": [{"role": "supervisor", "distinct": True}], "ttl_minutes": 60}
            for a in NEW_RULES
        ],
    )


def downgrade() -> None:
    op.execute(_RULES.delete().where(_RULES.c.action.in_(NEW_RULES)))
