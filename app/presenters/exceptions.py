"""What a person reads for the station's exceptions queue (seed 3.14): its state and step codes,
shared by ``cardvend exceptions`` and the window's exceptions page."""

from __future__ import annotations

from app.i18n import N_
from app.i18n import translate

# the states a list may be filtered by ("open": not closed)
STATES = ("open", "new", "assigned", "explained", "resolved", "escalated")
# the steps a supervisor takes
STEPS = ("assign", "explain", "resolve", "escalate")
LABELS = {
    "open": N_("open"),
    "new": N_("new"),
    "assigned": N_("assigned"),
    "explained": N_("explained"),
    "resolved": N_("resolved"),
    "escalated": N_("escalated"),
    "opened": N_("opened"),
    "assign": N_("assign"),
    "explain": N_("explain"),
    "resolve": N_("resolve"),
    "escalate": N_("escalate"),
}

# what the station opens an exception for (sync/central/control.py, card_checks.py)
KINDS = {
    "reading_missing": N_("no reading"),
    "reading_incomplete": N_("incomplete reading"),
    "reading_backwards": N_("reading went backwards"),
    "reading_jump": N_("reading jumped"),
    "no_tariff": N_("no tariff in force"),
    "balance_mismatch": N_("card balance mismatch"),
    "purchase_count_gap": N_("purchase count gap"),
    "illegal_insert": N_("illegal card inserts"),
}


def kind_label(code: str) -> str:
    """What the station opened the exception for, in the current language (an unknown kind as
    its code)."""
    return translate(KINDS[code]) if code in KINDS else code


def label(code: str | None) -> str:
    """The state or step ``code`` in the current language ("-" for none)."""
    return translate(LABELS[code]) if code in LABELS else (code or "-")
