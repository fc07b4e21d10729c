"""Charge-control statistics by region (seed 3.11): how many customers are under fee control,
in alarm, tripped, waiting for a close permit; what was sold and consumed in a period; the
balance they hold; the terminals' condition.  For a region of ``central_offices`` (every office,
a province, a city or one office), filtered by tariff plan and control state, with a breakdown
per child area and per day.

Every figure is a set-based query (GROUP BY) that gives the same on SQLite and PostgreSQL:

- *controlled, states, balance, relay, not read recently*: ``central_control`` grouped by child
  area, state and relay (one query);
- *close permits pending*: customers with a pending ``close`` command;
- *reading missing*: customers with an open ``reading_missing`` exception;
- *sold*: ``central_sales`` credit, completed and not reversed, received by the station in the
  period (the station's own clock: the counter's ``created_at`` lives in the body), by kind;
  customers of the region and plan (with a state filter only those under control in that state);
- *consumption*: billed ``central_readings`` read in the period: the energy since the reading
  before (the meter's registers, ``LAG`` over the readings that were not exceptions) and their
  priced cost, rounded up to the fen per figure (as a balance rounds its cost up once).

Days are the office's calendar days (:data:`TIME_ZONE`): a day's bucket is a CASE over its
boundaries in UTC, computed here, so no database date function is needed.  The state and plan
filters apply to each customer's current state and plan.

Trust (:func:`counter_region`): a counter may ask for its own office and for the city and the
province its office is in (aggregates), nothing else.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from typing import Final

from sqlalchemy import ColumnElement
from sqlalchemy import and_
from sqlalchemy import case
from sqlalchemy import distinct
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import true
from sqlalchemy.engine import Connection

from app.domain.pricing import RATE_SCALE
from app.errors import CardVendError
from app.i18n import N_
from app.localtime import zone
from sync.central import models as m
from sync.central.base import StoreBase
from sync.central.control import STATES

TIME_ZONE: Final = "Asia/Shanghai"  # the offices' zone: the station has no setting of its own
STALE_HOURS: Final = 24  # a meter not read for this long counts as "not read recently"
MAX_DAYS: Final = 366
DEFAULT_DAYS: Final = 30
OPEN_EXCEPTION: Final = ("new", "assigned", "escalated")
LEVELS: Final = ("all", "province", "city", "office")
KINDS: Final = ("card", "remote")


class StatsError(CardVendError):
    """A statistics request that cannot be answered; ``code`` says why (and the HTTP status)."""

    code = "stats"
    status = 422  # the request is well formed (schema-valid); what it asks cannot be answered
    template = N_("Statistics: {detail}")


class UnknownRegion(StatsError):
    code = "unknown_region"
    status = 404
    template = N_(
        "No office is in region {region}. Give an office code, city:NAME or province:NAME."
    )


class RegionNotAllowed(StatsError):
    code = "region_not_allowed"
    status = 403
    template = N_(
        "Region {region} does not contain this counter's office {office}: a counter sees its "
        "own office, its city and its province."
    )


class BadPeriod(StatsError):
    code = "bad_period"
    template = N_("The period is not valid: {detail}")


class BadFilter(StatsError):
    code = "bad_filter"
    template = N_("The filter is not valid: {detail}")


@dataclass(frozen=True)
class Region:
    """An area of offices: ``level`` all / province / city / office."""

    level: str
    province: str = ""
    city: str = ""
    office: str = ""

    @property
    def spec(self) -> str:
        if self.level == "all":
            return "all"
        if self.level == "office":
            return self.office
        if self.level == "city":
            return f"city:{self.province}/{self.city}" if self.province else f"city:{self.city}"
        return f"province:{self.province}"

    def where(self) -> ColumnElement[bool]:
        o = m.offices.c
        if self.level == "office":
            return o.code == self.office
        if self.level == "city":
            found = o.city == self.city
            return and_(found, o.province == self.province) if self.province else found
        if self.level == "province":
            return o.province == self.province
        return true()

    def child(self) -> Any:
        """The column a breakdown groups by: the areas one level down."""
        o = m.offices.c
        return {"all": o.province, "province": o.city}.get(self.level, o.code)


def parse_region(text: str | None) -> Region:
    """``all``, ``province:NAME``, ``city:NAME`` or ``city:PROVINCE/NAME``, ``office:CODE`` or a
    bare office code."""
    value = (text or "").strip()
    if not value or value == "all":
        return Region("all")
    level, sep, name = value.partition(":")
    if not sep:
        level, name = "office", value
    name = name.strip()
    if level not in LEVELS[1:] or not name or len(name) > 65 or not name.isprintable():
        raise UnknownRegion(region=value)
    if level == "city":
        province, slash, city = name.rpartition("/")
        return Region("city", province=province.strip() if slash else "", city=city.strip())
    if level == "province":
        return Region("province", province=name)
    return Region("office", office=name)


def counter_region(conn: Connection, office_code: str, text: str | None) -> Region:
    """The region a counter of ``office_code`` asks for (its office when none is given;
    ``city`` and ``province`` alone: the ones its office is in), refused unless it contains
    that office."""
    o = m.offices.c
    own = conn.execute(select(o.province, o.city).where(o.code == office_code)).first()
    province, city = (own[0], own[1]) if own is not None else ("", "")
    word = (text or "").strip()
    if word in ("", "office"):
        region = Region("office", office=office_code)
    elif word == "city":  # the city its office is in
        region = Region("city", province=province, city=city)
    elif word == "province":
        region = Region("province", province=province)
    else:
        region = parse_region(word)
    if region.level == "city" and not region.province:
        region = Region("city", province=province, city=region.city)  # its own province's city
    allowed = (
        (region.level == "office" and region.office == office_code)
        or (region.level == "city" and (region.province, region.city) == (province, city))
        or (region.level == "province" and region.province == province)
    )
    if region.level != "all":
        known_region(conn, region)
    if not allowed or (region.level != "office" and not (region.province or region.city)):
        raise RegionNotAllowed(region=region.spec, office=office_code)
    return region


def known_region(conn: Connection, region: Region) -> None:
    found = conn.execute(select(func.count()).select_from(m.offices).where(region.where()))
    if not found.scalar_one():
        raise UnknownRegion(region=region.spec)


@dataclass(frozen=True)
class Query:
    """What to count: a region, a period of office days (inclusive), a plan and a state."""

    region: Region
    date_from: dt.date
    date_to: dt.date
    plan: str | None = None
    state: str | None = None


def make_query(
    region: Region,
    date_from: dt.date | None,
    date_to: dt.date | None,
    plan: str | None,
    state: str | None,
    now: dt.datetime,
) -> Query:
    """Checks the filters; the period ends today and spans 30 days unless given."""
    today = now.astimezone(zone(TIME_ZONE)).date()
    end = date_to or (max(today, date_from) if date_from else today)
    start = date_from or end - dt.timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise BadPeriod(detail=f"from {start.isoformat()} is after to {end.isoformat()}")
    if (end - start).days + 1 > MAX_DAYS:
        raise BadPeriod(detail=f"at most {MAX_DAYS} days")
    if state is not None and state not in STATES:
        raise BadFilter(detail=f"state {state!r} is not one of {', '.join(STATES)}")
    if plan is not None and (not plan or len(plan) > 32 or not plan.isprintable()):
        raise BadFilter(detail=f"plan {plan!r} is not a tariff plan code")
    return Query(region, start, end, plan or None, state)


def _bounds(q: Query) -> list[dt.datetime]:
    """The UTC start of each office day of the period, and the end of the last."""
    tz = zone(TIME_ZONE)
    days = (q.date_to - q.date_from).days + 1
    return [
        dt.datetime.combine(q.date_from + dt.timedelta(days=i), dt.time(), tz).astimezone(dt.UTC)
        for i in range(days + 1)
    ]


def _day_of(column: Any, bounds: list[dt.datetime]) -> Any:
    """The index of the office day ``column`` falls in (the caller keeps it inside the period)."""
    if len(bounds) == 2:
        return literal(0)
    return case(*((column < b, i) for i, b in enumerate(bounds[1:-1])), else_=len(bounds) - 2)


def _fen(cost_num: int) -> int:
    return -(-cost_num // RATE_SCALE)


def _blank() -> dict[str, int]:
    return {
        "controlled": 0, "alarm": 0, "tripped": 0, "balance_fen": 0, "sold_fen": 0,
        "consumption_wh": 0, "cost_num": 0,
    }  # fmt: skip


def compute(store: StoreBase, q: Query) -> dict[str, Any]:
    """The statistics of ``q`` as the contract's ``Stats`` (a JSON-ready dict)."""
    cu = m.customers.c
    now = store.now()
    bounds = _bounds(q)
    in_scope = [q.region.where()]
    if q.plan:
        in_scope.append(cu.tariff_plan == q.plan)
    areas: dict[str, dict[str, int]] = {}
    with store.engine.connect() as conn:
        if q.region.level != "all":
            known_region(conn, q.region)
        if q.plan:
            t = m.tariff_versions.c
            if conn.execute(select(t.id).where(t.plan_code == q.plan).limit(1)).first() is None:
                raise BadFilter(detail=f"no tariff plan {q.plan}")
        names = _area_names(conn, q.region)
        states, relay, totals = _control(conn, q, in_scope, now, areas)
        sold, by_kind, sales, sold_days = _sales(conn, q, in_scope, bounds, areas)
        energy, cost_num, used_days = _consumption(conn, q, in_scope, bounds, areas)
    by_day = [
        {
            "day": (q.date_from + dt.timedelta(days=i)).isoformat(),
            "sold_fen": sold_days.get(i, 0),
            "consumption_wh": used_days.get(i, (0, 0))[0],
            "cost_fen": _fen(used_days.get(i, (0, 0))[1]),
        }
        for i in range(len(bounds) - 1)
    ]
    by_area = [
        {
            "area": key,
            "name": names.get(key, key),
            **{k: v for k, v in a.items() if k != "cost_num"},
            "cost_fen": _fen(a["cost_num"]),
        }
        for key, a in sorted(areas.items())
    ]
    return {
        "region": q.region.spec,
        "level": q.region.level,
        "date_from": q.date_from.isoformat(),
        "date_to": q.date_to.isoformat(),
        "time_zone": TIME_ZONE,
        "plan": q.plan,
        "state": q.state,
        "controlled": sum(states.values()),
        "normal": states["normal"],
        "alarm1": states["alarm1"],
        "alarm2": states["alarm2"],
        "tripped": states["tripped"],
        "close_permits_pending": totals["permits"],
        "sales": sales,
        "sold_fen": sold,
        "sold_by_kind": by_kind,
        "consumption_wh": energy,
        "cost_fen": _fen(cost_num),
        "balance_fen": totals["balance_fen"],
        "relay_closed": relay["closed"],
        "relay_open": relay["open"],
        "relay_unknown": relay["unknown"],
        "reading_missing": totals["reading_missing"],
        "not_read_recently": totals["not_read_recently"],
        "stale_hours": STALE_HOURS,
        "by_area": by_area,
        "by_day": by_day,
        "generated_at": now.isoformat(),
    }


