"""A simulated meter read and commanded over DL/T 645-2007 by real processes: ``cardvend meter
simulate`` on one end of a socat pty pair and on a TCP port, ``meter read --json`` and ``meter
relay`` as separate processes, and ``meter insert`` putting a purchase into the same state file
(the card slot and the wire share the meter)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rigs.cli import run
from tests.rigs.commands import audit_rows
from tests.rigs.commands import one_line
from tests.rigs.meter import METER
from tests.rigs.meter import Simulator
from tests.rigs.user_card import write_user_card
from tests.serial_rig import PtyPair
from tests.serial_rig import needs_socat

CST = dt.timezone(dt.timedelta(hours=8))
KEYS = [
    "addr",
    "remaining_fen",
    "overdraft_fen",
    "purchase_count",
    "energy_wh",
    "relay",
    "meter_time",
]


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    """A lab home (no database: the keystore is made on first use) with an issued user card
    holding a purchase of 100.00 yuan for meter METER."""
    image = tmp_path / "card.json"
    assert run(tmp_path, "card", "blank", "--image", str(image)).returncode == 0
    assert run(tmp_path, "card", "issue", "--image", str(image), "--kind", "user").returncode == 0
    write_user_card(tmp_path, image)
    return tmp_path


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A counter with the demo operators (f01 technician, t01 teller) for commands that sign in."""
    home = tmp_path_factory.mktemp("office")
    assert run(home, "demo").returncode == 0
    return home


def read(home: Path, *line: str, addr: str = METER) -> dict[str, Any]:
    r = run(home, "meter", "read", *line, "--addr", addr, "--json")
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    assert set(KEYS) <= set(out)
    return out


def relay(
    office: Path, operator: str, *line: str, command: str
) -> subprocess.CompletedProcess[str]:
    return run(
        office,
        "meter",
        "relay",
        *line,
        "--addr",
        METER,
        command,
        "--operator",
        operator,
        env={"CARDVEND_PASSWORD": f"demo-{operator}"},
    )


