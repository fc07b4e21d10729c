"""A counter on the demo database with an emulated card and a meter simulator: the rig of the selling, ledger, sync and report tests."""

from __future__ import annotations

from pathlib import Path

from app.clock import FixedClock
from app.persistence.db import Database
from app.services import approvals, auth, selling, shifts
from app.settings import Settings
from cardio.meter_sim import MeterSimulator
from tests.cardkit import CardKit

CUSTOMER = "100000000002"  # a card customer without arrears (RES-TOU: i = 1)


OWING = "100000000001"  # owes 30.00 arrears and a 5.00 fee


REMOTE = "100000000010"


class Counter:
    def __init__(self, db: Database, clock: FixedClock, tmp: Path) -> None:
        self.db, self.clock = db, clock
        self.kit = CardKit(tmp)
        self.settings = Settings()
        self.teller = auth.login(db, "t01", "demo-t01", counter_id="C01", clock=clock)
        self.supervisor = auth.login(db, "s01", "demo-s01", counter_id="C01", clock=clock)
        shifts.open_shift(db, actor=self.teller, float_fen=0, clock=clock)
        self.meter = MeterSimulator(tmp / "meter.json", self.kit.keys, clock=clock)

    def open(self, customer: str = CUSTOMER, amount: int | None = 5000) -> Path:
        image = self.kit.blank()
        selling.open_account(
            self.db,
            self.kit.terminal(image),
            actor=self.teller,
            customer_no=customer,
            clock=self.clock,
            settings=self.settings,
            amount=amount,
        )
        return image

    def sell(self, image: Path, amount: int, **kw: object) -> selling.SaleOutcome:
        return selling.sell(
            self.db,
            self.kit.terminal(image),
            actor=self.teller,
            amount=amount,
            clock=self.clock,
            settings=self.settings,
            **kw,
        )  # type: ignore[arg-type]

    def to_meter(self, image: Path) -> None:
        self.meter.insert(self.kit.terminal(image))

    def approval(self, action: str, target: str, distinct: list[str] | None = None) -> str:
        return approvals.approve_on_spot(
            self.db,
            action=action,
            target=target,
            payload={},
            operator_id="t01",
            counter_id="C01",
            approver_id="s01",
            approver_role="supervisor",
            clock=self.clock,
            distinct_from=distinct or [],
        ).id
