"""account_events: the customer's lifecycle at the counter

A meter change (the old meter's state carried to the new one), a close (settled and refunded),
a pause and a resume, each one row with its kind-specific facts in ``detail``; the cash a close
hands back is ``refund`` (it leaves the drawer of the shift it was made in).  ``status_reason``
on the customer says why it is paused or closed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.types import UTCDateTime

_RULES = sa.table(
    "approval_rules", sa.column("action"), sa.column("steps", sa.JSON), sa.column("ttl_minutes")
)
# a close hands back cash and ends the account; a meter change from values typed off the old
# meter's display (not read from the card or the meter) carries credit on a person's word
NEW_RULES = ("close_account", "change_meter")

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "account_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("refund", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("approver_id", sa.String(length=32), nullable=True),
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.Column("shift_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('meter_change','close','pause','resume')", name=op.f("ck_account_events_kind")
        ),
        sa.CheckConstraint("refund >= 0", name=op.f("ck_account_events_refund")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_account_events_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_account_events_operator_id_operators")
        ),
        sa.ForeignKeyConstraint(
            ["approver_id"], ["operators.id"], name=op.f("fk_account_events_approver_id_operators")
        ),
        sa.ForeignKeyConstraint(
            ["shift_id"], ["shifts.id"], name=op.f("fk_account_events_shift_id_shifts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_events")),
    )
    with op.batch_alter_table("account_events") as batch:
        batch.create_index(batch.f("ix_account_events_customer_id"), ["customer_id"])
        batch.create_index(batch.f("ix_account_events_shift_id"), ["shift_id"])
    with op.batch_alter_table("customers") as batch:
        batch.add_column(
            sa.Column("status_reason", sa.String(200), nullable=False, server_default="")
        )
    op.bulk_insert(
        _RULES,
        [
            {"action": a, "steps": [{"role": "supervisor", "distinct": True}], "ttl_minutes": 60}
            for a in NEW_RULES
        ],
    )


def downgrade() -> None:
    op.execute(_RULES.delete().where(_RULES.c.action.in_(NEW_RULES)))
    op.drop_table("account_events")
    # a plain DROP COLUMN (SQLite 3.35+, PostgreSQL): rebuilding customers in batch mode would
    # drop a table the sales, arrears and fee payments refer to, which SQLite refuses
    op.execute("ALTER TABLE customers DROP COLUMN status_reason")
