"""The sales ledger's rules: sale states and their transitions, purchase limits, payment split.

A card sale creates purchase ``N+1`` on the customer's card, where ``N`` is the customer's last
completed purchase count.  It is written to the ledger as ``pending`` *before* the card is
touched, and becomes ``completed`` only after the card write is verified; ``failed`` when the card
proves it never got the purchase; ``in_doubt`` when nobody knows yet (a crash, a pulled card);
``reversed`` when a completed sale is taken back from the card.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.domain.labels import Labelled
from app.errors import AmountError, InvalidTransition
from app.i18n import N_
from app.money import MAX_FEN, check_fen


class SaleState(Labelled):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    REVERSED = "reversed"

    @classmethod
    def _labels(cls) -> dict[SaleState, str]:
        return _SALE_STATE_LABELS


_SALE_STATE_LABELS = {
    SaleState.PENDING: N_("pending"),
    SaleState.COMPLETED: N_("completed"),
    SaleState.FAILED: N_("failed"),
    SaleState.IN_DOUBT: N_("in doubt"),
    SaleState.REVERSED: N_("reversed"),
}


class Situation(Labelled):
    """What a presented card means for a new sale (the assessment's verdict)."""

    READY = "ready"
    UNLOADED = "unloaded"  # its last purchase is not in the meter yet
    BEHIND = "behind"  # the card is behind the ledger: rewrite it
    ANOMALY = "anomaly"  # it does not agree with the ledger

    @classmethod
    def _labels(cls) -> dict[Situation, str]:
        return _SITUATION_LABELS


_SITUATION_LABELS = {
    Situation.READY: N_("ready for a sale"),
    Situation.UNLOADED: N_("its last purchase is not loaded into the meter yet"),
    Situation.BEHIND: N_("behind the ledger; rewrite it"),
    Situation.ANOMALY: N_("does not agree with the ledger"),
}


class ReversalState(Labelled):
    """A reversal is *pending* from its approval until the card shows the purchase before,
    then *completed*; *failed* when the card still holds the purchase."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"

    @classmethod
    def _labels(cls) -> dict[ReversalState, str]:
        return _REVERSAL_STATE_LABELS


_REVERSAL_STATE_LABELS = {
    ReversalState.PENDING: N_("pending"),
    ReversalState.COMPLETED: N_("completed"),
    ReversalState.FAILED: N_("failed"),
}


class SaleKind(enum.StrEnum):
    CARD = "card"  # credit written onto the user card at the counter
    REMOTE = "remote"  # payment for a remote fee-control meter, issued by the central system


UNRESOLVED = frozenset({SaleState.PENDING, SaleState.IN_DOUBT})

TRANSITIONS: dict[SaleState, frozenset[SaleState]] = {
    SaleState.PENDING: frozenset({SaleState.COMPLETED, SaleState.FAILED, SaleState.IN_DOUBT}),
    SaleState.IN_DOUBT: frozenset({SaleState.COMPLETED, SaleState.FAILED}),
    SaleState.COMPLETED: frozenset({SaleState.REVERSED}),
    SaleState.FAILED: frozenset(),
    SaleState.REVERSED: frozenset(),
}


def check_transition(sale_id: str, current: SaleState, target: SaleState) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(sale_id=sale_id, state=current.value, target=target.value)


@dataclass(frozen=True, slots=True)
class PurchaseLimits:
    minimum: int  # fen: arrears to collect + fees (at least 1 fen)
    maximum: int  # fen: what the credit ceiling still allows, plus the deductions
    arrears_due: int
    fees_due: int


def purchase_limits(
    *, arrears_due: int, fees_due: int, credit_ceiling: int, meter_balance: int
) -> PurchaseLimits:
    """Minimum and maximum payment for a sale.

    The minimum covers the arrears that must be collected first plus the fees; the credit a sale
    loads is the payment minus those deductions, and the balance on the meter plus that credit
    may not pass the credit ceiling (the hoarding limit).  A negative meter balance (overdraft in
    use) leaves more room under the ceiling.
    """
    deductions = arrears_due + fees_due
    room = max(0, credit_ceiling - meter_balance)
    minimum = max(1, deductions)
    maximum = min(MAX_FEN, deductions + room)
    return PurchaseLimits(minimum, maximum, arrears_due, fees_due)


@dataclass(frozen=True, slots=True)
class PaymentSplit:
    amount: int
    arrears: int
    fees: int
    credit: int


def split_payment(amount: int, limits: PurchaseLimits) -> PaymentSplit:
    """Split a payment into arrears, fees and the credit loaded onto the card."""
    check_fen(amount)
    if amount < limits.minimum:
        raise AmountError(
            N_(
                "The amount {value} is below the minimum {minimum}: it must cover the arrears and fees."
            ),
            value=amount,
            minimum=limits.minimum,
        )
    if amount > limits.maximum:
        raise AmountError(
            N_("The amount {value} is above the maximum {maximum} the credit ceiling allows."),
            value=amount,
            maximum=limits.maximum,
        )
    credit = amount - limits.arrears_due - limits.fees_due
    return PaymentSplit(amount, limits.arrears_due, limits.fees_due, credit)
