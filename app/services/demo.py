"""Demo data: office DEMO, its operators, three tariff plans and 1,000 customers.

Idempotent: running it again adds only what is missing.  The demo passwords (``demo-`` + id)
are for demonstration and training only, so the demo goes only into a database of its own: one
that holds an operator or a customer that is not the demo's (a real administrator, imported or
pulled customers) is refused with :class:`DemoRefused` and nothing is written.  An operator is the
demo's when its id is one of :data:`OPERATORS` and it belongs to office ``DEMO``; a customer when
it belongs to office ``DEMO`` and its number is one of the 1,000 demo numbers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.customers import MeterKind
from app.domain.operators import Role
from app.errors import CardVendError
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import ArrearsItem
from app.persistence.models import Customer
from app.persistence.models import Office
from app.persistence.models import Operator
from app.persistence.models import TariffVersion
from app.services import audit
from app.services.customers.importing import _insert_batch
from app.services.customers.importing import new_account_values
from app.services.operators import add_operator
from app.services.tariffs import add_version
from app.services.tariffs import ensure_plan

OFFICE = "DEMO"
OPERATORS = (
    ("t01", "王丽 Wang Li", Role.TELLER),
    ("t02", "李强 Li Qiang", Role.TELLER),
    ("s01", "张敏 Zhang Min", Role.SUPERVISOR),
    ("f01", "刘伟 Liu Wei", Role.TECHNICIAN),
    ("a01", "陈静 Chen Jing", Role.ADMIN),
)
SWITCH_OVER = dt.datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
PLANS: dict[str, tuple[str, dict[str, Any]]] = {
    "RES-FLAT": ("居民单一电价 Residential flat", {"kind": "flat", "flat_rate": 5283}),
    "RES-TOU": (
        "居民分时电价 Residential time-of-use",
        {
            "kind": "tou",
            "periods": [{"name": "peak", "rate": 5583}, {"name": "valley", "rate": 3583}],
            "schedule": [
                {"start_minute": 0, "period": "valley"},
                {"start_minute": 480, "period": "peak"},
                {"start_minute": 1320, "period": "valley"},
            ],
        },
    ),
    "RES-TIER": (
        "居民阶梯电价 Residential tiered",
        {
            "kind": "tiered",
            "flat_rate": 4883,
            "tiers": [
                {"upto_kwh": 2160, "surcharge": 0},
                {"upto_kwh": 4200, "surcharge": 500},
                {"upto_kwh": None, "surcharge": 3000},
            ],
            "reset_month": 1,
            "reset_day": 1,
        },
    ),
}
FIRST_CUSTOMER = 100000000001
FIRST_METER = 200000000001
CUSTOMERS = 1000

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
_STREETS = ("人民路", "解放路", "建设路", "和平路", "胜利街", "中山路", "光明街", "新华路")


class DemoRefused(CardVendError):
    code = "demo_refused"
    template = N_(
        "This database holds {what} that are not the demo's (such as {example}). The demo data "
        "comes with published passwords and goes only into a database of its own: nothing was "
        "loaded. Use an empty database for the demo (--home DIR or --db URL)."
    )


def foreign_data(session: Session) -> tuple[str, str] | None:
    """The first operator or customer that is not the demo's, as (what, id), or None."""
    op = session.scalar(
        select(Operator.id)
        .where(
            or_(
                Operator.id.not_in([op_id for op_id, _name, _role in OPERATORS]),
                Operator.office_code.is_distinct_from(OFFICE),
            )
        )
        .order_by(Operator.id)
        .limit(1)
    )
    if op is not None:
        return N_("operators"), op
    first, last = str(FIRST_CUSTOMER), str(FIRST_CUSTOMER + CUSTOMERS - 1)
    customer = session.scalar(
        select(Customer.customer_no)
        .where(
            or_(
                Customer.office_code.is_distinct_from(OFFICE),
                func.length(Customer.customer_no) != len(first),
                Customer.customer_no < first,
                Customer.customer_no > last,
            )
        )
        .limit(1)
    )
    if customer is not None:
        return N_("customers"), customer
    return None


@dataclass
class DemoReport:
    operators_added: int = 0
    plans_added: int = 0
    customers_added: int = 0


