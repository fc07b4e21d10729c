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

import datetime as dt
import uuid
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.card import (
    CardContents,
    CardError,
    CardKind,
    CardWrite,
    ParameterRecord,
    PurchaseRecord,
    TariffRecord,
    UnissuedCard,
    UpdateFlags,
    UserCardType,
    WrongCardKind,
)
from app.domain.customers import CustomerStatus, MeterKind
from app.domain.ledger import UNRESOLVED, PurchaseLimits, SaleKind, SaleState, split_payment
from app.domain.permissions import Action
from app.errors import CardVendError, Conflict, NotFound, ShiftError
from app.faults import checkpoint
from app.i18n import N_
from app.money import check_fen, format_yuan
from app.persistence.db import Database
from app.persistence.models import (
    ArrearsItem,
    CardBlacklist,
    Customer,
    FeePayment,
    OutboxEntry,
    Reversal,
    Sale,
    Shift,
    TariffVersion,
)
from app.ports import CardTerminal
from app.services import approvals, audit, ledger, shifts, sync_status
from app.services.auth import Principal
from app.services.customers import CustomerView, customer_view, get_customer, view_in_session
from app.services.sync_status import LAST_SUCCESS
from app.services.tariffs import version_in_force
from app.settings import (
    OFFLINE_MAX_AMOUNT,
    OFFLINE_MAX_HOURS,
    OFFLINE_MAX_SALES,
    REPLACEMENT_FEE,
    REVERSAL_WINDOW,
    TRAINING_MODE,
    UTILITY_CODE,
    Settings,
)

LAST_SYNC_KEY = LAST_SUCCESS  # written by sync after every successful round


# --------------------------------------------------------------------------- errors


class CardRefused(CardVendError):
    code = "card_refused"
    template = N_("This card cannot be used: {reason}")


class InsertIntoMeterFirst(CardVendError):
    code = "unloaded"
    template = N_(
        "The card still holds purchase {count} that the meter has not loaded. Ask the customer "
        "to insert the card into the meter first, then come back."
    )


class CardBehind(CardVendError):
    code = "card_behind"
    template = N_(
        "The card is behind the ledger (card {card}, ledger {ledger}). Rewrite the card with "
        "the last purchase instead of selling."
    )


class CardAnomaly(CardVendError):
    code = "card_anomaly"
    template = N_(
        "The card does not agree with the ledger ({detail}). It was recorded for a supervisor; "
        "do not sell on this card."
    )


class SaleInDoubt(CardVendError):
    code = "in_doubt"
    template = N_(
        "The card write of sale {sale_id} did not finish ({detail}). Keep the cash and present "
        "the card again: the card decides whether the sale stands."
    )


class OfflineLimitReached(CardVendError):
    code = "offline_limit"
    template = N_(
        "Selling has stopped: {detail} while the central system cannot be reached. Sync, or "
        "ask a supervisor to override."
    )


class ReversalRefused(CardVendError):
    code = "reversal_refused"
    template = N_("This sale cannot be reversed: {reason}")


# --------------------------------------------------------------------------- records for cards


def tariff_record(version: Any) -> TariffRecord:
    return TariffRecord(version.version_no, version.effective_from, version.spec.to_dict())


def parameter_record(
    c: Customer, utility_code: str, card_type: UserCardType, *, flags: UpdateFlags
) -> ParameterRecord:
    return ParameterRecord(
        card_kind=CardKind.USER,
        utility_code=utility_code,
        user_card_type=card_type,
        customer_no=c.customer_no,
        meter_no=c.meter_no,
        alarm1=c.alarm1,
        alarm2=c.alarm2,
        overdraft_limit=c.overdraft_limit,
        credit_ceiling=c.credit_ceiling,
        ct_ratio=c.ct_ratio,
        pt_ratio=c.pt_ratio,
        update_flags=flags,
        param_version=c.param_version,
    )


def purchase_record(sale: Sale) -> PurchaseRecord:
    return PurchaseRecord(
        sale.credit, sale.purchase_count or 0, uuid.UUID(sale.id).bytes[:8], sale.created_at
    )


EMPTY_PURCHASE = PurchaseRecord(0, 0, b"\x00" * 8, None)


# --------------------------------------------------------------------------- assessment


@dataclass(frozen=True)
class Assessment:
    """What a presented card means for the ledger."""

    contents: CardContents
    customer: CustomerView
    situation: str  # ready | unloaded | behind | anomaly
    card_count: int
    ledger_count: int
    meter_count: int | None
    limits: PurchaseLimits | None
    arrears_due: int
    fees_due: int
    recovered: tuple[ledger.SaleView, ...] = ()

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


