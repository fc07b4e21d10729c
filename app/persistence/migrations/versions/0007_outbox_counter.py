"""outbox: the counter each record belongs to, and records set aside as refused

Counters may share one database; each sends only its own outbox rows. Existing rows get the
counter of the fact they report (the sale, reversal or fee payment; the payload of a card
binding or rewrite). Rows that were left unsent with a refusal (``last_error`` "conflict: ..."
or "rejected: ...") are marked refused, so they are no longer resent every round.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from app.persistence.types import UTCDateTime

revision = "0007"
down_revision = "0006"


def _payload(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _backfill() -> None:
    conn = op.get_bind()
    for kind, table in (("sale", "sales"), ("remote", "sales"), ("reversal", "reversals")):
        conn.execute(
            sa.text(
                f"UPDATE outbox SET counter_id = (SELECT t.counter_id FROM {table} t "
                "WHERE t.id = outbox.ref_id) WHERE outbox.kind = :kind AND EXISTS "
                f"(SELECT 1 FROM {table} t WHERE t.id = outbox.ref_id)"
            ),
            {"kind": kind},
        )
    conn.execute(
        sa.text(
            "UPDATE outbox SET counter_id = (SELECT f.counter_id FROM fee_payments f "
            "WHERE f.id = outbox.ref_id) WHERE outbox.kind = 'replacement' AND EXISTS "
            "(SELECT 1 FROM fee_payments f WHERE f.id = outbox.ref_id)"
        )
    )
    rows = conn.execute(
        sa.text(
            "SELECT id, kind, payload FROM outbox "
            "WHERE counter_id = '' AND kind IN ('card_bound', 'rewrite')"
        )
    ).all()
    for row_id, kind, raw in rows:
        payload = _payload(raw)
        counter = payload.get("counter_id")
        if not counter and kind == "rewrite" and payload.get("sale_id"):
            counter = conn.execute(
                sa.text("SELECT counter_id FROM sales WHERE id = :id"), {"id": payload["sale_id"]}
            ).scalar()
        if counter:
            conn.execute(
                sa.text("UPDATE outbox SET counter_id = :c WHERE id = :id"),
                {"c": str(counter)[:32], "id": row_id},
            )
    now = dt.datetime.now(dt.UTC)
    refused = conn.execute(
        sa.text("SELECT id, last_error FROM outbox WHERE sent_at IS NULL AND last_error <> ''")
    ).all()
    for row_id, error in refused:
        code, sep, reason = str(error).partition(": ")
        if not sep or code not in ("conflict", "rejected"):
            continue
        conn.execute(
            sa.text(
                "UPDATE outbox SET refused_at = :at, refused_code = :code, "
                "refused_reason = :reason WHERE id = :id"
            ).bindparams(sa.bindparam("at", type_=UTCDateTime())),
            {"at": now, "code": code, "reason": reason, "id": row_id},
        )


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("counter_id", sa.String(length=32), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("refused_at", UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("refused_code", sa.String(length=40), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("refused_reason", sa.Text(), server_default="", nullable=False)
        )
    _backfill()
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_counter_sent", ["counter_id", "sent_at"])


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_counter_sent")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("refused_reason")
        batch_op.drop_column("refused_code")
        batch_op.drop_column("refused_at")
        batch_op.drop_column("counter_id")
