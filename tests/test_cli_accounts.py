"""close-account, pause-account and resume-account run as a person runs them (a process per
command), on emulated card images and the simulated meter; the statement read back as text."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.rigs.cli import cv
from tests.rigs.cli import demo_with_cards
from tests.rigs.cli import ok_json
from tests.rigs.cli import open_account
from tests.rigs.cli import run

CUSTOMER = "100000000002"  # card meter, nothing owed
OTHER = "100000000003"
REMOTE = "100000000010"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = demo_with_cards(tmp_path_factory.mktemp("accounts"), "card1.json", "card2.json")
    assert cv(home, "shift", "open", "--float", "100").returncode == 0
    return home


def refused(r: subprocess.CompletedProcess[str], text: str) -> None:
    assert r.returncode == 1, r.stdout
    assert text in r.stderr, r.stderr


def test_pause_resume_and_close_with_the_card(home: Path) -> None:
    card = str(home / "card1.json")
    open_account(home, CUSTOMER, card, amount="50")
    meter = ("meter", "insert", "--meter-state", str(home / "meter.json"), "--image", card)
    assert run(home, *meter).returncode == 0, "the meter loads purchase 1"
    sell = ("sell", "--customer", CUSTOMER, "--image", card, "--amount", "20")

    r = cv(home, "pause-account", "--customer", CUSTOMER, "--reason", "vacant house")
    assert r.returncode == 0 and "paused: vacant house" in r.stdout, r.stderr
    refused(cv(home, *sell), "paused (vacant house)")
    out = ok_json(cv(home, "resume-account", "--customer", CUSTOMER, "--json"))
    assert (out["status"], out["status_reason"]) == ("active", "")
    refused(cv(home, "resume-account", "--customer", CUSTOMER), "only a paused account")
    assert cv(home, *sell).returncode == 0

    statement = home / "statement.pdf"
    out = ok_json(
        cv(
            home,
            "close-account",
            "--customer",
            CUSTOMER,
            "--image",
            card,
            "--approver",
            "s01",
            "--reason",
            "moved away",
            "--statement",
            str(statement),
            "--json",
        )
    )
    assert (out["unloaded"], out["meter_remaining"], out["refund"], out["card"]) == (
        2000,
        5000,
        7000,
        "erased",
    )
    assert out["approver_id"] == "s01" and out["statement"] == str(statement)
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", str(statement), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert CUSTOMER in text and "70.00" in text and "moved away" in text
    # the 70.00 handed back left the drawer: 100 float + 50 + 20 sold - 70 refunded
    closed = ok_json(cv(home, "shift", "close", "--counted", "100", "--json"))
    assert (closed["expected_fen"], closed["variance_fen"]) == (10000, 0)
    refused(cv(home, *sell), "blank card")  # erased


def test_close_without_the_card_blacklists_it_and_a_remote_customer_has_none(home: Path) -> None:
    card = str(home / "card2.json")
    assert cv(home, "shift", "open", "--float", "0").returncode in (0, 1)
    open_account(home, OTHER, card)
    r = cv(
        home, "close-account", "--customer", OTHER, "--no-card", "--approver", "s01",
        "--meter-remaining", "-8.00", "--meter-count", "0",
    )  # fmt: skip
    refused(r, "owes 8.00 yuan")
    r = cv(
        home, "close-account", "--customer", OTHER, "--no-card", "--keep-card", "--approver",
        "s01", "--meter-remaining", "0", "--meter-count", "0",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "not read, blacklisted" in r.stdout and "Hand back 0.00 yuan" in r.stdout
    refused(cv(home, "sell", "--customer", OTHER, "--image", card, "--amount", "5"), "blacklisted")
    out = ok_json(cv(home, "close-account", "--customer", REMOTE, "--approver", "s01", "--json"))
    assert (out["card"], out["refund"]) == ("none", 0)
    refused(cv(home, "sell", "--customer", REMOTE, "--amount", "5"), "closed")
