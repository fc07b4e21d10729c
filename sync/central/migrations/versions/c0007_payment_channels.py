"""Payment channels: third parties' credentials, allowed customers, payments and reconciliations.

Revision ID: c0007
Revises: c0006
"""

revision = "c0007"
down_revision = "c0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
