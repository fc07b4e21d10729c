"""Condition release with real processes: the fleet simulator serving the demo's remote meters
over DL/T 645 on TCP, the station (``central serve --terminals``) on SQLite and PostgreSQL, and
the counter's own command line (``cardvend control condition``) in a process of its own: the
station calls the meter and the counter shows its relay, status words and clock; a silent meter,
another office's customer and a card customer are clear errors, in seconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from sync.central import models as m
from sync.central.store import CentralStore
from tests.conftest import station_db
from tests.rigs.cli import ok_json
from tests.rigs.cli import registered_counter
from tests.rigs.cli import run
from tests.rigs.condition import FOREIGN
from tests.rigs.condition import SILENT
from tests.rigs.condition import fleet_and_station
from tests.rigs.counter import REMOTE

ROOT = Path(__file__).resolve().parent.parent
CARD = "100000000002"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_counter_calls_a_meters_condition_through_the_station(
    kind: str, tmp_path: Path
) -> None:
    with station_db(kind, tmp_path) as db, fleet_and_station(tmp_path, db) as station:
        store = CentralStore(db)
        home = registered_counter(tmp_path / "counter", station.url)

        seen = ok_json(run(home, "control", "condition", REMOTE, "--json"))
        assert seen["customer_no"] == REMOTE and seen["meter_no"] == "200000000010"
        assert seen["relay"] == "closed" and len(seen["status_words"]) == 7
        assert seen["meter_time"] is not None and seen["energy_wh"] >= 0
        cd = m.conditions.c
        with store.engine.connect() as conn:
            kept = conn.execute(
                select(cd.relay, cd.counter_id).where(cd.customer_no == REMOTE)
            ).one()
        assert kept[0] == "closed" and kept[1]  # kept, with the counter that asked
        shown = run(home, "control", "condition", REMOTE)
        assert shown.returncode == 0 and "relay closed" in shown.stdout, shown.stderr

        started = time.monotonic()
        silent = run(home, "control", "condition", SILENT)
        assert silent.returncode == 1 and "did not answer" in silent.stderr, silent.stderr
        assert time.monotonic() - started < 30  # the meter timeout, not a hang
        foreign = run(home, "control", "condition", FOREIGN)
        assert foreign.returncode == 1
        assert "not a customer of this office" in foreign.stderr, foreign.stderr
        card = run(home, "control", "condition", CARD)
        assert card.returncode == 1 and "no remote meter" in card.stderr, card.stderr
        zh = run(home, "control", "condition", SILENT, lang="zh_CN")
        assert zh.returncode == 1 and "没有应答" in zh.stderr, zh.stderr
        store.dispose()