def _identify(session: Session, contents: CardContents, utility_code: str) -> Customer:
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
    customer = session.scalar(
        select(Customer).where(Customer.customer_no == params.customer_no).with_for_update()
    )
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
    audit.record(
        session,
        action="card_anomaly",
        clock=clock,
        target=customer.customer_no,
        operator_id=actor.operator_id if actor else None,
        counter_id=actor.counter_id if actor else "-",
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


def _resolve_with_card(
    session: Session,
    customer: Customer,
    contents: CardContents,
    clock: Clock,
    actor: Principal | None,
) -> list[str]:
    """Complete or fail this customer's unresolved sale, and finish or cancel a pending
    reversal, by what the card holds. Returns the sale ids resolved."""
    resolved: list[str] = []
    card = contents.purchase or EMPTY_PURCHASE
    for sale in session.scalars(
        select(Sale).where(
            Sale.customer_id == customer.id, Sale.state.in_([s.value for s in UNRESOLVED])
        )
    ).all():
        if (
            card.purchase_count == sale.purchase_count
            and card.sale_tag == uuid.UUID(sale.id).bytes[:8]
        ):
            ledger.settle_in_session(session, sale, customer, clock, actor, note="card holds it")
            resolved.append(sale.id)
        elif card.purchase_count == (sale.purchase_count or 0) - 1:
            ledger.move_in_session(
                session,
                sale,
                customer,
                SaleState.FAILED,
                clock,
                actor,
                note="the card never got it; return the cash",
            )
            resolved.append(sale.id)
        else:
            ledger.move_in_session(
                session,
                sale,
                customer,
                SaleState.IN_DOUBT,
                clock,
                actor,
                note=f"card shows purchase {card.purchase_count}",
            )
    for rev in session.scalars(
        select(Reversal).where(
            Reversal.state == "pending",
            Reversal.sale_id.in_(select(Sale.id).where(Sale.customer_id == customer.id)),
        )
    ).all():
        reversed_sale = session.get(Sale, rev.sale_id)
        assert reversed_sale is not None
        if card.purchase_count == (reversed_sale.purchase_count or 0) - 1:
            _finish_reversal(session, rev, reversed_sale, customer, clock)
        elif card.purchase_count == reversed_sale.purchase_count:
            rev.state = "failed"
            audit.record(
                session,
                action="reversal_failed",
                clock=clock,
                target=reversed_sale.id,
                operator_id=rev.operator_id,
                counter_id=rev.counter_id,
                result="failed",
                detail={"reversal": rev.id},
            )
    return resolved


def _note_write_back(customer: Customer, contents: CardContents, clock: Clock) -> None:
    wb = contents.write_back
    if (
        wb is not None
        and contents.write_back_genuine is not False
        and (
            customer.meter_purchase_count != wb.purchase_count
            or customer.meter_remaining != wb.remaining
        )
    ):
        customer.meter_purchase_count = wb.purchase_count
        customer.meter_remaining = wb.remaining
        customer.write_back_seen_at = clock.now()


def _has_news(db: Database, contents: CardContents, utility_code: str) -> bool:
    """Whether presenting this card changes the database: an unresolved sale or a pending
    reversal of its customer, or a write-back the counter has not noted yet."""
    with db.read() as session:
        customer = _identify(session, contents, utility_code)
        if ledger.unresolved_sale(session, customer.id) is not None:
            return True
        pending_reversal = session.scalar(
            select(func.count())
            .select_from(Reversal)
            .where(
                Reversal.state == "pending",
                Reversal.sale_id.in_(select(Sale.id).where(Sale.customer_id == customer.id)),
            )
        )
        if pending_reversal:
            return True
        wb = contents.write_back
        return (
            wb is not None
            and contents.write_back_genuine is not False
            and (
                customer.meter_purchase_count != wb.purchase_count
                or customer.meter_remaining != wb.remaining
            )
        )


def assess(
    db: Database,
    contents: CardContents,
    clock: Clock,
    *,
    settings: Settings,
    actor: Principal | None = None,
) -> Assessment:
    """Identify the customer of a presented card, resolve an unfinished sale the card can
    decide, and say whether a new sale may follow (``situation`` ``ready``)."""
    utility_code = str(settings.get(UTILITY_CODE.key))
    # a card with nothing to decide and nothing new from the meter needs no write transaction
    unit = db.write() if _has_news(db, contents, utility_code) else db.read()
    with unit as session:
        customer = _identify(session, contents, utility_code)
        # an edited purchase record decides nothing (its count could hand cash back for a
        # purchase the card still holds)
        resolved = (
            _resolve_with_card(session, customer, contents, clock, actor)
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
        problem: str | None = None
        problem_params: dict[str, object] = {}
        if contents.purchase_genuine is False:
            problem = N_("the purchase record on the card is not genuine (changed or copied)")
            problem_params = {"serial": contents.serial_hex}
        elif contents.write_back_genuine is False:
            problem = "the meter write-back is not genuine"
        elif meter_count is not None and meter_count > card_count:
            problem = f"meter shows purchase {meter_count}, card {card_count}"
        elif card_count > ledger_count:
            problem = f"card holds purchase {card_count}, ledger {ledger_count}"
        elif wb is not None and (sold := _balance_problem(session, customer, contents)) is not None:
            problem = N_(
                "the meter reports {remaining} yuan left, more than the {sold} yuan ever sold "
                "to this customer"
            )
            problem_params = {
                "remaining": format_yuan(wb.remaining),
                "sold": format_yuan(sold),
                "remaining_fen": wb.remaining,
                "sold_fen": sold,
                "serial": contents.serial_hex,
            }
        customer_no = customer.customer_no
        if card_count < ledger_count:
            situation = "behind"
        elif card_count > 0 and (meter_count is None or meter_count < card_count):
            situation = "unloaded"
        else:
            situation = "ready"
        limits = ledger.limits_for(session, customer, wb.remaining if wb else 0)
        arrears, fees = ledger.dues(session, customer)
        view = view_in_session(session, customer)
        recovered = tuple(
            ledger.view_in_session(session, sid)
            for sid in resolved
            if session.get(Sale, sid) is not None
        )
    if problem is not None:  # recorded in its own transaction: the refusal must not undo it
        with db.write() as session:
            customer = get_customer(session, customer_no)
            error = _anomaly(session, customer, problem, clock, actor, **problem_params)
        raise error
    return Assessment(
        contents,
        view,
        situation,
        card_count,
        ledger_count,
        meter_count,
        limits,
        arrears,
        fees,
        recovered,
    )


# --------------------------------------------------------------------------- offline limits


@dataclass(frozen=True)
class SyncState:
    pending: int
    pending_amount: int
    oldest_pending: dt.datetime | None
    last_success: dt.datetime | None

    def age_hours(self, now: dt.datetime) -> float:
        since = self.last_success or self.oldest_pending
        if since is None or self.pending == 0:
            return 0.0
        return (now - since).total_seconds() / 3600


def sync_state(session: Session, counter_id: str) -> SyncState:
    """This counter's records the central system has not accepted yet (waiting, and refused:
    money it has not seen either way) and its last successful sync. Counters sharing a
    database each have their own limits."""
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(OutboxEntry.amount), 0),
            func.min(OutboxEntry.created_at),
        ).where(*sync_status.unsent(counter_id))
    ).one()
    value = sync_status.counter_setting(session, LAST_SYNC_KEY, counter_id)
    last = dt.datetime.fromisoformat(value) if value else None
    oldest = row[2]
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    return SyncState(int(row[0]), int(row[1]), oldest, last)


