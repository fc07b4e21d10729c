"""The sales ledger: states, purchase_count, limits, shifts, and two counters at once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from app.clock import FixedClock
from app.errors import AmountError
from app.errors import Conflict
from app.errors import InvalidTransition
from app.errors import SaleInProgress
from app.errors import ShiftError
from app.errors import ValidationError
from app.persistence.db import Database
from app.persistence.models import Customer
from app.persistence.models import Sale
from app.services import ledger
from app.services import shifts
from app.services.auth import Principal
from app.services.auth import login
from app.services.customers import customer_view

CARD = "100000000002"  # a card-meter demo customer without arrears
REMOTE = "100000000010"  # every tenth demo customer has a remote fee-control meter
WITH_ARREARS = "100000000001"  # demo customer 0 owes 30.00 arrears and a 5.00 fee


_principals: dict[tuple[int, str, str], Principal] = {}


def who(db: Database, clock: FixedClock, op: str = "t01", counter: str = "C01") -> Principal:
    """A signed-in demo operator (logged in once per database and counter)."""
    key = (id(db), op, counter)
    if key not in _principals:
        _principals[key] = login(db, op, f"demo-{op}", counter_id=counter, clock=clock)
    p = _principals[key]
    p.last_activity = clock.now()
    return p


def open_shift(db: Database, clock: FixedClock, op: str = "t01", counter: str = "C01") -> str:
    return shifts.open_shift(
        db, actor=who(db, clock, op, counter), float_fen=50000, clock=clock
    ).shift_id


def sell(
    db: Database,
    clock: FixedClock,
    customer: str = CARD,
    amount: int = 10000,
    op: str = "t01",
    counter: str = "C01",
    meter_balance: int = 0,
) -> ledger.SaleView:
    return ledger.begin_card_sale(
        db,
        actor=who(db, clock, op, counter),
        customer_no=customer,
        amount=amount,
        clock=clock,
        meter_balance=meter_balance,
    )


def test_sale_lifecycle_raises_purchase_count_once(demo_db: Database, clock: FixedClock) -> None:
    open_shift(demo_db, clock)
    s1 = sell(demo_db, clock)
    assert (s1.state, s1.purchase_count, s1.credit_fen) == ("pending", 1, 10000)
    assert customer_view(demo_db, CARD).purchase_count == 0  # not before the card is verified
    assert s1.energy_wh > 0 and s1.tariff_version_id
    done = ledger.complete_sale(demo_db, s1.sale_id, clock)
    assert done.state == "completed"
    assert customer_view(demo_db, CARD).purchase_count == 1
    with pytest.raises(InvalidTransition):
        ledger.complete_sale(demo_db, s1.sale_id, clock)
    s2 = sell(demo_db, clock)
    assert s2.purchase_count == 2


def test_unresolved_sale_blocks_the_next(demo_db: Database, clock: FixedClock) -> None:
    open_shift(demo_db, clock)
    s1 = sell(demo_db, clock)
    with pytest.raises(SaleInProgress) as info:
        sell(demo_db, clock)
    assert s1.sale_id in str(info.value)
    ledger.mark_in_doubt(demo_db, s1.sale_id, clock, "card pulled")
    with pytest.raises(SaleInProgress):
        sell(demo_db, clock)
    ledger.fail_sale(demo_db, s1.sale_id, clock)
    s2 = sell(demo_db, clock)  # a failed sale frees its purchase count
    assert s2.purchase_count == 1
    assert [s.state for s in ledger.list_sales(demo_db, customer_no=CARD)].count("failed") == 1


def test_database_refuses_two_live_sales_of_one_purchase(
    demo_db: Database, clock: FixedClock
) -> None:
    open_shift(demo_db, clock)
    s1 = sell(demo_db, clock)
    with pytest.raises(IntegrityError), demo_db.write() as session:
        original = session.get(Sale, s1.sale_id)
        assert original is not None
        session.add(
            Sale(
                **{
                    c.key: getattr(original, c.key) for c in Sale.__table__.columns if c.key != "id"
                },
                id="00000000-0000-0000-0000-000000000001",
            )
        )
        session.flush()


def test_limits_arrears_and_fees_come_first(demo_db: Database, clock: FixedClock) -> None:
    open_shift(demo_db, clock)
    with pytest.raises(AmountError, match="minimum"):
        sell(demo_db, clock, WITH_ARREARS, amount=3499)
    s = sell(demo_db, clock, WITH_ARREARS, amount=10000)
    assert (s.arrears_fen, s.fees_fen, s.credit_fen) == (3000, 500, 6500)
    ledger.complete_sale(demo_db, s.sale_id, clock)
    s2 = sell(demo_db, clock, WITH_ARREARS, amount=100)  # arrears settled by the first sale
    assert (s2.arrears_fen, s2.fees_fen, s2.credit_fen) == (0, 0, 100)


def test_credit_ceiling_limits_the_amount(demo_db: Database, clock: FixedClock) -> None:
    open_shift(demo_db, clock)
    with demo_db.write() as session:
        session.execute(
            update(Customer).where(Customer.customer_no == CARD).values(credit_ceiling=50000)
        )
    with pytest.raises(AmountError, match="maximum"):
        sell(demo_db, clock, amount=30001, meter_balance=20000)
    s = sell(demo_db, clock, amount=30000, meter_balance=20000)
    assert s.credit_fen == 30000


@pytest.mark.parametrize("amount", [0, -1, 2**31, 10**12])
def test_bad_amounts_refused(demo_db: Database, clock: FixedClock, amount: int) -> None:
    open_shift(demo_db, clock)
    with pytest.raises(AmountError):
        sell(demo_db, clock, amount=amount)
    assert ledger.list_sales(demo_db, customer_no=CARD) == []


def test_sale_needs_open_shift_active_card_customer(demo_db: Database, clock: FixedClock) -> None:
    with pytest.raises(ShiftError, match="No shift is open"):
        sell(demo_db, clock)
    open_shift(demo_db, clock)
    with pytest.raises(Conflict, match="remote"):
        sell(demo_db, clock, REMOTE)
    with demo_db.write() as session:
        session.execute(
            update(Customer).where(Customer.customer_no == CARD).values(status="closed")
        )
    with pytest.raises(Conflict, match="closed"):
        sell(demo_db, clock)


def test_shift_close_counts_cash(demo_db: Database, clock: FixedClock) -> None:
    shift_id = open_shift(demo_db, clock)
    with pytest.raises(ShiftError, match="already has an open shift"):
        open_shift(demo_db, clock, op="t02")
    ok = sell(demo_db, clock, amount=12345)
    ledger.complete_sale(demo_db, ok.sale_id, clock)
    bad = sell(demo_db, clock, customer="100000000003", amount=999)
    with pytest.raises(ShiftError, match="unfinished"):
        shifts.close_shift(demo_db, actor=who(demo_db, clock), counted_fen=0, clock=clock)
    ledger.fail_sale(demo_db, bad.sale_id, clock)
    clock.advance(hours=8)
    with pytest.raises(ValidationError, match="say why"):  # a variance needs its reason
        shifts.close_shift(
            demo_db, actor=who(demo_db, clock), counted_fen=50000 + 12345 - 100, clock=clock
        )
    closed = shifts.close_shift(
        demo_db,
        actor=who(demo_db, clock),
        counted_fen=50000 + 12345 - 100,
        clock=clock,
        reason="1.00 short",
    )
    assert closed.shift_id == shift_id
    assert (closed.expected_fen, closed.variance_fen) == (62345, -100)
    assert closed.variance_reason == "1.00 short"
    assert shifts.current_shift(demo_db, "C01") is None


def test_two_counters_sell_to_one_customer_concurrently(
    demo_db: Database, clock: FixedClock
) -> None:
    """Two real connections race for the same customer; purchase_count rises by one per
    completed sale and no purchase is sold twice."""
    open_shift(demo_db, clock, "t01", "C01")
    open_shift(demo_db, clock, "t02", "C02")
    rounds = 25
    barrier = threading.Barrier(2)
    completed: list[int] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def counter(op: str, counter_id: str) -> None:
        try:
            for _ in range(rounds):
                barrier.wait(timeout=30)
                try:
                    s = sell(demo_db, clock, op=op, counter=counter_id, amount=100)
                except SaleInProgress as exc:
                    with lock:
                        refused.append(str(exc))
                    barrier.wait(timeout=30)
                    continue
                ledger.complete_sale(demo_db, s.sale_id, clock)
                with lock:
                    completed.append(s.purchase_count or 0)
                barrier.wait(timeout=30)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=counter, args=a) for a in (("t01", "C01"), ("t02", "C02"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(completed) + len(refused) == 2 * rounds
    assert sorted(completed) == list(range(1, len(completed) + 1))
    assert customer_view(demo_db, CARD).purchase_count == len(completed)
    with demo_db.read() as session:
        counts = session.scalars(select(Sale.purchase_count).where(Sale.state == "completed"))
        assert sorted(counts) == sorted(completed)
