"""Operators, roles and permissions: login, lockout, idle timeout, passwords, the matrix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy import text

from app.clock import FixedClock
from app.domain.operators import Role
from app.domain.permissions import PERMISSIONS
from app.domain.permissions import Action
from app.domain.permissions import PermissionDenied
from app.domain.permissions import allowed
from app.errors import Conflict
from app.errors import ValidationError
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.persistence.models import Operator
from app.services import auth
from app.services import ledger
from app.services import shifts
from app.services.auth import LoginFailed
from app.services.auth import ReauthRequired
from app.services.auth import SecurityPolicy
from app.services.customers import COLUMNS
from app.services.customers import import_csv
from app.services.operators import AuthenticationFailed

ROLE_OF = {"t01": Role.TELLER, "s01": Role.SUPERVISOR, "f01": Role.TECHNICIAN, "a01": Role.ADMIN}

# The matrix written out independently of app/domain/permissions.py: a change there that is
# not made here on purpose fails this test.  T teller, S supervisor, F technician, A admin,
# U auditor.
EXPECTED = {
    Action.SELL: "TS",
    Action.OPEN_ACCOUNT: "TS",
    Action.REPLACE_CARD: "TS",
    Action.REWRITE: "TS",
    Action.REVERSE: "TS",
    Action.REPRINT: "TS",
    Action.SHIFT: "TS",
    Action.OVERRIDE_OFFLINE_LIMIT: "S",
    Action.APPROVE: "S",
    Action.PROGRAM_MANAGEMENT_CARD: "F",
    Action.READ_METER: "F",
    Action.ADMINISTER_CARDS: "FA",
    Action.ERASE_CARD: "",  # an approval only: the eraser needs ADMINISTER_CARDS
    Action.CHANGE_SETTINGS: "A",
    Action.MANAGE_OPERATORS: "A",
    Action.IMPORT_CUSTOMERS: "A",
    Action.VIEW_REPORTS: "TSFAU",
    Action.EXPORT_REPORTS: "SAU",
    Action.VERIFY_AUDIT: "AU",
    Action.RETRY_SYNC: "SA",
    Action.CHANGE_METER: "TS",
    Action.CLOSE_ACCOUNT: "TS",  # with a supervisor's approval (the default rule)
    Action.PAUSE_ACCOUNT: "TS",
    Action.EXCHANGE_CARD: "TS",
    Action.HANDLE_EXCEPTIONS: "S",
    Action.LIFT_CONTROL: "TS",  # with a supervisor's approval (the default rule)
}
LETTER = {
    Role.TELLER: "T",
    Role.SUPERVISOR: "S",
    Role.TECHNICIAN: "F",
    Role.ADMIN: "A",
    Role.AUDITOR: "U",
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_permission_matrix(role: Role, action: Action) -> None:
    assert allowed(role, action) is (LETTER[role] in EXPECTED[action])


def test_matrix_covers_every_action() -> None:
    assert set(EXPECTED) == set(Action)
    assert set(PERMISSIONS) == set(Role)


def sign_in(db: Database, clock: FixedClock, op: str, counter: str = "C01") -> auth.Principal:
    return auth.login(db, op, f"demo-{op}", counter_id=counter, clock=clock)


@pytest.mark.parametrize("op", ["t01", "s01", "f01", "a01"])
def test_services_enforce_the_matrix(
    demo_db: Database, clock: FixedClock, op: str, tmp_path: Path
) -> None:
    """The services check permissions themselves, whatever a user interface shows."""
    me = sign_in(demo_db, clock, op)
    role = ROLE_OF[op]

    def attempt(action: Action, fn) -> None:  # type: ignore[no-untyped-def]
        if allowed(role, action):
            fn()
        else:
            with pytest.raises(PermissionDenied):
                fn()

    attempt(Action.SHIFT, lambda: shifts.open_shift(demo_db, actor=me, float_fen=0, clock=clock))
    attempt(
        Action.SELL,
        lambda: ledger.begin_card_sale(
            demo_db, actor=me, customer_no="100000000002", amount=100, clock=clock
        ),
    )
    attempt(
        Action.MANAGE_OPERATORS,
        lambda: auth.add_operator(demo_db, me, f"n{op}", "new", Role.TELLER, "password-1", clock),
    )
    attempt(Action.MANAGE_OPERATORS, lambda: auth.list_operators(demo_db, me, clock))
    archive = tmp_path / "archive.csv"
    archive.write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
    attempt(Action.IMPORT_CUSTOMERS, lambda: import_csv(demo_db, archive, clock, actor=me))
    with demo_db.read() as session:
        denied = session.scalars(select(AuditEntry).where(AuditEntry.result == "denied")).all()
    assert denied == []  # a refused permission changes nothing


def test_lockout_after_five_failures_for_thirty_minutes(db: Database, clock: FixedClock) -> None:
    auth.create_first_admin(db, "root1", "Root", "right-password", counter_id="C01", clock=clock)
    for _ in range(5):
        with pytest.raises(LoginFailed):
            auth.login(db, "root1", "wrong-password", counter_id="C01", clock=clock)
    with pytest.raises(LoginFailed):  # even the right password, while locked
        auth.login(db, "root1", "right-password", counter_id="C01", clock=clock)
    clock.advance(minutes=29, seconds=59)
    with pytest.raises(LoginFailed):
        auth.login(db, "root1", "right-password", counter_id="C01", clock=clock)
    clock.advance(seconds=2)
    assert auth.login(db, "root1", "right-password", counter_id="C01", clock=clock).role == "admin"
    with pytest.raises(AuthenticationFailed):  # the count starts again from zero
        auth.login(db, "root1", "wrong-password", counter_id="C01", clock=clock)
    with db.read() as session:
        results = [
            e.result
            for e in session.scalars(
                select(AuditEntry).where(AuditEntry.action == "login").order_by(AuditEntry.seq)
            )
        ]
    assert results == ["failed"] * 5 + ["locked", "locked", "ok", "failed"]


def test_lockout_policy_from_settings(db: Database, clock: FixedClock) -> None:
    auth.create_first_admin(db, "root1", "Root", "right-password", counter_id="C01", clock=clock)
    policy = SecurityPolicy(lockout_attempts=2, lockout_minutes=5)
    for _ in range(2):
        with pytest.raises(LoginFailed):
            auth.login(db, "root1", "x", counter_id="C01", clock=clock, policy=policy)
    with pytest.raises(LoginFailed, match="2 wrong passwords in a row lock an operator for 5 min"):
        auth.login(db, "root1", "right-password", counter_id="C01", clock=clock, policy=policy)
    clock.advance(minutes=5, seconds=1)
    auth.login(db, "root1", "right-password", counter_id="C01", clock=clock, policy=policy)


def test_unknown_operator_is_the_same_error(demo_db: Database, clock: FixedClock) -> None:
    with pytest.raises(AuthenticationFailed) as unknown:
        auth.login(demo_db, "nobody", "whatever", counter_id="C01", clock=clock)
    with pytest.raises(AuthenticationFailed) as wrong:
        auth.login(demo_db, "t01", "whatever", counter_id="C01", clock=clock)
    assert str(unknown.value) == str(wrong.value)  # no hint which ids exist


def test_idle_timeout_asks_for_the_password(demo_db: Database, clock: FixedClock) -> None:
    me = sign_in(demo_db, clock, "t01")
    clock.advance(minutes=14)
    me.authorize(Action.SELL, clock)  # activity resets the idle time
    clock.advance(minutes=15)
    me.authorize(Action.SELL, clock)
    clock.advance(minutes=15, seconds=1)
    with pytest.raises(ReauthRequired):
        me.authorize(Action.SELL, clock)
    with pytest.raises(AuthenticationFailed):
        auth.reauthenticate(demo_db, me, "wrong", clock)
    auth.reauthenticate(demo_db, me, "demo-t01", clock)
    me.authorize(Action.SELL, clock)


def test_password_change_and_reset(demo_db: Database, clock: FixedClock) -> None:
    me = sign_in(demo_db, clock, "t01")
    with pytest.raises(ValidationError):
        auth.change_password(demo_db, me, "demo-t01", "short", clock)
    with pytest.raises(AuthenticationFailed):
        auth.change_password(demo_db, me, "not-mine", "a-new-password", clock)
    auth.change_password(demo_db, me, "demo-t01", "a-new-password", clock)
    with pytest.raises(AuthenticationFailed):
        auth.login(demo_db, "t01", "demo-t01", counter_id="C01", clock=clock)
    auth.login(demo_db, "t01", "a-new-password", counter_id="C01", clock=clock)
    admin = sign_in(demo_db, clock, "a01")
    auth.reset_password(demo_db, admin, "t01", "reset-by-admin", clock)
    auth.login(demo_db, "t01", "reset-by-admin", counter_id="C01", clock=clock)
    with pytest.raises(PermissionDenied):
        auth.reset_password(demo_db, me, "t02", "hijack-attempt", clock)


def test_disable_enable_and_the_last_admin(demo_db: Database, clock: FixedClock) -> None:
    admin = sign_in(demo_db, clock, "a01")
    auth.set_disabled(demo_db, admin, "t02", True, clock)
    with pytest.raises(LoginFailed):  # said like a wrong password; the audit log has "denied"
        auth.login(demo_db, "t02", "demo-t02", counter_id="C01", clock=clock)
    auth.set_disabled(demo_db, admin, "t02", False, clock)
    auth.login(demo_db, "t02", "demo-t02", counter_id="C01", clock=clock)
    with pytest.raises(Conflict):
        auth.set_disabled(demo_db, admin, "a01", True, clock)  # not yourself
    auth.add_operator(demo_db, admin, "a02", "Second", Role.ADMIN, "second-admin", clock)
    other = auth.login(demo_db, "a02", "second-admin", counter_id="C01", clock=clock)
    auth.set_disabled(demo_db, other, "a01", True, clock)
    with pytest.raises(Conflict, match="last active administrator"):
        auth.set_disabled(demo_db, admin, "a02", True, clock)
    with pytest.raises(Conflict):
        auth.add_operator(demo_db, other, "t01", "dup", Role.TELLER, "password-x", clock)


def test_first_admin_only_once(db: Database, clock: FixedClock) -> None:
    assert not auth.admin_exists(db)
    auth.create_first_admin(db, "root1", "Root", "first-password", counter_id="C01", clock=clock)
    assert auth.admin_exists(db)
    with pytest.raises(Conflict):
        auth.create_first_admin(
            db, "root2", "Root", "first-password", counter_id="C01", clock=clock
        )


def test_no_password_in_the_clear_anywhere(demo_db: Database, clock: FixedClock) -> None:
    sign_in(demo_db, clock, "t01")
    with pytest.raises(AuthenticationFailed):
        auth.login(demo_db, "t01", "typo-secret-xyz", counter_id="C01", clock=clock)
    with demo_db.read() as session:
        hashes = session.scalars(select(Operator.password_hash)).all()
        assert all(h and h.startswith("scrypt$") for h in hashes)
        dump = " ".join(
            str(row)
            for table in ("operators", "audit_log", "settings")
            for row in session.execute(text(f"SELECT * FROM {table}")).all()
        )
    assert "demo-t01" not in dump and "typo-secret-xyz" not in dump


def test_login_audited_with_counter(demo_db: Database, clock: FixedClock) -> None:
    clock.set(dt.datetime(2026, 4, 1, 8, 0, tzinfo=dt.UTC))
    sign_in(demo_db, clock, "s01", counter="C09")
    with demo_db.read() as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert entry is not None
    assert (entry.action, entry.operator_id, entry.counter_id, entry.result) == (
        "login",
        "s01",
        "C09",
        "ok",
    )
    assert entry.at == clock.now()
