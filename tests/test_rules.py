"""Rules that once could be changed without a test noticing, each pinned by a test that fails
when the rule is taken out:

* the offline amount limit adds what already waits unsynced to the new sale (and only what
  waits: what the central system has taken no longer counts), and the limit itself is allowed;
* a pull from the central system never lowers a customer's purchase count;
* a receipt's verification code covers the credit and the customer, not only the amount, and
  the central system checks it against the sale it holds.

Everything runs through the public services, on SQLite and PostgreSQL, against the reference
central server over HTTP where the central side takes part."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.persistence.models import Customer
from app.persistence.models import Sale
from app.services import receipts
from app.services import selling
from app.settings import OFFLINE_MAX_AMOUNT
from sync import contract as c
from sync.central import models as central_models
from sync.central.server import CentralServer
from sync.client import CentralClient
from sync.client import RetryPolicy
from sync.pull import pull_all
from sync.service import SyncService
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import OWING
from tests.rigs.counter import REMOTE
from tests.rigs.counter import Counter

LIMIT = 10_000  # fen: 100.00 yuan may wait unsynced


class Link:
    """The counter registered once with the central server: its token, its receipt key and
    a sync service over them."""

    def __init__(self, counter: Counter, central: CentralServer) -> None:
        answer = CentralClient(central.url).register(
            c.RegisterRequest(counter_id="C01", office_code="DEMO", name="test"), None
        )
        self.receipt_key = bytes.fromhex(answer.receipt_key)
        self.client = CentralClient(
            central.url,
            answer.token,
            timeout=(2.0, 5.0),
            retry=RetryPolicy(attempts=1, sleep=lambda _s: None),
        )
        self.service = SyncService(
            counter.db, self.client, counter.clock, counter_id="C01", office_code="DEMO"
        )


def sales_count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Sale)) or 0)


def remote(counter: Counter, amount: int) -> str:
    return selling.remote_payment(
        counter.db,
        actor=counter.teller,
        customer_no=REMOTE,
        amount=amount,
        clock=counter.clock,
        settings=counter.settings,
    ).sale_id


# --------------------------------------------------------------------------- offline amount limit


def test_the_offline_amount_limit_counts_what_already_waits(counter: Counter) -> None:
    """Limit 100.00: with 60.00 unsynced a sale of 50.00 is refused and one of 30.00 goes
    through; then exactly 100.00 may wait, one fen more may not.  Card sales and remote
    payments alike."""
    counter.settings.set(OFFLINE_MAX_AMOUNT.key, LIMIT)
    remote(counter, 6000)  # 60.00 waits
    image = counter.open(amount=None)  # the card binding waits too, with no money
    before = sales_count(counter.db)

    with pytest.raises(selling.OfflineLimitReached, match=f"more than {LIMIT // 100}.00 yuan"):
        counter.sell(image, 5000)  # 60 + 50 > 100
    with pytest.raises(selling.OfflineLimitReached, match=f"more than {LIMIT // 100}.00 yuan"):
        remote(counter, 5000)
    assert sales_count(counter.db) == before  # a refused sale leaves nothing behind
    with counter.db.read() as session:
        denied = session.scalars(
            select(AuditEntry.action).where(AuditEntry.action == "offline_limit")
        ).all()
    assert len(denied) == 2

    assert counter.sell(image, 3000).sale.state == "completed"  # 60 + 30 = 90 waits
    counter.to_meter(image)
    with pytest.raises(selling.OfflineLimitReached):
        counter.sell(image, 1001)  # 90 + 10.01 > 100
    assert counter.sell(image, 1000).sale.state == "completed"  # exactly 100.00 waits
    counter.to_meter(image)
    with pytest.raises(selling.OfflineLimitReached):
        counter.sell(image, 1)  # one fen over the limit
    with pytest.raises(selling.OfflineLimitReached):
        remote(counter, 1)


def test_what_the_central_system_took_no_longer_counts(
    counter: Counter, central: CentralServer
) -> None:
    """After a sync round the 100.00 that waited are sent: a sale of 50.00 goes through, and
    the limit counts from there (50.00 waits, 50.01 more is refused)."""
    counter.settings.set(OFFLINE_MAX_AMOUNT.key, LIMIT)
    remote(counter, 6000)
    image = counter.open(amount=4000)  # 60 + 40 = 100 waits
    counter.to_meter(image)
    with pytest.raises(selling.OfflineLimitReached):
        counter.sell(image, 5000)
    link = Link(counter, central)
    report = link.service.run_round()
    assert report.push.failed == 0 and report.push.sent == 3  # binding, remote, card sale

    assert counter.sell(image, 5000).sale.state == "completed"  # only these 50.00 wait
    counter.to_meter(image)
    with pytest.raises(selling.OfflineLimitReached):
        counter.sell(image, 5001)
    assert counter.sell(image, 5000).sale.state == "completed"  # 100.00 again, allowed


# --------------------------------------------------------------------------- purchase count


def central_customer(central: CentralServer, customer_no: str, **values: Any) -> None:
    """Change a customer in the central archive, so the next pull brings it again."""
    t = central_models.customers

    def work(tx: Any) -> None:
        tx.conn.execute(update(t).where(t.c.customer_no == customer_no).values(**values))
        tx.touch_customer(customer_no)

    central.store.write(work, ("customers",))


def local_customer(db: Database, customer_no: str) -> tuple[int, str]:
    with db.read() as session:
        row = session.execute(
            select(Customer.purchase_count, Customer.address).where(
                Customer.customer_no == customer_no
            )
        ).one()
    return int(row.purchase_count), str(row.address)


def test_a_pull_never_lowers_a_purchase_count(counter: Counter, central: CentralServer) -> None:
    """The counter sold purchases 1 and 2; the central archive says 0 (nothing sent yet), and
    later, after the sales went up, says 1.  Each pull brings the customer (its new address is
    applied) and the counter keeps purchase count 2; the next sale is purchase 3."""
    image = counter.open()
    counter.to_meter(image)
    counter.sell(image, 1000)
    assert local_customer(counter.db, CUSTOMER)[0] == 2
    link = Link(counter, central)

    central_customer(central, CUSTOMER, address="一号路 1 No. 1 Road")
    held = central.store.customer(CUSTOMER)
    assert held is not None and held.purchase_count == 0
    report = pull_all(counter.db, link.client, counter.clock, counter_id="C01")
    assert report.customers_changed >= 1
    assert local_customer(counter.db, CUSTOMER) == (2, "一号路 1 No. 1 Road")

    link.service.run_round()  # the sales go up: the central count follows them
    held = central.store.customer(CUSTOMER)
    assert held is not None and held.purchase_count == 2
    central_customer(central, CUSTOMER, purchase_count=1, address="二号路 2 No. 2 Road")
    link.service.run_round()
    assert local_customer(counter.db, CUSTOMER) == (2, "二号路 2 No. 2 Road")

    counter.to_meter(image)
    assert counter.sell(image, 100).sale.purchase_count == 3
    # and a higher central count is taken (a purchase made at another counter)
    central_customer(central, CUSTOMER, purchase_count=7)
    link.service.run_round()
    assert local_customer(counter.db, CUSTOMER)[0] == 7


# --------------------------------------------------------------------------- receipt code


def test_the_receipt_code_covers_credit_and_customer(
    counter: Counter, central: CentralServer
) -> None:
    """A sale to a customer who owes 35.00: amount 100.00, credit 65.00.  The central system
    accepts the printed code and refuses a code made for another credit, another customer or
    another amount, each changed alone."""
    image = counter.open(OWING, amount=None)
    sale = counter.sell(image, 10_000).sale
    assert (sale.amount_fen, sale.credit_fen) == (10_000, 6500)
    link = Link(counter, central)
    assert link.service.run_round().push.failed == 0
    data = receipts.original_receipt(
        counter.db, sale.sale_id, settings=counter.settings, key=link.receipt_key
    )
    assert (data.customer_no, data.amount, data.credit) == (OWING, 10_000, 6500)
    check = link.client.check_receipt(sale.sale_id, data.verification_code)
    assert (check.valid, check.known, check.amount) == (True, True, 10_000)

    def code(**change: Any) -> str:
        fields = {
            "customer_no": data.customer_no,
            "amount": data.amount,
            "credit": data.credit,
            **change,
        }
        return receipts.verification_code(link.receipt_key, sale.sale_id, **fields)

    assert code() == data.verification_code
    for altered in ({"credit": 10_000}, {"credit": 6501}, {"customer_no": CUSTOMER}):
        forged = code(**altered)
        assert forged != data.verification_code, altered
        answer = link.client.check_receipt(sale.sale_id, forged)
        assert (answer.valid, answer.known, answer.amount) == (False, True, None), altered
    assert not link.client.check_receipt(sale.sale_id, code(amount=6500)).valid
