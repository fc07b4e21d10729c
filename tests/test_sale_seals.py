"""Ledger edits are caught: every sale is sealed by its latest audit row (app/domain/audit.py),
and ``audit verify`` names a sale edited, inserted or deleted behind the application's back
(SQLite and PostgreSQL; the command line as a separate process)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from app.domain.audit import SALE_CHANGED
from app.domain.audit import SALE_DELETED
from app.domain.audit import SALE_UNSEALED
from app.domain.audit import SEAL_ACTIONS
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.persistence.models import Sale
from app.services import audit
from tests.rigs.cli import run
from tests.rigs.counter import REMOTE
from tests.rigs.counter import Counter


def a_day(counter: Counter) -> dict[str, str]:
    """Sales in every state a sale can end in, each through the application."""
    image = counter.open(amount=5000)  # completed
    counter.to_meter(image)
    sold = counter.sell(image, 3000)
    counter.reverse(image, sold.sale.sale_id)  # reversed
    counter.sell_pulled(image, 1000, applied=False)  # in doubt, then failed when presented
    counter.recover(image)
    remote = counter.remote(8800)
    with counter.db.read() as session:
        states = {s.id: s.state for s in session.scalars(select(Sale))}
    assert sorted(states.values()) == ["completed", "completed", "failed", "reversed"]
    return {"remote": remote.sale_id, "reversed": sold.sale.sale_id} | {
        state: sid for sid, state in states.items() if state in ("failed",)
    }


def first_card_sale(db: Database) -> str:
    with db.read() as session:
        sale_id = session.scalar(
            select(Sale.id).where(Sale.kind == "card", Sale.state == "completed")
        )
        assert sale_id is not None
        return sale_id


def test_every_sale_made_by_the_application_verifies(counter: Counter) -> None:
    sales = a_day(counter)
    result = audit.verify(counter.db)
    assert result.ok, result
    # every state change wrote a sealing row: the reversed sale has begin, complete, reversal
    with counter.db.read() as session:
        actions = session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.target == sales["reversed"], AuditEntry.action.in_(SEAL_ACTIONS))
            .order_by(AuditEntry.seq)
        ).all()
    assert actions == ["sale_begin", "sale_complete", "reversal_complete"]


def test_later_changes_that_are_not_sealed_keep_it_valid(counter: Counter) -> None:
    sales = a_day(counter)
    with counter.db.write() as session:  # what sync and a rewrite may change afterwards
        session.execute(
            update(Sale)
            .where(Sale.id == sales["remote"])
            .values(remote_status="issued", review="customer_closed", note="x")
        )
        session.execute(update(Sale).where(Sale.kind == "card").values(rewrites=Sale.rewrites + 1))
    assert audit.verify(counter.db).ok


EDITS: list[tuple[str, dict[str, Any]]] = [
    ("amount and credit", {"amount": 1, "credit": 1}),
    ("state", {"state": "failed"}),
    ("cash received", {"cash_received": 999_999}),
    ("operator", {"operator_id": "s01"}),
    ("training flag", {"training": True}),
    ("purchase count", {"purchase_count": 9}),
    ("energy", {"energy_wh": 1}),
]


@pytest.mark.parametrize(("what", "values"), EDITS, ids=[e[0] for e in EDITS])
def test_an_edited_sale_is_named(counter: Counter, what: str, values: dict[str, Any]) -> None:
    a_day(counter)
    sale_id = first_card_sale(counter.db)
    assert audit.verify(counter.db).ok
    with counter.db.write() as session:
        session.execute(update(Sale).where(Sale.id == sale_id).values(**values))
    result = audit.verify(counter.db)
    assert (result.ok, result.sale_id, result.problem) == (False, sale_id, SALE_CHANGED), what
    assert result.first_bad_seq is not None
    with pytest.raises(audit.AuditVerifyFailed, match=f"sale {sale_id}"):
        audit.verify_or_raise(counter.db)


def test_an_edit_of_the_time_into_garbage_is_named(counter: Counter) -> None:
    if counter.db.dialect != "sqlite":
        pytest.skip("only SQLite stores text in a time column")
    a_day(counter)
    sale_id = first_card_sale(counter.db)
    with counter.db.write() as session:
        session.execute(
            text("UPDATE sales SET created_at = 'yesterday' WHERE id = :id"), {"id": sale_id}
        )
    result = audit.verify(counter.db)
    assert (result.sale_id, result.problem) == (sale_id, SALE_CHANGED)


def insert_copy(db: Database, sale_id: str) -> str:
    """A sale inserted by hand: the copy of ``sale_id`` under a new id (failed, so that the one
    live sale per purchase rule holds)."""
    new = str(uuid.uuid4())
    with db.write() as session:
        row = session.get(Sale, sale_id)
        assert row is not None
        values = {c.key: getattr(row, c.key) for c in Sale.__table__.columns}
        session.execute(Sale.__table__.insert().values({**values, "id": new, "state": "failed"}))
    return new


def test_a_sale_inserted_by_hand_is_named(counter: Counter) -> None:
    a_day(counter)
    new = insert_copy(counter.db, first_card_sale(counter.db))
    result = audit.verify(counter.db)
    assert (result.ok, result.sale_id, result.problem) == (False, new, SALE_UNSEALED)


def test_a_deleted_sale_is_named(counter: Counter) -> None:
    sales = a_day(counter)
    with counter.db.write() as session:
        session.execute(Sale.__table__.delete().where(Sale.id == sales["failed"]))
    result = audit.verify(counter.db)
    assert (result.ok, result.sale_id, result.problem) == (False, sales["failed"], SALE_DELETED)


def test_the_upgrade_seals_the_sales_made_before(counter: Counter) -> None:
    """A sale without any seal (as every sale made before the upgrade) is sealed by migration
    0006; afterwards an edit of it is caught like any other."""
    a_day(counter)
    old = insert_copy(counter.db, first_card_sale(counter.db))
    assert audit.verify(counter.db).problem == SALE_UNSEALED
    with counter.db.migration_connection() as conn:
        command.downgrade(counter.db.alembic_config(conn), "0005")
    counter.db.migrate()
    assert audit.verify(counter.db).ok
    with counter.db.read() as session:
        sealed = session.scalars(
            select(AuditEntry.target).where(AuditEntry.action == "sale_sealed")
        ).all()
    assert old in sealed
    with counter.db.write() as session:
        session.execute(update(Sale).where(Sale.id == old).values(cash_received=1))
    assert audit.verify(counter.db).sale_id == old


# --------------------------------------------------------------------------- command line

PASSWORDS = {"CARDVEND_PASSWORD": "demo-t01", "CARDVEND_APPROVER_PASSWORD": "demo-s01"}


def test_audit_verify_command_names_the_edited_sale(tmp_path: Path) -> None:
    home = tmp_path
    assert run(home, "demo").returncode == 0
    r = run(home, "shift", "open", "--float", "0", "--operator", "t01", env=PASSWORDS)
    assert r.returncode == 0, r.stderr
    r = run(
        home, "sell", "--customer", REMOTE, "--amount", "88", "--operator", "t01", "--json",
        env=PASSWORDS,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    sale_id = json.loads(r.stdout)["sale_id"]
    verify = ("audit", "verify", "--operator", "a01")
    admin = {"CARDVEND_PASSWORD": "demo-a01"}
    assert run(home, *verify, env=admin).returncode == 0
    db = Database(str(home / "data" / "cardvend.db"))
    with db.write() as session:  # what someone with the database file can do
        session.execute(text("PRAGMA ignore_check_constraints = ON"))
        session.execute(text("UPDATE sales SET amount = 1"))
    db.dispose()
    r = run(home, *verify, env=admin)
    assert r.returncode == 1
    assert f"sale {sale_id}" in r.stderr and "differs from its audit record" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    r = run(home, *verify, "--json", env=admin)
    out = json.loads(r.stdout)
    assert (out["ok"], out["sale_id"], out["problem"]) == (False, sale_id, SALE_CHANGED)


def test_verify_reads_sales_in_pages(counter: Counter) -> None:
    a_day(counter)
    for batch in (1, 2, 3, 5000):
        assert audit.verify(counter.db, batch=batch).ok
    sale_id = sorted(ledger_ids(counter.db))[-1]
    with counter.db.write() as session:
        session.execute(update(Sale).where(Sale.id == sale_id).values(energy_wh=2))
    for batch in (1, 2, 3, 5000):
        assert audit.verify(counter.db, batch=batch).sale_id == sale_id


def ledger_ids(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(Sale.id)))
