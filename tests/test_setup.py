"""``cardvend setup`` as office IT runs it: a separate process with its own CARDVEND_HOME, on
SQLite and on the office's PostgreSQL, with a keystore (right and wrong passphrase), and
registered with the central server run as ``cardvend central serve``."""

from __future__ import annotations

import csv
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardio.keys import open_keystore
from tests.conftest import KEYSTORE_PASSPHRASE
from tests.pcsc_fixtures import READER_SLOT0
from tests.pcsc_fixtures import READER_SLOT1
from tests.pcsc_fixtures import Pcscd
from tests.rigs.card_process import Emulator
from tests.rigs.central_process import free_port
from tests.rigs.central_process import serve_central
from tests.rigs.cli import run
from tests.rigs.pg import create_pg_schema
from tests.rigs.pg import drop_pg_schema
from tests.rigs.pg import pg_available
from tests.rigs.pg import schema_url

PASSPHRASE = KEYSTORE_PASSPHRASE  # the conftest keystore's
SECRETS = {"CARDVEND_KEYSTORE_PASSPHRASE": PASSPHRASE, "CARDVEND_PASSWORD": "boss-password"}


@pytest.fixture
def central(tmp_path: Path) -> Iterator[str]:
    yield from serve_central(tmp_path)


def setup_args(keystore: Path, *extra: str, office: str = "OF01") -> list[str]:
    return ["setup", "--office", office, "--counter", "C07", "--keystore", str(keystore),
            "--admin", "boss", "--admin-name", "Office IT", *extra]  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def audit_rows(home: Path, tmp_path: Path) -> list[dict[str, str]]:
    out = tmp_path / "audit.csv"
    r = run(home, "audit", "export", "--out", str(out), "--operator", "boss", env=SECRETS)
    assert r.returncode == 0, r.stderr
    with out.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def nothing_configured(home: Path) -> bool:
    return (
        not (home / "config" / "settings.json").exists()
        and not (home / "data" / "keystore.json").exists()
    )


def test_setup_on_sqlite_writes_settings_admin_keystore_and_audit(
    keystore: Path, tmp_path: Path
) -> None:
    home = tmp_path / "counter"
    r = run(home, *setup_args(keystore, "--test-print"), env=SECRETS)
    assert r.returncode == 0, r.stderr
    assert "administrator: ok" in r.stdout and "a test receipt went to PDF" in r.stdout
    settings_file = home / "config" / "settings.json"
    settings = json.loads(settings_file.read_text())
    assert mode(settings_file) == 0o600
    assert settings["office_code"] == "OF01" and settings["counter_id"] == "C07"
    assert settings["demo_mode"] is False and "db_url" not in settings
    copied = home / "data" / "keystore.json"
    assert settings["keystore_file"] == str(copied) and mode(copied) == 0o600
    open_keystore(copied, PASSPHRASE)  # the copy opens with the same passphrase
    assert PASSPHRASE not in settings_file.read_text()
    rows = audit_rows(home, tmp_path)
    done = [row for row in rows if row["action"] == "counter_setup"]
    assert len(done) == 1 and done[0]["operator_id"] == "boss"
    detail = json.loads(done[0]["detail"])
    assert detail["office"] == "OF01" and detail["database"] == "sqlite"
    assert PASSPHRASE not in done[0]["detail"] and "boss-password" not in done[0]["detail"]
    # set up once: a second run says so and changes nothing
    r = run(home, *setup_args(keystore), env=SECRETS)
    assert r.returncode == 1 and "set up already" in r.stderr
    assert json.loads(settings_file.read_text()) == settings


def test_wrong_passphrase_fails_at_its_step_and_leaves_nothing(
    keystore: Path, tmp_path: Path
) -> None:
    home = tmp_path / "counter"
    r = run(home, *setup_args(keystore), env={**SECRETS, "CARDVEND_KEYSTORE_PASSPHRASE": "nope"})
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "key provider" in lines[0] and "passphrase is wrong" in lines[0]
    assert nothing_configured(home)
    assert not (home / "data" / "cardvend.db").exists()


def test_bad_office_code_fails_first_in_english_and_chinese(keystore: Path, tmp_path: Path) -> None:
    home = tmp_path / "counter"
    r = run(home, *setup_args(keystore, office="BAD OFFICE!"), env=SECRETS)
    assert r.returncode == 1 and "office code" in r.stderr and "Traceback" not in r.stderr
    assert "Set-up, office and counter" in r.stderr
    r = run(home, *setup_args(keystore, office="BAD OFFICE!"), env=SECRETS, lang="zh_CN")
    assert r.returncode == 1 and "设置" in r.stderr, r.stderr
    assert nothing_configured(home) and not (home / "data" / "cardvend.db").exists()


