"""Card and meter commands with emulated card images (in-process, no reader needed)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.rigs.cli import run
from tests.rigs.user_card import write_user_card

CST = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def test_blank_issue_read_erase(home: Path) -> None:
    image = home / "card.json"
    r = run(home, "card", "blank", "--image", str(image), "--serial", "0102030405060708")
    assert r.returncode == 0, r.stderr
    r = run(home, "card", "read", "--image", str(image))
    assert r.returncode == 1 and "blank card" in r.stderr
    assert run(home, "card", "blank", "--image", str(image)).returncode == 1  # no overwrite
    r = run(home, "card", "issue", "--image", str(image), "--kind", "user")
    assert r.returncode == 0, r.stderr
    data = json.loads(run(home, "card", "read", "--image", str(image), "--json").stdout)
    assert (data["serial"], data["kind"], data["purchase_count"]) == ("0102030405060708", "user", 0)
    assert run(home, "card", "issue", "--image", str(image), "--kind", "check").returncode == 1
    assert run(home, "card", "erase", "--image", str(image)).returncode == 0
    r = run(home, "card", "read", "--image", str(image))
    assert r.returncode == 1 and "blank" in r.stderr


def meter_insert(home: Path, state: str, image: str, *args: str) -> CompletedProcess[str]:
    """``cardvend meter insert``: the card image into the simulated meter kept in ``state``."""
    return run(home, "meter", "insert", "--meter-state", state, "--image", image, *args)


def test_user_card_through_the_meter(home: Path) -> None:
    image = home / "card.json"
    state = home / "meter.json"
    assert run(home, "card", "blank", "--image", str(image)).returncode == 0
    assert run(home, "card", "issue", "--image", str(image), "--kind", "user").returncode == 0
    result = write_user_card(home, image)
    assert len(result.files) == 3
    r = meter_insert(home, str(state), str(image), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["accepted"] and out["credited_fen"] == 10000
    r = meter_insert(home, str(state), str(image), "--hours", "10", "--load-kw", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["credited_fen"] == 0  # the same purchase is not loaded twice
    data = json.loads(run(home, "card", "read", "--image", str(image), "--json").stdout)
    wb = data["write_back"]
    # 10 kWh at 0.5000 yuan/kWh = 5.00 yuan used from 100.00 yuan
    assert (wb["remaining_fen"], wb["purchase_count"], wb["genuine"]) == (9500, 1, True)
    assert wb["total_energy_wh"] == 10_000 and data["meter_no"] == "200000000002"


def test_bad_hours_and_missing_image(home: Path) -> None:
    r = meter_insert(home, str(home / "m.json"), str(home / "none.json"))
    assert r.returncode == 1 and "none.json" in r.stderr
    image = home / "card.json"
    run(home, "card", "blank", "--image", str(image))
    r = meter_insert(home, str(home / "m.json"), str(image), "--hours", "0.001", "--load-kw", "1")
    assert r.returncode == 1 and "--hours" in r.stderr
    assert not os.path.exists(home / "m.json.tmp")
