"""The command line run as a person runs it: a separate process with its own CARDVEND_HOME."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cardio.channel import EmulatedChannel
from cardio.emulator import CardImage
from cardio.emulator import UserCardOS
from cardio.keys import SoftwareKeyProvider
from cardio.keys import open_keystore
from cardio.terminal import ApduTerminal
from cardio.wiring import DEMO_PASSPHRASE
from tests.conftest import ROOT
from tests.rigs.env import child_env

# the demo teller t01's password, and supervisor s01's for a step that needs an approver
PASSWORDS = {"CARDVEND_PASSWORD": "demo-t01", "CARDVEND_APPROVER_PASSWORD": "demo-s01"}
HEADER = "customer_no,name,address,phone,meter_no,meter_kind,tariff_plan,office,ct_ratio,pt_ratio\n"


def run(
    home: Path,
    *args: str,
    lang: str = "en",
    env: dict[str, str] | None = None,
    exe: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = child_env()
    full_env.update({"CARDVEND_HOME": str(home), "CARDVEND_LANG": lang}, **(env or {}))
    return subprocess.run(
        [*(exe or [sys.executable, str(ROOT / "main.py")]), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        cwd=ROOT,
    )


def cv(
    home: Path, *args: str, operator: str = "t01", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A command signed in as the demo ``operator`` (s01 approves)."""
    full = {**PASSWORDS, "CARDVEND_PASSWORD": f"demo-{operator}", **(env or {})}
    return run(home, *args, "--operator", operator, env=full)


def demo_with_cards(home: Path, *names: str) -> Path:
    """``home`` with the demo data and a blank card image in it for each of ``names``,
    written by the demo technician f01."""
    assert run(home, "demo").returncode == 0
    for name in names:
        r = run(
            home, "card", "blank", "--image", str(home / name), "--operator", "f01",
            env={"CARDVEND_PASSWORD": "demo-f01"},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    return home


def ok_json(r: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a command printed, once it succeeded."""
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def open_account(home: Path, customer: str, image: str, amount: str | None = None) -> Any:
    """``open-account`` for ``customer`` onto the card image ``image`` by the demo teller t01,
    with a first purchase of ``amount`` yuan if given; the JSON it printed, once it succeeded."""
    first_purchase = ("--amount", amount) if amount is not None else ()
    args = ("--customer", customer, *first_purchase, "--image", image, "--json")
    return ok_json(cv(home, "open-account", *args))


def registered_counter(home: Path, central: str, key: str = "office-secret") -> Path:
    """A counter home with the demo data, registered with ``central`` by the administrator a01
    with the office's enrolment ``key``."""
    assert run(home, "demo").returncode == 0
    r = register_counter(home, central, key)
    assert r.returncode == 0, r.stderr
    return home


def register_counter(home: Path, central: str, key: str) -> subprocess.CompletedProcess[str]:
    """``counter register`` with the enrolment ``key``, by the administrator a01."""
    return run(home, "counter", "register", "--central", central, "--enrolment-key", key,
               "--operator", "a01", env={"CARDVEND_PASSWORD": "demo-a01"})  # fmt: skip


def import_csv(
    home: Path, path: Path | str, *args: str, exe: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``customers import`` by the demo administrator a01."""
    return run(
        home,
        "customers",
        "import",
        str(path),
        "--operator",
        "a01",
        *args,
        env={"CARDVEND_PASSWORD": "demo-a01"},
        exe=exe,
    )


def terminal_for(home: Path, image: Path) -> ApduTerminal:
    master = open_keystore(home / "data" / "keystore.json", DEMO_PASSPHRASE)
    card = UserCardOS(CardImage.load(image), persist_path=image)
    return ApduTerminal(EmulatedChannel(card), SoftwareKeyProvider(master), utility_code="100001")