def offline_problem(
    state: SyncState, settings: Settings, now: dt.datetime, extra_amount: int
) -> str | None:
    max_hours = int(settings.get(OFFLINE_MAX_HOURS.key))
    if state.age_hours(now) > max_hours:
        return f"no sync for more than {max_hours} hours"
    max_amount = int(settings.get(OFFLINE_MAX_AMOUNT.key))
    if state.pending_amount + extra_amount > max_amount:
        return f"more than {max_amount} fen would wait unsynced"
    max_sales = int(settings.get(OFFLINE_MAX_SALES.key))
    if state.pending + 1 > max_sales:
        return f"more than {max_sales} records would wait unsynced"
    return None


def check_offline_limits(
    db: Database,
    actor: Principal,
    amount: int,
    clock: Clock,
    settings: Settings,
    override_request: str | None = None,
) -> None:
    with db.read() as session:
        state = sync_state(session, actor.counter_id)
        if offline_problem(state, settings, clock.now(), amount) is None:
            return
    with db.write() as session:
        state = sync_state(session, actor.counter_id)
        problem = offline_problem(state, settings, clock.now(), amount)
        if problem is None:
            return
        if override_request is None:
            audit.record(
                session,
                action="offline_limit",
                operator_id=actor.operator_id,
                counter_id=actor.counter_id,
                clock=clock,
                result="denied",
                detail={"problem": problem},
            )
        else:
            approvals.consume(
                session,
                override_request,
                action=Action.OVERRIDE_OFFLINE_LIMIT.value,
                target=actor.counter_id,
                operator_id=actor.operator_id,
                clock=clock,
            )
            audit.record(
                session,
                action="offline_override",
                operator_id=actor.operator_id,
                counter_id=actor.counter_id,
                clock=clock,
                detail={"problem": problem, "approval": override_request},
            )
            return
    raise OfflineLimitReached(detail=problem)


# --------------------------------------------------------------------------- sale


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


