"""card operations: sales sealed in the audit log (an index to find a sale's seal, and a seal
for every sale made before), and the approval rule for erasing a card that holds credit the
meter has not loaded

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import datetime as dt
from typing import Any

import sqlalchemy as sa
from alembic import op

from app.domain.audit import SEALED_FIELDS
from app.domain.audit import canonical_detail
from app.domain.audit import row_hash
from app.domain.audit import sale_seal
from app.persistence.types import UTCDateTime

revision = "0006"
down_revision = "0005"

_TYPES: dict[str, Any] = {"created_at": UTCDateTime(), "training": sa.Boolean()}
_SALES = sa.table("sales", *(sa.column(name, _TYPES.get(name)) for name in SEALED_FIELDS))
_AUDIT = sa.table(
    "audit_log",
    sa.column("seq"),
    sa.column("at", UTCDateTime()),
    sa.column("operator_id"),
    sa.column("counter_id"),
    sa.column("action"),
    sa.column("target"),
    sa.column("result"),
    sa.column("detail"),
    sa.column("prev_hash"),
    sa.column("hash"),
)
_HEAD = sa.table("audit_head", sa.column("id"), sa.column("seq"), sa.column("hash"))
_RULES = sa.table(
    "approval_rules", sa.column("action"), sa.column("steps", sa.JSON), sa.column("ttl_minutes")
)


def _seal_existing_sales() -> None:
    """Append a ``sale_sealed`` row for every sale already in the ledger (the log goes on from
    its head, as every append does), so that audit verify can check them too."""
    bind = op.get_bind()
    head = bind.execute(sa.select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)).first()
    if head is None:
        return
    seq, prev = int(head[0]), str(head[1])
    at = dt.datetime.now(dt.UTC)
    last = None
    while True:  # pages in id order: memory does not grow with the ledger
        query = sa.select(*_SALES.c).order_by(_SALES.c.id).limit(5000)
        if last is not None:
            query = query.where(_SALES.c.id > last)
        page = bind.execute(query).mappings().all()
        rows = []
        for sale in page:
            seq += 1
            detail = canonical_detail({"sale_seal": sale_seal(dict(sale)), "state": sale["state"]})
            target, counter = str(sale["id"]), sale["counter_id"]
            digest = row_hash(prev, seq, at, None, counter, "sale_sealed", target, "ok", detail)
            rows.append(
                {
                    "seq": seq,
                    "at": at,
                    "operator_id": None,
                    "counter_id": counter,
                    "action": "sale_sealed",
                    "target": target,
                    "result": "ok",
                    "detail": detail,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        if rows:
            bind.execute(sa.insert(_AUDIT), rows)
            bind.execute(sa.update(_HEAD).where(_HEAD.c.id == 1).values(seq=seq, hash=prev))
        if len(page) < 5000:
            return
        last = page[-1]["id"]


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_target_seq", ["target", "seq"])
    op.bulk_insert(
        _RULES,
        [
            {
                "action": "erase_card",
                "steps": [{"role": "supervisor", "distinct": True}],
                "ttl_minutes": 60,
            }
        ],
    )
    _seal_existing_sales()


def downgrade() -> None:
    # the sealing rows stay: the audit log is append-only
    op.execute(_RULES.delete().where(_RULES.c.action == "erase_card"))
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_target_seq")
