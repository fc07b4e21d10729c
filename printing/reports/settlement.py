"""The settlement statement of a closed account (A4 PDF, one language: ``zh_CN`` or ``en``):
the customer, what was left (card credit the meter had not loaded, the meter's balance), the
arrears and fees paid out of it, and what was refunded in cash or kept as a credit note, with
lines to sign for the customer and the teller."""

from __future__ import annotations

import datetime as dt
from typing import Any

from reportlab.platypus import Spacer
from reportlab.platypus import Table

from app.domain import settlement as st
from app.i18n import N_
from printing.reports.labels import WIDTH
from printing.reports.labels import _t
from printing.reports.labels import _when
from printing.reports.layout import _money_table
from printing.reports.layout import _Page

TITLE = N_("Account settlement statement")
TRAINING = N_("TRAINING — not a real close")
PREVIEW = N_("PREVIEW — the account is not closed yet")
SECTION_CUSTOMER = N_("Customer")
SECTION_SETTLEMENT = N_("Settlement")
CUSTOMER_NO = N_("Customer no.")
NAME = N_("Customer name")
ADDRESS = N_("Supply address")
METER_NO = N_("Meter no.")
CARD = N_("Card")
CLOSED_AT = N_("Closed at")
CLOSE_NO = N_("Close no.")
OPERATOR = N_("Operator")
APPROVER = N_("Approved by")
COUNTER = N_("Counter")
REASON = N_("Reason")
UNLOADED = N_("Card credit not loaded by the meter ({count} purchases)")
METER_LEFT = N_("Meter balance ({source})")
ARREARS = N_("Arrears paid")
FEES = N_("Fees paid")
BALANCE = N_("Balance")
REFUND = N_("Refunded in cash")
CREDIT_NOTE = N_("Kept as a credit note")
SIGN_CUSTOMER = N_("Customer")
SIGN_TELLER = N_("Teller")
SOURCE_TEXT = {
    st.FROM_WRITE_BACK: N_("the meter's last write-back"),
    st.FROM_METER_READ: N_("read from the meter"),
    st.NOTHING_SOLD: N_("nothing was sold"),
}


def settlement_pdf(s: st.Settlement, *, language: str) -> bytes:
    """The statement of ``s`` (a preview when ``s.event_id`` is None)."""
    generated = s.closed_at or dt.datetime.now(dt.UTC)
    page = _Page(_t(TITLE, language), language, generated)
    t = page.t
    story: list[Any] = [page.para(page.title, page.h1)]
    if s.event_id is None:
        story.append(page.para(t(PREVIEW), page.h2))
    if s.training:
        story.append(page.para(t(TRAINING), page.h2))
    story.append(page.para(t(SECTION_CUSTOMER), page.h2))
    pairs = [
        (CUSTOMER_NO, s.customer_no),
        (NAME, s.name),
        (ADDRESS, s.address),
        (METER_NO, s.meter_no),
        (CARD, _card(s, t)),
        (CLOSED_AT, _when(s.closed_at)),
        (CLOSE_NO, (s.event_id or "")[:8].upper()),
        (COUNTER, s.counter_id),
        (OPERATOR, s.operator_id),
        (APPROVER, s.approver_id or ""),
    ]
    if s.reason:
        pairs.append((REASON, s.reason))
    story.append(page.fields(pairs))
    story.append(page.para(t(SECTION_SETTLEMENT), page.h2))
    story += _money_table(
        page,
        [
            (t(UNLOADED, count=s.unloaded_purchases), s.unloaded),
            (t(METER_LEFT, source=t(SOURCE_TEXT[s.meter_source])), s.meter_remaining),
            (t(ARREARS), -s.arrears),
            (t(FEES), -s.fees),
            (t(BALANCE), s.balance),
            (t(REFUND), s.refund),
            (t(CREDIT_NOTE), s.credit_note),
        ],
    )
    story.append(Spacer(1, 28))
    story.append(
        Table(
            [[t(SIGN_CUSTOMER) + ": ________________", t(SIGN_TELLER) + ": ________________"]],
            colWidths=[WIDTH / 2, WIDTH / 2],
        )
    )
    return page.build(story)


def _card(s: st.Settlement, t: Any) -> str:
    fate = t(st.CARD_TEXT[s.card])
    return f"{s.card_serial} ({fate})" if s.card_serial else fate
