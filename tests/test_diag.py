"""Getting help: ``cardvend selftest`` (one line a check, exit status 1 on a failure) and
``cardvend diag`` (a support bundle holding no secret), as separate processes against a real
central server; and the log line each sale leaves."""

from __future__ import annotations

import getpass
import json
import logging
import socket
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.central.server import CentralServer
from tests.rigs.cli import registered_counter
from tests.rigs.cli import run
from tests.rigs.pg import create_pg_schema
from tests.rigs.pg import drop_pg_schema
from tests.rigs.pg import pg_available
from tests.rigs.pg import schema_url

ADMIN = {"CARDVEND_PASSWORD": "demo-a01"}


@pytest.fixture
def live_central(tmp_path: Path) -> Iterator[CentralServer]:
    """A central server on this machine's clock, with the office's enrolment key."""
    server = CentralServer(f"sqlite:///{tmp_path / 'central.db'}", enrolment_key="office-secret")
    server.start()
    yield server
    server.stop()


def demo_home(home: Path) -> Path:
    """A counter home with the demo data and the demo keystore (made with a first blank card)."""
    assert run(home, "demo").returncode == 0
    r = run(home, "card", "blank", "--image", str(home / "blank.json"), "--operator", "a01",
            env=ADMIN)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return home


def selftest(home: Path, **env: str) -> tuple[int, dict[str, dict[str, str]]]:
    r = run(home, "selftest", "--json", env=env)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, {c["check"]: c for c in json.loads(r.stdout)}


def test_selftest_says_each_check_and_fails_on_a_broken_audit_chain(
    tmp_path: Path, live_central: CentralServer
) -> None:
    home = demo_home(tmp_path / "counter")
    status, checks = selftest(home)
    assert status == 0, checks
    assert [c["status"] for c in checks.values()] == ["ok", "ok", "ok", "ok", "skip", "ok", "skip"]
    assert "training mode" in checks["card reader"]["detail"]
    assert "not registered" in checks["central link"]["detail"]
    r = run(home, "selftest")  # the lines a person reads
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("OK    database:")

    registered_counter(home, live_central.url)
    status, checks = selftest(home)
    assert status == 0 and checks["central link"]["status"] == "ok"
    assert "clock skew" in checks["central link"]["detail"]

    con = sqlite3.connect(home / "data" / "cardvend.db")
    con.execute("UPDATE audit_log SET target = 'someone' WHERE seq = 2")  # a quiet edit
    con.commit()
    con.close()
    status, checks = selftest(home)
    assert status == 1 and checks["audit chain"]["status"] == "fail"
    assert "breaks at entry 2" in checks["audit chain"]["detail"]
    assert checks["database"]["status"] == "ok"  # the other checks still ran

    live_central.stop()
    status, checks = selftest(home)
    assert checks["central link"]["status"] == "fail"
    assert "cannot be reached" in checks["central link"]["detail"]
    zh = run(home, "selftest", lang="zh_CN")
    assert zh.returncode == 1 and "审计" in zh.stdout


def test_selftest_finds_the_clock_off(tmp_path: Path) -> None:
    """The central system's clock runs an hour ahead of this PC's."""
    import datetime as dt

    from app.clock import FixedClock

    ahead = FixedClock(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    server = CentralServer(
        f"sqlite:///{tmp_path / 'central.db'}", enrolment_key="office-secret", clock=ahead
    )
    server.start()
    try:
        home = registered_counter(demo_home(tmp_path / "counter"), server.url)
        status, checks = selftest(home)
    finally:
        server.stop()
    assert status == 1 and checks["central link"]["status"] == "fail"
    assert "clock is -3" in checks["central link"]["detail"]


def test_selftest_names_a_reader_that_is_not_there(tmp_path: Path) -> None:
    home = demo_home(tmp_path / "counter")
    settings = home / "config" / "settings.json"
    data = json.loads(settings.read_text()) if settings.exists() else {"schema_version": 1}
    data.update(card_reader="No Such Reader 00 00", printer="escpos", printer_port="/nonexistent")
    settings.write_text(json.dumps(data))
    status, checks = selftest(home)
    assert status == 1
    assert checks["card reader"]["status"] == "fail"
    assert checks["printer"]["status"] == "fail"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_bundle_holds_no_secret(tmp_path: Path, live_central: CentralServer) -> None:
    home = registered_counter(tmp_path / "counter", live_central.url)
    token = (home / "data" / "central.token").read_text().strip()
    receipt_key = (home / "data" / "receipt.key").read_text().strip()
    settings = home / "config" / "settings.json"
    data = json.loads(settings.read_text())
    data["meter_password"] = "918273"
    settings.write_text(json.dumps(data))
    # a log line that quoted the token by mistake: scrubbed as a second line of defence
    with (home / "logs" / "cardvend.log").open("a", encoding="utf-8") as log:
        log.write(f"2026-12-05 12:00:00 DEBUG test: header Authorization: Bearer {token}\n")
    secrets = {
        "CARDVEND_PASSWORD": "demo-a01",
        "CARDVEND_KEYSTORE_PASSPHRASE": "demo-keystore",
        "CARDVEND_ENROLMENT_KEY": "office-secret",
        "CARDVEND_ENROLMENT_CODE": "one-time-code-77",
    }
    schema = None
    if pg_available():  # a database URL with a password (trust auth takes any)
        schema = create_pg_schema()
        user = getpass.getuser()
        url = schema_url(schema).replace("://", f"://{user}:Db-Pass-5531@", 1)
        r = run(home, "--db", url, "init", env=ADMIN)
        assert r.returncode == 0, r.stderr
        secrets["CARDVEND_DB"] = url
    try:
        out = tmp_path / "support" / "diag.zip"
        out.parent.mkdir()
        r = run(home, "diag", "--out", str(out), env=secrets)
        assert r.returncode == 0, r.stderr
        assert "no passwords, keys or tokens" in r.stdout
        assert out.stat().st_mode & 0o777 == 0o600
        with zipfile.ZipFile(out) as z:
            names = z.namelist()
            texts = {n: z.read(n).decode("utf-8") for n in names}
    finally:
        if schema is not None:
            drop_pg_schema(schema)
    assert {"summary.txt", "versions.json", "settings.json", "selftest.json", "schema.json",
            "audit.json", "sync_status.json", "readers.json", "logs/cardvend.log"} <= set(names)  # fmt: skip
    every = "\n".join(texts.values())
    for secret in [token, receipt_key, "918273", "Db-Pass-5531", *secrets.values()]:
        if secret.startswith("postgresql"):
            continue  # the URL itself is shown, without its password
        assert secret not in every, secret
    assert "[redacted]" in texts["logs/cardvend.log"]
    assert json.loads(texts["settings.json"])["meter_password"] == "[redacted]"
    assert json.loads(texts["versions.json"])["SQLAlchemy"] != "-"
    assert json.loads(texts["audit.json"])["ok"] is True


def test_each_sale_leaves_one_log_line_with_its_id_and_duration(
    counter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.services.selling.sale"):
        outcome = counter.sell(counter.open(amount=None), 2500)
    sale = outcome.sale
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sale ")]
    assert sale.sale_id in line and sale.sale_id[:8].upper() in line
    assert "2500 fen" in line and "completed in" in line and line.endswith(" ms")
