"""SMS notices, arrears control and condition release.

Revision ID: c0005
Revises: c0004
"""

revision = "c0005"
down_revision = "c0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
