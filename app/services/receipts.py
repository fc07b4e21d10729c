"""Receipts: what a sale's receipt shows, its verification code, and controlled reprints.

- The original receipt is printed (or saved) when the sale completes; it is copy 0 and is not
  counted. Every later print is a reprint: it needs the ``reprint`` permission and, where the
  approval rules ask (by default a supervisor other than the asker), an approval; it gets the
  next copy number, is recorded in ``receipt_prints`` and audited (``receipt_reprint``), and is
  marked 副本 / COPY n on paper.
- A copy is counted only once it exists: :func:`reprint` takes the function that renders and
  writes it, and records the copy in the same transaction after it returned.
- The verification code is an HMAC-SHA256 of the sale's id, customer, amount and credit under
  the counter's receipt key (issued by the central system at registration, see sync/; a local
  random key before that), cut to 8 base32 characters. The central system recomputes it from
  the sale it holds: a receipt whose amount was altered, or that no sale backs, fails the check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.clock import aware
from app.domain.audit import AuditAction
from app.domain.permissions import Action
from app.domain.receipt import ReceiptData
from app.persistence.db import Database
from app.persistence.models import Customer
from app.persistence.models import Office
from app.persistence.models import Operator
from app.persistence.models import ReceiptPrint
from app.persistence.models import TariffPlan
from app.persistence.models import TariffVersion
from app.services import approvals
from app.services import audit
from app.services import ledger
from app.services.auth import Principal
from app.settings import TIME_ZONE
from app.settings import Settings


def verification_code(key: bytes, sale_id: str, customer_no: str, amount: int, credit: int) -> str:
    message = f"{sale_id}|{customer_no}|{amount}|{credit}".encode()
    mac = hmac.new(key, message, hashlib.sha256).digest()
    return base64.b32encode(mac[:5]).decode("ascii")


def _receipt(
    session: Session, sale_id: str, settings: Settings, key: bytes, copy_no: int
) -> ReceiptData:
    sale = ledger.load_sale(session, sale_id)
    customer = session.get(Customer, sale.customer_id)
    version = session.get(TariffVersion, sale.tariff_version_id)
    operator = session.get(Operator, sale.operator_id)
    assert customer is not None and version is not None and operator is not None
    plan = session.get(TariffPlan, version.plan_id)
    office = session.get(Office, customer.office_code)
    assert plan is not None
    change = None if sale.cash_received is None else sale.cash_received - sale.amount
    return ReceiptData(
        sale_id=sale.id,
        kind=sale.kind,
        state=sale.state,
        office_code=customer.office_code,
        office_name=office.name if office else customer.office_code,
        counter_id=sale.counter_id,
        operator_id=operator.id,
        operator_name=operator.name,
        created_at=aware(sale.created_at),
        time_zone=settings.value(TIME_ZONE),
        customer_no=customer.customer_no,
        customer_name=customer.name,
        address=customer.address,
        meter_no=customer.meter_no,
        purchase_count=sale.purchase_count,
        amount=sale.amount,
        arrears=sale.arrears,
        fees=sale.fees,
        credit=sale.credit,
        tariff_plan=plan.code,
        tariff_name=plan.name,
        tariff_version_no=version.version_no,
        energy_wh=sale.energy_wh,
        meter_balance=sale.meter_balance,
        cash_received=sale.cash_received,
        change=change,
        verification_code=verification_code(
            key, sale.id, customer.customer_no, sale.amount, sale.credit
        ),
        copy_no=copy_no,
        training=sale.training,
    )


def original_receipt(db: Database, sale_id: str, *, settings: Settings, key: bytes) -> ReceiptData:
    """The receipt handed over with the sale (copy 0)."""
    with db.read() as session:
        return _receipt(session, sale_id, settings, key, 0)


def reprint(
    db: Database,
    *,
    actor: Principal,
    sale_id: str,
    settings: Settings,
    key: bytes,
    clock: Clock,
    approval_request: str | None = None,
    deliver: Callable[[ReceiptData], None] | None = None,
) -> ReceiptData:
    """A copy of a sale's receipt: permission, approval where the rules ask, counted, audited.

    ``deliver`` renders the copy and writes it out (a file, a printer), inside the unit of work:
    the copy is counted, audited and the approval used up only once it returned; when it
    raises, nothing is recorded and the approval can be used again.  Without ``deliver`` the
    copy is counted when it is handed back (the caller prints it)."""
    actor.authorize(Action.REPRINT, clock)
    with db.write() as session:
        receipt = _receipt(session, sale_id, settings, key, 0)
        approval = approvals.require_by(
            session, actor, approval_request, action=Action.REPRINT, target=sale_id, clock=clock
        )
        done = session.scalar(
            select(func.count()).select_from(ReceiptPrint).where(ReceiptPrint.sale_id == sale_id)
        )
        copy_no = int(done or 0) + 1
        if deliver is not None:
            deliver(replace(receipt, copy_no=copy_no))
        session.add(
            ReceiptPrint(
                sale_id=sale_id,
                copy_no=copy_no,
                operator_id=actor.operator_id,
                approval_id=approval.id if approval else None,
                counter_id=actor.counter_id,
                printed_at=clock.now(),
            )
        )
        audit.Actor.of(actor, clock).record(
            session,
            AuditAction.RECEIPT_REPRINT,
            sale_id,
            detail={"copy_no": copy_no, "approval": approval.id if approval else None},
        )
    return replace(receipt, copy_no=copy_no)
