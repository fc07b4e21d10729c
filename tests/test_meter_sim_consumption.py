"""The simulated prepaid meter (cardio/meter_sim.py) using energy: flat, time-of-use and tiered
pricing against a per-Wh reference, a month at speed, the alarms and the overdraft."""

from __future__ import annotations

import datetime as dt
import time

from app.domain.card import UserCardType
from app.domain.pricing import TariffSpec
from app.domain.pricing import rate_at
from cardio.meter_sim import RELAY_CLOSED
from cardio.meter_sim import RELAY_TRIPPED
from tests.rigs.meter_sim import FLAT
from tests.rigs.meter_sim import TOU
from tests.rigs.meter_sim import Env
from tests.rigs.meter_sim import S
from tests.rigs.meter_sim import bj
from tests.rigs.meter_sim import purchase
from tests.rigs.meter_sim import spec
from tests.rigs.meter_sim import tariff
from tests.rigs.meter_sim import user_params

TIERED = {
    "kind": "tiered",
    "flat_rate": 5000,
    "periods": [],
    "schedule": [],
    "tiers": [
        {"upto_kwh": 2, "surcharge": 0},
        {"upto_kwh": 4, "surcharge": 500},
        {"upto_kwh": None, "surcharge": 3000},
    ],
}


# --------------------------------------------------------------------------- fixtures
# the fixtures master, keys and env: tests/rigs/meter_sim.py


# --------------------------------------------------------------------------- consumption


def test_flat_consumption_keeps_fractions(env: Env) -> None:
    meter = env.meter()
    env.opened(meter, current=tariff(FLAT, flat_rate=5283))
    for _ in range(60):
        meter.consume(1, 100)  # 100/60 Wh a minute: 100 Wh in all
    s = meter.state
    assert s.total_energy_wh == 100 and s.energy_carry == 0
    assert 10_000 - s.remaining == 5 and s.cost_carry == 28_300  # 5.283 fen
    meter.consume(60, 1000)  # 1000 Wh more: 1100 * 0.5283 / 10 = 58.113 fen in all
    assert 10_000 - meter.state.remaining == 58 and meter.state.cost_carry == 11_300
    assert meter.state.clock == bj(2026, 3, 1, 2, 0)


def test_tou_peak_and_valley_hours(env: Env) -> None:
    meter = env.meter()
    env.opened(meter, amount=50_000, current=tariff(TOU))
    # 00:00-08:00 valley 8 kWh * 0.30 = 240 fen; 08:00-22:00 peak 14 kWh * 0.80 = 1120 fen;
    # 22:00-24:00 valley 2 kWh * 0.30 = 60 fen
    day = meter.consume(24 * 60, 1000)
    assert day.energy_wh == 24_000 and day.charged == 240 + 1120 + 60
    meter.consume(7 * 60, 0)  # idle to 07:00
    assert meter.state.clock == bj(2026, 3, 2, 7, 0)
    # 07:00-09:00 at 2400 W: 2.4 kWh valley (72 fen) + 2.4 kWh peak (192 fen)
    two = meter.consume(120, 2400)
    assert two.energy_wh == 4800 and two.charged == 72 + 192


def test_tiered_crossing_a_bound_and_the_new_year_reset(env: Env) -> None:
    meter = env.meter(start=dt.datetime(2026, 12, 31, 12, 0, tzinfo=dt.UTC))  # 20:00 Beijing
    env.opened(meter, amount=50_000, current=tariff(TIERED))
    assert meter.state.clock == bj(2026, 12, 31, 20, 0)
    first = meter.consume(100, 1300)  # 130000/60 = 2166 Wh (carry 40/60)
    # 2000 Wh at 0.5000 and 166 Wh at 0.5500: 10_000_000 + 913_000 -> 109 fen, 0.13 kept
    assert first.energy_wh == 2166 and first.charged == 109
    assert meter.state.cost_carry == 13_000 and meter.state.energy_carry == 40
    second = meter.consume(200, 1300)  # 21:40 -> 01:00 on Jan 1, Beijing time
    # until midnight 3034 Wh: 1834 at 0.5500 and 1200 at 0.8000; after the reset 1300 at 0.5000
    assert second.energy_wh == 3034 + 1300
    assert second.charged == (1834 * 5500 + 1200 * 8000 + 1300 * 5000 + 13_000) // 100_000
    assert meter.state.cost_carry == 0
    assert meter.state.tier_year_used_wh == 1300
    assert meter.state.tier_year_start == bj(2027, 1, 1, 0, 0)