def _card_change(
    session: Session,
    customer: Customer,
    sale: Sale | None,
    utility_code: str,
    card_type: UserCardType,
    at: dt.datetime,
    *,
    force_params: bool = False,
) -> tuple[CardWrite, tuple[int, int | None]]:
    tariff = version_in_force(session, customer.tariff_plan_id, at)
    params_changed = force_params or customer.card_param_version != customer.param_version
    tariff_changed = force_params or customer.card_tariff_version_id != tariff.id
    flags = UpdateFlags.NONE
    if params_changed or tariff_changed:
        flags |= UpdateFlags.PARAMETERS
    if tariff_changed:
        flags |= UpdateFlags.CURRENT_TARIFF
    change = CardWrite(
        parameters=parameter_record(customer, utility_code, card_type, flags=flags)
        if (params_changed or tariff_changed)
        else None,
        current_tariff=tariff_record(tariff) if tariff_changed else None,
        purchase=purchase_record(sale) if sale is not None else None,
    )
    return change, (customer.param_version, tariff.id)


def _card_type(contents: CardContents, otherwise: UserCardType) -> UserCardType:
    """The user-card type to write with new parameters.  An open or replacement card that no
    meter has written back to yet stays what it is: the meter binds to a card only by that type,
    so a replacement card rewritten as a purchase card before its first visit would be refused
    by the customer's meter for good."""
    params = contents.parameters
    if (
        contents.write_back is None
        and params is not None
        and params.user_card_type in (UserCardType.OPEN, UserCardType.REPLACEMENT)
    ):
        return params.user_card_type
    return otherwise


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
    checkpoint("read")
    a = assess(db, contents, clock, settings=settings, actor=actor)
    if expect_customer and a.customer.customer_no != expect_customer:
        raise CardRefused(reason=N_("it belongs to another customer"))
    if a.situation == "unloaded":
        raise InsertIntoMeterFirst(count=a.card_count)
    if a.situation == "behind":
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
    checkpoint("pending")
    utility_code = str(settings.get(UTILITY_CODE.key))
    with db.read() as session:
        customer = get_customer(session, a.customer.customer_no)
        row = session.get(Sale, sale.sale_id)
        assert row is not None
        change, versions = _card_change(
            session,
            customer,
            row,
            utility_code,
            _card_type(contents, UserCardType.PURCHASE if a.card_count else UserCardType.OPEN),
            clock.now(),
        )
    checkpoint("before_write")
    try:
        result = terminal.write(change, expect_serial=contents.serial)
    except CardError as exc:
        ledger.mark_in_doubt(db, sale.sale_id, clock, exc.localized("en"), actor)
        raise SaleInDoubt(sale_id=sale.sale_id, detail=exc.localized("en")) from exc
    checkpoint("written")
    done = ledger.complete_sale(db, sale.sale_id, clock, actor, card_versions=versions)
    checkpoint("completed")
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


# --------------------------------------------------------------------------- other card work


def _card_to_bind(
    db: Database, terminal: CardTerminal, present: CardContents | None, customer_no: str
) -> CardContents:
    """The card a new binding goes onto: a blank card, issued here as a user card, or a user
    card that an earlier attempt for this customer issued (and perhaps wrote) but never bound --
    the card was pulled, or the process stopped, before the binding was committed.
    ``present``: the card as just read (None: it is blank)."""
    if present is None:
        card = terminal.issue(CardKind.USER)
        checkpoint("card_issued")
    else:
        params = present.parameters
        if (
            present.kind != CardKind.USER
            or (params is not None and params.customer_no != customer_no)
            or (present.purchase is not None and present.purchase.purchase_count != 0)
            or present.write_back is not None
        ):
            raise CardRefused(reason=N_("it is not blank; a new card binding needs a blank card"))
        card = present
    with db.read() as session:  # before anything is written onto it
        _check_bindable(session, card.serial_hex, customer_no)
    return card


def _check_bindable(session: Session, serial: str, customer_no: str) -> None:
    """Refuses a blacklisted card and one that is already another customer's card."""
    if session.get(CardBlacklist, serial) is not None:
        raise CardRefused(reason=N_("it was reported lost or replaced and is blacklisted"))
    holder = session.scalar(select(Customer.customer_no).where(Customer.card_serial == serial))
    if holder is not None and holder != customer_no:
        raise CardRefused(reason=N_("it is the card of customer {holder}"), holder=holder)


def _read_or_blank(terminal: CardTerminal) -> CardContents | None:
    try:
        return terminal.read()
    except UnissuedCard:
        return None


