"""The technician's job commands as a person runs them, one process per command, against
``cardvend central serve`` in its own process: a job from the central server -> take -> program
(a card image) -> ``meter insert`` -> return -> the central server holds the result once."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sync.central import models as central_models
from sync.central.store import CentralStore
from tests.rigs.central_process import serve_central
from tests.rigs.cli import ok_json
from tests.rigs.cli import registered_counter
from tests.rigs.cli import run

CUSTOMER = "100000000001"
METER = "200000000001"
TECH = {"CARDVEND_PASSWORD": "demo-f01"}
ADMIN = {"CARDVEND_PASSWORD": "demo-a01"}


def tech(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(home, "jobs", *args, "--operator", "f01", env=TECH)


def one_line(r: subprocess.CompletedProcess[str], text: str) -> None:
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cardvend: ") and text in lines[0], r.stderr


def held_results(db_url: str, job_id: str) -> list[dict[str, Any]]:
    e = central_models.events.c
    store = CentralStore(db_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(e.body).where(e.kind == "job-results", e.subject == job_id)
            ).all()
        return [dict(r.body) for r in rows]
    finally:
        store.dispose()


@pytest.fixture
def central(tmp_path: Path) -> Iterator[str]:
    yield from serve_central(tmp_path)


def test_job_from_central_to_meter_and_back(central: str, tmp_path: Path) -> None:
    home = registered_counter(tmp_path / "counter", central)
    db_url = f"sqlite:///{tmp_path / 'central.db'}"
    job_id = str(uuid.uuid4())
    store = CentralStore(db_url)
    try:
        store.add_job(job_id, "price", CUSTOMER, {"plan_code": "RES-TOU", "version_no": 1})
    finally:
        store.dispose()
    assert run(home, "sync").returncode == 0

    listed = ok_json(tech(home, "list", "--json"))
    mine = [j for j in listed if j["id"] == job_id]
    assert [(j["customer_no"], j["meter_no"], j["card_kind"]) for j in mine] == [
        (CUSTOMER, METER, "tariff")
    ]
    shown = ok_json(tech(home, "show", job_id, "--json"))
    assert shown["card_content"]["current_tariff"]["version_no"] == 1
    bad = tech(home, "take", job_id + "\n")  # ids matched whole: a usage error
    assert bad.returncode == 2 and "job id" in bad.stderr, bad.stderr
    assert ok_json(tech(home, "take", job_id, "--json"))["taken_by"] == "f01"
    r = run(
        home, "jobs", "take", job_id, "--operator", "t01", env={"CARDVEND_PASSWORD": "demo-t01"}
    )
    one_line(r, "may not")

    card = str(tmp_path / "tariff.json")
    r = run(home, "card", "blank", "--image", card, "--operator", "f01", env=TECH)
    assert r.returncode == 0, r.stderr
    r = run(home, "card", "issue", "--kind", "tariff", "--image", card, "--operator", "f01",
            env=TECH)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = ok_json(tech(home, "program", job_id, "--image", card, "--json"))
    assert (out["card_state"], out["written"]) == ("issued", True)
    text = tech(home, "list")
    assert text.returncode == 0 and job_id in text.stdout and "card out" in text.stdout

    meter = str(tmp_path / "meter.json")
    inserted = ok_json(
        run(
            home,
            "meter",
            "insert",
            "--meter-state",
            meter,
            "--meter-no",
            METER,
            "--image",
            card,
            "--json",
        )
    )
    assert inserted["accepted"] and inserted["write_back"]["status"] & 64  # job applied
    back = ok_json(tech(home, "return", "--image", card, "--json"))
    assert (back["id"], back["result"], back["status"]) == (job_id, "applied", "done")
    one_line(tech(home, "return", "--image", card), "No card was programmed")

    assert run(home, "sync").returncode == 0
    assert run(home, "sync").returncode == 0
    held = held_results(db_url, job_id)
    assert len(held) == 1 and held[0]["id"] == back["result_id"]
    assert held[0]["outcome"] == "done" and held[0]["write_back"]["result"] == "applied"
    store = CentralStore(db_url)
    try:
        job = store.job(job_id)
        assert job is not None and job.status == "done"
    finally:
        store.dispose()
    # the pull brings the central status back; the job stays closed here
    after = ok_json(tech(home, "show", job_id, "--json"))
    assert (after["status"], after["card_state"], after["result"]) == ("done", "closed", "applied")
    zh = run(home, "jobs", "list", "--all", "--operator", "f01", env=TECH, lang="zh_CN")
    assert zh.returncode == 0 and job_id in zh.stdout


def test_check_card_reading_is_stored_and_sent(central: str, tmp_path: Path) -> None:
    home = registered_counter(tmp_path / "counter", central)
    assert run(home, "sync").returncode == 0
    card = str(tmp_path / "check.json")
    assert (
        run(home, "card", "blank", "--image", card, "--operator", "f01", env=TECH).returncode == 0
    )
    r = run(home, "card", "issue", "--kind", "check", "--image", card, "--operator", "f01",
            env=TECH)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = ok_json(tech(home, "check-program", "--image", card, "--meter-no", METER, "--json"))
    assert out["meter_no"] == METER
    one_line(tech(home, "check-read", "--image", card), "holds no meter reading")
    meter = str(tmp_path / "meter.json")
    r = run(home, "meter", "insert", "--meter-state", meter, "--meter-no", METER, "--image", card)
    assert r.returncode == 0, r.stderr
    reading = ok_json(tech(home, "check-read", "--image", card, "--json"))
    assert (reading["meter_no"], reading["customer_no"]) == (METER, CUSTOMER)
    assert ok_json(run(home, "sync", "--json"))["control_reports"] == 1
