"""Selling onto cards, crash-safe: the card sale (:mod:`.sale`, start here), what a presented card
means (:mod:`.assessment`, :mod:`.resolution`), the offline limits (:mod:`.offline`), card work
other than a sale (:mod:`.cardops`: open account, rewrite, replacement, exchange), reversal
(:mod:`.reversal`) and payments for remote meters (:mod:`.remote`).

``from app.services import selling; selling.sell(...)``: every public name is re-exported here.
"""

from app.services.selling.assessment import Assessment
from app.services.selling.assessment import Quote
from app.services.selling.assessment import assess
from app.services.selling.assessment import sold_credit
from app.services.selling.cardops import ExchangeOutcome
from app.services.selling.cardops import erase_exchanged_card
from app.services.selling.cardops import exchange_card
from app.services.selling.cardops import open_account
from app.services.selling.cardops import replace_card
from app.services.selling.cardops import rewrite
from app.services.selling.errors import CardAnomaly
from app.services.selling.errors import CardBehind
from app.services.selling.errors import CardRefused
from app.services.selling.errors import InsertIntoMeterFirst
from app.services.selling.errors import NoRewriteNeeded
from app.services.selling.errors import OfflineLimitReached
from app.services.selling.errors import ReversalRefused
from app.services.selling.errors import SaleInDoubt
from app.services.selling.offline import OfflineLimits
from app.services.selling.offline import OfflineOutlook
from app.services.selling.offline import check_offline_limits
from app.services.selling.offline import offline_outlook
from app.services.selling.readiness import Readiness
from app.services.selling.readiness import sale_readiness
from app.services.selling.records import EMPTY_PURCHASE
from app.services.selling.records import card_change
from app.services.selling.records import purchase_record
from app.services.selling.remote import remote_payment
from app.services.selling.reversal import reverse_sale
from app.services.selling.sale import SaleOutcome
from app.services.selling.sale import is_training
from app.services.selling.sale import recover_at_start
from app.services.selling.sale import recover_with_card
from app.services.selling.sale import sell
from app.services.selling.sale import unresolved

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