def open_account(
    db: Database,
    terminal: CardTerminal,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    settings: Settings,
    amount: int | None = None,
    cash_received: int | None = None,
    override_request: str | None = None,
) -> tuple[CustomerView, SaleOutcome | None]:
    """Issue a blank card as the customer's first card, write the parameters and tariff (an
    OPEN card), bind it, and optionally sell the first purchase onto it.

    The binding (and its outbox row) is committed only after the card write was read back: a
    card pulled or a process stopped before that leaves the customer without a card, so the
    account can be opened again, with a new blank card or with this one (:func:`_card_to_bind`
    takes a card an earlier attempt for this customer issued or wrote)."""
    actor.authorize(Action.OPEN_ACCOUNT, clock)
    utility_code = str(settings.get(UTILITY_CODE.key))
    with db.read() as session:
        customer = get_customer(session, customer_no)
        if customer.meter_kind != MeterKind.CARD or customer.status != CustomerStatus.ACTIVE:
            raise Conflict(
                N_("Customer {customer_no} is not an active card-meter customer."),
                customer_no=customer_no,
            )
        if customer.card_serial:
            raise Conflict(
                N_("Customer {customer_no} already has a card; issue a replacement card instead."),
                customer_no=customer_no,
            )
    card = _card_to_bind(db, terminal, _read_or_blank(terminal), customer_no)
    serial = card.serial_hex
    with db.read() as session:
        customer = get_customer(session, customer_no)
        change, versions = _card_change(
            session, customer, None, utility_code, UserCardType.OPEN, clock.now(), force_params=True
        )
    terminal.write(change, expect_serial=card.serial)
    checkpoint("card_written")
    with db.write() as session:
        customer = get_customer(session, customer_no, for_update=True)
        if customer.card_serial:  # another counter opened the account meanwhile
            raise Conflict(
                N_("Customer {customer_no} already has a card; issue a replacement card instead."),
                customer_no=customer_no,
            )
        _check_bindable(session, serial, customer_no)
        customer.card_serial = serial
        customer.card_param_version, customer.card_tariff_version_id = versions
        audit.record(
            session,
            action="open_account",
            operator_id=actor.operator_id,
            counter_id=actor.counter_id,
            clock=clock,
            target=customer_no,
            detail={"serial": serial},
        )
        ledger.enqueue(
            session,
            "card_bound",
            f"{customer_no}:{serial}"[:36],
            {
                "customer_no": customer_no,
                "serial": serial,
                "operator_id": actor.operator_id,
                "counter_id": actor.counter_id,
            },
            0,
            clock,
            training=is_training(settings),
        )
    outcome = None
    if amount:
        outcome = sell(
            db,
            terminal,
            actor=actor,
            amount=amount,
            clock=clock,
            settings=settings,
            cash_received=cash_received,
            expect_customer=customer_no,
            override_request=override_request,
        )
    return customer_view(db, customer_no), outcome


def rewrite(
    db: Database,
    terminal: CardTerminal,
    *,
    actor: Principal,
    clock: Clock,
    settings: Settings,
    expect_customer: str | None = None,
) -> SaleOutcome:
    """Write the last completed purchase again onto a card that is behind the ledger (its
    write failed or was lost): the same sale UUID, no new money."""
    actor.authorize(Action.REWRITE, clock)
    contents = terminal.read()
    a = assess(db, contents, clock, settings=settings, actor=actor)
    if expect_customer and a.customer.customer_no != expect_customer:
        raise CardRefused(reason=N_("it belongs to another customer"))
    if a.situation != "behind" or a.card_count != a.ledger_count - 1:
        raise Conflict(
            N_("This card does not need a rewrite (card {card}, ledger {ledger})."),
            card=a.card_count,
            ledger=a.ledger_count,
        )
    utility_code = str(settings.get(UTILITY_CODE.key))
    with db.read() as session:
        customer = get_customer(session, a.customer.customer_no)
        sale = session.scalar(
            select(Sale).where(
                Sale.customer_id == customer.id,
                Sale.purchase_count == a.ledger_count,
                Sale.state == SaleState.COMPLETED.value,
                Sale.kind == SaleKind.CARD.value,
            )
        )
        if sale is None:
            raise NotFound(what=N_("Sale"), key=f"{a.customer.customer_no}/{a.ledger_count}")
        change, versions = _card_change(
            session,
            customer,
            sale,
            utility_code,
            _card_type(contents, UserCardType.PURCHASE),
            clock.now(),
        )
        sale_id = sale.id
    result = terminal.write(change, expect_serial=contents.serial)
    with db.write() as session:
        row = session.get(Sale, sale_id, with_for_update=True)
        customer = get_customer(session, a.customer.customer_no, for_update=True)
        assert row is not None
        row.rewrites += 1
        row.card_serial = contents.serial_hex
        customer.card_param_version, customer.card_tariff_version_id = versions
        audit.record(
            session,
            action="rewrite",
            operator_id=actor.operator_id,
            counter_id=actor.counter_id,
            clock=clock,
            target=sale_id,
            detail={"purchase_count": row.purchase_count, "rewrites": row.rewrites},
        )
        ledger.enqueue(
            session,
            "rewrite",
            f"{sale_id[:30]}-r{row.rewrites}",
            {
                "sale_id": sale_id,
                "rewrite_no": row.rewrites,
                "operator_id": actor.operator_id,
                "counter_id": actor.counter_id,
            },
            0,
            clock,
            training=row.training,
        )
    return SaleOutcome(ledger.get_sale(db, sale_id), a, result.files, result.apdus, None)


