"""The card commands through a real pcscd: `cardvend card emulate` serves the card (and a PSAM)
on the vpcd slots, the other commands reach them with --reader like a physical reader."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app.persistence.db import Database
from app.persistence.models import AuditEntry
from tests.pcsc_fixtures import READER_SLOT0
from tests.pcsc_fixtures import READER_SLOT1
from tests.pcsc_fixtures import Pcscd
from tests.rigs.card_process import Emulator
from tests.rigs.cli import run


@pytest.fixture
def home(pcscd: Pcscd, tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


F01 = {"CARDVEND_PASSWORD": "demo-f01", "CARDVEND_APPROVER_PASSWORD": "demo-s01"}


def admin(home: Path, *args: str, operator: str = "f01") -> subprocess.CompletedProcess[str]:
    """A card administration command signed in as a technician (s01 approves)."""
    return run(
        home, *args, "--operator", operator, env={**F01, "CARDVEND_PASSWORD": f"demo-{operator}"}
    )


def test_read_issue_erase_through_pcscd_with_a_psam(home: Path) -> None:
    image = home / "card.json"
    # no database yet: an emulated card is made and issued without signing in
    assert run(home, "card", "blank", "--image", str(image)).returncode == 0
    assert run(home, "card", "issue", "--image", str(image), "--kind", "user").returncode == 0
    assert run(home, "demo").returncode == 0
    card = Emulator(home, "--slot", "0", "--image", str(image))
    psam = None
    try:
        r = run(home, "card", "readers", "--json")
        assert r.returncode == 0, r.stderr
        assert {READER_SLOT0, READER_SLOT1} <= set(json.loads(r.stdout))
        r = run(home, "card", "read", "--reader", READER_SLOT0, "--json")
        assert r.returncode == 0, r.stderr
        first = json.loads(r.stdout)
        assert first["kind"] == "user"

        # from now on the master keys are used only inside the PSAM in the second slot
        psam = Emulator(home, "--slot", "1", "--psam")
        (home / "config").mkdir(exist_ok=True)
        (home / "config" / "settings.json").write_text(
            json.dumps({"schema_version": 1, "key_provider": "psam", "psam_reader": READER_SLOT1})
        )
        # a real reader: a technician or an administrator signs in, and it is audited
        r = run(home, "card", "erase", "--reader", READER_SLOT0)
        assert r.returncode == 1 and "--operator" in r.stderr and r.stderr.count("\n") == 1
        r = admin(home, "card", "erase", "--reader", READER_SLOT0, operator="t01")
        assert r.returncode == 1 and "may not" in r.stderr
        r = admin(home, "card", "erase", "--reader", READER_SLOT0)
        assert r.returncode == 0, r.stderr
        r = admin(
            home, "card", "issue", "--reader", READER_SLOT0, "--kind", "check", operator="a01"
        )
        assert r.returncode == 0, r.stderr
        r = run(home, "card", "read", "--reader", READER_SLOT0, "--json")
        data = json.loads(r.stdout)
        assert (data["serial"], data["kind"]) == (first["serial"], "check")
    finally:
        card.stop()
        if psam is not None:
            psam.stop()
    # the emulator persisted what the card acknowledged
    r = run(home, "card", "read", "--image", str(image), "--json")
    assert json.loads(r.stdout)["kind"] == "check"
    db = Database(str(home / "data" / "cardvend.db"))
    with db.read() as session:
        rows = session.execute(
            select(AuditEntry.action, AuditEntry.operator_id, AuditEntry.result, AuditEntry.target)
            .where(AuditEntry.action.in_(("card_erase", "card_issue")))
            .order_by(AuditEntry.seq)
        ).all()
    db.dispose()
    assert [tuple(r) for r in rows] == [
        ("card_erase", "t01", "denied", f"reader:{READER_SLOT0}"),
        ("card_erase", "f01", "ok", first["serial"]),
        ("card_issue", "a01", "ok", first["serial"]),
    ]


def test_erasing_a_customers_card_with_unloaded_credit_on_a_reader(home: Path) -> None:
    assert run(home, "demo").returncode == 0
    image = home / "card.json"
    assert admin(home, "card", "blank", "--image", str(image)).returncode == 0
    teller = {"CARDVEND_PASSWORD": "demo-t01"}
    r = run(home, "shift", "open", "--float", "0", "--operator", "t01", env=teller)
    assert r.returncode == 0, r.stderr
    r = run(home, "open-account", "--customer", "100000000002", "--amount", "20", "--image",
            str(image), "--operator", "t01", env=teller)  # fmt: skip
    assert r.returncode == 0, r.stderr
    card = Emulator(home, "--slot", "0", "--image", str(image))
    try:
        r = admin(home, "card", "erase", "--reader", READER_SLOT0)
        assert r.returncode == 1 and "has not loaded" in r.stderr, r.stderr
        r = admin(home, "card", "erase", "--reader", READER_SLOT0, "--approver", "s01")
        assert r.returncode == 0, r.stderr
    finally:
        card.stop()
    r = run(home, "card", "read", "--image", str(image))
    assert r.returncode == 1 and "blank" in r.stderr


def test_no_card_and_unknown_reader(home: Path) -> None:
    r = run(home, "card", "read", "--reader", READER_SLOT0)
    assert r.returncode == 1 and "no card" in r.stderr.lower()
    r = run(home, "card", "read", "--reader", "No Such Reader 99")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
