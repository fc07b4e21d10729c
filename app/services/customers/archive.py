"""The customer archive: one customer's view, read, count and add."""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.customers import CustomerStatus
from app.domain.customers import MeterKind
from app.domain.customers import Thresholds
from app.domain.customers import check_customer_no
from app.domain.customers import check_meter_no
from app.domain.customers import check_phone
from app.domain.customers import check_text
from app.domain.customers import phone_digits
from app.errors import NotFound
from app.i18n import N_
from app.persistence.db import Database
from app.persistence.models import Customer
from app.persistence.models import TariffPlan

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class CustomerView:
    customer_no: str
    name: str
    address: str
    phone: str
    meter_no: str
    meter_kind: str
    status: str
    office: str
    tariff_plan: str
    ct_ratio: int
    pt_ratio: int
    alarm1: int
    alarm2: int
    overdraft_limit: int
    credit_ceiling: int
    card_serial: str | None
    purchase_count: int
    status_reason: str = ""  # why the account is paused or closed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _view(c: Customer, plan_code: str) -> CustomerView:
    return CustomerView(
        c.customer_no,
        c.name,
        c.address,
        c.phone,
        c.meter_no,
        c.meter_kind,
        c.status,
        c.office_code,
        plan_code,
        c.ct_ratio,
        c.pt_ratio,
        c.alarm1,
        c.alarm2,
        c.overdraft_limit,
        c.credit_ceiling,
        c.card_serial,
        c.purchase_count,
        c.status_reason or "",
    )


def customer_or_none(
    session: Session, customer_no: str, *, for_update: bool = False
) -> Customer | None:
    """The customer ``customer_no`` (row-locked with ``for_update``), or None: the caller says
    what a missing customer means."""
    query = select(Customer).where(Customer.customer_no == customer_no)
    return session.scalar(query.with_for_update() if for_update else query)


def get_customer(session: Session, customer_no: str, *, for_update: bool = False) -> Customer:
    check_customer_no(customer_no)
    c = customer_or_none(session, customer_no, for_update=for_update)
    if c is None:
        raise NotFound(what=N_("Customer"), key=customer_no)
    return c


def customer_view(db: Database, customer_no: str) -> CustomerView:
    with db.read() as session:
        return view_in_session(session, get_customer(session, customer_no))


def view_in_session(session: Session, c: Customer) -> CustomerView:
    code = session.scalar(select(TariffPlan.code).where(TariffPlan.id == c.tariff_plan_id))
    return _view(c, code or "")


def count_customers(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Customer)) or 0)


def add_customer(
    session: Session,
    *,
    customer_no: str,
    name: str,
    meter_no: str,
    meter_kind: MeterKind,
    tariff_plan: str,
    office: str,
    clock: Clock,
    address: str = "",
    phone: str = "",
    ct_ratio: int = 1,
    pt_ratio: int = 1,
    thresholds: Thresholds | None = None,
) -> Customer:
    t = (thresholds or Thresholds()).validate()
    plan_id = session.scalar(select(TariffPlan.id).where(TariffPlan.code == tariff_plan))
    if plan_id is None:
        raise NotFound(what=N_("Tariff plan"), key=tariff_plan)
    phone = check_phone(phone)
    c = Customer(
        customer_no=check_customer_no(customer_no),
        name=check_text(name, "name", max_len=64),
        address=check_text(address, "address", max_len=200, required=False),
        phone=phone,
        phone_rev=phone_digits(phone)[::-1],
        meter_no=check_meter_no(meter_no),
        meter_kind=MeterKind(meter_kind).value,
        status=CustomerStatus.ACTIVE.value,
        office_code=office,
        tariff_plan_id=plan_id,
        ct_ratio=ct_ratio,
        pt_ratio=pt_ratio,
        alarm1=t.alarm1,
        alarm2=t.alarm2,
        overdraft_limit=t.overdraft_limit,
        credit_ceiling=t.credit_ceiling,
        purchase_count=0,
        updated_at=clock.now(),
    )
    session.add(c)
    session.flush()
    return c
