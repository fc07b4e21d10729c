"""A failed sign-in tells nobody whether the operator id exists: an unknown id, a wrong password,
a locked and a disabled operator get the same error after the same work (one scrypt check with
the same parameters); the reason is audited, and the lockout is shown to administrators only."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app import security
from app.clock import FixedClock
from app.errors import CardVendError
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.services import auth
from app.services.operators import AuthenticationFailed
from tests.rigs.cli import run


def _lock(db: Database, operator: str, clock: FixedClock) -> None:
    for _i in range(auth.SecurityPolicy().lockout_attempts):
        with pytest.raises(CardVendError):
            auth.login(db, operator, "wrong-password", counter_id="C01", clock=clock)


def _failures(db: Database, clock: FixedClock) -> dict[str, Callable[[], Any]]:
    """The four ways to fail, each as a sign-in attempt (s01 locked, t02 disabled first)."""
    admin = auth.login(db, "a01", "demo-a01", counter_id="C01", clock=clock)
    auth.set_disabled(db, admin, "t02", True, clock)
    _lock(db, "s01", clock)

    def attempt(operator: str, password: str) -> Callable[[], Any]:
        return lambda: auth.login(db, operator, password, counter_id="C01", clock=clock)

    return {
        "unknown id": attempt("nobody", "demo-nobody"),
        "wrong password": attempt("t01", "not-the-password"),
        "locked, right password": attempt("s01", "demo-s01"),
        "disabled, right password": attempt("t02", "demo-t02"),
    }


def test_every_failure_reads_the_same(demo_db: Database, clock: FixedClock) -> None:
    said = {}
    for case, attempt in _failures(demo_db, clock).items():
        with pytest.raises(Exception) as info:
            attempt()
        exc = info.value
        said[case] = (type(exc), exc.code, str(exc), exc.localized("zh_CN"))  # type: ignore[attr-defined]
    assert len(set(said.values())) == 1, said
    kind, code, english, chinese = said["unknown id"]
    assert issubclass(kind, AuthenticationFailed) and code == "auth"
    assert "5 wrong passwords in a row lock an operator for 30 minutes" in english
    assert "nobody" not in english and "t02" not in english and "s01" not in english
    assert "锁定 30 分钟" in chinese
    # the reason is in the audit log, for those who may read it
    with demo_db.read() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "login").order_by(AuditEntry.seq)
        ).all()
    assert [(r.target, r.result) for r in rows[-4:]] == [
        ("nobody", "failed"),
        ("t01", "failed"),
        ("s01", "locked"),
        ("t02", "denied"),
    ]


def test_every_failure_costs_one_password_hash(
    demo_db: Database, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The time a failure takes is the time of one scrypt with the parameters of a real hash:
    an unknown id or a locked operator is not answered any faster."""
    failures = _failures(demo_db, clock)
    calls: list[tuple[int, int, int, int]] = []
    real = hashlib.scrypt

    def counted(password: bytes, **kw: Any) -> bytes:
        calls.append((kw["n"], kw["r"], kw["p"], kw["dklen"]))
        return real(password, **kw)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    expected = (2**security.LOG2_N, security.R, security.P, security.DKLEN)
    for case, attempt in failures.items():
        calls.clear()
        with pytest.raises(CardVendError):
            attempt()
        assert calls == [expected], case
    calls.clear()
    auth.login(demo_db, "t01", "demo-t01", counter_id="C01", clock=clock)
    assert calls == [expected]  # what a success costs too


def test_the_lockout_is_shown_to_an_administrator(demo_db: Database, clock: FixedClock) -> None:
    _lock(demo_db, "t01", clock)
    admin = auth.login(demo_db, "a01", "demo-a01", counter_id="C01", clock=clock)
    views = {o.id: o for o in auth.list_operators(demo_db, admin, clock)}
    assert views["t01"].locked_until == clock.now() + dt.timedelta(minutes=30)
    assert views["t02"].locked_until is None
    assert auth.locked_text(views["t01"], "Asia/Shanghai") == "locked until 2026-03-01 17:30"
    auth.set_disabled(demo_db, admin, "t01", False, clock)  # enabling lifts the lock
    auth.login(demo_db, "t01", "demo-t01", counter_id="C01", clock=clock)


def test_the_command_line_says_it_alike(tmp_path: Path) -> None:
    assert run(tmp_path, "demo").returncode == 0

    def attempt(operator: str, password: str) -> str:
        r = run(tmp_path, "shift", "open", "--float", "0", "--operator", operator,
                env={"CARDVEND_PASSWORD": password})  # fmt: skip
        assert r.returncode == 1, r.stdout
        return r.stderr

    admin = {"CARDVEND_PASSWORD": "demo-a01"}
    assert (
        run(tmp_path, "operators", "disable", "t02", "--operator", "a01", env=admin).returncode == 0
    )
    wrong = attempt("t01", "not-the-password")
    for _i in range(5):  # the fifth locks s01
        assert attempt("s01", "not-the-password") == wrong
    said = {
        "unknown id": attempt("nobody", "demo-nobody"),
        "locked, right password": attempt("s01", "demo-s01"),
        "disabled, right password": attempt("t02", "demo-t02"),
    }
    assert set(said.values()) == {wrong}, said
    assert wrong.startswith("cardvend: Operator id or password is wrong") and wrong.count("\n") == 1
    r = run(tmp_path, "operators", "list", "--operator", "a01", env=admin)
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert "locked until" in lines["s01"] and "locked" not in lines["t01"]
    assert "disabled" in lines["t02"]
    r = run(tmp_path, "operators", "list", "--operator", "a01", "--json", env=admin)
    listed = {o["id"]: o for o in json.loads(r.stdout)}
    assert listed["s01"]["locked_until"] and listed["t01"]["locked_until"] is None
