"""The built one-folder application (packaging/cardvend.spec) started as the counter's PC starts it.

Runs only when CARDVEND_BUNDLE names the built executable: `.ci/dist-smoke` (make dist-smoke)
builds the bundle (minutes) and then runs this module; `make test` skips it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.rigs.central_process import CentralProcess
from tests.rigs.cli import ok_json
from tests.rigs.cli import run

BUNDLE = os.environ.get("CARDVEND_BUNDLE", "")
pytestmark = pytest.mark.skipif(not BUNDLE, reason="CARDVEND_BUNDLE is not set (make dist-smoke)")
CUSTOMER = "100000000001"  # the demo's card meter customer (30.00 yuan arrears, 5.00 fees)


def exe() -> list[str]:
    if BUNDLE == "checkout":  # the same checks on the source tree (to try this module itself)
        return [sys.executable, str(ROOT / "main.py")]
    path = Path(BUNDLE).resolve()
    assert path.is_file() and os.access(path, os.X_OK), path
    return [str(path)]


def test_version() -> None:
    r = subprocess.run([*exe(), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cardvend 0.1.0"


def test_a_sale_on_an_emulated_card(tmp_path: Path) -> None:
    """Demo data (Alembic migrations from the bundle), a blank card, a shift, a first purchase
    and a second one, in Chinese (the bundle's catalog) and English."""
    home, card = tmp_path / "home", str(tmp_path / "card.json")

    def cv(*args: str, operator: str = "t01", lang: str = "en") -> subprocess.CompletedProcess[str]:
        env = {"CARDVEND_PASSWORD": f"demo-{operator}", "CARDVEND_APPROVER_PASSWORD": "demo-s01"}
        return run(home, *args, "--operator", operator, env=env, exe=exe(), lang=lang)

    r = run(home, "demo", exe=exe())
    assert r.returncode == 0, r.stderr
    r = cv("card", "blank", "--image", card, operator="f01")
    assert r.returncode == 0, r.stderr
    r = cv("shift", "open", "--float", "100", lang="zh_CN")
    assert r.returncode == 0 and "100.00" in r.stdout, r.stderr
    assert any("\u4e00" <= ch <= "\u9fff" for ch in r.stdout), r.stdout  # Chinese words
    out = ok_json(cv("open-account", "--customer", CUSTOMER, "--amount", "50", "--image", card,
                     "--json"))  # fmt: skip
    assert (out["sale"]["state"], out["sale"]["purchase_count"]) == ("completed", 1)
    # its receipt in Chinese, with the bundle's font embedded
    pdf = tmp_path / "receipt.pdf"
    r = cv("receipt", out["sale"]["sale_id"], "--out", str(pdf), "--receipt-lang", "zh_CN",
           "--approver", "s01")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert pdf.read_bytes().startswith(b"%PDF") and b"WenQuanYi" in pdf.read_bytes()
    meter = ("meter", "insert", "--meter-state", str(tmp_path / "meter.json"), "--image", card)
    assert run(home, *meter, exe=exe()).returncode == 0
    r = cv("sell", "--customer", CUSTOMER, "--image", card, "--amount", "30", "--cash", "50")
    assert r.returncode == 0, r.stderr
    assert "purchase 2" in r.stdout and "Change: 20.00 yuan." in r.stdout


def test_the_station_and_a_counter_sync(tmp_path: Path) -> None:
    """The station (uvicorn, its own migrations) and a counter registered with it, both the bundle:
    a remote payment sold offline is sent and reconciled."""
    db = f"sqlite:///{tmp_path / 'central.db'}"
    central = CentralProcess(tmp_path / "central-home", "--db", db, "--enrolment-key", "key",
                             exe=exe())  # fmt: skip
    try:
        home = tmp_path / "counter"
        assert run(home, "demo", exe=exe()).returncode == 0
        r = run(home, "counter", "register", "--central", central.url, "--enrolment-key", "key",
                "--operator", "a01", env={"CARDVEND_PASSWORD": "demo-a01"}, exe=exe())  # fmt: skip
        assert r.returncode == 0, r.stderr
        teller = {"CARDVEND_PASSWORD": "demo-t01"}
        r = run(home, "shift", "open", "--float", "0", "--operator", "t01", env=teller, exe=exe())
        assert r.returncode == 0, r.stderr
        r = run(home, "sell", "--customer", "100000000010", "--amount", "88", "--operator", "t01",
                env=teller, exe=exe())  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert ok_json(run(home, "sync", "--json", exe=exe()))["sent"] == 1
        diff = ok_json(run(home, "sync", "reconcile", "--json", exe=exe()))
        assert (diff["local"], diff["central"], diff["matched"]) == (1, 1, 1)
    finally:
        assert central.stop() == 0, central.stderr()


def test_the_window_opens_offscreen(tmp_path: Path) -> None:
    env = {"QT_QPA_PLATFORM": "offscreen", "CARDVEND_SMOKE_QUIT_MS": "300"}
    r = run(tmp_path / "home", "-v", exe=exe(), env=env, lang="zh_CN")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "login window shown" in r.stderr, r.stderr[-3000:]
    assert "smoke: start-up done" in r.stderr and ", ok" in r.stderr, r.stderr[-3000:]
