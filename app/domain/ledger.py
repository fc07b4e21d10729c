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
from app.errors import AmountError
from app.errors import InvalidTransition
from app.i18n import N_
from app.i18n import Msg
from app.money import MAX_FEN
from app.money import check_fen


class SaleState(Labelled):
    PENDING = "pending", N_("pending")
    COMPLETED = "completed", N_("completed")
    FAILED = "failed", N_("failed")
    IN_DOUBT = "in_doubt", N_("in doubt")
    REVERSED = "reversed", N_("reversed")


class Situation(Labelled):
    """What a presented card means for a new sale (the assessment's verdict)."""

    READY = "ready", N_("ready for a sale")
    UNLOADED = "unloaded", N_("its last purchase is not loaded into the meter yet")
    BEHIND = "behind", N_("behind the ledger; rewrite it")
    ANOMALY = "anomaly", N_("does not agree with the ledger")


class ReversalState(Labelled):
    """A reversal is *pending* from its approval until the card shows the purchase before,
    then *completed*; *failed* when the card still holds the purchase."""

    PENDING = "pending", N_("pending")
    COMPLETED = "completed", N_("completed")
    FAILED = "failed", N_("failed")


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
        # a state's value is the msgid of its name wherever the catalog has one
        raise InvalidTransition(sale_id=sale_id, state=Msg(current.value), target=Msg(target.value))


# the credit ceiling of a customer without one (the largest credit a purchase file holds)
NO_CREDIT_CEILING = 999_999_99
# the least credit a sale loads: a purchase of nothing would occupy the card until it has been
# in the meter, and block the customer's next sale for no electricity
MIN_CREDIT = 1


@dataclass(frozen=True, slots=True)
class PurchaseLimits:
    minimum: int  # fen: arrears to collect + fees + the least credit
    maximum: int  # fen: what the credit ceiling still allows, plus the deductions
    arrears_due: int
    fees_due: int
    ceiling_set: bool = False  # the customer has a real credit ceiling (not the "none" value)

    @property
    def at_ceiling(self) -> bool:
        """The meter holds as much credit as the ceiling allows: no sale can load any."""
        return self.maximum < self.minimum


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
    minimum = deductions + MIN_CREDIT
    maximum = min(MAX_FEN, deductions + room)
    return PurchaseLimits(
        minimum, maximum, arrears_due, fees_due, credit_ceiling < NO_CREDIT_CEILING
    )


@dataclass(frozen=True, slots=True)
class PaymentSplit:
    amount: int
    arrears: int
    fees: int
    credit: int


def split_payment(amount: int, limits: PurchaseLimits) -> PaymentSplit:
    """Split a payment into arrears, fees and the credit loaded onto the card."""
    check_fen(amount)
    if limits.at_ceiling:
        raise AmountError(
            N_(
                "The amount {value} cannot be sold: the meter already holds the most credit "
                "the credit ceiling allows."
            ),
            value=amount,
        )
    if amount < limits.minimum:
        raise AmountError(
            N_(
                "The amount {value} is below the minimum {minimum}: it must cover the arrears and "
                "fees and load some credit."
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
