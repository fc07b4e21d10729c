"""Tariff specifications and the conversion between money and electrical energy.

Units (no floating point is used anywhere in this module)
---------------------------------------------------------
* Money is an integer number of **fen** (1 yuan = 100 fen).
* Energy is an integer number of **Wh**.
* A rate (price) is an integer in units of **0.0001 yuan/kWh**: ``5283`` means 0.5283 yuan/kWh.
  Every rate actually applied -- a flat rate or a TOU period rate, plus the surcharge of the tier
  in force -- lies in ``1..99999``, i.e. it is below 10 yuan/kWh.  Consequently one Wh always
  costs strictly less than one fen.
* The cost of ``E`` Wh at rate ``r`` is exactly ``E * r / 100000`` fen, a rational number.  Costs
  are carried as the integer numerator over the fixed denominator ``100000`` (``RATE_SCALE``);
  integer ceilings are computed as ``-(-n // d)``.

Tariff kinds
------------
``"flat"``        one rate (``flat_rate``).
``"tou"``         time of use: named periods with their rates and a daily schedule.
``"tiered"``      ``flat_rate`` plus the surcharge of the yearly consumption tier in force.
``"tou_tiered"``  TOU period rate plus the surcharge of the yearly consumption tier in force.

Tiers
-----
Tier bounds ``upto_kwh`` are cumulative over the tier year, in whole kWh; the last tier is open.
The Wh that takes the yearly consumption from ``w`` Wh to ``w + 1`` Wh belongs to the tier ``i``
with ``upto_(i-1) * 1000 <= w < upto_i * 1000`` (``upto_(-1) = 0``).  So once the consumption has
*reached* a bound, the next Wh is priced in the next tier.  ``year_used_wh`` arguments are the
consumption so far in the current tier year (see :func:`year_used_since_reset`).

Rounding rules (this is the reference documentation of rounding)
----------------------------------------------------------------
1. **Base rate of TOU kinds** (:func:`base_rate`): when the counter cannot know when the customer
   will consume, a TOU tariff is priced at the time-weighted average of the period rates over the
   1440 minutes of the day, rounded **up** to a whole rate unit:
   ``ceil(sum(minutes_of_segment * rate_of_its_period) / 1440)``.  For ``flat`` and ``tiered`` the
   base rate is ``flat_rate``.  Purchases (rules 2 and 3) always use the base rate (plus the tier
   surcharge); the exact period rates are only used by :func:`period_at` / :func:`rate_at`.
2. **Energy to money** (:func:`energy_to_amount`): the energy is split into pieces at the tier
   bounds, starting from ``year_used_wh``; each piece costs exactly ``piece_wh * rate / 100000``
   fen with ``rate = base rate + surcharge of its tier``.  The exact rational pieces are summed and
   the sum is rounded **up** to a whole fen **once, at the end**:
   ``ceil(sum(piece_wh * rate) / 100000)``.  No intermediate rounding takes place.
3. **Money to energy** (:func:`amount_to_energy`): the result is the **largest** ``E`` whose exact
   (unrounded, rule 2 before the ceiling) cost from ``year_used_wh`` is ``<= amount_fen``, filling
   the tiers in order.  It is thus rounded **down**: energy that is not fully paid for is never
   given.
4. Consequences, because every applied rate is ``<= 99999`` (one Wh costs less than one fen):

   * ``energy_to_amount(amount_to_energy(a, u), u) == a`` for every ``a >= 0``.  Proof: with
     ``E = amount_to_energy(a, u)``, ``cost(E) <= a < cost(E + 1) < cost(E) + 1``, hence
     ``a - 1 < cost(E) <= a`` and ``ceil(cost(E)) == a``.  The fen-rounding never loses money.
   * ``E' = amount_to_energy(energy_to_amount(e, u), u) >= e``; the surplus is less than what the
     rounding remainder (< 1 fen) buys at the **lowest** rate applied to the Wh between ``e`` and
     ``E'``: ``E' - e <= 99999 // r_min``.  (With rising tiers this is the rate of the Wh right
     after ``e``; the highest rate does *not* bound the surplus when a tier bound lies in between.)
5. **Time of day** (:func:`period_at`, :func:`rate_at`): minute resolution; seconds,
   microseconds and the ``tzinfo`` of the ``time`` are ignored (the time is the meter's local wall
   clock).  A segment runs from its ``start_minute`` inclusive to the next segment's start
   exclusive (the last one to 1440).
6. **Tier year** (:func:`tier_year_start`): starts at 00:00 wall-clock time on the reset date in
   the ``tzinfo`` of the given (aware) datetime; instants are compared in UTC.  A reset on
   February 29 is rejected (use 1..28 for February).

Negative amounts, energies or consumptions raise :class:`ValueError`; invalid specifications raise
:class:`TariffSpecError` (a :class:`ValueError`).
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar
from typing import Final
from typing import Self
from typing import TypeVar

__all__ = [
    "MAX_RATE",
    "METER_RATE_PERIODS",
    "MINUTES_PER_DAY",
    "MIN_RATE",
    "RATE_SCALE",
    "TARIFF_KINDS",
    "WH_PER_KWH",
    "TariffSpec",
    "TariffSpecError",
    "Tier",
    "TouPeriod",
    "TouSegment",
    "amount_to_energy",
    "base_rate",
    "consumption_cost",
    "energy_to_amount",
    "period_at",
    "rate_at",
    "tier_year_start",
    "year_used_since_reset",
]

RATE_SCALE: Final = 100_000
"""Wh x rate units per fen: ``E`` Wh at rate ``r`` cost ``E * r / RATE_SCALE`` fen."""
MIN_RATE: Final = 1
MAX_RATE: Final = 99_999
MINUTES_PER_DAY: Final = 1440
WH_PER_KWH: Final = 1000
TARIFF_KINDS: Final = ("flat", "tou", "tiered", "tou_tiered")

_TOU_KINDS: Final = frozenset({"tou", "tou_tiered"})
_TIER_KINDS: Final = frozenset({"tiered", "tou_tiered"})
_DAYS_IN_MONTH: Final = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # Feb 29 never a reset
_UTC: Final = dt.UTC


class TariffSpecError(ValueError):
    """An invalid or malformed tariff specification.

    The message starts with the location of the problem (``"periods[1].rate: ..."``).
    """


# --------------------------------------------------------------------------- validation helpers


def _show(value: object) -> str:
    """``repr`` that never fails (huge ints exceed ``sys.get_int_max_str_digits``)."""
    try:
        return repr(value)
    except ValueError:
        return f"<{type(value).__name__} too large to show>"


def _describe(value: object) -> str:
    text = _show(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _require_int(value: object, where: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TariffSpecError(f"{where}: must be an integer, got {_describe(value)}")
    if lo is not None and value < lo:
        bound = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise TariffSpecError(f"{where}: must be {bound}, got {_show(value)}")
    if hi is not None and value > hi:
        bound = f"in {lo}..{hi}" if lo is not None else f"<= {hi}"
        raise TariffSpecError(f"{where}: must be {bound}, got {_show(value)}")
    return value


def _require_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise TariffSpecError(f"{where}: must be a string, got {_describe(value)}")
    return value


def _require_name(value: object, where: str) -> str:
    name = _require_str(value, where)
    if not name.strip():
        raise TariffSpecError(f"{where}: must be a non-empty name, got {name!r}")
    return name


def _check_reset_date(month: object, day: object) -> None:
    m = _require_int(month, "reset_month", 1, 12)
    limit = _DAYS_IN_MONTH[m - 1]
    if isinstance(day, int) and not isinstance(day, bool) and m == 2 and day == 29:
        raise TariffSpecError(
            "reset_day: February 29 cannot be a tier reset day (use 1..28 for February)"
        )
    _require_int(day, "reset_day", 1, limit)


T = TypeVar("T")


def _record(data: object, where: str, keys: tuple[str, ...]) -> dict[str, object]:
    """Check that ``data`` is a dict with exactly ``keys`` (all strings) and return it."""
    if not isinstance(data, dict):
        raise TariffSpecError(f"{where}: must be an object (dict), got {_describe(data)}")
    unknown = sorted(_show(k) for k in data if k not in keys)
    if unknown:
        raise TariffSpecError(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise TariffSpecError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    return {k: data[k] for k in keys}


def _optional_int(value: object, where: str) -> int | None:
    return None if value is None else _require_int(value, where)


def _array(value: object, where: str) -> list[object] | tuple[object, ...]:
    if not isinstance(value, list | tuple):
        raise TariffSpecError(f"{where}: must be a list, got {_describe(value)}")
    return value


def _located(where: str, build: Callable[..., T], *args: object) -> T:
    """``build(*args)``; a TariffSpecError it raises names ``where`` first."""
    try:
        return build(*args)
    except TariffSpecError as exc:
        raise TariffSpecError(f"{where}.{exc}") from None


# ------------------------------------------------------------------------------- data model

_Reader = Callable[[object, str], object]


class _Row:
    """An item of one of a tariff's lists, to and from a plain dict field by field: ``_FIELDS``
    names each field with the check of its type (ranges are the class's ``__post_init__``'s),
    ``_WHERE`` is where an error says it is when the caller does not say."""

    __slots__ = ()
    _FIELDS: ClassVar[tuple[tuple[str, _Reader], ...]]
    _WHERE: ClassVar[str]

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name, _ in self._FIELDS}

    @classmethod
    def from_dict(cls, data: object, *, where: str | None = None) -> Self:
        where = where or cls._WHERE
        d = _record(data, where, tuple(name for name, _ in cls._FIELDS))
        return _located(
            where, cls, *(read(d[name], f"{where}.{name}") for name, read in cls._FIELDS)
        )


_R = TypeVar("_R", bound=_Row)


def _rows(data: dict[str, object], key: str, row: type[_R]) -> tuple[_R, ...]:
    """The list ``data[key]`` read as rows of ``row`` (an error names ``key[i]``)."""
    items = _array(data[key], key)
    return tuple(row.from_dict(item, where=f"{key}[{i}]") for i, item in enumerate(items))


@dataclass(frozen=True, slots=True)
class TouPeriod(_Row):
    """A time-of-use period such as ``"peak"`` and its rate (0.0001 yuan/kWh, ``1..99999``)."""

    _FIELDS = (("name", _require_str), ("rate", _require_int))
    _WHERE = "period"

    name: str
    rate: int

    def __post_init__(self) -> None:
        _require_name(self.name, "name")
        _require_int(self.rate, "rate", MIN_RATE, MAX_RATE)


@dataclass(frozen=True, slots=True)
class TouSegment(_Row):
    """Part of the daily schedule: ``period`` applies from ``start_minute`` (0..1439) on."""

    _FIELDS = (("start_minute", _require_int), ("period", _require_str))
    _WHERE = "segment"

    start_minute: int
    period: str

    def __post_init__(self) -> None:
        _require_int(self.start_minute, "start_minute", 0, MINUTES_PER_DAY - 1)
        _require_name(self.period, "period")


@dataclass(frozen=True, slots=True)
class Tier(_Row):
    """A yearly consumption tier.

    ``upto_kwh`` is the cumulative upper bound over the tier year in whole kWh (``None`` for the
    last, open tier); ``surcharge`` (0.0001 yuan/kWh, ``>= 0``) is added to the base rate.
    """

    _FIELDS = (("upto_kwh", _optional_int), ("surcharge", _require_int))
    _WHERE = "tier"

    upto_kwh: int | None
    surcharge: int

    def __post_init__(self) -> None:
        if self.upto_kwh is not None:
            _require_int(self.upto_kwh, "upto_kwh", 1)
        _require_int(self.surcharge, "surcharge", 0, MAX_RATE - MIN_RATE)


_SPEC_KEYS: Final = (
    "kind",
    "flat_rate",
    "periods",
    "schedule",
    "tiers",
    "reset_month",
    "reset_day",
)


@dataclass(frozen=True, slots=True)
class TariffSpec:
    """A complete tariff; validated on construction (:meth:`validate`).

    * ``flat``: ``flat_rate``; no periods, schedule or tiers.
    * ``tou``: ``periods`` and ``schedule``; no ``flat_rate``, no tiers.
    * ``tiered``: ``flat_rate`` and ``tiers``; no periods or schedule.
    * ``tou_tiered``: ``periods``, ``schedule`` and ``tiers``; no ``flat_rate``.

    ``reset_month``/``reset_day`` give the yearly tier reset date (February 29 is refused).
    """

    kind: str
    flat_rate: int | None
    periods: tuple[TouPeriod, ...]
    schedule: tuple[TouSegment, ...]
    tiers: tuple[Tier, ...]
    reset_month: int = 1
    reset_day: int = 1

    def __post_init__(self) -> None:
        self.validate()

    @property
    def is_tou(self) -> bool:
        return self.kind in _TOU_KINDS

    def validate(self) -> None:
        """Raise :class:`TariffSpecError` unless the specification is complete and consistent."""
        kind = _require_str(self.kind, "kind")
        if kind not in TARIFF_KINDS:
            raise TariffSpecError(f"kind: must be one of {', '.join(TARIFF_KINDS)}, got {kind!r}")
        if self.flat_rate is not None:
            _require_int(self.flat_rate, "flat_rate", MIN_RATE, MAX_RATE)
        self._check_items("periods", self.periods, TouPeriod)
        self._check_items("schedule", self.schedule, TouSegment)
        self._check_items("tiers", self.tiers, Tier)
        _check_reset_date(self.reset_month, self.reset_day)

        if kind in _TOU_KINDS:
            if self.flat_rate is not None:
                raise TariffSpecError(
                    f"flat_rate: must be null for kind {kind!r} (rates come from the periods)"
                )
            self._check_tou()
        else:
            if self.flat_rate is None:
                raise TariffSpecError(f"flat_rate: required for kind {kind!r}")
            for field in ("periods", "schedule"):
                if getattr(self, field):
                    raise TariffSpecError(f"{field}: must be empty for kind {kind!r}")

        if kind in _TIER_KINDS:
            self._check_tiers()
        elif self.tiers:
            raise TariffSpecError(f"tiers: must be empty for kind {kind!r}")

        highest_base = (
            max(p.rate for p in self.periods) if kind in _TOU_KINDS else (self.flat_rate or 0)
        )
        highest_surcharge = max((t.surcharge for t in self.tiers), default=0)
        if highest_base + highest_surcharge > MAX_RATE:
            raise TariffSpecError(
                f"tiers: highest rate {highest_base} plus highest surcharge {highest_surcharge}"
                f" exceeds {MAX_RATE} (rates must stay below 10 yuan/kWh)"
            )

    @staticmethod
    def _check_items(field: str, items: object, item_type: type[object]) -> None:
        if not isinstance(items, tuple):
            raise TariffSpecError(f"{field}: must be a tuple, got {_describe(items)}")
        for i, item in enumerate(items):
            if not isinstance(item, item_type):
                raise TariffSpecError(
                    f"{field}[{i}]: must be a {item_type.__name__}, got {_describe(item)}"
                )

    def _check_tou(self) -> None:
        if not self.periods:
            raise TariffSpecError(f"periods: at least one period required for kind {self.kind!r}")
        if not self.schedule:
            raise TariffSpecError(f"schedule: at least one segment required for kind {self.kind!r}")
        names: set[str] = set()
        for i, period in enumerate(self.periods):
            if period.name in names:
                raise TariffSpecError(f"periods[{i}].name: duplicate period {period.name!r}")
            names.add(period.name)
        if self.schedule[0].start_minute != 0:
            raise TariffSpecError(
                f"schedule[0].start_minute: the first segment must start at 0,"
                f" got {self.schedule[0].start_minute}"
            )
        previous = -1
        for i, segment in enumerate(self.schedule):
            if segment.start_minute <= previous:
                raise TariffSpecError(
                    f"schedule[{i}].start_minute: segments must be sorted by strictly increasing"
                    f" start_minute, got {segment.start_minute} after {previous}"
                )
            previous = segment.start_minute
            if segment.period not in names:
                raise TariffSpecError(
                    f"schedule[{i}].period: unknown period {segment.period!r}"
                    f" (defined: {', '.join(sorted(names))})"
                )

    def _check_tiers(self) -> None:
        if not self.tiers:
            raise TariffSpecError(f"tiers: at least one tier required for kind {self.kind!r}")
        last = len(self.tiers) - 1
        previous = 0
        for i, tier in enumerate(self.tiers):
            if i == last:
                if tier.upto_kwh is not None:
                    raise TariffSpecError(
                        f"tiers[{i}].upto_kwh: the last tier must be open (null),"
                        f" got {_show(tier.upto_kwh)}"
                    )
            elif tier.upto_kwh is None:
                raise TariffSpecError(f"tiers[{i}].upto_kwh: only the last tier may be open")
            elif tier.upto_kwh <= previous:
                raise TariffSpecError(
                    f"tiers[{i}].upto_kwh: bounds must be strictly increasing,"
                    f" got {_show(tier.upto_kwh)} after {_show(previous)}"
                )
            else:
                previous = tier.upto_kwh

    def to_dict(self) -> dict[str, object]:
        """A plain JSON-able dict; :meth:`from_dict` turns it back into an equal spec."""
        return {
            "kind": self.kind,
            "flat_rate": self.flat_rate,
            "periods": [p.to_dict() for p in self.periods],
            "schedule": [s.to_dict() for s in self.schedule],
            "tiers": [t.to_dict() for t in self.tiers],
            "reset_month": self.reset_month,
            "reset_day": self.reset_day,
        }

    @classmethod
    def from_dict(cls, data: object) -> TariffSpec:
        """Build a spec from a JSON-like dict; every key of :meth:`to_dict` is required.

        Raises :class:`TariffSpecError` (and nothing else) on any malformed input.
        """
        d = _record(data, "tariff", _SPEC_KEYS)
        kind = _require_str(d["kind"], "kind")
        flat_rate = _optional_int(d["flat_rate"], "flat_rate")
        periods = _rows(d, "periods", TouPeriod)
        schedule = _rows(d, "schedule", TouSegment)
        tiers = _rows(d, "tiers", Tier)
        reset_month = _require_int(d["reset_month"], "reset_month")
        reset_day = _require_int(d["reset_day"], "reset_day")
        return cls(kind, flat_rate, periods, schedule, tiers, reset_month, reset_day)


# ---------------------------------------------------------------------------------- pricing


def _non_negative(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def base_rate(spec: TariffSpec) -> int:
    """The rate used when the time of consumption is unknown (before any tier surcharge).

    ``flat_rate`` for ``flat``/``tiered``; for TOU kinds the time-weighted average of the period
    rates over the day, rounded up: ``ceil(sum(minutes * rate) / 1440)``.
    """
    if not spec.is_tou:
        assert spec.flat_rate is not None  # guaranteed by validate()
        return spec.flat_rate
    rates = {p.name: p.rate for p in spec.periods}
    ends = [s.start_minute for s in spec.schedule[1:]] + [MINUTES_PER_DAY]
    weighted = sum(
        (end - segment.start_minute) * rates[segment.period]
        for segment, end in zip(spec.schedule, ends, strict=True)
    )
    return -(-weighted // MINUTES_PER_DAY)


def _surcharge_at(spec: TariffSpec, year_used_wh: int) -> int:
    """Surcharge of the tier the next Wh falls in, after ``year_used_wh`` Wh this tier year."""
    for tier in spec.tiers:
        if tier.upto_kwh is None or year_used_wh < tier.upto_kwh * WH_PER_KWH:
            return tier.surcharge
    return 0  # no tiers (validate() guarantees the last tier of a tiered spec is open)


def period_at(spec: TariffSpec, t: dt.time) -> TouPeriod | None:
    """The TOU period in force at wall-clock time ``t`` (minute resolution); None if not TOU."""
    if not isinstance(t, dt.time):
        raise TypeError(f"t must be a datetime.time, got {type(t).__name__}")
    if not spec.is_tou:
        return None
    minute = t.hour * 60 + t.minute
    starts = [s.start_minute for s in spec.schedule]
    segment = spec.schedule[bisect_right(starts, minute) - 1]
    for period in spec.periods:
        if period.name == segment.period:
            return period
    raise AssertionError("unreachable: validate() checks schedule periods")  # pragma: no cover


def rate_at(spec: TariffSpec, t: dt.time, year_used_wh: int = 0) -> int:
    """The rate applied to the next Wh consumed at time ``t`` after ``year_used_wh`` Wh this tier
    year: the TOU period rate (or ``flat_rate``) plus the surcharge of the tier in force."""
    _non_negative(year_used_wh, "year_used_wh")
    period = period_at(spec, t)
    base = period.rate if period is not None else base_rate(spec)
    return base + _surcharge_at(spec, year_used_wh)


def _pieces(spec: TariffSpec, year_used_wh: int) -> Iterator[tuple[int | None, int]]:
    """Yield ``(capacity_wh, rate)`` for the tiers from ``year_used_wh`` on, in order.

    ``capacity_wh`` is None for the open last piece (which always comes last).
    """
    base = base_rate(spec)
    if not spec.tiers:
        yield None, base
        return
    position = year_used_wh
    for tier in spec.tiers:
        if tier.upto_kwh is None:
            yield None, base + tier.surcharge
            return
        end = tier.upto_kwh * WH_PER_KWH
        if position < end:
            yield end - position, base + tier.surcharge
            position = end


def amount_to_energy(spec: TariffSpec, amount_fen: int, year_used_wh: int = 0) -> int:
    """Wh that ``amount_fen`` buys after ``year_used_wh`` Wh this tier year (rounded down).

    The largest ``E`` whose exact cost, tier by tier at base rate + surcharge, is
    ``<= amount_fen``.
    """
    _non_negative(amount_fen, "amount_fen")
    _non_negative(year_used_wh, "year_used_wh")
    budget = amount_fen * RATE_SCALE  # in fen / RATE_SCALE
    energy = 0
    for capacity, rate in _pieces(spec, year_used_wh):
        if capacity is not None and capacity * rate <= budget:
            energy += capacity
            budget -= capacity * rate
        else:
            return energy + budget // rate
    raise AssertionError("unreachable: the last piece is open")  # pragma: no cover


def energy_to_amount(spec: TariffSpec, energy_wh: int, year_used_wh: int = 0) -> int:
    """Fen to pay for ``energy_wh`` after ``year_used_wh`` Wh this tier year.

    The exact rational sum of the tier pieces, rounded up once at the end.
    """
    _non_negative(energy_wh, "energy_wh")
    _non_negative(year_used_wh, "year_used_wh")
    remaining = energy_wh
    numerator = 0  # in fen / RATE_SCALE
    for capacity, rate in _pieces(spec, year_used_wh):
        if remaining == 0:
            break
        take = remaining if capacity is None else min(capacity, remaining)
        numerator += take * rate
        remaining -= take
    return -(-numerator // RATE_SCALE)


# the periods a meter's rate registers 1..4 count: 尖 sharp, 峰 peak, 平 flat, 谷 valley
METER_RATE_PERIODS: Final = ("sharp", "peak", "flat", "valley")


def consumption_cost(spec: TariffSpec, rates_wh: Sequence[int], year_used_wh: int = 0) -> int:
    """The exact cost (fen x :data:`RATE_SCALE`, not rounded) of energy a meter counted by rate
    (``rates_wh``: Wh in its registers 1..4 since the last reading), after ``year_used_wh`` Wh
    this tier year.

    A rate register is priced at the TOU period of its name (:data:`METER_RATE_PERIODS`) where
    the tariff has one, else at the base rate (rule 1); the tier surcharge follows the yearly
    consumption, the registers taken in the order valley, flat, peak, sharp (the meter does not
    say in which order the interval's Wh came).  The caller sums these numerators and rounds up
    once, so a balance never loses a fraction of a fen to rounding between readings."""
    if len(rates_wh) != len(METER_RATE_PERIODS):
        raise ValueError(f"rates_wh needs {len(METER_RATE_PERIODS)} values")
    for wh in rates_wh:
        _non_negative(wh, "rates_wh")
    _non_negative(year_used_wh, "year_used_wh")
    period_rates = {p.name: p.rate for p in spec.periods} if spec.is_tou else {}
    numerator = 0
    used = year_used_wh
    for index in reversed(range(len(METER_RATE_PERIODS))):
        remaining = rates_wh[index]
        own = period_rates.get(METER_RATE_PERIODS[index], base_rate(spec))
        for capacity, rate in _pieces(spec, used):
            if remaining == 0:
                break
            take = remaining if capacity is None else min(capacity, remaining)
            numerator += take * (own + rate - base_rate(spec))  # the piece's tier surcharge
            remaining -= take
            used += take
    return numerator


# -------------------------------------------------------------------------------- tier year


def _require_aware(value: dt.datetime, name: str) -> None:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def tier_year_start(at: dt.datetime, reset_month: int, reset_day: int) -> dt.datetime:
    """Start of the tier year containing ``at``: 00:00 on the reset date, in ``at``'s tzinfo.

    ``at`` must be timezone-aware (ValueError otherwise); the reset instant itself belongs to
    the new tier year.  February 29 is refused as reset date (TariffSpecError, a ValueError).
    """
    _require_aware(at, "at")
    _check_reset_date(reset_month, reset_day)
    start = dt.datetime(at.year, reset_month, reset_day, tzinfo=at.tzinfo)
    if at.astimezone(_UTC) < start.astimezone(_UTC):
        start = start.replace(year=at.year - 1)
    return start


def year_used_since_reset(
    readings: Sequence[tuple[dt.datetime, int]], at: dt.datetime, spec: TariffSpec
) -> int:
    """Wh consumed in the tier year of ``at``, up to ``at``, from cumulative meter readings.

    ``readings`` are ``(aware time, meter total Wh)`` sorted by time, totals non-decreasing
    (ValueError otherwise).  The result is the total of the latest reading at or before ``at``
    minus the baseline: the latest reading at or before the tier year start, or -- when the
    meter has no reading that old (e.g. it was installed during the year) -- the earliest
    reading.  It is 0 when no reading is at or before ``at``.
    """
    _require_aware(at, "at")
    start = tier_year_start(at, spec.reset_month, spec.reset_day)
    instants: list[dt.datetime] = []
    previous_total = 0
    for i, (when, total) in enumerate(readings):
        _require_aware(when, f"readings[{i}] time")
        _non_negative(total, f"readings[{i}] total")
        instant = when.astimezone(_UTC)
        if instants and instant < instants[-1]:
            raise ValueError(f"readings must be sorted by time; readings[{i}] is out of order")
        if total < previous_total:
            raise ValueError(
                f"readings[{i}] total {total} Wh is below the previous reading {previous_total} Wh"
            )
        instants.append(instant)
        previous_total = total
    upto = bisect_right(instants, at.astimezone(_UTC))  # readings at or before `at`
    if upto == 0:
        return 0
    before_start = bisect_right(instants, start.astimezone(_UTC))
    baseline = readings[before_start - 1 if before_start else 0][1]
    return readings[upto - 1][1] - baseline