def insert(bench: Path) -> None:
    r = run(
        bench,
        "meter",
        "insert",
        "--meter-state",
        str(bench / "meter.json"),
        "--image",
        str(bench / "card.json"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["credited_fen"] == 10000


def the_story(bench: Path, office: Path, line: tuple[str, ...]) -> None:
    """New meter (no credit, relay open) -> a card purchase -> read shows it, relay closed ->
    trip over the wire -> open (and the card slot's state says tripped) -> close again."""
    before = read(bench, *line)
    assert before["addr"] == METER
    assert before["remaining_fen"] == 0 and before["purchase_count"] == 0
    assert before["relay"] == "open"
    assert before["energy_rates_wh"] == [None, None, None, None]  # not kept: null, no error
    assert dt.datetime.fromisoformat(before["meter_time"]).utcoffset() == dt.timedelta(hours=8)
    # a close command without credit is refused by the meter, and audited as failed
    r = relay(office, "f01", *line, command="close")
    one_line(r, METER, "refused")

    insert(bench)  # the card slot, another process, same state file
    after = read(bench, *line)
    assert after["remaining_fen"] == 10000 and after["purchase_count"] == 1
    assert after["overdraft_fen"] == 0 and after["alarm1_fen"] == 2000
    assert after["relay"] == "closed"

    r = relay(office, "f01", *line, command="trip")
    assert r.returncode == 0, r.stderr
    assert read(bench, *line)["relay"] == "open"
    state = json.loads((bench / "meter.json").read_text())
    assert state["relay"] == "tripped"  # the card slot sees what the wire did
    r = relay(office, "f01", *line, command="close")
    assert r.returncode == 0, r.stderr
    assert read(bench, *line)["relay"] == "closed"

    r = relay(office, "f01", *line, command="alarm")
    assert r.returncode == 0, r.stderr
    words = read(bench, *line)["status_words"]
    assert words[2] & 0x80  # status word 3: pre-trip alarm
    r = relay(office, "f01", *line, command="release")
    assert r.returncode == 0, r.stderr
    assert not read(bench, *line)["status_words"][2] & 0x80

    rows = [row for row in audit_rows(office, "meter_relay") if row["target"].endswith(line[1])]
    assert [(row["detail"]["command"], row["result"]) for row in rows] == [
        ("close", "failed"),
        ("trip", "ok"),
        ("close", "ok"),
        ("alarm", "ok"),
        ("release", "ok"),
    ]
    assert {row["operator"] for row in rows} == {"f01"}


@pytest.fixture
def tcp_meter(bench: Path) -> Iterator[Simulator]:
    sim = Simulator(bench, bench / "meter.json", "--tcp", "0")
    yield sim
    sim.stop()


def test_over_tcp(bench: Path, office: Path, tcp_meter: Simulator) -> None:
    assert tcp_meter.endpoint is not None
    the_story(bench, office, ("--tcp", tcp_meter.endpoint))


@needs_socat
def test_over_a_pty_pair(bench: Path, office: Path, ptys: PtyPair) -> None:
    # a pty cannot do parity: both ends 8N1
    sim = Simulator(bench, bench / "meter.json", "--port", str(ptys.a), "--parity", "N")
    try:
        the_story(bench, office, ("--port", str(ptys.b), "--parity", "N"))
    finally:
        sim.stop()


def test_a_teller_may_not_command_a_relay(office: Path, tcp_meter: Simulator) -> None:
    assert tcp_meter.endpoint is not None
    r = relay(office, "t01", "--tcp", tcp_meter.endpoint, command="trip")
    one_line(r, "t01", "read a meter")
    rows = audit_rows(office, "meter_relay")
    assert rows and rows[-1]["result"] == "denied" and rows[-1]["operator"] == "t01"


def test_a_relay_command_needs_an_operator(office: Path, tcp_meter: Simulator) -> None:
    assert tcp_meter.endpoint is not None
    r = run(office, "meter", "relay", "--tcp", tcp_meter.endpoint, "--addr", METER, "trip")
    one_line(r, "--operator")


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_a_meter_that_does_not_answer_is_one_line(
    bench: Path, tcp_meter: Simulator, lang: str
) -> None:
    assert tcp_meter.endpoint is not None
    r = run(
        bench,
        "meter",
        "read",
        "--tcp",
        tcp_meter.endpoint,
        "--addr",
        "200000000099",  # nobody at this address
        "--timeout",
        "0.3",
        "--retries",
        "0",
        "--json",
        lang=lang,
    )
    one_line(r, "200000000099")
    assert r.stdout == ""


@needs_socat
def test_a_dead_serial_line_is_one_line(bench: Path, ptys: PtyPair) -> None:
    r = run(
        bench,
        "meter",
        "read",
        "--port",
        str(ptys.b),
        "--parity",
        "N",
        "--addr",
        METER,
        "--timeout",
        "0.3",
        "--retries",
        "1",
    )
    line = one_line(r, METER)
    assert "did not answer" in line and "2 attempts" in line


def test_a_missing_serial_port_is_one_line(bench: Path) -> None:
    r = run(bench, "meter", "read", "--port", str(bench / "nothing"), "--addr", METER)
    one_line(r, str(bench / "nothing"))


def test_reading_at_a_counter_needs_read_meter(office: Path, tcp_meter: Simulator) -> None:
    assert tcp_meter.endpoint is not None
    line = ("meter", "read", "--tcp", tcp_meter.endpoint, "--addr", METER, "--json")
    one_line(run(office, *line), "--operator")  # a database is set up here: someone signs in
    r = run(office, *line, "--operator", "t01", env={"CARDVEND_PASSWORD": "demo-t01"})
    one_line(r, "t01", "read a meter")
    assert audit_rows(office, "meter_read")[-1]["result"] == "denied"
    r = run(office, *line, "--operator", "f01", env={"CARDVEND_PASSWORD": "demo-f01"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["addr"] == METER
