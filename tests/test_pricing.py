"""Tests for app.domain.pricing.

The oracles here are written independently of the module: costs are exact ``Fraction`` sums
over tier intervals, base rates are ``math.ceil`` of a ``Fraction`` weighted average.

Round-trip bounds (proved in the module docstring, asserted below):

* money -> energy -> money is exact: ``energy_to_amount(amount_to_energy(a, u), u) == a``.
  Every applied rate is <= 99999 units, so one Wh costs < 1 fen; hence the exact cost ``c`` of
  the energy bought satisfies ``a - 1 < c <= a`` and its ceiling is ``a``.
* energy -> money -> energy gives ``E >= e`` and ``E - e <= 99999 // r_min``, ``r_min`` being the
  lowest rate applied to the Wh between ``e`` and ``E`` (the surplus is bought with less than one
  fen).  The *highest* applicable rate is not a valid bound: see
  ``test_surplus_is_not_bounded_by_the_highest_rate``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC
from datetime import datetime
from datetime import time
from datetime import timedelta
from datetime import timezone
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.domain.pricing import MAX_RATE
from app.domain.pricing import RATE_SCALE
from app.domain.pricing import TARIFF_KINDS
from app.domain.pricing import TariffSpec
from app.domain.pricing import TariffSpecError
from app.domain.pricing import Tier
from app.domain.pricing import TouPeriod
from app.domain.pricing import TouSegment
from app.domain.pricing import amount_to_energy
from app.domain.pricing import base_rate
from app.domain.pricing import consumption_cost
from app.domain.pricing import energy_to_amount
from app.domain.pricing import period_at
from app.domain.pricing import rate_at
from app.domain.pricing import tier_year_start
from app.domain.pricing import year_used_since_reset
from tests.rigs.pricing_oracle import oracle_bands
from tests.rigs.pricing_oracle import oracle_base
from tests.rigs.pricing_oracle import oracle_cost

SHANGHAI = ZoneInfo("Asia/Shanghai")
ZONES = [SHANGHAI, UTC, ZoneInfo("America/New_York"), timezone(timedelta(hours=-3, minutes=-30))]
DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
NAMES = ("sharp", "peak", "flat", "valley")

# No example database: the test run must not write files into the project tree.
FAST = settings(max_examples=100, deadline=None, database=None)
SLOW = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


# ---------------------------------------------------------------------------------- strategies


@st.composite
def tier_tuples(draw: st.DrawFn, max_surcharge: int) -> tuple[Tier, ...]:
    count = draw(st.integers(1, 4))
    bounds = sorted(draw(st.sets(st.integers(1, 5000), min_size=count - 1, max_size=count - 1)))
    surcharges = draw(st.lists(st.integers(0, max_surcharge), min_size=count, max_size=count))
    uptos: list[int | None] = [*bounds, None]
    return tuple(Tier(u, s) for u, s in zip(uptos, surcharges, strict=True))


@st.composite
def specs(draw: st.DrawFn, kinds: tuple[str, ...] = TARIFF_KINDS) -> TariffSpec:
    kind = draw(st.sampled_from(kinds))
    tiered = kind in ("tiered", "tou_tiered")
    max_surcharge = draw(st.integers(0, 60000)) if tiered else 0
    rate = st.integers(1, MAX_RATE - max_surcharge)
    tiers = draw(tier_tuples(max_surcharge)) if tiered else ()
    flat_rate: int | None = None
    periods: tuple[TouPeriod, ...] = ()
    schedule: tuple[TouSegment, ...] = ()
    if kind in ("tou", "tou_tiered"):
        names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
        periods = tuple(TouPeriod(n, draw(rate)) for n in names)
        starts = sorted(draw(st.sets(st.integers(1, 1439), max_size=8)))
        schedule = tuple(TouSegment(s, draw(st.sampled_from(names))) for s in [0, *starts])
    else:
        flat_rate = draw(rate)
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, DAYS[month - 1]))
    return TariffSpec(kind, flat_rate, periods, schedule, tiers, month, day)


tiered_specs = specs(("tiered", "tou_tiered"))
tou_specs = specs(("tou", "tou_tiered"))
amounts = st.integers(0, 10**6)  # up to 10,000 yuan
energies = st.integers(0, 8 * 10**6)  # up to 8,000 kWh
used = st.integers(0, 7 * 10**6)

KEYS = st.sampled_from(
    [
        "kind",
        "flat_rate",
        "periods",
        "schedule",
        "tiers",
        "reset_month",
        "reset_day",
        "name",
        "rate",
        "start_minute",
        "period",
        "upto_kwh",
        "surcharge",
        "",
        "x",
    ]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(alphabet="abcfkptvy _-é\x00", max_size=8)  # fixed alphabet: fast, no charmap
    | st.sampled_from(["flat", "tou", "tiered", "tou_tiered", "peak", "valley"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)


# ------------------------------------------------------------------------------------ oracles


def oracle_min_rate(spec: TariffSpec, start: int, end: int) -> int:
    """Lowest rate applied to the Wh with positions in [start, end)."""
    return min(
        rate
        for low, high, rate in oracle_bands(spec)
        if (high is None or high > start) and low < end
    )


def time_rate(spec: TariffSpec, t: time) -> int:
    """Rate at time of day ``t`` before any tier surcharge."""
    if spec.flat_rate is not None:
        return spec.flat_rate
    minute = t.hour * 60 + t.minute
    segment = [s for s in spec.schedule if s.start_minute <= minute][-1]
    return next(p.rate for p in spec.periods if p.name == segment.period)


def minute_time(minute: int) -> time:
    return time(minute // 60, minute % 60)


# ---------------------------------------------------------------------- conversions, exactness


@FAST
@given(specs(), amounts, used)
def test_amount_to_energy_is_the_largest_affordable_energy(
    spec: TariffSpec, a: int, u: int
) -> None:
    energy = amount_to_energy(spec, a, u)
    assert oracle_cost(spec, energy, u) <= a < oracle_cost(spec, energy + 1, u)


@FAST
@given(specs(), energies, used)
def test_energy_to_amount_is_exact_sum_rounded_up_once(spec: TariffSpec, e: int, u: int) -> None:
    assert energy_to_amount(spec, e, u) == math.ceil(oracle_cost(spec, e, u))


@FAST
@given(specs(), amounts, st.integers(0, 10**5), used)
def test_more_money_never_buys_less_energy(spec: TariffSpec, a: int, extra: int, u: int) -> None:
    assert amount_to_energy(spec, a + extra, u) >= amount_to_energy(spec, a, u)
    # one fen buys at least one Wh (every rate is below 100000 units)
    assert amount_to_energy(spec, a + 1, u) >= amount_to_energy(spec, a, u) + 1


@FAST
@given(specs(), energies, st.integers(0, 10**6), used)
def test_more_energy_never_costs_less(spec: TariffSpec, e: int, extra: int, u: int) -> None:
    assert energy_to_amount(spec, e + extra, u) >= energy_to_amount(spec, e, u)


@FAST
@given(specs(), amounts, used)
def test_money_energy_money_round_trip_is_exact(spec: TariffSpec, a: int, u: int) -> None:
    # Proof in the module docstring: one Wh costs < 1 fen, so ceil(cost(bought)) == a.
    assert energy_to_amount(spec, amount_to_energy(spec, a, u), u) == a


@FAST
@given(specs(), energies, used)
def test_energy_money_energy_round_trip(spec: TariffSpec, e: int, u: int) -> None:
    paid = energy_to_amount(spec, e, u)
    bought = amount_to_energy(spec, paid, u)
    assert bought >= e
    # The surplus is bought with the rounding remainder (< 1 fen) at rates >= r_min.
    assert oracle_cost(spec, bought, u) - oracle_cost(spec, e, u) < 1
    r_min = oracle_min_rate(spec, u + e, u + bought) if bought > e else MAX_RATE
    assert bought - e <= 99_999 // r_min
    # Without tiers, that is exactly the energy one fen buys at the (only) applicable rate.
    if not spec.tiers:
        assert bought - e <= 99_999 // base_rate(spec)


def test_surplus_is_not_bounded_by_the_highest_rate() -> None:
    # 0.0001 yuan/kWh for the first kWh, then 9.9999 yuan/kWh.
    spec = TariffSpec("tiered", 1, (), (), (Tier(1, 0), Tier(None, 99_998)))
    assert energy_to_amount(spec, 500) == 1  # 500 Wh cost 0.005 fen -> 1 fen
    bought = amount_to_energy(spec, 1)
    assert bought == 1000  # 500 more cheap Wh; the rest (0.99 fen) buys no dear Wh
    assert bought - 500 > 99_999 // 99_999  # the highest rate would bound the surplus by 1 Wh
    assert bought - 500 <= 99_999 // 1


def test_simple_flat_values() -> None:
    spec = TariffSpec("flat", 5283, (), (), ())
    assert base_rate(spec) == 5283
    assert energy_to_amount(spec, 1000) == 53  # 52.83 fen rounded up
    assert energy_to_amount(spec, 100_000) == 5283  # 100 kWh: 52.83 yuan exactly
    assert amount_to_energy(spec, 5283) == 100_000
    assert amount_to_energy(spec, 1) == 18  # 100000 // 5283
    assert energy_to_amount(spec, 0) == 0
    assert amount_to_energy(spec, 0) == 0


def test_negative_inputs_are_rejected() -> None:
    spec = TariffSpec("flat", 5283, (), (), ())
    with pytest.raises(ValueError):
        amount_to_energy(spec, -1)
    with pytest.raises(ValueError):
        energy_to_amount(spec, -1)
    with pytest.raises(ValueError):
        amount_to_energy(spec, 1, -1)
    with pytest.raises(ValueError):
        energy_to_amount(spec, 1, -5)
    with pytest.raises(ValueError):
        rate_at(spec, time(12), -1)
    with pytest.raises(TypeError):
        amount_to_energy(spec, True)


# ------------------------------------------------------------------------------------- tiers

BEIJING_LIKE = TariffSpec(
    "tiered", 4883, (), (), (Tier(2880, 0), Tier(4800, 500), Tier(None, 3000))
)


def test_tier_crossing_example() -> None:
    # 2800 kWh used; 100 kWh more: 80 kWh at 0.4883 + 20 kWh at 0.5383 = 39.064 + 10.766 yuan.
    assert energy_to_amount(BEIJING_LIKE, 100_000, 2_800_000) == 4983
    assert amount_to_energy(BEIJING_LIKE, 4983, 2_800_000) == 100_000
    # Across both bounds: 80 kWh + 1920 kWh + 200 kWh.
    expected = Fraction(80_000 * 4883 + 1_920_000 * 5383 + 200_000 * 7883, 100_000)
    assert energy_to_amount(BEIJING_LIKE, 2_200_000, 2_800_000) == math.ceil(expected)
    # The next Wh after reaching a bound is in the next tier.
    assert rate_at(BEIJING_LIKE, time(3), 2_880_000 - 1) == 4883
    assert rate_at(BEIJING_LIKE, time(3), 2_880_000) == 5383
    assert rate_at(BEIJING_LIKE, time(3), 4_800_000) == 7883


@FAST
@given(tiered_specs.filter(lambda s: len(s.tiers) >= 2), st.data())
def test_energy_spanning_a_bound_costs_both_pieces(spec: TariffSpec, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(spec.tiers) - 2))
    bound = spec.tiers[i].upto_kwh
    assert bound is not None
    lower = 0 if i == 0 else spec.tiers[i - 1].upto_kwh
    assert lower is not None
    next_upto = spec.tiers[i + 1].upto_kwh
    below = data.draw(st.integers(1, (bound - lower) * 1000))
    above = data.draw(st.integers(1, 10**6 if next_upto is None else (next_upto - bound) * 1000))
    base = base_rate(spec)
    low_rate = base + spec.tiers[i].surcharge
    high_rate = base + spec.tiers[i + 1].surcharge
    u = bound * 1000 - below
    exact = Fraction(below * low_rate, 100_000) + Fraction(above * high_rate, 100_000)
    assert energy_to_amount(spec, below + above, u) == math.ceil(exact)
    assert rate_at(spec, time(0), u) == time_rate(spec, time(0)) + spec.tiers[i].surcharge
    assert rate_at(spec, time(0), bound * 1000) == (
        time_rate(spec, time(0)) + spec.tiers[i + 1].surcharge
    )


@FAST
@given(tiered_specs, energies, amounts, st.integers(0, 10**6))
def test_usage_past_last_bound_prices_everything_in_the_open_tier(
    spec: TariffSpec, e: int, a: int, past: int
) -> None:
    last_bound = spec.tiers[-2].upto_kwh if len(spec.tiers) >= 2 else 0
    assert last_bound is not None
    u = last_bound * 1000 + past
    top = base_rate(spec) + spec.tiers[-1].surcharge
    assert energy_to_amount(spec, e, u) == math.ceil(Fraction(e * top, 100_000))
    assert amount_to_energy(spec, a, u) == a * 100_000 // top


@FAST
@given(tiered_specs, energies, st.data())
def test_usage_past_a_bound_prices_at_the_higher_tier(
    spec: TariffSpec, e: int, data: st.DataObject
) -> None:
    i = data.draw(st.integers(1, len(spec.tiers) - 1)) if len(spec.tiers) > 1 else 0
    low = 0 if i == 0 else spec.tiers[i - 1].upto_kwh
    high = spec.tiers[i].upto_kwh
    assert low is not None
    u = data.draw(st.integers(low * 1000, (high * 1000 - 1) if high else low * 1000 + 10**6))
    room = e if high is None else min(e, high * 1000 - u)
    rate = base_rate(spec) + spec.tiers[i].surcharge
    assert energy_to_amount(spec, room, u) == math.ceil(Fraction(room * rate, 100_000))
    assert rate_at(spec, time(12), u) == time_rate(spec, time(12)) + spec.tiers[i].surcharge


# --------------------------------------------------------------------------------------- TOU


def test_tou_base_rate_example() -> None:
    spec = TariffSpec(
        "tou",
        None,
        (TouPeriod("peak", 5584), TouPeriod("valley", 2883)),
        (TouSegment(0, "valley"), TouSegment(8 * 60, "peak"), TouSegment(22 * 60, "valley")),
        (),
    )
    # (840 * 5584 + 600 * 2883) / 1440 = 4458.58... -> 4459
    assert base_rate(spec) == 4459
    assert period_at(spec, time(7, 59, 59, 999_999)) == TouPeriod("valley", 2883)
    assert period_at(spec, time(8, 0)) == TouPeriod("peak", 5584)
    assert period_at(spec, time(21, 59, 59)) == TouPeriod("peak", 5584)
    assert period_at(spec, time(22, 0)) == TouPeriod("valley", 2883)
    assert rate_at(spec, time(23, 59, 59, 999_999)) == 2883
    assert energy_to_amount(spec, 1000) == math.ceil(Fraction(4459, 100))


@SLOW
@given(tou_specs)
def test_tou_base_rate_is_weighted_average_rounded_up(spec: TariffSpec) -> None:
    rates = {p.name: p.rate for p in spec.periods}
    exact = Fraction(sum(time_rate(spec, minute_time(m)) for m in range(1440)), 1440)
    assert base_rate(spec) == math.ceil(exact) == oracle_base(spec)
    used_rates = {rates[s.period] for s in spec.schedule}
    assert min(used_rates) <= base_rate(spec) <= max(used_rates)


@FAST
@given(tou_specs, used)
def test_period_at_segment_boundaries(spec: TariffSpec, u: int) -> None:
    by_name = {p.name: p for p in spec.periods}
    surcharge = rate_at(spec, time(0), u) - by_name[spec.schedule[0].period].rate
    for i, seg in enumerate(spec.schedule):
        start = minute_time(seg.start_minute)
        assert period_at(spec, start) == by_name[seg.period]
        assert rate_at(spec, start, u) == by_name[seg.period].rate + surcharge
        if i > 0:
            m = seg.start_minute - 1
            just_before = time(m // 60, m % 60, 59, 999_999)
            assert period_at(spec, just_before) == by_name[spec.schedule[i - 1].period]
    assert period_at(spec, time(23, 59, 59, 999_999)) == by_name[spec.schedule[-1].period]


@FAST
@given(specs(("flat", "tiered")), used)
def test_non_tou_has_no_period(spec: TariffSpec, u: int) -> None:
    assert period_at(spec, time(12, 30)) is None
    assert rate_at(spec, time(12, 30), u) == rate_at(spec, time(0), u) >= base_rate(spec)


# -------------------------------------------------------------------------- tier year, reset


@pytest.mark.parametrize("zone", [SHANGHAI, UTC], ids=["Asia/Shanghai", "UTC"])
@pytest.mark.parametrize(("month", "day"), [(1, 1), (7, 1), (2, 28), (12, 31)])
def test_tier_year_start_around_the_reset(zone: timezone | ZoneInfo, month: int, day: int) -> None:
    reset = datetime(2025, month, day, tzinfo=zone)
    previous = datetime(2024, month, day, tzinfo=zone)
    tiny = timedelta(microseconds=1)
    assert tier_year_start(reset, month, day) == reset
    assert tier_year_start(reset + tiny, month, day) == reset
    assert tier_year_start(reset - tiny, month, day) == previous
    assert tier_year_start(reset - tiny, month, day).tzinfo is zone
    assert tier_year_start(reset + timedelta(days=364), month, day) == reset


def test_tier_year_start_uses_the_tzinfo_of_at() -> None:
    reset_shanghai = datetime(2025, 1, 1, tzinfo=SHANGHAI)  # 2024-12-31 16:00 UTC
    same_instant_utc = reset_shanghai.astimezone(UTC)
    assert tier_year_start(reset_shanghai, 1, 1) == reset_shanghai
    assert tier_year_start(same_instant_utc, 1, 1) == datetime(2024, 1, 1, tzinfo=UTC)
    half_hour_later_utc = same_instant_utc + timedelta(minutes=30)
    assert tier_year_start(half_hour_later_utc.astimezone(SHANGHAI), 1, 1) == reset_shanghai


@FAST
@given(
    st.datetimes(
        min_value=datetime(1995, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(ZONES),
    ),
    st.integers(1, 12),
    st.data(),
)
def test_tier_year_start_property(at: datetime, month: int, data: st.DataObject) -> None:
    day = data.draw(st.integers(1, DAYS[month - 1]))
    start = tier_year_start(at, month, day)
    assert start.tzinfo is at.tzinfo
    assert (start.month, start.day, start.time()) == (month, day, time(0))
    following = start.replace(year=start.year + 1)
    assert start.astimezone(UTC) <= at.astimezone(UTC) < following.astimezone(UTC)


def test_tier_year_start_rejects_naive_and_feb_29() -> None:
    with pytest.raises(ValueError):
        tier_year_start(datetime(2025, 3, 1), 1, 1)
    with pytest.raises(ValueError):
        tier_year_start(datetime(2025, 3, 1, tzinfo=UTC), 2, 29)
    with pytest.raises(ValueError):
        tier_year_start(datetime(2025, 3, 1, tzinfo=UTC), 4, 31)
    with pytest.raises(TariffSpecError, match="February 29"):
        TariffSpec("tiered", 4883, (), (), (Tier(None, 0),), reset_month=2, reset_day=29)


def test_purchase_right_after_reset_is_priced_from_tier_1() -> None:
    spec = BEIJING_LIKE
    reset = datetime(2025, 1, 1, tzinfo=SHANGHAI)
    readings = [
        (datetime(2023, 12, 31, 23, 0, tzinfo=SHANGHAI), 1_000_000),
        (datetime(2024, 1, 1, 0, 0, tzinfo=SHANGHAI), 1_000_000),
        (datetime(2024, 6, 1, tzinfo=SHANGHAI), 3_500_000),
        # Readings stored in UTC: Shanghai midnight is 16:00 UTC on the previous day.
        (datetime(2024, 12, 31, 15, 0, tzinfo=UTC), 5_999_000),
        (datetime(2024, 12, 31, 16, 0, tzinfo=UTC), 6_000_000),  # exactly at the reset
        (datetime(2025, 1, 1, 0, 0, 30, tzinfo=SHANGHAI), 6_000_200),
    ]
    just_before = reset - timedelta(seconds=1)
    assert year_used_since_reset(readings, just_before, spec) == 4_999_000
    assert year_used_since_reset(readings, reset, spec) == 0
    after = reset + timedelta(minutes=1)
    u = year_used_since_reset(readings, after, spec)
    assert u == 200
    assert energy_to_amount(spec, 100_000, u) == 4883  # 100 kWh at 0.4883
    assert energy_to_amount(spec, 100_000, 4_999_000) == 7883  # same kWh a second earlier
    assert rate_at(spec, after.timetz(), u) == 4883


def test_year_used_since_reset_edge_cases() -> None:
    spec = TariffSpec("tiered", 4883, (), (), (Tier(10, 0), Tier(None, 500)), 7, 1)
    at = datetime(2025, 8, 1, tzinfo=SHANGHAI)
    assert year_used_since_reset([], at, spec) == 0
    later = [(datetime(2025, 9, 1, tzinfo=SHANGHAI), 5000)]
    assert year_used_since_reset(later, at, spec) == 0
    # Meter installed during the tier year: consumption counts from its first reading.
    installed = [
        (datetime(2025, 7, 10, tzinfo=SHANGHAI), 100),
        (datetime(2025, 7, 20, tzinfo=SHANGHAI), 900),
    ]
    assert year_used_since_reset(installed, at, spec) == 800
    with pytest.raises(ValueError):
        year_used_since_reset(list(reversed(installed)), at, spec)
    with pytest.raises(ValueError):
        year_used_since_reset([(installed[0][0], 900), (installed[1][0], 100)], at, spec)
    with pytest.raises(ValueError):
        year_used_since_reset(installed, datetime(2025, 8, 1), spec)


@FAST
@given(
    specs(),
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2026, 12, 31)),
            st.sampled_from([SHANGHAI, UTC]),
            st.integers(0, 10**5),
        ),
        max_size=12,
    ),
    st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2026, 12, 31)),
)
def test_year_used_since_reset_matches_brute_force(
    spec: TariffSpec, raw: list[tuple[datetime, ZoneInfo, int]], at_naive: datetime
) -> None:
    stamped = sorted((naive.replace(tzinfo=zone), step) for naive, zone, step in raw)
    readings: list[tuple[datetime, int]] = []
    total = 0
    for when, step in stamped:
        total += step
        readings.append((when, total))
    at = at_naive.replace(tzinfo=SHANGHAI)
    start = datetime(at.year, spec.reset_month, spec.reset_day, tzinfo=SHANGHAI)
    if start > at:
        start = start.replace(year=at.year - 1)
    upto = [v for t, v in readings if t <= at]
    before = [v for t, v in readings if t <= start]
    expected = 0 if not upto else upto[-1] - (before[-1] if before else readings[0][1])
    assert year_used_since_reset(readings, at, spec) == expected


# -------------------------------------------------------------------------- validation, dicts


@FAST
@given(specs())
def test_dict_round_trip(spec: TariffSpec) -> None:
    assert TariffSpec.from_dict(spec.to_dict()) == spec
    assert TariffSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert hash(TariffSpec.from_dict(spec.to_dict())) == hash(spec)


def _parse_or_spec_error(data: object) -> None:
    try:
        parsed = TariffSpec.from_dict(data)
    except TariffSpecError as exc:
        assert str(exc)
    else:  # an accidentally valid input must at least round-trip
        assert TariffSpec.from_dict(parsed.to_dict()) == parsed


@FAST
@given(json_values)
def test_from_dict_on_garbage_raises_only_spec_errors(data: object) -> None:
    _parse_or_spec_error(data)


SPEC_KEYS = ("kind", "flat_rate", "periods", "schedule", "tiers", "reset_month", "reset_day")


@SLOW
@given(st.fixed_dictionaries({k: json_values for k in SPEC_KEYS}))
def test_from_dict_on_garbage_with_right_keys(data: object) -> None:
    _parse_or_spec_error(data)


def _mutate(tree: object, path: list[int], value: object) -> object:
    """Replace (or, for value ``...``, delete) the node reached by following ``path``."""
    if not path or not isinstance(tree, dict | list) or not tree:
        return value
    keys = list(tree) if isinstance(tree, dict) else list(range(len(tree)))
    key = keys[path[0] % len(keys)]
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    if len(path) == 1 and value is ...:
        del copy[key]
        return copy
    copy[key] = _mutate(tree[key], path[1:], value)
    return copy


@SLOW
@given(
    specs(),
    st.lists(st.integers(0, 50), min_size=1, max_size=4),
    json_values | st.just(...) | st.just(True) | st.just(-1) | st.just(1.5),
)
def test_from_dict_on_mutated_valid_dicts(spec: TariffSpec, path: list[int], value: object) -> None:
    _parse_or_spec_error(_mutate(spec.to_dict(), path, value))


BASE = TariffSpec(
    "tou_tiered",
    None,
    (TouPeriod("peak", 6000), TouPeriod("valley", 3000)),
    (TouSegment(0, "valley"), TouSegment(480, "peak")),
    (Tier(2760, 0), Tier(4800, 500), Tier(None, 3000)),
).to_dict()


def _with(**changes: object) -> dict[str, object]:
    return {**BASE, **changes}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "must be an object"),
        ([], "must be an object"),
        ({k: v for k, v in BASE.items() if k != "tiers"}, "missing key"),
        (_with(extra=1), "unknown key"),
        (_with(kind="tou_tired"), "kind"),
        (_with(kind=1), "kind"),
        (_with(flat_rate=5000), "flat_rate"),
        (_with(reset_month=True), "reset_month"),
        (_with(reset_month=13), "reset_month"),
        (_with(reset_month=2, reset_day=29), "February 29"),
        (_with(reset_month=4, reset_day=31), "reset_day"),
        (_with(reset_day=1.0), "reset_day"),
        (_with(periods=[{"name": "peak", "rate": True}]), r"periods\[0\]\.rate"),
        (_with(periods=[{"name": "peak", "rate": "6000"}]), r"periods\[0\]\.rate"),
        (_with(periods=[{"name": "peak", "rate": 0}, {"name": "valley", "rate": 1}]), "rate"),
        (_with(periods=[{"name": "peak", "rate": 100_000}]), "rate"),
        (_with(periods=[{"name": "peak", "rate": 6000.0}]), "integer"),
        (_with(periods=[{"name": "", "rate": 6000}]), "name"),
        (
            _with(periods=[{"name": "valley", "rate": 1}, {"name": "valley", "rate": 2}]),
            "duplicate",
        ),
        (_with(periods={"peak": 6000}), "must be a list"),
        (_with(periods=[]), "periods"),
        (_with(schedule=[]), "schedule"),
        (_with(schedule=[{"start_minute": 10, "period": "valley"}]), "start at 0"),
        (_with(schedule=[{"start_minute": -1, "period": "valley"}]), "start_minute"),
        (_with(schedule=[{"start_minute": 1440, "period": "valley"}]), "start_minute"),
        (
            _with(
                schedule=[
                    {"start_minute": 0, "period": "valley"},
                    {"start_minute": 600, "period": "peak"},
                    {"start_minute": 480, "period": "valley"},
                ]
            ),
            "sorted",
        ),
        (_with(schedule=[{"start_minute": 0, "period": "sharp"}]), "unknown period"),
        (_with(tiers=[]), "tiers"),
        (_with(tiers=[{"upto_kwh": 10, "surcharge": 0}]), "open"),
        (
            _with(tiers=[{"upto_kwh": None, "surcharge": 0}, {"upto_kwh": None, "surcharge": 1}]),
            "open",
        ),
        (
            _with(
                tiers=[
                    {"upto_kwh": 10, "surcharge": 0},
                    {"upto_kwh": 10, "surcharge": 1},
                    {"upto_kwh": None, "surcharge": 2},
                ]
            ),
            "strictly increasing",
        ),
        (
            _with(tiers=[{"upto_kwh": 0, "surcharge": 0}, {"upto_kwh": None, "surcharge": 1}]),
            "upto",
        ),
        (_with(tiers=[{"upto_kwh": None, "surcharge": -1}]), "surcharge"),
        (_with(tiers=[{"upto_kwh": None, "surcharge": 94_000}]), "10 yuan"),
        (_with(tiers=[{"upto_kwh": None}]), "missing key"),
        (_with(tiers=[{"upto_kwh": 10**5000, "surcharge": 0}]), "open"),
        (_with(kind="flat"), "flat_rate"),
        (_with(kind="flat", flat_rate=5000, periods=[], schedule=[]), "tiers"),
        (_with(kind="tiered", flat_rate=5000), "periods"),
        (_with(kind="tou", flat_rate=None), "tiers"),
    ],
)
def test_from_dict_rejects_malformed_input(data: object, message: str) -> None:
    with pytest.raises(TariffSpecError, match=message):
        TariffSpec.from_dict(data)


def test_valid_examples_and_error_type() -> None:
    assert issubclass(TariffSpecError, ValueError)
    spec = TariffSpec.from_dict(BASE)
    assert spec.kind == "tou_tiered"
    assert TariffSpec.from_dict(_with(kind="tiered", flat_rate=5000, periods=[], schedule=[]))
    with pytest.raises(TariffSpecError):
        TariffSpec("flat", 5283, (), (), (), reset_month=0)
    with pytest.raises(TariffSpecError):
        TariffSpec("flat", 5283, [], (), ())  # type: ignore[arg-type]
    with pytest.raises(TariffSpecError):
        TouPeriod("peak", True)
    with pytest.raises(TariffSpecError):
        TouSegment(0, "")
    with pytest.raises(TariffSpecError):
        Tier(None, -1)


# --------------------------------------------------------------------------- meter readings


@FAST
@given(specs(), st.integers(0, 10**7), st.integers(0, 10**7))
def test_a_reading_all_in_one_register_of_a_spec_without_periods_costs_what_energy_costs(
    spec: TariffSpec, e: int, u: int
) -> None:
    """Without TOU periods every register is priced at the base rate plus the tier surcharge:
    the exact cost of the whole reading is the exact cost of that energy."""
    if spec.is_tou:
        return
    assert consumption_cost(spec, [0, 0, e, 0], u) == oracle_cost(spec, e, u) * RATE_SCALE


@FAST
@given(specs(), st.lists(st.integers(0, 10**6), min_size=4, max_size=4), st.integers(0, 10**7))
def test_a_reading_costs_each_register_at_its_period_and_never_rounds(
    spec: TariffSpec, rates: list[int], u: int
) -> None:
    cost = consumption_cost(spec, rates, u)
    named = {p.name: p.rate for p in spec.periods} if spec.is_tou else {}
    if not spec.tiers:
        expected = sum(
            wh * named.get(name, oracle_base(spec)) for wh, name in zip(rates, NAMES, strict=True)
        )
        assert cost == expected
    if spec.tiers and spec.is_tou:
        return  # which register meets which tier depends on the split: no identity to hold
    # splitting a reading in two (the tier position carried on) costs the same
    half = [r // 2 for r in rates]
    rest = [r - h for r, h in zip(rates, half, strict=True)]
    assert cost == consumption_cost(spec, half, u) + consumption_cost(spec, rest, u + sum(half))


def test_a_reading_needs_four_registers_and_no_negative_energy() -> None:
    spec = TariffSpec.from_dict(
        {"kind": "flat", "flat_rate": 5000, "periods": [], "schedule": [], "tiers": [],
         "reset_month": 1, "reset_day": 1}
    )  # fmt: skip
    assert consumption_cost(spec, [0, 0, 1000, 0]) == 1000 * 5000
    with pytest.raises(ValueError):
        consumption_cost(spec, [1, 2, 3])
    with pytest.raises(ValueError):
        consumption_cost(spec, [0, -1, 0, 0])
