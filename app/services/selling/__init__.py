"""Selling onto cards, crash-safe: the card sale (:mod:`.sale`, start here), what a presented card
means (:mod:`.assessment`, :mod:`.resolution`), the offline limits (:mod:`.offline`), card work
other than a sale (:mod:`.cardops`: open account, rewrite, replacement, exchange), reversal
(:mod:`.reversal`) and payments for remote meters (:mod:`.remote`).

``from app.services import selling; selling.sell(...)``: every public name is re-exported here.
"""

from app.services.selling.assessment import Assessment, Quote, assess, sold_credit
from app.services.selling.cardops import (
    ExchangeOutcome,
    erase_exchanged_card,
    exchange_card,
    open_account,
    replace_card,
    rewrite,
)
from app.services.selling.errors import (
    CardAnomaly,
    CardBehind,
    CardRefused,
    InsertIntoMeterFirst,
    NoRewriteNeeded,
    OfflineLimitReached,
    ReversalRefused,
    SaleInDoubt,
)
from app.services.selling.offline import (
    OfflineLimits,
    OfflineOutlook,
    check_offline_limits,
    offline_outlook,
)
from app.services.selling.readiness import Readiness, sale_readiness
from app.services.selling.records import EMPTY_PURCHASE, card_change, purchase_record
from app.services.selling.remote import remote_payment
from app.services.selling.reversal import reverse_sale
from app.services.selling.sale import (
    SaleOutcome,
    is_training,
    recover_at_start,
    recover_with_card,
    sell,
    unresolved,
)

__all__ = [
    "EMPTY_PURCHASE",
    "Assessment",
    "CardAnomaly",
    "CardBehind",
    "CardRefused",
    "ExchangeOutcome",
    "InsertIntoMeterFirst",
    "NoRewriteNeeded",
    "OfflineLimitReached",
    "OfflineLimits",
    "OfflineOutlook",
    "Quote",
    "Readiness",
    "ReversalRefused",
    "SaleInDoubt",
    "SaleOutcome",
    "assess",
    "card_change",
    "check_offline_limits",
    "erase_exchanged_card",
    "exchange_card",
    "is_training",
    "offline_outlook",
    "open_account",
    "purchase_record",
    "recover_at_start",
    "recover_with_card",
    "remote_payment",
    "replace_card",
    "reverse_sale",
    "rewrite",
    "sale_readiness",
    "sell",
    "sold_credit",
    "unresolved",
]
