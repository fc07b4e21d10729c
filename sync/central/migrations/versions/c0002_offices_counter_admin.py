"""Offices with their region; a counter's last contact and its revocation.

Revision ID: c0002
Revises: c0001
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

import app.persistence.types

revision = "c0002"
down_revision = "c0001"


def upgrade() -> None:
    op.create_table(
        "central_offices",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("province", sa.String(length=32), nullable=False),
        sa.Column("city", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_central_offices")),
    )
    with op.batch_alter_table("central_counters") as batch_op:
        batch_op.add_column(
            sa.Column("last_seen_at", app.persistence.types.UTCDateTime(timezone=True))
        )
        batch_op.add_column(
            sa.Column("revoked_at", app.persistence.types.UTCDateTime(timezone=True))
        )
    # the offices the data already names, region not known yet
    now = sa.bindparam(
        "now", value=dt.datetime.now(dt.UTC), type_=app.persistence.types.UTCDateTime()
    )
    op.execute(
        sa.text(
            "INSERT INTO central_offices (code, name, province, city, created_at) "
            "SELECT DISTINCT office_code, '', '', '', :now FROM ("
            " SELECT office_code FROM central_counters"
            " UNION SELECT office_code FROM central_customers"
            " UNION SELECT office_code FROM central_jobs) AS named"
        ).bindparams(now)
    )


def downgrade() -> None:
    with op.batch_alter_table("central_counters") as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("last_seen_at")
    op.drop_table("central_offices")
