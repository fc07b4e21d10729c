"""The errors of selling onto cards."""

from __future__ import annotations

from app.errors import CardVendError
from app.errors import Conflict
from app.i18n import N_


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


class NoRewriteNeeded(Conflict):
    code = "no_rewrite"
    template = N_("This card does not need a rewrite (card {card}, ledger {ledger}).")


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