def test_setup_on_the_offices_postgresql(keystore: Path, tmp_path: Path) -> None:
    if not pg_available():
        pytest.skip("no PostgreSQL server")
    schema = create_pg_schema("setup_")
    try:
        home = tmp_path / "counter"
        url = schema_url(schema)
        r = run(home, *setup_args(keystore, "--db", url), env=SECRETS)
        assert r.returncode == 0, r.stderr
        settings = json.loads((home / "config" / "settings.json").read_text())
        assert settings["db_url"] == url
        assert not (home / "data" / "cardvend.db").exists()
        assert any(row["action"] == "counter_setup" for row in audit_rows(home, tmp_path))
    finally:
        drop_pg_schema(schema)


def test_a_database_that_does_not_answer_is_one_line(keystore: Path, tmp_path: Path) -> None:
    home = tmp_path / "counter"
    url = f"postgresql://127.0.0.1:{free_port()}/none"
    r = run(home, *setup_args(keystore, "--db", url), env=SECRETS)
    assert r.returncode == 1 and "database does not answer" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert nothing_configured(home)


def test_setup_registers_with_the_central_system(
    central: str, keystore: Path, tmp_path: Path
) -> None:
    home = tmp_path / "counter"
    down = f"http://127.0.0.1:{free_port()}"
    args = setup_args(keystore, "--enrolment-key", "office-secret", office="DEMO")
    # the central system cannot be reached: the last step fails, nothing is configured
    r = run(home, *args, "--central", down, env=SECRETS)
    assert r.returncode == 1 and "central system" in r.stderr, r.stderr
    assert nothing_configured(home)
    # again with the right address: the administrator made by the first run signs in
    r = run(home, *args, "--central", central, env=SECRETS)
    assert r.returncode == 0, r.stderr
    assert "Registered with the central system as DEMO/C07" in r.stdout
    settings = json.loads((home / "config" / "settings.json").read_text())
    assert settings["central_url"] == central
    assert mode(home / "data" / "central.token") == 0o600
    assert run(home, "sync").returncode == 0
    actions = [row["action"] for row in audit_rows(home, tmp_path)]
    assert "counter_register" in actions and actions.count("counter_setup") == 1


def test_setup_with_a_psam_and_a_reader_through_pcscd(pcscd: Pcscd, tmp_path: Path) -> None:
    """The readers pcscd sees: a card read in the user-card slot, a PSAM in the other; an
    unknown reader and an empty slot are one line each."""
    cards = tmp_path / "cards"
    image = cards / "card.json"
    assert run(cards, "card", "blank", "--image", str(image)).returncode == 0
    assert run(cards, "card", "issue", "--image", str(image), "--kind", "user").returncode == 0
    home = tmp_path / "counter"
    base = ["setup", "--office", "OF01", "--counter", "C07", "--admin", "boss"]
    env = {**SECRETS, "CARDVEND_CARD_WAIT": "1"}
    r = run(home, *base, "--reader", "No Such Reader", "--psam-reader", READER_SLOT1, env=env)
    assert r.returncode == 1 and "card reader" in r.stderr and "No Such Reader" in r.stderr
    r = run(home, *base, "--reader", READER_SLOT0, "--psam-reader", READER_SLOT1, env=env)
    assert r.returncode == 1 and "key provider" in r.stderr, r.stderr  # no PSAM in its slot
    assert len(r.stderr.strip().splitlines()) == 1
    card = Emulator(cards, "--slot", "0", "--image", str(image))
    psam = Emulator(cards, "--slot", "1", "--psam")
    try:
        r = run(home, *base, "--reader", READER_SLOT0, "--psam-reader", READER_SLOT1,
                "--test-read", env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "user card, serial" in r.stdout
    finally:
        psam.stop()
        card.stop()
    settings = json.loads((home / "config" / "settings.json").read_text())
    assert settings["key_provider"] == "psam" and settings["psam_reader"] == READER_SLOT1
    assert settings["card_reader"] == READER_SLOT0
    assert not (home / "data" / "keystore.json").exists()


def test_a_test_print_on_a_missing_printer_port_is_one_line(keystore: Path, tmp_path: Path) -> None:
    home = tmp_path / "counter"
    r = run(home, *setup_args(keystore, "--printer", "escpos", "--printer-port",
                              str(tmp_path / "no-such-tty"), "--test-print"), env=SECRETS)  # fmt: skip
    assert r.returncode == 1 and "Set-up, printer:" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert nothing_configured(home)
    r = run(home, *setup_args(keystore, "--printer", "escpos"), env=SECRETS)
    assert r.returncode == 1 and "serial port" in r.stderr
