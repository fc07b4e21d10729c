"""Data for the reference central server: the demo office, synthetic archives, and the small
central-side changes tests make (a new tariff version, a closed customer, a job).

:func:`seed_demo` puts in exactly what ``cardvend demo`` puts into a counter (office DEMO, the
three tariff plans effective at the switch-over, the 1,000 demo customers with their arrears
under the same ``ref``\\ s), plus three open management-card jobs.  Running it again adds only
what is missing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

from app.domain.customers import Thresholds
from app.services import demo
from sync import contract as c
from sync.central.store import CentralStore

JOB_NAMESPACE = uuid.UUID("6f1c7d2e-8a51-5b0e-9c43-1d2a3b4c5d6e")
FIRST_SYNTHETIC_CUSTOMER = 300000000001
FIRST_SYNTHETIC_METER = 400000000001
DEMO_JOBS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("price", {"plan_code": "RES-TOU", "version_no": 1}),
    (
        "purchase_params",
        {"alarm1": 2000, "alarm2": 1000, "overdraft_limit": 0, "credit_ceiling": 99_999_999},
    ),
    ("reading_day", {"reading_day": 15, "reading_hour": 0}),
)


@dataclass
class SeedReport:
    plans_added: int = 0
    customers_added: int = 0
    jobs_added: int = 0


def demo_job_id(kind: str, customer_no: str) -> str:
    return str(uuid.uuid5(JOB_NAMESPACE, f"demo-job/{kind}/{customer_no}"))


def _thresholds() -> dict[str, int]:
    """The default thresholds as the archive's columns (alarm1, alarm2, overdraft_limit,
    credit_ceiling)."""
    return asdict(Thresholds())


def seed_tariffs(store: CentralStore) -> int:
    """The demo tariff plans, version 1, effective at the demo switch-over; answers how many
    versions were added."""
    before = store.last_seq("tariffs")
    for code, (name, spec) in demo.PLANS.items():
        store.add_tariff_version(code, name, spec, demo.SWITCH_OVER, version_no=1)
    return store.last_seq("tariffs") - before


def demo_customer_record(i: int) -> dict[str, Any]:
    """The i-th demo customer as the central archive holds it (with its open arrears)."""
    d = demo.demo_customer(i)
    return {
        "customer_no": d["customer_no"],
        "name": d["name"],
        "address": d["address"],
        "phone": d["phone"],
        "meter_no": d["meter_no"],
        "meter_kind": d["meter_kind"],
        "status": "active",
        "office_code": demo.OFFICE,
        "tariff_plan": d["tariff_plan"],
        "ct_ratio": d["ct_ratio"],
        "pt_ratio": d["pt_ratio"],
        **_thresholds(),
        "card_serial": None,
        "purchase_count": 0,
        "arrears": demo.demo_arrears(i),
    }


DEMO_PROVINCE, DEMO_CITY = "浙江", "杭州"  # the demo office's region


def seed_demo(store: CentralStore, now: dt.datetime) -> SeedReport:
    """What ``cardvend demo`` loads into a counter, plus three open jobs (one of each kind,
    for the first remote-meter customers).  Idempotent."""
    report = SeedReport()
    if not any(o["code"] == demo.OFFICE for o in store.offices()):
        store.add_office(demo.OFFICE, "Demo office", DEMO_PROVINCE, DEMO_CITY)
    report.plans_added = seed_tariffs(store)
    report.customers_added = store.add_customers(
        demo_customer_record(i) for i in range(demo.CUSTOMERS)
    )
    remote = [
        demo_customer_record(i)["customer_no"]
        for i in range(demo.CUSTOMERS)
        if demo.demo_customer(i)["meter_kind"] == "remote"
    ]
    for (kind, params), customer_no in zip(DEMO_JOBS, remote, strict=False):
        job_id = demo_job_id(kind, customer_no)
        if store.job(job_id) is None:
            store.add_job(job_id, kind, customer_no, params, created_at=now)
            report.jobs_added += 1
    return report


def synthetic_customers(
    n: int, start: int = FIRST_SYNTHETIC_CUSTOMER, *, office_code: str = demo.OFFICE
) -> Iterator[dict[str, Any]]:
    """``n`` synthetic customers numbered from ``start``: every 10th a remote meter, every
    25th owing 30 yuan (ref ``SYN-A-<customer_no>``), plans cycling through the demo plans."""
    plans = tuple(demo.PLANS)
    thresholds = _thresholds()
    meter0 = FIRST_SYNTHETIC_METER + (start - FIRST_SYNTHETIC_CUSTOMER)
    for i in range(n):
        no = f"{start + i:012d}"
        arrears: list[dict[str, Any]] = []
        if i % 25 == 0:
            arrears.append(demo.arrears_item(f"SYN-A-{no}", "arrears", "电费欠费", 3000))
        yield {
            "customer_no": no,
            "name": f"用户{i:07d}",
            "address": f"合成市测试路{i // 16 + 1}号",
            "phone": f"139{(start + i) % 100_000_000:08d}",
            "meter_no": f"{meter0 + i:012d}",
            "meter_kind": "remote" if (i + 1) % 10 == 0 else "card",
            "status": "active",
            "office_code": office_code,
            "tariff_plan": plans[i % len(plans)],
            "ct_ratio": 1,
            "pt_ratio": 1,
            **thresholds,
            "card_serial": None,
            "purchase_count": 0,
            "arrears": arrears,
        }


def seed_synthetic(
    store: CentralStore,
    n: int,
    start: int = FIRST_SYNTHETIC_CUSTOMER,
    *,
    office_code: str = demo.OFFICE,
    chunk: int = 10_000,
) -> int:
    """Insert ``n`` synthetic customers fast (Core executemany in chunks; a million in well
    under a minute on SQLite) and the demo tariff plans they refer to.  Answers how many
    customers were added (existing numbers are skipped)."""
    seed_tariffs(store)
    return store.add_customers(synthetic_customers(n, start, office_code=office_code), chunk=chunk)


# --------------------------------------------------------------------------- central-side changes


def add_tariff_version(
    store: CentralStore,
    plan_code: str,
    spec: Mapping[str, Any],
    effective_from: dt.datetime,
    *,
    plan_name: str | None = None,
    version_no: int | None = None,
) -> c.TariffVersionRecord:
    """Issue the next version of a plan (the plan's demo name unless given)."""
    name = plan_name or demo.PLANS.get(plan_code, (plan_code, {}))[0]
    return store.add_tariff_version(plan_code, name, spec, effective_from, version_no=version_no)


def set_customer_status(store: CentralStore, customer_no: str, status: str) -> c.CustomerRecord:
    """Pause, close or reopen a customer (it reappears in the next delta pull)."""
    if status not in ("active", "paused", "closed"):
        raise ValueError(f"unknown customer status {status!r}")
    return store.update_customer(customer_no, status=status)


def add_job(
    store: CentralStore,
    kind: str,
    customer_no: str,
    params: Mapping[str, Any],
    *,
    job_id: str | None = None,
    status: str = "open",
    created_at: dt.datetime | None = None,
) -> c.Job:
    """A management-card job for a customer (a random id unless given)."""
    return store.add_job(
        job_id or str(uuid.uuid4()), kind, customer_no, params, status=status, created_at=created_at
    )