def demo_customer(i: int) -> dict[str, Any]:
    """The i-th demo customer (0-based), deterministic."""
    name = _SURNAMES[i % len(_SURNAMES)] + _GIVEN[(i * 7) % len(_GIVEN)]
    if i % 3 == 0:
        name += _GIVEN[(i * 11 + 3) % len(_GIVEN)]
    plan = ("RES-FLAT", "RES-TOU", "RES-TIER")[i % 3]
    kind = MeterKind.REMOTE if (i + 1) % 10 == 0 else MeterKind.CARD
    phone = f"13{(i * 7919) % 10}{(50000000 + i * 104729) % 100000000:08d}"
    return {
        "customer_no": str(FIRST_CUSTOMER + i),
        "name": name,
        "address": f"示范市{_STREETS[i % len(_STREETS)]}{i // 8 + 1}号",
        "phone": phone,
        "meter_no": str(FIRST_METER + i),
        "meter_kind": kind.value,
        "tariff_plan": plan,
        "office": OFFICE,
        "ct_ratio": 1,
        "pt_ratio": 1,
    }


def demo_arrears(i: int) -> list[dict[str, Any]]:
    """What the i-th demo customer owes: every 25th arrears collected first, every 40th a fee.
    ``ref`` is the central system's id of the item (the reference central server seeds the same)."""
    cno = str(FIRST_CUSTOMER + i)
    items: list[dict[str, Any]] = []
    if i % 25 == 0:
        items.append(arrears_item(f"DEMO-A-{cno}", "arrears", "电费欠费", 3000))
    if i % 40 == 0:
        items.append(arrears_item(f"DEMO-F-{cno}", "fee", "工本费", 500))
    return items


def arrears_item(ref: str, kind: str, description: str, amount: int) -> dict[str, Any]:
    """A demo arrears item (``kind`` arrears or fee, ``amount`` in fen) that must be collected
    first, in the form the customer rows carry it."""
    return {
        "ref": ref,
        "kind": kind,
        "description": description,
        "amount": amount,
        "must_collect": True,
    }


def load_demo(db: Database, clock: Clock) -> DemoReport:
    """Load what is missing of the demo data; :class:`DemoRefused` (nothing written) when the
    database holds operators or customers of its own."""
    report = DemoReport()
    now = clock.now()
    with db.write() as session:
        foreign = foreign_data(session)
        if foreign is not None:
            raise DemoRefused(what=foreign[0], example=foreign[1])
        if session.get(Office, OFFICE) is None:
            session.add(Office(code=OFFICE, name="示范营业厅 Demo office"))
            session.flush()
        for op_id, name, role in OPERATORS:
            if session.get(Operator, op_id) is None:
                add_operator(session, op_id, name, role, f"demo-{op_id}", clock, office=OFFICE)
                report.operators_added += 1
        plan_ids: dict[str, int] = {}
        for code, (name, spec) in PLANS.items():
            plan = ensure_plan(session, code, name)
            plan_ids[code] = plan.id
            has_version = session.scalar(
                select(func.count())
                .select_from(TariffVersion)
                .where(TariffVersion.plan_id == plan.id)
            )
            if not has_version:
                add_version(session, code, spec, SWITCH_OVER, clock)
                report.plans_added += 1
        rows = []
        for i in range(CUSTOMERS):
            c = demo_customer(i)
            rows.append(
                {
                    "customer_no": c["customer_no"],
                    "name": c["name"],
                    "address": c["address"],
                    "phone": c["phone"],
                    "phone_rev": c["phone"][::-1],
                    "meter_no": c["meter_no"],
                    "meter_kind": c["meter_kind"],
                    "status": "active",
                    "office_code": OFFICE,
                    "tariff_plan_id": plan_ids[c["tariff_plan"]],
                    "ct_ratio": 1,
                    "pt_ratio": 1,
                    **new_account_values(now),
                }
            )
        inserted = _insert_batch(session, rows)
        report.customers_added = len(inserted)
        for i in range(CUSTOMERS):
            cno = str(FIRST_CUSTOMER + i)
            items = demo_arrears(i)
            if cno not in inserted or not items:
                continue
            cid = session.scalar(select(Customer.id).where(Customer.customer_no == cno))
            assert cid is not None
            for item in items:
                session.add(ArrearsItem(customer_id=cid, created_at=now, **item))
        if report.operators_added or report.plans_added or report.customers_added:
            audit.Actor(None, "-", clock).record(
                session,
                AuditAction.DEMO_LOAD,
                OFFICE,
                detail={
                    "operators": report.operators_added,
                    "plans": report.plans_added,
                    "customers": report.customers_added,
                },
            )
    return report
