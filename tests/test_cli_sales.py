"""The ledger commands run as a person runs them (a separate process per command), selling onto
emulated card images in-process and a simulated meter."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.domain.card import UnissuedCard
from app.settings import OFFLINE_MAX_AMOUNT
from app.settings import Settings
from tests.rigs.cli import PASSWORDS
from tests.rigs.cli import cv
from tests.rigs.cli import demo_with_cards
from tests.rigs.cli import ok_json
from tests.rigs.cli import open_account
from tests.rigs.cli import run
from tests.rigs.cli import terminal_for

CUSTOMER = "100000000001"  # card meter; the demo gives it 30.00 yuan arrears and 5.00 fees
REMOTE = "100000000010"  # remote fee-control meter


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_with_cards(tmp_path_factory.mktemp("sales"), "card1.json", "card2.json")


def refused(r: subprocess.CompletedProcess[str], text: str) -> None:
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cardvend: "), r.stderr
    assert text in lines[0], r.stderr


def test_a_counter_day(home: Path) -> None:
    """One teller's day through the command line, step by step (each step a function below)."""
    card1, card2 = str(home / "card1.json"), str(home / "card2.json")
    r = cv(home, "shift", "open", "--float", "100")
    assert r.returncode == 0 and "100.00" in r.stdout, r.stderr
    first_serial = _first_purchase(home, card1)
    _sell_reverse_and_resell(home, card1)
    _replace_and_rewrite(home, card1, card2, first_serial)
    _crash_and_recover(home, card2)
    _remote_then_close(home)


def _first_purchase(home: Path, card1: str) -> str:
    # a first card with its first purchase (arrears and fees are collected first)
    out = open_account(home, CUSTOMER, card1, amount="50")
    first = out["sale"]
    assert (first["state"], first["purchase_count"], first["amount_fen"]) == ("completed", 1, 5000)
    assert (first["arrears_fen"], first["fees_fen"], first["credit_fen"]) == (3000, 500, 1500)
    assert out["customer"]["card_serial"] == first["customer"]["card_serial"]
    return str(first["customer"]["card_serial"])


def _sell_reverse_and_resell(home: Path, card1: str) -> None:
    # the meter has not loaded purchase 1 yet
    sell = ("sell", "--customer", CUSTOMER, "--image", card1)
    refused(cv(home, *sell, "--amount", "30"), "insert the card into the meter first")
    r = run(home, "meter", "insert", "--meter-state", str(home / "meter.json"), "--image", card1)
    assert r.returncode == 0, r.stderr

    r = cv(home, *sell, "--amount", "30", "--cash", "50")
    assert r.returncode == 0, r.stderr
    assert "purchase 2" in r.stdout and "Change: 20.00 yuan." in r.stdout

    sales = ok_json(cv(home, "sales", "list", "--customer", CUSTOMER, "--json"))
    assert [(s["purchase_count"], s["state"]) for s in sales] == [
        (2, "completed"),
        (1, "completed"),
    ]
    second = sales[0]
    for key in ("sale_id", "customer_no", "purchase_count", "amount_fen", "credit_fen", "state"):
        assert key in second
    assert (second["customer_no"], second["amount_fen"], second["credit_fen"]) == (
        CUSTOMER,
        3000,
        3000,
    )

    # t01 sold it, s01 approves its reversal: the card holds purchase 1 again
    rev = ok_json(
        cv(home, "reverse", second["sale_id"], "--image", card1, "--approver", "s01", "--json")
    )
    assert (rev["sale_id"], rev["state"]) == (second["sale_id"], "reversed")

    # s01 sells; s01 may not approve the reversal of their own sale
    out = ok_json(cv(home, *sell, "--amount", "20", "--json", operator="s01"))
    assert (out["state"], out["purchase_count"], out["operator_id"]) == ("completed", 2, "s01")
    r = cv(home, "reverse", out["sale_id"], "--image", card1, "--approver", "s01")
    refused(r, "someone other than")


def _replace_and_rewrite(home: Path, card1: str, card2: str, first_serial: str) -> None:
    sell = ("sell", "--customer", CUSTOMER, "--image", card1)
    # a replacement card carries purchase 2; the old card is refused from now on
    out = ok_json(
        cv(
            home,
            "replace-card",
            "--customer",
            CUSTOMER,
            "--image",
            card2,
            "--approver",
            "s01",
            "--json",
        )
    )
    assert out["fee_fen"] == 2000 and out["card_serial"] != first_serial
    refused(cv(home, *sell, "--amount", "20"), "blacklisted")

    # the meter loads purchase 2 from the new card; a card that lost its write is rewritten
    meter = ("meter", "insert", "--meter-state", str(home / "meter.json"), "--image", card2)
    assert run(home, *meter).returncode == 0
    before = (home / "card2.json").read_bytes()
    sell2 = ("sell", "--customer", CUSTOMER, "--image", card2)
    third = ok_json(cv(home, *sell2, "--amount", "5", "--json"))
    (home / "card2.json").write_bytes(before)
    out = ok_json(cv(home, "rewrite", "--customer", CUSTOMER, "--image", card2, "--json"))
    assert (out["sale_id"], out["purchase_count"]) == (third["sale_id"], 3)