def replace_card(
    db: Database,
    terminal: CardTerminal,
    *,
    actor: Principal,
    customer_no: str,
    clock: Clock,
    settings: Settings,
    approval_request: str,
) -> tuple[CustomerView, int]:
    """A lost or damaged card: a blank card becomes the customer's card carrying the last
    purchase (so a purchase the meter had not loaded still reaches it), the old serial is
    blacklisted, the fee is taken.  Needs an approved ``replace_card`` request.

    The card is issued first; then one transaction binds it, blacklists the old card, uses up
    the approval and books the fee on the counter's open shift as that transaction reads it
    (locked).  A failed issue, or no open shift by then, changes nothing: the approval can be
    used for a retry, with a new blank card or with the card that was issued.  A write that
    fails after the binding is finished by presenting the same card again (no new fee)."""
    actor.authorize(Action.REPLACE_CARD, clock)
    fee = int(settings.get(REPLACEMENT_FEE.key))
    utility_code = str(settings.get(UTILITY_CODE.key))
    with db.read() as session:
        customer = get_customer(session, customer_no)
        if not customer.card_serial:
            raise Conflict(
                N_("Customer {customer_no} has no card yet; open the account instead."),
                customer_no=customer_no,
            )
        if ledger.unresolved_sale(session, customer.id) is not None:
            raise Conflict(
                N_("Customer {customer_no} has an unfinished sale; recover it first."),
                customer_no=customer_no,
            )
        old: str = customer.card_serial
        done_count = customer.purchase_count
    present = _read_or_blank(terminal)
    if present is not None and present.serial_hex == old:
        incomplete = present.parameters is None or (
            present.purchase is None or present.purchase.purchase_count < done_count
        )
        if not incomplete:
            raise CardRefused(reason=N_("it is not blank; a replacement is made on a blank card"))
        # the card an interrupted replacement bound already: finish it, no new fee
        with db.read() as session:
            customer = get_customer(session, customer_no)
            change, versions = _card_change(
                session,
                customer,
                _last_completed(session, customer),
                utility_code,
                UserCardType.REPLACEMENT,
                clock.now(),
                force_params=True,
            )
        terminal.write(change, expect_serial=present.serial)
        with db.write() as session:
            customer = get_customer(session, customer_no, for_update=True)
            customer.card_param_version, customer.card_tariff_version_id = versions
            audit.record(
                session,
                action="replace_card_resumed",
                operator_id=actor.operator_id,
                counter_id=actor.counter_id,
                clock=clock,
                target=customer_no,
                detail={"serial": present.serial_hex},
            )
        return customer_view(db, customer_no), 0
    if shifts.current_shift(db, actor.counter_id) is None:  # before a card is issued for nothing
        raise ShiftError(
            N_("No shift is open on counter {counter}. Open a shift first."),
            counter=actor.counter_id,
        )
    card = _card_to_bind(db, terminal, present, customer_no)
    new = card.serial_hex
    with db.write() as session:
        customer = get_customer(session, customer_no, for_update=True)
        if customer.card_serial != old or ledger.unresolved_sale(session, customer.id):
            raise Conflict(
                N_(
                    "The card or the sales of customer {customer_no} changed while the card "
                    "was issued; try again."
                ),
                customer_no=customer_no,
            )
        # the shift the fee is booked on, read and locked here: a shift closed meanwhile
        # stops the replacement instead of taking a fee into a closed cash count
        shift = session.scalar(
            select(Shift)
            .where(Shift.counter_id == actor.counter_id, Shift.closed_at.is_(None))
            .with_for_update()
        )
        if shift is None:
            raise ShiftError(
                N_("No shift is open on counter {counter}. Open a shift first."),
                counter=actor.counter_id,
            )
        if new != old:  # the same card erased and issued again stays usable
            _check_bindable(session, new, customer_no)
        approvals.consume(
            session,
            approval_request,
            action=Action.REPLACE_CARD.value,
            target=customer_no,
            operator_id=actor.operator_id,
            clock=clock,
        )
        if new != old and session.get(CardBlacklist, old) is None:
            session.add(
                CardBlacklist(
                    serial=old, customer_id=customer.id, reason="replaced", created_at=clock.now()
                )
            )
        customer.card_serial = new
        last = _last_completed(session, customer)
        payment = FeePayment(
            id=str(uuid.uuid4()),
            customer_id=customer.id,
            kind="replacement",
            amount=fee,
            operator_id=actor.operator_id,
            counter_id=actor.counter_id,
            shift_id=shift.id,
            created_at=clock.now(),
        )
        session.add(payment)
        audit.record(
            session,
            action="replace_card",
            operator_id=actor.operator_id,
            counter_id=actor.counter_id,
            clock=clock,
            target=customer_no,
            detail={"old": old, "new": new, "fee": fee, "shift": shift.id},
        )
        ledger.enqueue(
            session,
            "replacement",
            payment.id,
            {"customer_no": customer_no, "old": old, "new": new},
            fee,
            clock,
            training=is_training(settings),
        )
        change, versions = _card_change(
            session,
            customer,
            last,
            utility_code,
            UserCardType.REPLACEMENT,
            clock.now(),
            force_params=True,
        )
    checkpoint("card_bound")
    terminal.write(change, expect_serial=card.serial)
    _note_card_versions(db, customer_no, versions)
    return customer_view(db, customer_no), fee