def _control(
    conn: Connection,
    q: Query,
    in_scope: list[ColumnElement[bool]],
    now: dt.datetime,
    areas: dict[str, dict[str, int]],
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """(customers by state, by relay, totals) of the controlled customers; adds each area's."""
    o, cu, co, cm, ex = m.offices.c, m.customers.c, m.control.c, m.commands.c, m.exceptions.c
    child = q.region.child().label("area")
    controlled = in_scope + ([co.state == q.state] if q.state else [])
    base = m.control.join(m.customers, cu.customer_no == co.customer_no).join(
        m.offices, o.code == cu.office_code
    )
    stale = now - dt.timedelta(hours=STALE_HOURS)
    states = dict.fromkeys(STATES, 0)
    relay = {"closed": 0, "open": 0, "unknown": 0}
    totals = {"balance_fen": 0, "not_read_recently": 0, "reading_missing": 0, "permits": 0}
    relay_of = func.coalesce(co.relay, literal("unknown"))
    late = case(((co.read_at.is_(None)) | (co.read_at < stale), 1), else_=0)
    for area, state, rel, n, balance, not_read in conn.execute(
        select(child, co.state, relay_of, func.count(), func.sum(co.remaining_fen),
               func.sum(late))
        .select_from(base).where(*controlled).group_by(child, co.state, relay_of)
    ):  # fmt: skip
        a = areas.setdefault(str(area), _blank())
        n, balance = int(n), int(balance or 0)
        a["controlled"] += n
        a["balance_fen"] += balance
        a["alarm"] += n if state in ("alarm1", "alarm2") else 0
        a["tripped"] += n if state == "tripped" else 0
        states[str(state)] = states.get(str(state), 0) + n
        relay[str(rel) if rel in relay else "unknown"] += n
        totals["balance_fen"] += balance
        totals["not_read_recently"] += int(not_read or 0)
    totals["permits"] = int(
        conn.execute(
            select(func.count(distinct(cm.customer_no)))
            .select_from(base.join(m.commands, cm.customer_no == co.customer_no))
            .where(*controlled, cm.command == "close", cm.status == "pending")
        ).scalar_one()
    )
    totals["reading_missing"] = int(
        conn.execute(
            select(func.count(distinct(ex.customer_no)))
            .select_from(base.join(m.exceptions, ex.customer_no == co.customer_no))
            .where(*controlled, ex.kind == "reading_missing", ex.state.in_(OPEN_EXCEPTION))
        ).scalar_one()
    )
    return states, relay, totals


def _area_names(conn: Connection, region: Region) -> dict[str, str]:
    """Display names of the breakdown's areas (an office's name; a city or province is its
    own name)."""
    if region.level not in ("city", "office"):
        return {}
    o = m.offices.c
    return {
        str(code): str(name or code)
        for code, name in conn.execute(select(o.code, o.name).where(region.where()))
    }


def _sales(
    conn: Connection,
    q: Query,
    in_scope: list[ColumnElement[bool]],
    bounds: list[dt.datetime],
    areas: dict[str, dict[str, int]],
) -> tuple[int, dict[str, int], int, dict[int, int]]:
    """(credit sold, by kind, number of sales, by day index); adds each area's credit."""
    o, cu, sa, co = m.offices.c, m.customers.c, m.sales.c, m.control.c
    joined = m.sales.join(m.customers, cu.customer_no == sa.customer_no).join(
        m.offices, o.code == cu.office_code
    )
    where = [
        *in_scope,
        sa.state == "completed",
        sa.reversed.is_(False),
        sa.received_at >= bounds[0],
        sa.received_at < bounds[-1],
    ]
    if q.state:
        joined = joined.join(m.control, co.customer_no == sa.customer_no)
        where.append(co.state == q.state)
    rows = (
        select(
            q.region.child().label("area"),
            sa.kind.label("kind"),
            _day_of(sa.received_at, bounds).label("day"),
            sa.credit.label("credit"),
        )
        .select_from(joined)
        .where(*where)
        .subquery()
    )
    total, n_sales = 0, 0
    by_kind = dict.fromkeys(KINDS, 0)
    days: dict[int, int] = {}
    for area, kind, day, n, credit in conn.execute(
        select(rows.c.area, rows.c.kind, rows.c.day, func.count(), func.sum(rows.c.credit))
        .group_by(rows.c.area, rows.c.kind, rows.c.day)
    ):  # fmt: skip
        credit = int(credit or 0)
        total += credit
        n_sales += int(n)
        by_kind[str(kind)] = by_kind.get(str(kind), 0) + credit
        days[int(day)] = days.get(int(day), 0) + credit
        areas.setdefault(str(area), _blank())["sold_fen"] += credit
    return total, by_kind, n_sales, days


def _consumption(
    conn: Connection,
    q: Query,
    in_scope: list[ColumnElement[bool]],
    bounds: list[dt.datetime],
    areas: dict[str, dict[str, int]],
) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """(energy Wh, cost numerator, by day index); adds each area's consumption."""
    o, cu, rd, co = m.offices.c, m.customers.c, m.readings.c, m.control.c
    scope = select(cu.customer_no).join(m.offices, o.code == cu.office_code).where(*in_scope)
    if q.state:
        scope = scope.join(m.control, co.customer_no == cu.customer_no).where(co.state == q.state)
    previous = func.lag(rd.energy_wh).over(partition_by=rd.customer_no, order_by=rd.id)
    taken = (
        select(
            rd.customer_no,
            rd.read_at,
            rd.status,
            rd.cost_num,
            (rd.energy_wh - previous).label("delta"),
        )
        .where(
            rd.status != "exception",
            rd.read_at < bounds[-1],
            rd.customer_no.in_(scope.scalar_subquery()),
        )
        .subquery()
    )
    billed = (
        select(
            q.region.child().label("area"),
            _day_of(taken.c.read_at, bounds).label("day"),
            func.coalesce(taken.c.delta, 0).label("delta"),
            taken.c.cost_num,
        )
        .select_from(
            taken.join(m.customers, cu.customer_no == taken.c.customer_no).join(
                m.offices, o.code == cu.office_code
            )
        )
        .where(taken.c.status == "billed", taken.c.read_at >= bounds[0])
        .subquery()
    )
    energy, cost = 0, 0
    days: dict[int, tuple[int, int]] = {}
    for area, day, wh, num in conn.execute(
        select(billed.c.area, billed.c.day, func.sum(billed.c.delta), func.sum(billed.c.cost_num))
        .group_by(billed.c.area, billed.c.day)
    ):  # fmt: skip
        wh, num = int(wh or 0), int(num or 0)
        energy += wh
        cost += num
        e0, c0 = days.get(int(day), (0, 0))
        days[int(day)] = (e0 + wh, c0 + num)
        a = areas.setdefault(str(area), _blank())
        a["consumption_wh"] += wh
        a["cost_num"] += num
    return energy, cost, days


def for_region(
    store: StoreBase,
    region: str | None,
    date_from: dt.date | None,
    date_to: dt.date | None,
    plan: str | None,
    state: str | None,
    *,
    office_code: str | None = None,
) -> dict[str, Any]:
    """The statistics of ``region``: any region the station's administrator asks for, or, for a
    counter of ``office_code``, what that counter may see (see :func:`counter_region`)."""
    if office_code is None:
        where = parse_region(region)
    else:
        with store.engine.connect() as conn:
            where = counter_region(conn, office_code, region)
    return compute(store, make_query(where, date_from, date_to, plan, state, store.now()))


__all__ = [
    "BadFilter",
    "BadPeriod",
    "Query",
    "Region",
    "RegionNotAllowed",
    "StatsError",
    "UnknownRegion",
    "compute",
    "counter_region",
    "for_region",
    "make_query",
    "parse_region",
]
