"""Control input and lifting, commissioning, and what a run keeps of each meter's last reading.

Adds to ``central_control`` the last billed reading's rates and meter time (a run no longer groups
``central_readings``), the consumption in the current tier year, the commissioning state, when the
control parameters reached the meter, and whether control is lifted.  Data-preserving: the rates
and meter time of each customer's last reading that was not an exception are copied over.

Revision ID: c0006
Revises: c0005
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.types import UTCDateTime

revision = "c0006"
down_revision = "c0005"

_COLUMNS = (
    "rates_wh",
    "meter_time",
    "tier_year_used_wh",
    "tier_year_start",
    "commission",
    "commission_at",
    "params_at",
    "lifted_at",
    "lift_event",
)


def upgrade() -> None:
    with op.batch_alter_table("central_control") as batch:
        batch.add_column(sa.Column("rates_wh", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("meter_time", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("tier_year_used_wh", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("tier_year_start", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("commission", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("commission_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("params_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lifted_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lift_event", sa.String(length=36), nullable=True))
    # the last reading each customer was billed (or first read) with
    op.execute(
        """
        UPDATE central_control SET
          rates_wh = (SELECT r.rates_wh FROM central_readings r
                      WHERE r.id = (SELECT max(l.id) FROM central_readings l
                                    WHERE l.customer_no = central_control.customer_no
                                      AND l.status <> 'exception')),
          meter_time = (SELECT r.meter_time FROM central_readings r
                        WHERE r.id = (SELECT max(l.id) FROM central_readings l
                                      WHERE l.customer_no = central_control.customer_no
                                        AND l.status <> 'exception'))
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("central_control") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
