"""Control input and lifting, commissioning, and what a run keeps of each meter's last reading.

Revision ID: c0006
Revises: c0005
"""

revision = "c0006"
down_revision = "c0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