def _note_card_versions(db: Database, customer_no: str, versions: tuple[int, int | None]) -> None:
    """Remember which parameter and tariff versions the customer's card now carries."""
    with db.write() as session:
        customer = get_customer(session, customer_no, for_update=True)
        customer.card_param_version, customer.card_tariff_version_id = versions


def _last_completed(session: Session, customer: Customer) -> Sale | None:
    return session.scalar(
        select(Sale).where(
            Sale.customer_id == customer.id,
            Sale.purchase_count == customer.purchase_count,
            Sale.state == SaleState.COMPLETED.value,
            Sale.kind == SaleKind.CARD.value,
        )
    )


def reverse_sale(
    db: Database,
    terminal: CardTerminal,
    *,
    actor: Principal,
    sale_id: str,
    clock: Clock,
    settings: Settings,
    approval_request: str,
) -> ledger.SaleView:
    """Take a completed sale back while its card is present and the meter has not loaded it,
    within the same shift (or day, setting). The card's purchase file is restored to the
    purchase before; the ledger gets a reversal linked to the sale."""
    actor.authorize(Action.REVERSE, clock)
    contents = terminal.read()
    a = assess(db, contents, clock, settings=settings, actor=actor)
    with db.write() as session:
        sale = session.get(Sale, sale_id, with_for_update=True)
        if sale is None:
            raise NotFound(what=N_("Sale"), key=sale_id)
        if sale.state != SaleState.COMPLETED.value or sale.kind != SaleKind.CARD.value:
            raise ReversalRefused(reason=N_("only a completed card sale can be reversed"))
        customer = get_customer(session, a.customer.customer_no, for_update=True)
        if sale.customer_id != customer.id or sale.purchase_count != customer.purchase_count:
            raise ReversalRefused(reason=N_("it is not this card's latest purchase"))
        if a.card_count != sale.purchase_count or (
            contents.purchase and contents.purchase.sale_tag != uuid.UUID(sale.id).bytes[:8]
        ):
            raise ReversalRefused(reason=N_("the card does not hold this purchase"))
        if contents.write_back is None and sale.card_serial != contents.serial_hex:
            # a replacement card without a write-back of its own cannot say what the meter
            # loaded from the lost card
            raise ReversalRefused(reason=N_("the meter may have loaded it from the lost card"))
        if a.meter_count is not None and a.meter_count >= (sale.purchase_count or 0):
            raise ReversalRefused(reason=N_("the meter has already loaded it"))
        shift = session.scalar(
            select(Shift).where(Shift.counter_id == actor.counter_id, Shift.closed_at.is_(None))
        )
        if shift is None:
            raise ShiftError(
                N_("No shift is open on counter {counter}. Open a shift first."),
                counter=actor.counter_id,
            )
        window = str(settings.get(REVERSAL_WINDOW.key))
        if window == "shift" and sale.shift_id != shift.id:
            raise ReversalRefused(reason=N_("it was sold in another shift"))
        if window == "day" and sale.created_at.date() != clock.now().date():
            raise ReversalRefused(reason=N_("it was sold on another day"))
        approvals.consume(
            session,
            approval_request,
            action=Action.REVERSE.value,
            target=sale_id,
            operator_id=actor.operator_id,
            clock=clock,
        )
        approver = _approver_of(session, approval_request)
        previous = session.scalar(
            select(Sale).where(
                Sale.customer_id == customer.id,
                Sale.purchase_count == (sale.purchase_count or 0) - 1,
                Sale.state == SaleState.COMPLETED.value,
                Sale.kind == SaleKind.CARD.value,
            )
        )
        restore = purchase_record(previous) if previous is not None else EMPTY_PURCHASE
        rev = Reversal(
            id=str(uuid.uuid4()),
            sale_id=sale.id,
            operator_id=actor.operator_id,
            approver_id=approver,
            counter_id=actor.counter_id,
            shift_id=shift.id,
            amount=sale.amount,
            state="pending",
            created_at=clock.now(),
        )
        session.add(rev)
        audit.record(
            session,
            action="reversal_begin",
            operator_id=actor.operator_id,
            counter_id=actor.counter_id,
            clock=clock,
            target=sale.id,
            detail={"reversal": rev.id, "approver": approver},
        )
        rev_id = rev.id
    checkpoint("reversal_pending")
    terminal.write(CardWrite(purchase=restore), expect_serial=contents.serial)
    checkpoint("reversal_written")
    with db.write() as session:
        rev_row = session.get(Reversal, rev_id, with_for_update=True)
        sale = session.get(Sale, sale_id, with_for_update=True)
        assert rev_row is not None and sale is not None
        customer = get_customer(session, a.customer.customer_no, for_update=True)
        _finish_reversal(session, rev_row, sale, customer, clock)
    return ledger.get_sale(db, sale_id)


