"""Measurement tasks: which customers' meters are read, how often, and which registers.

Revision ID: c0009
Revises: c0008
"""

revision = "c0009"
down_revision = "c0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