def _crash_and_recover(home: Path, card2: str) -> None:
    meter = ("meter", "insert", "--meter-state", str(home / "meter.json"), "--image", card2)
    sell2 = ("sell", "--customer", CUSTOMER, "--image", card2)
    # the process dies after writing the card: at start the sale is in doubt, the card decides
    assert run(home, *meter).returncode == 0
    r = cv(home, *sell2, "--amount", "7", env={"CARDVEND_CRASH_AT": "written"})
    assert r.returncode == -9
    out = ok_json(cv(home, "recover", "--at-start", "--json"))
    assert [(s["purchase_count"], s["state"]) for s in out["unresolved"]] == [(4, "in_doubt")]
    out = ok_json(cv(home, "recover", "--image", card2, "--json"))
    assert [(s["purchase_count"], s["state"]) for s in out["resolved"]] == [(4, "completed")]
    assert out["assessment"]["card_count"] == 4 and out["unresolved"] == []
    r = cv(home, "recover")
    assert r.returncode == 0 and "No sale is unresolved." in r.stdout, r.stderr


def _remote_then_close(home: Path) -> None:
    # a remote fee-control customer pays without a card; an offline limit needs an override
    settings = Settings.load(home / "config" / "settings.json")
    settings.set(OFFLINE_MAX_AMOUNT.key, 1)
    settings.save()
    remote = ("sell", "--customer", REMOTE, "--amount", "10")
    refused(cv(home, *remote), "Selling has stopped")
    out = ok_json(cv(home, *remote, "--override", "--approver", "s01", "--json"))
    assert (out["kind"], out["state"], out["purchase_count"]) == ("remote", "completed", None)

    # float 100 + 50 + 30 (taken, then 30 handed back) - 30 + 20 + fee 20 + 5 + 7 + remote 10
    out = ok_json(cv(home, "shift", "close", "--counted", "212", "--json"))
    assert (out["expected_fen"], out["counted_fen"], out["variance_fen"]) == (21200, 21200, 0)


@pytest.mark.parametrize("amount", ["-1", "0", "1.234", "99999999999"])
def test_bad_amounts(home: Path, amount: str) -> None:
    r = cv(home, "sell", "--customer", CUSTOMER, "--amount", amount, "--image", "none.json")
    refused(r, f"The amount {amount} is not valid")


def test_operator_is_required(home: Path) -> None:
    r = run(home, "sell", "--customer", CUSTOMER, "--amount", "10")
    assert r.returncode == 2 and "--operator" in r.stderr


def test_a_damaged_card_is_exchanged_and_erased(tmp_path: Path) -> None:
    """``replace-card --mode damaged``: the damaged card in its own reader (here an image) is
    read, the blank card replaces it, then the damaged card is erased; no approval rule."""
    home = tmp_path
    assert run(home, "demo").returncode == 0
    old, new = str(home / "old.json"), str(home / "new.json")
    for image in (old, new):
        r = run(
            home, "card", "blank", "--image", image, "--operator", "f01",
            env={"CARDVEND_PASSWORD": "demo-f01"},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    customer = "100000000002"
    assert cv(home, "shift", "open", "--float", "0").returncode == 0
    opened = cv(home, "open-account", "--customer", customer, "--amount", "50", "--image", old)
    assert opened.returncode == 0, opened.stderr
    meter = ("meter", "insert", "--meter-state", str(home / "meter.json"), "--image")
    assert run(home, *meter, old).returncode == 0
    sold = cv(home, "sell", "--customer", customer, "--image", old, "--amount", "20")
    assert sold.returncode == 0, sold.stderr  # purchase 2, not in the meter yet
    old_serial = terminal_for(home, Path(old)).read().serial_hex

    exchange = ("replace-card", "--customer", customer, "--mode", "damaged", "--image", new)
    refused(cv(home, "replace-card", "--customer", customer, "--old-image", old), "--mode")
    out = ok_json(cv(home, *exchange, "--old-image", old, "--json"))
    assert (out["mode"], out["fee_fen"], out["old_serial"]) == ("damaged", 1000, old_serial)
    assert out["old_read"] is True and out["old_erased"] is True and out["approval_id"] is None
    with pytest.raises(UnissuedCard):
        terminal_for(home, Path(old)).read()
    card = terminal_for(home, Path(new)).read()
    assert card.serial_hex == out["card_serial"] != old_serial
    assert card.purchase is not None and card.purchase.purchase_count == 2
    r = run(home, *meter, new)
    assert r.returncode == 0, r.stderr
    sold = ok_json(
        cv(home, "sell", "--customer", customer, "--image", new, "--amount", "5", "--json")
    )
    assert sold["purchase_count"] == 3

    # text output, in Chinese: the erased card serves as the blank of an exchange whose old
    # card does not read
    r = run(
        home, "replace-card", "--customer", customer, "--mode", "damaged", "--image", old,
        "--operator", "t01", lang="zh", env=PASSWORDS,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "10.00" in r.stdout and old_serial in r.stdout
