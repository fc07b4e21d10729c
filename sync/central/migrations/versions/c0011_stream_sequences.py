"""On PostgreSQL each stream's seqs come from a sequence of its own instead of a counted row in
central_streams: allocating takes no lock, so the writers of different offices (which the
office locks already keep apart) no longer wait for each other's commit.  Each sequence starts
after the stream's last seq; a downgrade writes the sequences' last values back.

Revision ID: c0011
Revises: c0010
"""

from alembic import op

revision = "c0011"
down_revision = "c0010"

# the streams when this revision was written (models.STREAMS may grow later)
_STREAMS = ("customers", "jobs", "remote", "sales", "tariffs")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has one writer at a time: it keeps counting in central_streams
    for name in _STREAMS:
        op.execute(f"CREATE SEQUENCE central_seq_{name} AS BIGINT MINVALUE 1 START 1 CACHE 1")
        last = f"COALESCE((SELECT last_seq FROM central_streams WHERE name = '{name}'), 0)"
        # the next value is last + 1 (setval's third argument: whether last was handed out)
        op.execute(f"SELECT setval('central_seq_{name}', GREATEST({last}, 1), {last} > 0)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in _STREAMS:
        op.execute(
            "UPDATE central_streams SET last_seq = GREATEST(last_seq, (SELECT CASE WHEN is_called"
            f" THEN last_value ELSE last_value - 1 END FROM central_seq_{name}))"
            f" WHERE name = '{name}'"
        )
        op.execute(f"DROP SEQUENCE central_seq_{name}")
