"""A counter on the demo database with an emulated card and a meter simulator: the rig of the selling, ledger, sync and report tests."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.clock import FixedClock
from app.domain.card import CardContents
from app.persistence.db import Database
from app.persistence.models import Customer
from app.ports import CardTerminal
from app.services import approvals
from app.services import auth
from app.services import ledger
from app.services import selling
from app.services import shifts
from app.services.auth import Principal
from app.services.customers import CustomerView
from app.services.demo import load_demo
from app.settings import Settings
from cardio.meter_sim import MeterSimulator
from tests.cardkit import CardKit

CUSTOMER = "100000000002"  # a card customer without arrears (RES-TOU: i = 1)


OWING = "100000000001"  # owes 30.00 arrears and a 5.00 fee


REMOTE = "100000000010"


PURCHASE_UPDATE_APDU = 5  # a sale's APDUs: the secure UPDATE of the purchase file is the fifth


def sell_pulled(
    kit: CardKit,
    image: Path,
    sell: Callable[[CardTerminal, CardContents], object],
    *,
    applied: bool,
) -> selling.SaleInDoubt:
    """``sell(terminal, contents)`` on the card ``image`` (already read) with the card pulled
    during the secure UPDATE of the purchase file (``applied``: whether the card took the write
    before its answer was lost): the sale is left in doubt."""
    card = kit.os(image)
    terminal = kit.terminal(image, card)
    contents = terminal.read()
    card.pull_after(PURCHASE_UPDATE_APDU, applied=applied)
    with pytest.raises(selling.SaleInDoubt) as info:
        sell(terminal, contents)
    return info.value


def approved_on_spot(
    db: Database,
    clock: FixedClock,
    action: str,
    target: str,
    *,
    counter_id: str = "C01",
    distinct: list[str],
) -> str:
    """Teller t01's ``action`` on ``target`` approved on the spot by supervisor s01 (someone
    other than ``distinct``); the approval's id."""
    return approvals.approve_on_spot(
        db,
        action=action,
        target=target,
        payload={},
        operator_id="t01",
        counter_id=counter_id,
        approver_id="s01",
        approver_role="supervisor",
        clock=clock,
        distinct_from=distinct,
    ).id


class Counter:
    def __init__(self, db: Database, clock: FixedClock, tmp: Path) -> None:
        self.db, self.clock = db, clock
        self.kit = CardKit(tmp)
        self.settings = Settings()
        self.teller = auth.login(db, "t01", "demo-t01", counter_id="C01", clock=clock)
        self.supervisor = auth.login(db, "s01", "demo-s01", counter_id="C01", clock=clock)
        shifts.open_shift(db, actor=self.teller, float_fen=0, clock=clock)
        self.meter = MeterSimulator(tmp / "meter.json", self.kit.keys, clock=clock)

    def service(self, use_case: Callable[..., Any], *args: object, **kw: object) -> Any:
        """``use_case(db, *args, **kw)`` by the teller at this counter (``kw`` may name another
        ``actor``), with its clock and settings."""
        context = {"actor": self.teller, "clock": self.clock, "settings": self.settings}
        return use_case(self.db, *args, **{**context, **kw})

    def open(self, customer: str = CUSTOMER, amount: int | None = 5000) -> Path:
        """A blank card opened as ``customer``'s card, with a first sale of ``amount``."""
        image = self.kit.blank()
        self.open_account(self.kit.terminal(image), customer, amount)
        return image

    def open_account(
        self, terminal: CardTerminal, customer: str, amount: int | None
    ) -> tuple[CustomerView, selling.SaleOutcome | None]:
        return self.service(selling.open_account, terminal, customer_no=customer, amount=amount)

    def sell(self, image: Path, amount: int, **kw: object) -> selling.SaleOutcome:
        return self.sell_on(self.kit.terminal(image), amount, **kw)

    def sell_on(self, terminal: CardTerminal, amount: int, **kw: object) -> selling.SaleOutcome:
        return self.service(selling.sell, terminal, amount=amount, **kw)

    def sell_pulled(self, image: Path, amount: int, *, applied: bool) -> selling.SaleInDoubt:
        """A sale left in doubt by a card pulled during its purchase write (see :func:`sell_pulled`)."""
        return sell_pulled(
            self.kit,
            image,
            lambda terminal, contents: self.sell_on(terminal, amount, contents=contents),
            applied=applied,
        )

    def recover(self, image: Path) -> selling.Assessment:
        """Present the card: whatever it can decide is decided."""
        return selling.recover_with_card(
            self.db, self.kit.terminal(image), clock=self.clock, settings=self.settings
        )

    def reverse(self, image: Path, sale_id: str) -> ledger.SaleView:
        """Reverse a sale on its card, approved on the spot by a supervisor other than the seller."""
        request = self.approval("reverse", sale_id, ["t01"])
        return self.service(
            selling.reverse_sale,
            self.kit.terminal(image),
            sale_id=sale_id,
            approval_request=request,
        )

    def replace(self, new: Path, customer: str = CUSTOMER) -> tuple[CustomerView, int]:
        """Replace the customer's card by the blank card ``new``, approved on the spot: (view, fee)."""
        return self.replace_card(
            self.kit.terminal(new), self.approval("replace_card", customer), customer
        )

    def replace_card(
        self, terminal: CardTerminal, request: str, customer: str = CUSTOMER
    ) -> tuple[CustomerView, int]:
        """Replace the customer's card by the blank card in ``terminal``, under ``request``."""
        return self.service(
            selling.replace_card, terminal, customer_no=customer, approval_request=request
        )

    def remote(self, amount: int, customer: str = REMOTE, **kw: object) -> ledger.SaleView:
        """A payment for a remote fee-control meter (``kw`` may name another ``actor``)."""
        return self.service(selling.remote_payment, customer_no=customer, amount=amount, **kw)

    def rewrite(self, image: Path) -> selling.SaleOutcome:
        """Write the customer's last purchase onto the card again."""
        return self.service(selling.rewrite, self.kit.terminal(image))

    def other_teller(self) -> Principal:
        """Teller t02 signed in at a second counter, C02, with a shift open there."""
        other = auth.login(self.db, "t02", "demo-t02", counter_id="C02", clock=self.clock)
        shifts.open_shift(self.db, actor=other, float_fen=0, clock=self.clock)
        return other

    def customer_row(self, customer: str = CUSTOMER) -> Customer:
        """The customer's row as stored now (detached from its session)."""
        with self.db.read() as session:
            row = session.scalar(select(Customer).where(Customer.customer_no == customer))
            assert row is not None
            session.expunge(row)
            return row

    def to_meter(self, image: Path) -> None:
        self.meter.insert(self.kit.terminal(image))

    def approval(self, action: str, target: str, distinct: list[str] | None = None) -> str:
        return approved_on_spot(self.db, self.clock, action, target, distinct=distinct or [])


def counter_on_sqlite(
    tmp_path: Path, clock: FixedClock, db_file: Path | None = None
) -> Iterator[Counter]:
    """A counter on its own SQLite database (``db_file``, default ``counter.db`` in
    ``tmp_path``) with the demo data, for a module's fixture that wants no PostgreSQL variant
    (``yield from`` it)."""
    db = Database(str(db_file or tmp_path / "counter.db"))
    db.migrate()
    load_demo(db, clock)
    yield Counter(db, clock, tmp_path)
    db.dispose()