def test_batched_pricing_matches_a_per_wh_reference(env: Env) -> None:
    tou_tiered = dict(TOU, kind="tou_tiered", tiers=TIERED["tiers"])
    meter = env.meter(start=bj(2026, 12, 31, 6, 0))
    env.opened(
        meter, amount=1_000_000, current=tariff(tou_tiered, reset_month=1, reset_day=1), ct_ratio=2
    )
    the_spec = TariffSpec.from_dict(spec(tou_tiered))
    clock, used, cost, carry, total = bj(2026, 12, 31, 6, 0), 0, 0, 0, 0
    for _ in range(36 * 60):
        if (clock.month, clock.day, clock.hour, clock.minute) == (1, 1, 0, 0):
            used = 0
        energy, carry = divmod(carry + 700 * 2, 60)
        for _wh in range(energy):
            cost += rate_at(the_spec, clock.time(), used)
            used += 1
        total += energy
        clock += dt.timedelta(minutes=1)
    result = meter.consume(36 * 60, 700)
    assert result.energy_wh == total
    assert result.charged == cost // 100_000 and meter.state.cost_carry == cost % 100_000
    assert meter.state.tier_year_used_wh == used


def test_a_month_runs_fast(env: Env) -> None:
    meter = env.meter()
    env.opened(
        meter,
        amount=10_000_000,
        current=tariff(dict(TOU, kind="tou_tiered", tiers=TIERED["tiers"])),
    )
    started = time.perf_counter()
    meter.consume(30 * 1440, 1500)
    assert time.perf_counter() - started < 1.0
    assert meter.state.total_energy_wh == 30 * 24 * 1500


def test_alarms_trip_and_close_after_purchase(env: Env) -> None:
    meter = env.meter()
    # 1.0000 yuan/kWh at 6000 W: 100 Wh = 10 fen a minute
    card = env.opened(
        meter, amount=500, current=tariff(FLAT, flat_rate=10_000), alarm1=300, alarm2=100
    )
    assert meter.state.status == S.NONE
    meter.consume(19, 6000)
    assert meter.state.remaining == 310 and meter.state.status == S.NONE
    meter.consume(1, 6000)
    assert meter.state.status == S.ALARM1
    meter.consume(20, 6000)
    assert meter.state.remaining == 100 and meter.state.status == S.ALARM1 | S.ALARM2
    start = meter.state.clock
    tripped = meter.consume(100, 6000)
    assert tripped.tripped_at == start + dt.timedelta(minutes=10) and tripped.energy_wh == 1000
    assert meter.state.remaining == 0 and meter.state.relay == RELAY_TRIPPED
    assert meter.consume(60, 6000).energy_wh == 0  # no use while tripped
    assert meter.state.clock == start + dt.timedelta(minutes=160)
    wb = meter.insert(card.slot()).write_back
    assert wb is not None and wb.status == S.ALARM1 | S.ALARM2 | S.TRIPPED
    card.write(
        parameters=user_params(card_type=UserCardType.PURCHASE, alarm1=300, alarm2=100),
        purchase=purchase(2, 1_000),
    )
    result = meter.insert(card.slot())
    assert result.credited == 1_000 and meter.state.relay == RELAY_CLOSED
    assert result.status == S.NONE
    assert meter.consume(1, 6000).energy_wh == 100


def test_overdraft(env: Env) -> None:
    meter = env.meter()
    card = env.opened(
        meter,
        amount=100,
        current=tariff(FLAT, flat_rate=10_000),
        alarm1=50,
        alarm2=20,
        overdraft_limit=200,
    )
    meter.consume(10, 6000)
    assert meter.state.remaining == 0 and meter.state.relay == RELAY_CLOSED
    meter.consume(5, 6000)
    s = meter.state
    assert (s.remaining, s.overdraft_used) == (-50, 50)
    assert s.status == S.ALARM1 | S.ALARM2 | S.OVERDRAFT
    assert meter.consume(100, 6000).energy_wh == 1500  # trips at -200
    assert (meter.state.remaining, meter.state.overdraft_used) == (-200, 200)
    assert meter.state.relay == RELAY_TRIPPED
    card.write(
        parameters=user_params(
            card_type=UserCardType.PURCHASE, alarm1=50, alarm2=20, overdraft_limit=200
        ),
        purchase=purchase(2, 150),
    )
    result = meter.insert(card.slot())
    assert meter.state.relay == RELAY_CLOSED and result.write_back is not None
    assert (result.write_back.remaining, result.write_back.overdraft_used) == (-50, 50)
    assert result.write_back.status == S.ALARM1 | S.ALARM2 | S.OVERDRAFT