def _approver_of(session: Session, request_id: str) -> str:
    from app.persistence.models import ApprovalRequest

    req = session.get(ApprovalRequest, request_id)
    if req is None or not req.approvals:
        raise approvals.ApprovalRequired(action=Action.REVERSE.label)
    return str(req.approvals[-1]["operator"])


def _finish_reversal(
    session: Session, rev: Reversal, sale: Sale, customer: Customer, clock: Clock
) -> None:
    sale.state = SaleState.REVERSED.value
    sale.updated_at = clock.now()
    customer.purchase_count = (sale.purchase_count or 1) - 1
    # the whole amount goes back to the customer: what it paid off is owed again
    for item in session.scalars(
        select(ArrearsItem).where(ArrearsItem.settled_by_sale_id == sale.id)
    ):
        item.settled_by_sale_id = None
    rev.state = "completed"
    rev.completed_at = clock.now()
    audit.record_sale(
        session,
        sale,
        action="reversal_complete",
        operator_id=rev.operator_id,
        counter_id=rev.counter_id,
        clock=clock,
        detail={"reversal": rev.id, "amount": rev.amount},
    )
    ledger.enqueue(
        session,
        "reversal",
        rev.id,
        {"sale_id": sale.id},
        -rev.amount,
        clock,
        training=sale.training,
    )


# --------------------------------------------------------------------------- remote customers


def is_training(settings: Settings) -> bool:
    """Training mode: sales are marked so and never sent to the central system."""
    return bool(settings.get(TRAINING_MODE.key))


def remote_payment(
    db: Database,
    *,
    actor: Principal,
    customer_no: str,
    amount: int,
    clock: Clock,
    settings: Settings,
    cash_received: int | None = None,
    override_request: str | None = None,
) -> ledger.SaleView:
    """A payment for a remote fee-control meter: recorded, queued for the central system,
    which issues it to the meter; ``remote_status`` follows (queued, issued, failed)."""
    check_fen(amount)
    actor.authorize(Action.SELL, clock)
    check_offline_limits(db, actor, amount, clock, settings, override_request)
    sale_id = str(uuid.uuid4())
    training = is_training(settings)
    now = clock.now()
    with db.write() as session:
        shift = shifts.open_shift_for(session, actor.counter_id)
        customer = get_customer(session, customer_no, for_update=True)
        if customer.meter_kind != MeterKind.REMOTE:
            raise Conflict(
                N_("Customer {customer_no} has a card meter; sell onto the card."),
                customer_no=customer_no,
            )
        if customer.status != CustomerStatus.ACTIVE:
            raise Conflict(
                N_("Customer {customer_no} is {status}; only active customers can buy."),
                customer_no=customer_no,
                status=customer.status,
            )
        if cash_received is not None and cash_received < amount:
            raise Conflict(
                N_("Cash received {cash} is less than the amount {amount}."),
                cash=cash_received,
                amount=amount,
            )
        split = split_payment(
            amount, ledger.limits_for(session, customer, customer.meter_remaining or 0)
        )
        tariff = version_in_force(session, customer.tariff_plan_id, now)
        from app.domain import pricing

        sale = Sale(
            id=sale_id,
            kind=SaleKind.REMOTE.value,
            customer_id=customer.id,
            purchase_count=None,
            amount=split.amount,
            arrears=split.arrears,
            fees=split.fees,
            credit=split.credit,
            energy_wh=pricing.amount_to_energy(tariff.spec, split.credit),
            tariff_version_id=tariff.id,
            operator_id=actor.operator_id,
            counter_id=actor.counter_id,
            shift_id=shift.id,
            state=SaleState.COMPLETED.value,
            cash_received=cash_received,
            created_at=now,
            updated_at=now,
            remote_status="queued",
            training=training,
        )
        session.add(sale)
        session.flush()
        ledger.settle_dues(session, sale, customer)
        ledger.enqueue(
            session,
            "remote",
            sale_id,
            {"customer_no": customer_no},
            split.amount,
            clock,
            training=training,
        )
        audit.record_sale(
            session,
            sale,
            action="remote_payment",
            operator_id=actor.operator_id,
            counter_id=actor.counter_id,
            clock=clock,
            detail={"customer_no": customer_no, "amount": split.amount},
        )
    return ledger.get_sale(db, sale_id)


def tariff_version(session: Session, version_id: int) -> TariffVersion | None:
    return session.get(TariffVersion, version_id)
