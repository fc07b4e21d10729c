"""What a presented card means for the ledger: identify its customer, resolve what it can decide,
and say whether a new sale may follow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain import pricing
from app.domain.audit import AuditAction
from app.domain.card import CardContents
from app.domain.card import CardKind
from app.domain.card import WrongCardKind
from app.domain.ledger import UNRESOLVED
from app.domain.ledger import PaymentSplit
from app.domain.ledger import PurchaseLimits
from app.domain.ledger import ReversalState
from app.domain.ledger import SaleKind
from app.domain.ledger import SaleState
from app.domain.ledger import Situation
from app.domain.ledger import split_payment
from app.domain.pricing import TariffSpec
from app.errors import AmountError
from app.errors import CardVendError
from app.i18n import N_
from app.money import format_yuan
from app.persistence.db import Database
from app.persistence.models import CardBlacklist
from app.persistence.models import Customer
from app.persistence.models import Reversal
from app.persistence.models import Sale
from app.services import audit
from app.services import ledger
from app.services.auth import Principal
from app.services.customers import CustomerView
from app.services.customers import customer_or_none
from app.services.customers import get_customer
from app.services.customers import view_in_session
from app.services.selling.errors import CardAnomaly
from app.services.selling.errors import CardRefused
from app.services.selling.resolution import resolve_with_card
from app.services.tariffs import version_in_force
from app.settings import UTILITY_CODE
from app.settings import Settings


@dataclass(frozen=True)
class Quote:
    """The split of a payment before it is made, for the teller to see."""

    split: PaymentSplit
    energy_wh: int | None  # None: the tariff is not known


@dataclass(frozen=True)
class Assessment:
    """What a presented card means for the ledger."""

    contents: CardContents
    customer: CustomerView
    situation: Situation
    card_count: int
    ledger_count: int
    meter_count: int | None
    limits: PurchaseLimits | None
    arrears_due: int
    fees_due: int
    recovered: tuple[ledger.SaleView, ...] = ()
    tariff: TariffSpec | None = None  # the customer's tariff in force when the card was read

    def quote(self, amount: int) -> Quote:
        """What a payment of ``amount`` fen would do: the arrears and fees it settles, the
        credit and the energy it loads (raises the sale's own AmountError when it cannot)."""
        if self.limits is None:
            raise AmountError(value=format_yuan(amount), reason=N_("no sale on this card now"))
        split = split_payment(amount, self.limits)
        energy = pricing.amount_to_energy(self.tariff, split.credit) if self.tariff else None
        return Quote(split, energy)

    def to_json(self) -> dict[str, Any]:
        wb = self.contents.write_back
        return {
            "serial": self.contents.serial_hex,
            "customer": self.customer.to_json(),
            "situation": self.situation,
            "card_count": self.card_count,
            "ledger_count": self.ledger_count,
            "meter_count": self.meter_count,
            "meter_remaining_fen": wb.remaining if wb else None,
            "meter_status": int(wb.status) if wb else None,
            "min_fen": self.limits.minimum if self.limits else None,
            "max_fen": self.limits.maximum if self.limits else None,
            "arrears_fen": self.arrears_due,
            "fees_fen": self.fees_due,
            "recovered": [s.to_json() for s in self.recovered],
        }


def identify(
    session: Session, contents: CardContents, utility_code: str, *, lock: bool = True
) -> Customer:
    """The customer of a presented user card, or why the card cannot be used; ``lock``: the
    customer row is locked (a write unit of work)."""
    if contents.kind != CardKind.USER:
        raise WrongCardKind(found=contents.kind.label, expected=CardKind.USER.label)
    serial = contents.serial_hex
    if session.get(CardBlacklist, serial) is not None:
        raise CardRefused(reason=N_("it was reported lost or replaced and is blacklisted"))
    params = contents.parameters
    if params is None:
        raise CardRefused(reason=N_("it is issued but bound to no customer"))
    if params.utility_code != utility_code:
        raise CardRefused(reason=N_("it belongs to another utility"))
    customer = customer_or_none(session, params.customer_no, for_update=lock)
    if customer is None:
        raise CardRefused(reason=N_("its customer is not in this archive"))
    if customer.card_serial != serial:
        if customer.card_serial is None:  # written, then stopped before the binding
            raise CardRefused(
                reason=N_(
                    "the opening of its account did not finish; open the account again with "
                    "this card"
                )
            )
        raise CardRefused(reason=N_("it is not the card bound to this customer"))
    if customer.meter_no != params.meter_no:
        raise CardRefused(reason=N_("its meter number differs from the archive"))
    return customer


def _anomaly(
    session: Session,
    customer: Customer,
    detail: str,
    clock: Clock,
    actor: Principal | None,
    **params: object,
) -> CardAnomaly:
    audit.Actor(
        actor.operator_id if actor else None, actor.counter_id if actor else "-", clock
    ).record(
        session,
        AuditAction.CARD_ANOMALY,
        customer.customer_no,
        result="failed",
        detail={"detail": detail, **params},
    )
    return CardAnomaly(detail=detail, **params)


OPENING_BALANCE = 0
"""What a customer's meter may hold before the first card purchase: a meter starts empty."""


def sold_credit(session: Session, customer: Customer) -> int | None:
    """The most credit the customer's meter can have received from what was sold: the opening
    balance, the credit of every completed card sale (a reversed sale is no longer completed)
    and of every sale still unresolved (its card may have reached the meter).

    ``None`` when this ledger does not hold every purchase of the customer (some were sold on
    another counter's database and came in only as a purchase count): it cannot tell then."""
    completed = SaleState.COMPLETED.value
    open_states = [completed, *(st.value for st in UNRESOLVED)]
    completed_count = case((Sale.state == completed, Sale.purchase_count))
    distinct, highest, credit = session.execute(
        select(
            func.count(func.distinct(completed_count)),
            func.max(completed_count),
            func.coalesce(func.sum(Sale.credit), 0),
        ).where(
            Sale.customer_id == customer.id,
            Sale.kind == SaleKind.CARD.value,
            Sale.state.in_(open_states),
        )
    ).one()
    if int(distinct) != customer.purchase_count or (highest or 0) != customer.purchase_count:
        return None
    return OPENING_BALANCE + int(credit)


def _balance_problem(session: Session, customer: Customer, contents: CardContents) -> int | None:
    """The credit sold to the customer when the card's genuine write-back claims more remaining
    than that (the meter holds credit that was never sold); ``None`` when all is well."""
    wb = contents.write_back
    if wb is None or contents.write_back_genuine is not True or wb.remaining <= OPENING_BALANCE:
        return None
    sold = sold_credit(session, customer)
    if sold is None or wb.remaining <= sold:
        return None
    return sold


def _new_write_back(customer: Customer, contents: CardContents) -> bool:
    """Whether the card brings a write-back from the meter the counter has not noted yet."""
    wb = contents.write_back
    return (
        wb is not None
        and contents.write_back_genuine is not False
        and (
            customer.meter_purchase_count != wb.purchase_count
            or customer.meter_remaining != wb.remaining
            or (customer.meter_illegal_insert_count or 0) != wb.illegal_insert_count
        )
    )


def _note_write_back(customer: Customer, contents: CardContents, clock: Clock) -> None:
    wb = contents.write_back
    if wb is not None and _new_write_back(customer, contents):
        customer.meter_purchase_count = wb.purchase_count
        customer.meter_remaining = wb.remaining
        customer.meter_illegal_insert_count = wb.illegal_insert_count
        customer.write_back_seen_at = clock.now()


def _has_news(session: Session, customer: Customer, contents: CardContents) -> bool:
    """Whether presenting this card changes the database: an unresolved sale or a pending
    reversal of its customer, or a write-back the counter has not noted yet."""
    if ledger.unresolved_sale(session, customer.id) is not None:
        return True
    pending_reversal = session.scalar(
        select(func.count())
        .select_from(Reversal)
        .where(
            Reversal.state == ReversalState.PENDING.value,
            Reversal.sale_id.in_(select(Sale.id).where(Sale.customer_id == customer.id)),
        )
    )
    return bool(pending_reversal) or _new_write_back(customer, contents)


@dataclass(frozen=True)
class _Found:
    assessment: Assessment
    problem: str | None  # an anomaly the card shows (recorded, then raised)
    problem_params: dict[str, object]


def assess(
    db: Database,
    contents: CardContents,
    clock: Clock,
    *,
    settings: Settings,
    actor: Principal | None = None,
) -> Assessment:
    """Identify the customer of a presented card, resolve an unfinished sale the card can
    decide, and say whether a new sale may follow (``situation`` ``ready``).

    One read unit of work decides: a card with nothing to decide and nothing new from the meter
    is assessed in it; otherwise the assessment runs in a write unit of work."""
    utility_code = settings.value(UTILITY_CODE)
    found: _Found | None = None
    with db.read() as session:
        customer = identify(session, contents, utility_code, lock=False)
        if not _has_news(session, customer, contents):
            found = _assess_in(session, customer, contents, clock, actor)
    if found is None:
        with db.write() as session:
            customer = identify(session, contents, utility_code)
            found = _assess_in(session, customer, contents, clock, actor)
    if found.problem is not None:  # recorded in its own transaction: the refusal must not undo it
        with db.write() as session:
            customer = get_customer(session, found.assessment.customer.customer_no)
            error = _anomaly(session, customer, found.problem, clock, actor, **found.problem_params)
        raise error
    return found.assessment


def _assess_in(
    session: Session,
    customer: Customer,
    contents: CardContents,
    clock: Clock,
    actor: Principal | None,
) -> _Found:
    # an edited purchase record decides nothing (its count could hand cash back for a
    # purchase the card still holds)
    resolved = (
        resolve_with_card(session, customer, contents, clock, actor)
        if contents.purchase_genuine is not False
        else []
    )
    _note_write_back(customer, contents, clock)
    wb = contents.write_back
    card_count = contents.purchase.purchase_count if contents.purchase else 0
    # a card the meter has not written back yet (a new or replacement card): what the meter
    # last wrote on any of this customer's cards
    meter_count = wb.purchase_count if wb else customer.meter_purchase_count
    ledger_count = customer.purchase_count
    problem, problem_params = _card_problem(session, customer, contents, meter_count)
    if card_count < ledger_count:
        situation = Situation.BEHIND
    elif card_count > 0 and (meter_count is None or meter_count < card_count):
        situation = Situation.UNLOADED
    else:
        situation = Situation.READY
    limits = ledger.limits_for(session, customer, wb.remaining if wb else 0)
    arrears, fees = ledger.dues(session, customer)
    recovered = tuple(
        ledger.view_in_session(session, sid)
        for sid in resolved
        if session.get(Sale, sid) is not None
    )
    assessment = Assessment(
        contents,
        view_in_session(session, customer),
        situation,
        card_count,
        ledger_count,
        meter_count,
        limits,
        arrears,
        fees,
        recovered,
        _tariff_in_force(session, customer, clock),
    )
    return _Found(assessment, problem, problem_params)


def _tariff_in_force(session: Session, customer: Customer, clock: Clock) -> TariffSpec | None:
    try:
        return version_in_force(session, customer.tariff_plan_id, clock.now()).spec
    except CardVendError:  # no version in force: the sale itself says so
        return None


def _card_problem(
    session: Session, customer: Customer, contents: CardContents, meter_count: int | None
) -> tuple[str | None, dict[str, object]]:
    """What makes the card an anomaly (and its message parameters), or None."""
    wb = contents.write_back
    card_count = contents.purchase.purchase_count if contents.purchase else 0
    ledger_count = customer.purchase_count
    if contents.purchase_genuine is False:
        problem = N_("the purchase record on the card is not genuine (changed or copied)")
        return problem, {"serial": contents.serial_hex}
    if contents.write_back_genuine is False:
        return "the meter write-back is not genuine", {}
    if meter_count is not None and meter_count > card_count:
        return f"meter shows purchase {meter_count}, card {card_count}", {}
    if card_count > ledger_count:
        return f"card holds purchase {card_count}, ledger {ledger_count}", {}
    if wb is not None and (sold := _balance_problem(session, customer, contents)) is not None:
        problem = N_(
            "the meter reports {remaining} yuan left, more than the {sold} yuan ever sold "
            "to this customer"
        )
        return problem, {
            "remaining": format_yuan(wb.remaining),
            "sold": format_yuan(sold),
            "remaining_fen": wb.remaining,
            "sold_fen": sold,
            "serial": contents.serial_hex,
        }
    return None, {}
