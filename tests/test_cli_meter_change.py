"""``cardvend change-meter`` run as a person runs it (a separate process per command): an
account's credit moves from the old simulated meter to the new one on an emulated card."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.rigs.cli import PASSWORDS
from tests.rigs.cli import cv
from tests.rigs.cli import demo_with_cards
from tests.rigs.cli import ok_json
from tests.rigs.cli import open_account
from tests.rigs.cli import run

CUSTOMER = "100000000002"  # a card customer without arrears
NEW = "990000000777"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    demo_with_cards(tmp_path, "card.json")
    assert cv(tmp_path, "shift", "open", "--float", "0").returncode == 0
    return tmp_path


def insert(home: Path, state: str, *extra: str) -> Any:
    r = run(
        home, "meter", "insert", "--meter-state", str(home / state),
        "--image", str(home / "card.json"), "--json", *extra,
    )  # fmt: skip
    return ok_json(r)


def test_change_meter_from_the_card_and_the_new_meter_takes_it(home: Path) -> None:
    card = str(home / "card.json")
    open_account(home, CUSTOMER, card, amount="40")
    assert insert(home, "old.json")["credited_fen"] == 4000
    slip = home / "slip.pdf"
    out = ok_json(
        cv(home, "change-meter", "--customer", CUSTOMER, "--new-meter", NEW, "--from-card",
           "--image", card, "--slip", str(slip), "--json")
    )  # fmt: skip
    assert (out["new_meter_no"], out["carried_fen"], out["purchase_count"]) == (NEW, 4000, 1)
    assert out["source"] == "card" and out["approval_id"] is None
    assert slip.read_bytes().startswith(b"%PDF") and out["slip"] == str(slip)
    taken = insert(home, "new.json", "--meter-no", NEW)
    assert taken["accepted"] and taken["credited_fen"] == 4000
    assert taken["write_back"]["remaining"] == 4000
    # the same number again: already done
    r = cv(home, "change-meter", "--customer", CUSTOMER, "--new-meter", NEW, "--image", card)
    assert r.returncode == 1 and "already has meter" in r.stderr


def test_typed_values_need_the_approver_and_net_the_unloaded_purchase(home: Path) -> None:
    card = str(home / "card.json")
    open_account(home, CUSTOMER, card, amount="10")
    typed = ("change-meter", "--customer", CUSTOMER, "--new-meter", NEW, "--image", card,
             "--remaining", "-2.50", "--purchase-count", "0")  # fmt: skip
    r = cv(home, *typed)
    assert r.returncode != 0 and "--approver" in r.stderr
    r = cv(home, *typed, "--approver", "s01", "--reading", "1234.5")
    assert r.returncode == 0, r.stderr
    assert "10.00 yuan the old meter had not loaded" in r.stdout
    assert "Carried to the new meter: 7.50 yuan as purchase 1" in r.stdout
    assert "Approved by s01." in r.stdout
    assert insert(home, "new.json", "--meter-no", NEW)["credited_fen"] == 750


# main.main(argv) with the slip renderer failing, as a full disk or a broken font would
SLIP_FAILS = """\
import sys
import main
import printing.meter_change

def fail(*args, **kwargs):
    raise OSError(28, "No space left on device")

printing.meter_change.render_meter_change_pdf = fail
sys.exit(main.main(sys.argv[1:]))
"""


def test_a_slip_that_cannot_be_saved_is_told_and_the_change_stands(home: Path) -> None:
    """Like ``sell --receipt`` and ``close-account --statement``: the change is done and
    committed, the slip's failure is one line on stderr, the exit status 0."""
    card = str(home / "card.json")
    open_account(home, CUSTOMER, card, amount="40")
    assert insert(home, "old.json")["credited_fen"] == 4000
    slip = home / "slip.pdf"
    r = run(
        home, "change-meter", "--customer", CUSTOMER, "--new-meter", NEW, "--image", card,
        "--slip", str(slip), "--json", "--operator", "t01", env=PASSWORDS,
        exe=[sys.executable, "-c", SLIP_FAILS],
    )  # fmt: skip
    out = ok_json(r)
    assert (out["new_meter_no"], out["carried_fen"], out["slip"]) == (NEW, 4000, None)
    assert r.stderr.splitlines() == [
        "The meter is changed, but its slip was not saved ([Errno 28] No space left on device)."
    ]
    assert not slip.exists()
    assert insert(home, "new.json", "--meter-no", NEW)["credited_fen"] == 4000
