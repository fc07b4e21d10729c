"""Issue 17, end to end through real processes: a card customer's meter claims more credit than
the counter sold (and illegal inserts); the card's write-back, read when the card comes back to
the counter, goes to the station as a control report with ``cardvend sync``, and the supervisor
finds ``balance_mismatch`` and ``illegal_insert`` for that customer in ``cardvend exceptions``
at the counter.  A real ``cardvend central serve``, the counter's commands each a process, an
emulated card image and the simulated meter (no pcscd)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rigs.central import CARD
from tests.rigs.central_process import serve_central
from tests.rigs.cli import ok_json
from tests.rigs.cli import registered_counter
from tests.rigs.cli import run
from tests.rigs.meter_tamper import tamper_meter

SUPERVISOR = {"CARDVEND_PASSWORD": "demo-s01"}
TELLER = {"CARDVEND_PASSWORD": "demo-t01"}


@pytest.fixture
def central(tmp_path: Path) -> Iterator[str]:
    yield from serve_central(tmp_path)


def teller(home: Path, *args: str) -> dict[str, object]:
    out = ok_json(run(home, *args, "--operator", "t01", "--json", env=TELLER))
    assert isinstance(out, dict)
    return out


def test_a_meter_holding_more_than_was_sold_lands_in_the_queue(
    central: str, tmp_path: Path
) -> None:
    home = registered_counter(tmp_path / "counter", central)
    card, meter = home / "card.json", home / "meter.json"
    r = run(home, "card", "blank", "--image", str(card), "--operator", "f01",
            env={"CARDVEND_PASSWORD": "demo-f01"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert run(home, "shift", "open", "--float", "0", "--operator", "t01",
               env=TELLER).returncode == 0  # fmt: skip
    teller(home, "open-account", "--customer", CARD, "--amount", "50", "--image", str(card))
    insert = ("meter", "insert", "--meter-state", str(meter), "--image", str(card), "--json")
    loaded = ok_json(run(home, *insert))
    # the meter took purchase 1 of 50.00 yuan; the rig then makes it claim 300.00 yuan more
    # and three illegal inserts, and the card goes in again to carry that back
    tamper_meter(meter, add_fen=30_000, illegal_inserts=3)
    ok_json(run(home, *insert))
    held = json.loads(meter.read_text(encoding="utf-8"))
    assert held["purchase_count"] == 1 and held["illegal_insert_count"] == 3, loaded
    claimed = int(held["remaining"])
    assert claimed > 5_000 + 100  # more than was sold, beyond the 1 yuan tolerance

    # the card back at the counter: refused for a supervisor, and its write-back noted on the
    # customer all the same
    r = run(home, "recover", "--image", str(card), "--operator", "t01", env=TELLER)
    assert r.returncode == 1 and "more than the 50.00 yuan ever sold" in r.stderr, r.stderr
    db = sqlite3.connect(home / "data" / "cardvend.db")
    try:
        noted = db.execute(
            "SELECT meter_remaining, meter_purchase_count, meter_illegal_insert_count "
            "FROM customers WHERE customer_no = ?",
            (CARD,),
        ).fetchone()
    finally:
        db.close()
    assert noted == (claimed, 1, 3)

    # before the sync round the station knows nothing of it
    listed = ok_json(run(home, "exceptions", "list", "--json", "--operator", "s01",
                         env=SUPERVISOR))  # fmt: skip
    assert [i for i in listed["items"] if i["customer_no"] == CARD] == []
    r = run(home, "sync")
    assert r.returncode == 0, r.stderr
    listed = ok_json(run(home, "exceptions", "list", "--json", "--operator", "s01",
                         env=SUPERVISOR))  # fmt: skip
    mine = {i["kind"]: i for i in listed["items"] if i["customer_no"] == CARD}
    assert set(mine) == {"balance_mismatch", "illegal_insert"}, listed
    assert all(i["state"] == "new" for i in mine.values())
    assert str(claimed) in mine["balance_mismatch"]["detail"]
    assert "5000" in mine["balance_mismatch"]["detail"]  # what the card sales loaded
    assert "0 -> 3" in mine["illegal_insert"]["detail"]
    # another round sends nothing new and opens nothing more
    assert run(home, "sync").returncode == 0
    again = ok_json(run(home, "exceptions", "list", "--json", "--operator", "s01",
                        env=SUPERVISOR))  # fmt: skip
    assert sorted(i["id"] for i in again["items"] if i["customer_no"] == CARD) == sorted(
        i["id"] for i in mine.values()
    )
