"""Selling onto cards, crash-safe: sale, open account, rewrite, replacement, reversal, remote
payments, recovery and the offline limits.

A card sale, in order (each name is a crash point of app/faults.py):

1. ``read``: read the card, identify the customer, compare purchase counts (:func:`assess`);
2. ``pending``: commit a *pending* sale holding purchase N+1 and its outbox row, one transaction;
3. ``write``: write the purchase file (and the parameter and tariff files when the customer's
   thresholds or tariff changed since the card was last written), read every file back;
4. ``complete``: mark the sale completed.

A crash or a pulled card anywhere leaves a sale that is resolved by the card's own state: on
start this counter's pending sales become *in doubt*; when the card is presented again
(:func:`recover_with_card`, also run by :func:`assess`) a card holding purchase N+1 with the
sale's tag completes the sale, a card still at N fails it (the cash goes back).  A completed
sale whose card is later found behind is written again by :func:`rewrite` (same sale, no new
money).

Binding a card (:func:`open_account`, :func:`replace_card`) issues or takes the card first and
commits the binding afterwards, so a card pulled before the binding leaves nothing behind but a
card that the retry takes (crash points ``card_issued``, ``card_written`` after an opening's
write, ``card_bound`` before a replacement's write).  An opening binds only after its card
write was read back; a replacement binds, uses its approval and books its fee on the shift it
reads in one transaction, then writes the card (a write that fails is finished by presenting
the same card again, without a new fee).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace
from typing import Any
from typing import TypeVar
from typing import cast

from sqlalchemy import select

from app import faults
from app.clock import Clock
from app.domain.card import CardContents
from app.domain.card import CardError
from app.domain.card import UserCardType
from app.domain.ledger import SaleState
from app.domain.ledger import Situation
from app.domain.permissions import Action
from app.errors import CardVendError
from app.i18n import N_
from app.money import check_fen
from app.persistence.db import Database
from app.persistence.models import Customer
from app.persistence.models import Sale
from app.ports import CardTerminal
from app.services import ledger
from app.services.auth import Principal
from app.services.customers import customer_view
from app.services.customers import get_customer
from app.services.selling.assessment import Assessment
from app.services.selling.assessment import assess
from app.services.selling.errors import CardBehind
from app.services.selling.errors import CardRefused
from app.services.selling.errors import InsertIntoMeterFirst
from app.services.selling.errors import SaleInDoubt
from app.services.selling.offline import check_offline_limits
from app.services.selling.records import card_change
from app.services.selling.records import card_type
from app.settings import TRAINING_MODE
from app.settings import UTILITY_CODE
from app.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SaleOutcome:
    sale: ledger.SaleView
    assessment: Assessment
    files: tuple[str, ...]
    apdus: int
    change_fen: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.sale.to_json(),
            "files": list(self.files),
            "apdus": self.apdus,
            "change_fen": self.change_fen,
            "customer": self.assessment.customer.to_json(),
        }


F = TypeVar("F", bound=Callable[..., "SaleOutcome"])


def _logged(fn: F) -> F:
    """One log line per sale (its id and receipt number, customer, amount, outcome and
    duration), so support can follow a sale through the log."""

    @functools.wraps(fn)
    def logged(*args: Any, actor: Principal, amount: int, **kwargs: Any) -> SaleOutcome:
        started = time.monotonic()
        try:
            outcome = fn(*args, actor=actor, amount=amount, **kwargs)
        except CardVendError as exc:
            log.info(
                "sale %s at %s by %s: %d fen %s (%s) after %d ms",
                exc.params.get("sale_id", "-"), actor.counter_id, actor.operator_id, amount,
                "in doubt" if isinstance(exc, SaleInDoubt) else "not made", exc.code,
                (time.monotonic() - started) * 1000,
            )  # fmt: skip
            raise
        sale = outcome.sale
        log.info(
            "sale %s (receipt %s) at %s by %s: customer %s, %d fen, credit %d fen, purchase "
            "%s: %s in %d ms",
            sale.sale_id, sale.sale_id[:8].upper(), actor.counter_id, actor.operator_id,
            outcome.assessment.customer.customer_no, sale.amount_fen, sale.credit_fen,
            sale.purchase_count, sale.state, (time.monotonic() - started) * 1000,
        )  # fmt: skip
        return outcome

    return cast(F, logged)


@_logged
def sell(
    db: Database,
    terminal: CardTerminal,
    *,
    actor: Principal,
    amount: int,
    clock: Clock,
    settings: Settings,
    cash_received: int | None = None,
    expect_customer: str | None = None,
    override_request: str | None = None,
    contents: CardContents | None = None,
) -> SaleOutcome:
    """Sell ``amount`` fen onto the card in the terminal (card first)."""
    check_fen(amount)
    actor.authorize(Action.SELL, clock)
    contents = contents or terminal.read()
    faults.checkpoint("read")
    a = assess(db, contents, clock, settings=settings, actor=actor)
    if expect_customer and a.customer.customer_no != expect_customer:
        raise CardRefused(reason=N_("it belongs to another customer"))
    if a.situation == Situation.UNLOADED:
        raise InsertIntoMeterFirst(count=a.card_count)
    if a.situation == Situation.BEHIND:
        raise CardBehind(card=a.card_count, ledger=a.ledger_count)
    check_offline_limits(db, actor, amount, clock, settings, override_request)
    sale = ledger.begin_card_sale(
        db,
        actor=actor,
        customer_no=a.customer.customer_no,
        amount=amount,
        clock=clock,
        meter_balance=contents.write_back.remaining if contents.write_back else 0,
        cash_received=cash_received,
        card_serial=contents.serial_hex,
        training=is_training(settings),
    )
    faults.checkpoint("pending")
    utility_code = settings.value(UTILITY_CODE)
    with db.read() as session:
        customer = get_customer(session, a.customer.customer_no)
        row = session.get(Sale, sale.sale_id)
        assert row is not None
        change, versions = card_change(
            session,
            customer,
            row,
            utility_code,
            card_type(contents, UserCardType.PURCHASE if a.card_count else UserCardType.OPEN),
            clock.now(),
            on_card=contents,
        )
    faults.checkpoint("before_write")
    try:
        result = terminal.write(change, expect_serial=contents.serial)
    except CardError as exc:
        ledger.mark_in_doubt(db, sale.sale_id, clock, exc.localized("en"), actor)
        raise SaleInDoubt(sale_id=sale.sale_id, detail=exc) from exc
    faults.checkpoint("written")
    done = ledger.complete_sale(db, sale.sale_id, clock, actor, card_versions=versions)
    faults.checkpoint("completed")
    change_fen = None if cash_received is None else cash_received - amount
    a = replace(a, customer=customer_view(db, a.customer.customer_no))  # as it is after the sale
    return SaleOutcome(done, a, result.files, result.apdus, change_fen)


def recover_with_card(
    db: Database,
    terminal: CardTerminal,
    *,
    clock: Clock,
    settings: Settings,
    actor: Principal | None = None,
) -> Assessment:
    """Present a card: whatever it can decide (an unfinished sale, a pending reversal) is
    decided; the assessment tells what else is needed."""
    return assess(db, terminal.read(), clock, settings=settings, actor=actor)


def recover_at_start(db: Database, counter_id: str, clock: Clock) -> list[ledger.SaleView]:
    """The process that wrote this counter's pending sales is gone: they become in doubt until
    their card is presented. Returns every unresolved sale (the supervisor's list)."""
    with db.write() as session:
        for sale in session.scalars(
            select(Sale).where(Sale.counter_id == counter_id, Sale.state == SaleState.PENDING.value)
        ).all():
            customer = session.get(Customer, sale.customer_id)
            assert customer is not None
            ledger.move_in_session(
                session,
                sale,
                customer,
                SaleState.IN_DOUBT,
                clock,
                None,
                note="found pending at start",
            )
    return unresolved(db)


def unresolved(db: Database) -> list[ledger.SaleView]:
    views = ledger.list_sales(db, state=SaleState.PENDING.value, limit=10_000)
    return views + ledger.list_sales(db, state=SaleState.IN_DOUBT.value, limit=10_000)


def is_training(settings: Settings) -> bool:
    """Training mode: sales are marked so and never sent to the central system."""
    return settings.value(TRAINING_MODE)
