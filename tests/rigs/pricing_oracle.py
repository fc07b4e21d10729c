"""The pricing oracles (tests/test_pricing.py and the station's tier pricing test): written
independently of :mod:`app.domain.pricing`, exact ``Fraction`` sums over the tier bands."""

from __future__ import annotations

import math
from fractions import Fraction

from app.domain.pricing import TariffSpec


def oracle_base(spec: TariffSpec) -> int:
    if spec.flat_rate is not None:
        return spec.flat_rate
    rates = {p.name: p.rate for p in spec.periods}
    starts = [s.start_minute for s in spec.schedule]
    total = Fraction(0)
    for i, seg in enumerate(spec.schedule):
        end = starts[i + 1] if i + 1 < len(starts) else 1440
        total += Fraction((end - seg.start_minute) * rates[seg.period], 1440)
    return math.ceil(total)


def oracle_bands(spec: TariffSpec) -> list[tuple[int, int | None, int]]:
    """(from_wh, to_wh or None, effective rate) of each tier band of the tier year."""
    base = oracle_base(spec)
    if not spec.tiers:
        return [(0, None, base)]
    bands: list[tuple[int, int | None, int]] = []
    low = 0
    for tier in spec.tiers:
        high = None if tier.upto_kwh is None else tier.upto_kwh * 1000
        bands.append((low, high, base + tier.surcharge))
        if high is not None:
            low = high
    return bands


def oracle_cost(spec: TariffSpec, energy: int, year_used: int) -> Fraction:
    """Exact cost in fen of the Wh from ``year_used`` to ``year_used + energy``."""
    total = Fraction(0)
    for low, high, rate in oracle_bands(spec):
        a = max(low, year_used)
        b = year_used + energy if high is None else min(high, year_used + energy)
        if b > a:
            total += Fraction((b - a) * rate, 100_000)
    return total
