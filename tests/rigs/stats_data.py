"""Statistics data for the station: offices in two provinces and three cities, customers of
each, control rows, readings, commands, exceptions and sales written straight into a real
store, and the figures expected from those rows computed here in Python (independently of the
SQL in ``sync/central/stats.py``)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from app.clock import FixedClock
from app.domain.pricing import RATE_SCALE
from app.services import demo
from sync import contract
from sync.central import CentralServer
from sync.central import models as m
from sync.central import seed as central_seed
from sync.central.store import CentralStore
from sync.client import CentralClient
from sync.views import ClientViews

SHANGHAI = ZoneInfo("Asia/Shanghai")
# the clock of the statistics tests: 2026-03-10 12:00 in the offices' zone
NOW = dt.datetime(2026, 3, 10, 4, 0, tzinfo=dt.UTC)
PERIOD = (dt.date(2026, 3, 1), dt.date(2026, 3, 10))
# code -> (name, province, city); DEMO (浙江 / 杭州) is the seed's
OFFICES = {
    "HZ2": ("Hangzhou West", "浙江", "杭州"),
    "NB1": ("Ningbo", "浙江", "宁波"),
    "SH1": ("Shanghai", "上海", "上海"),
}
PLANS = tuple(demo.PLANS)
STATES = ("normal", "alarm1", "alarm2", "tripped")
FIGURES = (
    "controlled", "normal", "alarm1", "alarm2", "tripped", "balance_fen", "relay_closed",
    "relay_open", "relay_unknown", "not_read_recently", "close_permits_pending",
    "reading_missing", "sales", "sold_fen", "sold_by_kind", "consumption_wh", "cost_fen",
)  # fmt: skip


@dataclass
class Rows:
    """What was written, to compute the expected figures from."""

    customers: dict[str, dict[str, Any]] = field(default_factory=dict)  # no -> office, plan
    control: list[dict[str, Any]] = field(default_factory=list)
    readings: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    sales: list[dict[str, Any]] = field(default_factory=list)
    offices: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> province, city


def build(store: CentralStore, per_office: int = 40, seed: int = 17) -> Rows:
    """Offices, customers and charge-control rows around :data:`NOW` (the demo seed must be
    in the store already)."""
    rnd = random.Random(seed)
    rows = Rows()
    rows.offices["DEMO"] = (central_seed.DEMO_PROVINCE, central_seed.DEMO_CITY)
    for code, (name, province, city) in OFFICES.items():
        store.add_office(code, name, province, city)
        rows.offices[code] = (province, city)
    start = 300_000_000_000
    for k, code in enumerate(rows.offices):
        first = start + k * 1000
        made = list(central_seed.synthetic_customers(per_office, first, office_code=code))
        for c in made:
            c["meter_no"] = f"{int(c['customer_no']) + 100_000_000_000:012d}"
        store.add_customers(made)
        for c in made:
            rows.customers[c["customer_no"]] = {"office": code, "plan": c["tariff_plan"]}
            if rnd.random() < 0.7:
                _controlled(rnd, rows, c["customer_no"], c["meter_no"])
            _sales(rnd, rows, c["customer_no"])
    seq = 10**9
    for s in rows.sales:
        seq += 1
        s["seq"] = seq
    with store.engine.begin() as conn:
        for table, values in (
            (m.control, rows.control),
            (m.readings, rows.readings),
            (m.commands, rows.commands),
            (m.exceptions, rows.exceptions),
            (m.sales, rows.sales),
        ):
            if values:
                conn.execute(insert(table), values)
    rows.readings.sort(key=lambda r: r["id"])
    return rows


_reading_id = [0]


def _controlled(rnd: random.Random, rows: Rows, no: str, meter: str) -> None:
    state = rnd.choice(STATES)
    read_at = None if rnd.random() < 0.1 else NOW - dt.timedelta(hours=rnd.choice([1, 2, 30, 50]))
    rows.control.append(
        {
            "customer_no": no, "meter_no": meter, "state": state, "opening_fen": 5000,
            "paid_fen": 0, "cost_num": 0, "remaining_fen": rnd.randint(-3000, 9000),
            "energy_wh": None, "read_at": read_at,
            "relay": rnd.choice(["closed", "open", None]),
            "enrolled_at": NOW - dt.timedelta(days=20), "state_since": NOW,
            "close_permit_at": None, "updated_at": NOW,
        }
    )  # fmt: skip
    energy = rnd.randint(0, 10_000)
    when = NOW - dt.timedelta(days=14, minutes=rnd.randint(0, 600))
    for i in range(rnd.randint(0, 8)):
        status = "first" if i == 0 else rnd.choice(["billed", "billed", "billed", "exception"])
        step = rnd.randint(0, 5000)
        value = energy + step if status != "exception" else rnd.randint(0, 100)
        if status != "exception":
            energy = value
        _reading_id[0] += 1
        rows.readings.append(
            {
                "id": 10_000_000 + _reading_id[0], "customer_no": no, "meter_no": meter,
                "read_at": when, "meter_time": when, "energy_wh": value,
                "rates_wh": [value, 0, 0, 0], "relay": None,
                "cost_num": step * 53 * RATE_SCALE // 1000 + rnd.randint(0, 99)
                if status == "billed" else 0,
                "status": status,
            }
        )  # fmt: skip
        when += dt.timedelta(hours=rnd.randint(6, 60))
    for command in rnd.sample(["close", "trip", "alarm"], rnd.randint(0, 2)):
        rows.commands.append(
            {
                "id": str(uuid.uuid4()), "customer_no": no, "meter_no": meter,
                "command": command, "reason": "test",
                "status": rnd.choice(["pending", "done", "pending"]), "attempts": 0,
                "next_at": NOW, "last_error": "", "created_at": NOW, "done_at": None,
            }
        )  # fmt: skip
    if rnd.random() < 0.3:
        rows.exceptions.append(
            {
                "id": str(uuid.uuid4()), "customer_no": no,
                "kind": rnd.choice(["reading_missing", "reading_jump"]),
                "detail": "", "state": rnd.choice(["new", "resolved", "assigned"]),
                "office_code": rows.customers[no]["office"],  # the queue's office scope
                "created_at": NOW, "updated_at": NOW,
            }
        )  # fmt: skip


def _sales(rnd: random.Random, rows: Rows, no: str) -> None:
    for _ in range(rnd.randint(0, 3)):
        # around the period: some before its first office day, some on its edges
        at = dt.datetime(2026, 2, 28, 15, 30, tzinfo=dt.UTC) + dt.timedelta(
            minutes=rnd.randint(0, 13 * 24 * 60)
        )
        rows.sales.append(
            {
                "id": str(uuid.uuid4()), "counter_id": "C1", "customer_no": no,
                "kind": rnd.choice(["card", "remote"]),
                "state": rnd.choice(["completed", "completed", "completed", "failed"]),
                "credit": rnd.randint(1, 500) * 100, "body": {}, "body_hash": "0" * 64,
                "received_at": at, "review": None, "reversed": rnd.random() < 0.15,
            }
        )  # fmt: skip


def expected(
    rows: Rows,
    offices: set[str],
    period: tuple[dt.date, dt.date] = PERIOD,
    plan: str | None = None,
    state: str | None = None,
) -> dict[str, Any]:
    """The figures for customers of ``offices``, computed from the rows in Python."""

    def in_scope(no: str) -> bool:
        c = rows.customers.get(no)
        return c is not None and c["office"] in offices and (plan is None or c["plan"] == plan)

    def day(at: dt.datetime) -> dt.date | None:
        d = at.astimezone(SHANGHAI).date()
        return d if period[0] <= d <= period[1] else None

    control = {
        r["customer_no"]: r
        for r in rows.control
        if in_scope(r["customer_no"]) and (state is None or r["state"] == state)
    }
    out: dict[str, Any] = {s: sum(1 for r in control.values() if r["state"] == s) for s in STATES}
    out["controlled"] = len(control)
    out["balance_fen"] = sum(r["remaining_fen"] for r in control.values())
    for rel in ("closed", "open"):
        out[f"relay_{rel}"] = sum(1 for r in control.values() if r["relay"] == rel)
    out["relay_unknown"] = sum(1 for r in control.values() if r["relay"] is None)
    stale = NOW - dt.timedelta(hours=24)
    out["not_read_recently"] = sum(
        1 for r in control.values() if r["read_at"] is None or r["read_at"] < stale
    )
    out["close_permits_pending"] = len(
        {
            c["customer_no"]
            for c in rows.commands
            if c["customer_no"] in control and c["command"] == "close" and c["status"] == "pending"
        }
    )
    out["reading_missing"] = len(
        {
            e["customer_no"]
            for e in rows.exceptions
            if e["customer_no"] in control
            and e["kind"] == "reading_missing"
            and e["state"] in ("new", "assigned", "escalated")
        }
    )
    sold = [
        s
        for s in rows.sales
        if in_scope(s["customer_no"])
        and (state is None or s["customer_no"] in control)
        and s["state"] == "completed"
        and not s["reversed"]
        and day(s["received_at"]) is not None
    ]
    out["sales"] = len(sold)
    out["sold_fen"] = sum(s["credit"] for s in sold)
    out["sold_by_kind"] = {
        k: sum(s["credit"] for s in sold if s["kind"] == k) for k in ("card", "remote")
    }
    energy = cost = 0
    last: dict[str, int] = {}
    days: dict[str, list[int]] = {}
    for r in rows.readings:  # in id order
        no = r["customer_no"]
        if not in_scope(no) or (state is not None and no not in control):
            continue
        if r["status"] == "exception":
            continue
        before = last.get(no)
        last[no] = r["energy_wh"]
        d = day(r["read_at"])
        if r["status"] != "billed" or d is None:
            continue
        delta = r["energy_wh"] - before if before is not None else 0
        energy += delta
        cost += r["cost_num"]
        slot = days.setdefault(d.isoformat(), [0, 0, 0])
        slot[1] += delta
        slot[2] += r["cost_num"]
    for s in sold:
        d = day(s["received_at"])
        assert d is not None
        days.setdefault(d.isoformat(), [0, 0, 0])[0] += s["credit"]
    out["consumption_wh"] = energy
    out["cost_fen"] = -(-cost // RATE_SCALE)
    out["by_day"] = {k: (v[0], v[1], -(-v[2] // RATE_SCALE)) for k, v in days.items() if any(v)}
    return out


@contextmanager
def serving_station(
    folder: Path, office: str = "DEMO", counter_id: str = "C01"
) -> Iterator[tuple[CentralServer, Rows, ClientViews]]:
    """A station in this process on SQLite in ``folder``, seeded with the demo and the
    statistics rows, and the counter's views of it (a counter of ``office`` registered)."""
    store = CentralStore(f"sqlite:///{folder / 'stats-central.db'}", clock=FixedClock(NOW))
    central_seed.seed_demo(store, NOW)
    rows = build(store)
    server = CentralServer("", store=store)
    server.start()
    try:
        client = CentralClient(server.url, None)
        token = client.register(
            contract.RegisterRequest(counter_id=counter_id, office_code=office, name="test"), None
        ).token
        client.close()
        yield server, rows, ClientViews(lambda: CentralClient(server.url, token))
    finally:
        server.stop()
        store.dispose()


def check(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert {k: got[k] for k in FIGURES} == {k: want[k] for k in FIGURES}
    days = {d["day"]: (d["sold_fen"], d["consumption_wh"], d["cost_fen"]) for d in got["by_day"]}
    assert {k: v for k, v in days.items() if any(v)} == want["by_day"]
