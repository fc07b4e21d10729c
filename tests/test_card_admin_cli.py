"""Card administration and files named on the command line, run as people run them (a process
per command): who may make, issue and erase cards, the approval to erase a card holding credit
the meter has not loaded, the audit rows, an account opening killed in the middle of its card
write, and one clear line for every bad card image or output path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select

from app.persistence.db import Database
from app.persistence.models import ApprovalRequest
from app.persistence.models import ReceiptPrint
from tests.conftest import ROOT
from tests.rigs.cli import ok_json
from tests.rigs.cli import run
from tests.rigs.commands import audit_rows
from tests.rigs.commands import one_line

CUSTOMER = "100000000002"  # card meter, nothing owed
REMOTE = "100000000010"
PASSWORDS = {
    "t01": "demo-t01",
    "s01": "demo-s01",
    "f01": "demo-f01",
    "a01": "demo-a01",
}


def as_(operator: str, approver: str = "s01", **extra: str) -> dict[str, str]:
    return {
        "CARDVEND_PASSWORD": PASSWORDS[operator],
        "CARDVEND_APPROVER_PASSWORD": PASSWORDS[approver],
        **extra,
    }


def cv(
    home: Path, *args: str, operator: str = "t01", **extra: str
) -> subprocess.CompletedProcess[str]:
    return run(home, *args, "--operator", operator, env=as_(operator, **extra))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cardadmin")
    assert run(home, "demo").returncode == 0
    r = cv(home, "shift", "open", "--float", "0")
    assert r.returncode == 0, r.stderr
    return home


def blank(home: Path, name: str) -> str:
    path = home / name
    r = cv(home, "card", "blank", "--image", str(path), operator="f01")
    assert r.returncode == 0, r.stderr
    return str(path)


# --------------------------------------------------------------------------- administration


def test_card_administration_signs_in_a_technician_or_an_admin(home: Path) -> None:
    image = home / "admin.json"
    # a database is set up here: an emulated card is administered like a real one
    one_line(run(home, "card", "blank", "--image", str(image)), "--operator")
    assert not image.exists()
    one_line(cv(home, "card", "blank", "--image", str(image)), "t01 (teller) may not")
    assert not image.exists()
    denied = audit_rows(home, "card_blank")
    assert [(a["operator"], a["result"]) for a in denied] == [("t01", "denied")]
    r = cv(home, "card", "blank", "--image", str(image), "--serial", "0102030405060708",
           operator="f01")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = cv(home, "card", "issue", "--kind", "check", "--image", str(image), operator="a01")
    assert r.returncode == 0, r.stderr
    one_line(cv(home, "card", "erase", "--image", str(image), operator="s01"), "may not")
    r = cv(home, "card", "erase", "--image", str(image), operator="f01")
    assert r.returncode == 0, r.stderr
    done = {
        action: [(a["operator"], a["result"], a["target"]) for a in audit_rows(home, action)]
        for action in ("card_blank", "card_issue", "card_erase")
    }
    assert done == {
        "card_blank": [("t01", "denied", done["card_blank"][0][2]),
                       ("f01", "ok", "0102030405060708")],
        "card_issue": [("a01", "ok", "0102030405060708")],
        "card_erase": [("s01", "denied", done["card_erase"][0][2]),
                       ("f01", "ok", "0102030405060708")],
    }  # fmt: skip
    (issued,) = audit_rows(home, "card_issue")
    assert issued["detail"]["kind"] == "check" and str(image) in issued["detail"]["source"]


def test_erasing_a_card_with_credit_not_in_the_meter_needs_an_approval(home: Path) -> None:
    image = blank(home, "credit.json")
    out = ok_json(cv(home, "open-account", "--customer", CUSTOMER, "--amount", "30",
                     "--image", image, "--json"))  # fmt: skip
    assert out["sale"]["state"] == "completed"
    serial = out["customer"]["card_serial"]
    before = Path(image).read_bytes()

    r = cv(home, "card", "erase", "--image", image, operator="f01")
    one_line(r, f"customer {CUSTOMER}", "purchase 1 that the meter has not loaded", "--approver")
    assert Path(image).read_bytes() == before
    # a technician does not approve, and nobody approves their own erase
    r = cv(home, "card", "erase", "--image", image, "--approver", "f01", operator="f01",
           CARDVEND_APPROVER_PASSWORD="demo-f01")  # fmt: skip
    one_line(r)
    assert Path(image).read_bytes() == before
    r = cv(home, "card", "erase", "--image", image, "--approver", "s01", operator="f01")
    assert r.returncode == 0, r.stderr
    erased = audit_rows(home, "card_erase")[-1]
    assert erased["target"] == serial and erased["detail"]["customer_no"] == CUSTOMER
    assert erased["detail"]["unloaded_count"] == 1
    db = Database(str(home / "data" / "cardvend.db"))
    with db.read() as session:
        request = session.get(ApprovalRequest, erased["detail"]["approval"])
        assert request is not None and (request.action, request.target, request.state) == (
            "erase_card",
            serial,
            "used",
        )
    db.dispose()


def test_erasing_a_loaded_card_needs_no_approval(home: Path) -> None:
    image = blank(home, "loaded.json")
    customer = "100000000003"
    r = cv(home, "open-account", "--customer", customer, "--amount", "20", "--image", image)
    assert r.returncode == 0, r.stderr
    r = run(home, "meter", "insert", "--meter-state", str(home / "m3.json"), "--image", image)
    assert r.returncode == 0, r.stderr
    r = cv(home, "card", "erase", "--image", image, operator="a01")
    assert r.returncode == 0, r.stderr
    assert audit_rows(home, "card_erase")[-1]["detail"]["approval"] is None


# --------------------------------------------------------------------------- atomic opening


@pytest.mark.parametrize("point", ["apdu_19", "card_written"])
def test_open_account_killed_during_its_card_write_then_retried(home: Path, point: str) -> None:
    """The process dies in the middle of the card write (the 19th APDU: the parameter file,
    after the tariff file) or right after it, before the binding: the customer has no card, the
    retry on the same card opens the account, and the sale follows."""
    customer = {"apdu_19": "100000000004", "card_written": "100000000005"}[point]
    image = blank(home, f"killed-{point}.json")
    args = ("open-account", "--customer", customer, "--image", image)
    r = cv(home, *args, CARDVEND_CRASH_AT=point)
    assert r.returncode == -9, r.stderr
    shown = ok_json(run(home, "customers", "show", customer, "--json"))
    assert shown["card_serial"] is None
    if point == "card_written":  # the card carries the account: a sale on it says what to do
        one_line(cv(home, "sell", "--customer", customer, "--amount", "5", "--image", image),
                 "open the account again with this card")  # fmt: skip
    out = ok_json(cv(home, *args, "--amount", "25", "--json"))
    assert out["sale"]["state"] == "completed" and out["sale"]["purchase_count"] == 1
    r = run(home, "meter", "insert", "--meter-state", str(home / f"m-{point}.json"),
            "--image", image)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = ok_json(cv(home, "sell", "--customer", customer, "--amount", "10", "--image", image,
                     "--json"))  # fmt: skip
    assert (out["state"], out["purchase_count"]) == ("completed", 2)


# --------------------------------------------------------------------------- bad files

BAD_IMAGES: dict[str, bytes | None] = {
    "truncated": None,  # the first 50 bytes of a real image
    "random": bytes(range(256)) * 2,
    "empty": b"",
    "folder": None,
    "missing": None,
    "latin1": '{"format": 1, "serial": "é"}'.encode("latin-1"),
    "json list": b"[1, 2, 3]",
    "no fields": b'{"format": 1}',
    "bad hex": json.dumps(
        {
            "format": 1,
            "serial": "zz",
            "state": 0,
            "kind": 0,
            "profile_version": 0,
            "files": {},
            "keys": {},
            "retries": {},
        }
    ).encode(),
    "huge": b" " * 70_000 + b"{}",
}


@pytest.fixture(scope="module")
def bad_images(home: Path) -> dict[str, str]:
    folder = home / "bad"
    folder.mkdir()
    real = Path(blank(home, "real.json")).read_bytes()
    paths = {}
    for name, content in BAD_IMAGES.items():
        path = folder / (name.replace(" ", "-") + ".json")
        if name == "truncated":
            path.write_bytes(real[:50])
        elif name == "folder":
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        paths[name] = str(path)
    return paths


# every command that takes a card image; each bad image is tried by at least one of them
IMAGE_COMMANDS: list[tuple[tuple[str, ...], str | None]] = [
    (("card", "read"), None),
    (("card", "issue", "--kind", "user"), "f01"),
    (("card", "erase"), "f01"),
    (("meter", "insert", "--meter-state", "{home}/bad-meter.json"), None),
    (("sell", "--customer", CUSTOMER, "--amount", "5"), "t01"),
    (("open-account", "--customer", "100000000006"), "t01"),
    (("recover",), "t01"),
    (("rewrite", "--customer", CUSTOMER), "t01"),
    (("replace-card", "--customer", CUSTOMER, "--approver", "s01"), "t01"),
    (("card", "emulate", "--slot", "1"), None),
]


def image_cases() -> list[tuple[int, str]]:
    names = list(BAD_IMAGES)
    n = max(len(names), len(IMAGE_COMMANDS))
    return [(i % len(IMAGE_COMMANDS), names[i % len(names)]) for i in range(n + 4)]


@pytest.mark.parametrize(("command", "image"), image_cases())
def test_a_bad_card_image_is_one_clear_line(
    home: Path, bad_images: dict[str, str], command: int, image: str
) -> None:
    args, operator = IMAGE_COMMANDS[command]
    args = tuple(a.replace("{home}", str(home)) for a in args)
    path = bad_images[image]
    full = (*args, "--image", path)
    r = cv(home, *full, operator=operator) if operator else run(home, *full)
    one_line(r, Path(path).name)
    assert "Traceback" not in r.stderr


def unwritable_folder(home: Path) -> Path:
    folder = home / "locked"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o500)
    return folder


def without_root_powers() -> list[str] | None:
    """How to run the command so that folder permissions apply: as root, without the
    capabilities that override them."""
    base = [sys.executable, str(ROOT / "main.py")]
    if os.geteuid() != 0:
        return base
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *base]


@pytest.fixture(scope="module")
def sale_id(home: Path) -> str:
    out = ok_json(cv(home, "sell", "--customer", REMOTE, "--amount", "12", "--json"))
    return str(out["sale_id"])


OUTPUTS: dict[str, tuple[tuple[str, ...], str]] = {
    "receipt": (("receipt", "{sale}", "--approver", "s01", "--out"), "t01"),
    "report": (("report", "shift", "--out"), "t01"),
    "audit export": (("audit", "export", "--out"), "a01"),
    "card blank": (("card", "blank", "--image"), "f01"),
    "sell receipt": (("sell", "--customer", REMOTE, "--amount", "3", "--receipt"), "t01"),
}
BAD_OUTPUTS = {
    "missing folder": ("{home}/no-such-folder/out.pdf", "does not exist"),
    "a folder": ("{home}/a-folder.pdf", "it is a folder"),
    "no permission": ("{home}/locked/out.pdf", "permission denied"),
}


@pytest.mark.parametrize("where", list(BAD_OUTPUTS))
@pytest.mark.parametrize("command", list(OUTPUTS))
def test_a_bad_output_path_is_one_clear_line(
    home: Path, sale_id: str, command: str, where: str
) -> None:
    args, operator = OUTPUTS[command]
    path, says = BAD_OUTPUTS[where]
    path = path.replace("{home}", str(home))
    if where == "no permission":
        unwritable_folder(home)
    (home / "a-folder.pdf").mkdir(exist_ok=True)
    full = (*(a.replace("{sale}", sale_id) for a in args), path, "--operator", operator)
    r = run(home, *full, env=as_(operator), exe=without_root_powers())
    one_line(r, says)
    assert prints(home, sale_id) == 0  # nothing was counted for a copy never written


def prints(home: Path, sale: str) -> int:
    db = Database(str(home / "data" / "cardvend.db"))
    try:
        with db.read() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(ReceiptPrint)
                    .where(ReceiptPrint.sale_id == sale)
                )
                or 0
            )
    finally:
        db.dispose()


def test_receipt_keeps_an_existing_file_unless_forced(home: Path) -> None:
    sale = ok_json(cv(home, "sell", "--customer", REMOTE, "--amount", "7", "--json"))["sale_id"]
    out = home / "kept.pdf"
    out.write_bytes(b"someone's file")
    args = ("receipt", sale, "--out", str(out), "--approver", "s01", "--json")
    approved = len(audit_rows(home, "approval.approve"))
    one_line(cv(home, *args), "already exists", "--force")
    assert out.read_bytes() == b"someone's file" and prints(home, sale) == 0
    assert len(audit_rows(home, "approval.approve")) == approved  # refused before approving
    copy = ok_json(cv(home, *args, "--force"))
    assert copy["copy_no"] == 1 and out.read_bytes().startswith(b"%PDF")
    assert prints(home, sale) == 1


def test_a_copy_that_could_not_be_written_is_not_counted(home: Path) -> None:
    """A folder that passes every check but refuses the file (sysfs as root; a read-only folder
    otherwise): the copy is not counted, not audited, and the approval can be used again."""
    sale = ok_json(cv(home, "sell", "--customer", REMOTE, "--amount", "8", "--json"))["sale_id"]
    folder = Path("/sys") if os.geteuid() == 0 else unwritable_folder(home)
    reprints = len(audit_rows(home, "receipt_reprint"))
    r = cv(home, "receipt", sale, "--out", str(folder / "cardvend-copy.pdf"), "--approver", "s01")
    one_line(r, "cardvend-copy.pdf")
    assert prints(home, sale) == 0 and len(audit_rows(home, "receipt_reprint")) == reprints
