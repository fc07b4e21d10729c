"""SMS: purchase confirmations, per-customer rate limit and delivery status: the gateway's
message id on each SMS, an index on when sales were received (the purchase step looks at the
recent ones), one on a customer's sent SMS (the rate limit counts them) and one on the
kind and time of SMS (a reversal looks for the purchase confirmations of the last week).

Revision ID: c0008
Revises: c0007
"""

import sqlalchemy as sa
from alembic import op

revision = "c0008"
down_revision = "c0007"


def upgrade() -> None:
    with op.batch_alter_table("central_sms") as batch:
        batch.add_column(sa.Column("gateway_id", sa.String(length=64), nullable=True))
    op.create_index("ix_central_sales_received_at", "central_sales", ["received_at"])
    op.create_index("ix_central_sms_customer_sent", "central_sms", ["customer_no", "sent_at"])
    op.create_index("ix_central_sms_kind_created", "central_sms", ["kind", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_central_sms_kind_created", table_name="central_sms")
    op.drop_index("ix_central_sms_customer_sent", table_name="central_sms")
    op.drop_index("ix_central_sales_received_at", table_name="central_sales")
    with op.batch_alter_table("central_sms") as batch:
        batch.drop_column("gateway_id")
