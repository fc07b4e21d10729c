"""One counter of tests/test_multi_counter.py, a process of its own on the office database:

    python -m tests.rigs.multi_seller PLAN.json

It signs its teller in under its own counter id, opens its shift, opens the accounts it is
given, waits for the other counters, then sells onto the shared customers' emulated cards in
its own order (each card then goes into its meter, as the customer does at home), races the other counters on the ledger for customers with no card in between,
closes its shift with the cash it took, and writes what it did to the plan's ``out`` file.

A customer's card is at one counter at a time (the customer carries it): an exclusive lock on
``IMAGE.lock`` stands for holding the card, so two processes never write one image at once.
The race customers have no card: every counter starts purchase N+1 for the same customer at
the same moment, and only the database decides who gets it."""

from __future__ import annotations

import fcntl
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WAIT = 30.0  # seconds to wait for the other counters


@contextmanager
def holding(image: str) -> Iterator[None]:
    """The customer's card is at this counter until the block ends."""
    with open(image + ".lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def wait_for_all(folder: Path, me: str, counters: int, tag: str) -> None:
    (folder / f"{tag}-{me}").touch()
    deadline = time.monotonic() + WAIT
    while len(list(folder.glob(f"{tag}-*"))) < counters:
        if time.monotonic() > deadline:
            raise SystemExit(f"{me}: the other counters never got to {tag}")
        time.sleep(0.02)


def seller_main(plan_path: str) -> int:
    from app.clock import SystemClock
    from app.errors import CardVendError
    from app.persistence.db import Database
    from app.ports import KeyRole
    from app.services import auth
    from app.services import ledger
    from app.services import selling
    from app.services import shifts
    from app.settings import OFFLINE_MAX_AMOUNT
    from app.settings import OFFLINE_MAX_HOURS
    from app.settings import OFFLINE_MAX_SALES
    from app.settings import Settings
    from cardio.channel import EmulatedChannel
    from cardio.emulator import CardImage
    from cardio.emulator import UserCardOS
    from cardio.keys import MasterKeys
    from cardio.keys import SoftwareKeyProvider
    from cardio.meter_sim import MeterSimulator
    from cardio.terminal import ApduTerminal

    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    saved = json.loads(Path(plan["keys"]).read_text(encoding="ascii"))
    keys = SoftwareKeyProvider(
        MasterKeys.from_roles({KeyRole[k]: bytes.fromhex(v) for k, v in saved.items()})
    )
    clock = SystemClock()
    settings = Settings()
    settings.set(OFFLINE_MAX_AMOUNT.key, 10**12)
    settings.set(OFFLINE_MAX_SALES.key, 10**9)
    settings.set(OFFLINE_MAX_HOURS.key, 10**4)
    db = Database(plan["db"])
    me, amount, folder = plan["counter"], plan["amount"], Path(plan["folder"])
    actor = auth.login(db, plan["teller"], plan["password"], counter_id=me, clock=clock)
    common: dict[str, Any] = {"actor": actor, "clock": clock, "settings": settings}

    def terminal(image: str) -> ApduTerminal:
        card = UserCardOS(CardImage.load(image), persist_path=image)
        return ApduTerminal(EmulatedChannel(card), keys, utility_code="100001")

    def to_meter(image: str) -> None:  # the customer takes the card home to the meter
        MeterSimulator(image + ".meter.json", keys, clock=clock).insert(terminal(image))

    sales: list[dict[str, Any]] = []
    errors: list[str] = []
    refusals: dict[str, int] = {}
    shifts.open_shift(db, actor=actor, float_fen=0, clock=clock)
    for customer, image in plan["open"]:
        with holding(image):
            _view, first = selling.open_account(
                db, terminal(image), customer_no=customer, amount=amount, **common
            )
            to_meter(image)
        assert first is not None
        sales.append({"id": first.sale.sale_id, "customer": customer, "amount": amount})
    wait_for_all(folder, me, plan["counters"], "ready")
    cards = plan["cards"]
    for r in range(plan["rounds"]):
        turn = (r + plan["index"]) % len(cards)  # each counter starts at another customer
        for customer, image in cards[turn:] + cards[:turn]:
            try:
                with holding(image):
                    sold = selling.sell(
                        db, terminal(image), amount=amount, cash_received=amount,
                        expect_customer=customer, **common,
                    )  # fmt: skip
                    to_meter(image)
                sales.append({"id": sold.sale.sale_id, "customer": customer, "amount": amount})
            except CardVendError as exc:
                errors.append(f"sell {customer}: {exc.code}: {exc.localized('en')}")
    wait_for_all(folder, me, plan["counters"], "race")
    for customer in plan["race"]:
        for _attempt in range(plan["race_attempts"]):
            try:
                view = ledger.begin_card_sale(
                    db, actor=actor, customer_no=customer, amount=amount, clock=clock
                )
            except CardVendError as exc:  # another counter holds purchase N+1
                refusals[exc.code] = refusals.get(exc.code, 0) + 1
                continue
            ledger.complete_sale(db, view.sale_id, clock, actor)
            sales.append({"id": view.sale_id, "customer": customer, "amount": amount})
    taken = sum(s["amount"] for s in sales)
    shift = shifts.close_shift(db, actor=actor, counted_fen=taken, clock=clock)
    out = {"sales": sales, "errors": errors, "refusals": refusals, "shift": shift.to_json()}
    Path(plan["out"]).write_text(json.dumps(out), encoding="utf-8")
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(seller_main(sys.argv[1]))
