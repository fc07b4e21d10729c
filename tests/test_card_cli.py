"""Card and meter commands with emulated card images (in-process, no reader needed)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from app.domain.card import (
    CardKind,
    CardWrite,
    ParameterRecord,
    PurchaseRecord,
    TariffRecord,
    UpdateFlags,
    UserCardType,
)
from cardio.channel import EmulatedChannel
from cardio.emulator import CardImage, UserCardOS
from cardio.keys import SoftwareKeyProvider, open_keystore
from cardio.terminal import ApduTerminal
from cardio.wiring import DEMO_PASSPHRASE
from tests.test_cli import run

CST = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def terminal_for(home: Path, image: Path) -> ApduTerminal:
    master = open_keystore(home / "data" / "keystore.json", DEMO_PASSPHRASE)
    card = UserCardOS(CardImage.load(image), persist_path=image)
    return ApduTerminal(EmulatedChannel(card), SoftwareKeyProvider(master), utility_code="100001")


def write_user_card(home: Path, image: Path) -> Any:
    """An issued user card for meter 200000000002 with a purchase of 100.00 yuan, parameters
    (alarm 20.00/10.00 yuan, no overdraft) and a flat tariff; the terminal's write result."""
    terminal = terminal_for(home, image)
    params = ParameterRecord(
        card_kind=CardKind.USER,
        utility_code="100001",
        user_card_type=UserCardType.OPEN,
        customer_no="100000000002",
        meter_no="200000000002",
        alarm1=2000,
        alarm2=1000,
        overdraft_limit=0,
        credit_ceiling=99999999,
        ct_ratio=1,
        pt_ratio=1,
        update_flags=UpdateFlags.PARAMETERS | UpdateFlags.CURRENT_TARIFF,
        param_version=1,
    )
    tariff = TariffRecord(
        1,
        dt.datetime(2026, 1, 1, tzinfo=CST),
        {
            "kind": "flat",
            "flat_rate": 5000,
            "periods": [],
            "schedule": [],
            "tiers": [],
            "reset_month": 1,
            "reset_day": 1,
        },
    )
    purchase = PurchaseRecord(10000, 1, b"\x01" * 8, dt.datetime(2026, 3, 1, 9, tzinfo=CST))
    return terminal.write(CardWrite(parameters=params, purchase=purchase, current_tariff=tariff))


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


def test_user_card_through_the_meter(home: Path) -> None:
    image = home / "card.json"
    state = home / "meter.json"
    assert run(home, "card", "blank", "--image", str(image)).returncode == 0
    assert run(home, "card", "issue", "--image", str(image), "--kind", "user").returncode == 0
    result = write_user_card(home, image)
    assert len(result.files) == 3
    r = run(home, "meter", "insert", "--meter-state", str(state), "--image", str(image), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["accepted"] and out["credited_fen"] == 10000
    r = run(
        home,
        "meter",
        "insert",
        "--meter-state",
        str(state),
        "--image",
        str(image),
        "--hours",
        "10",
        "--load-kw",
        "1",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["credited_fen"] == 0  # the same purchase is not loaded twice
    data = json.loads(run(home, "card", "read", "--image", str(image), "--json").stdout)
    wb = data["write_back"]
    # 10 kWh at 0.5000 yuan/kWh = 5.00 yuan used from 100.00 yuan
    assert (wb["remaining_fen"], wb["purchase_count"], wb["genuine"]) == (9500, 1, True)
    assert wb["total_energy_wh"] == 10_000 and data["meter_no"] == "200000000002"


def test_bad_hours_and_missing_image(home: Path) -> None:
    r = run(
        home,
        "meter",
        "insert",
        "--meter-state",
        str(home / "m.json"),
        "--image",
        str(home / "none.json"),
    )
    assert r.returncode == 1 and "none.json" in r.stderr
    image = home / "card.json"
    run(home, "card", "blank", "--image", str(image))
    r = run(
        home,
        "meter",
        "insert",
        "--meter-state",
        str(home / "m.json"),
        "--image",
        str(image),
        "--hours",
        "0.001",
        "--load-kw",
        "1",
    )
    assert r.returncode == 1 and "--hours" in r.stderr
    assert not os.path.exists(home / "m.json.tmp")
