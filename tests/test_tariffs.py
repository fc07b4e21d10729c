"""Tariff versions: append-only, in force from their switch-over time; sales record theirs."""

from __future__ import annotations

import datetime as dt

import pytest

from app.clock import FixedClock
from app.errors import Conflict
from app.errors import NotFound
from app.errors import ValidationError
from app.persistence.db import Database
from app.services import ledger
from app.services import shifts
from app.services.auth import login
from app.services.customers import get_customer
from app.services.tariffs import add_version
from app.services.tariffs import list_plans
from app.services.tariffs import version_in_force

CST = dt.timezone(dt.timedelta(hours=8))
SWITCH = dt.datetime(2026, 7, 1, 0, 0, tzinfo=CST)
FLAT_CUSTOMER = "100000000004"  # i = 3 -> RES-FLAT


def test_switch_over_time_decides_the_version(demo_db: Database, clock: FixedClock) -> None:
    with demo_db.write() as session:
        v2 = add_version(session, "RES-FLAT", {"kind": "flat", "flat_rate": 6000}, SWITCH, clock)
    assert v2.version_no == 2
    with demo_db.read() as session:
        plan_id = get_customer(session, FLAT_CUSTOMER).tariff_plan_id
        before = version_in_force(session, plan_id, SWITCH - dt.timedelta(microseconds=1))
        at = version_in_force(session, plan_id, SWITCH)
        with pytest.raises(NotFound):
            version_in_force(session, plan_id, dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert (before.version_no, at.version_no) == (1, 2)
    assert at.effective_from == SWITCH

    teller = login(demo_db, "t01", "demo-t01", counter_id="C01", clock=clock)
    shifts.open_shift(demo_db, actor=teller, float_fen=0, clock=clock)
    clock.set(SWITCH - dt.timedelta(seconds=1))
    teller = login(demo_db, "t01", "demo-t01", counter_id="C01", clock=clock)  # months later

    def sale(amount: int) -> ledger.SaleView:
        return ledger.begin_card_sale(
            demo_db, customer_no=FLAT_CUSTOMER, amount=amount, actor=teller, clock=clock
        )

    old = sale(5283)
    ledger.complete_sale(demo_db, old.sale_id, clock)
    clock.set(SWITCH)
    new = sale(6000)
    assert old.tariff_version_id == before.id and old.energy_wh == 100_000  # 52.83 yuan = 100 kWh
    assert new.tariff_version_id == v2.id and new.energy_wh == 100_000


def test_versions_are_append_only(demo_db: Database, clock: FixedClock) -> None:
    with pytest.raises(Conflict, match="must start after"), demo_db.write() as session:
        add_version(
            session,
            "RES-TOU",
            {"kind": "flat", "flat_rate": 1},
            dt.datetime(2025, 6, 1, tzinfo=CST),
            clock,
        )
    with pytest.raises(ValidationError, match="time zone"), demo_db.write() as session:
        add_version(
            session, "RES-TOU", {"kind": "flat", "flat_rate": 1}, dt.datetime(2027, 1, 1), clock
        )
    with pytest.raises(ValidationError, match="not valid"), demo_db.write() as session:
        add_version(session, "RES-TOU", {"kind": "flat", "flat_rate": 0}, SWITCH, clock)
    with pytest.raises(NotFound), demo_db.write() as session:
        add_version(session, "NOPE", {"kind": "flat", "flat_rate": 1}, SWITCH, clock)


def test_list_marks_the_version_in_force(demo_db: Database, clock: FixedClock) -> None:
    with demo_db.write() as session:
        add_version(
            session,
            "RES-TIER",
            {
                "kind": "tou_tiered",
                "periods": [{"name": "peak", "rate": 6000}, {"name": "valley", "rate": 3000}],
                "schedule": [
                    {"start_minute": 0, "period": "valley"},
                    {"start_minute": 480, "period": "peak"},
                ],
                "tiers": [{"upto_kwh": 2160, "surcharge": 0}, {"upto_kwh": None, "surcharge": 500}],
            },
            SWITCH,
            clock,
        )
    with demo_db.read() as session:
        plans = {p["code"]: p for p in list_plans(session, clock.now())}
        later = {p["code"]: p for p in list_plans(session, SWITCH)}
    assert plans["RES-TIER"]["in_force"] == 1 and later["RES-TIER"]["in_force"] == 2
    assert [v["in_force"] for v in later["RES-TIER"]["versions"]] == [False, True]
    assert later["RES-TIER"]["versions"][1]["kind"] == "tou_tiered"
