"""The meter change slip (换表单): one A5 page in one language, signed by the customer and the
technician.

    render_meter_change_pdf(change, language="zh_CN", tz="Asia/Shanghai") -> bytes

It says who, which meters, what the old meter held (its final reading and remaining balance, a
purchase it had not loaded), what was carried to the new meter and under which purchase count,
an overdraft turned into arrears, and who did and approved it when.  A transfer, not a sale: no
money changes hands, so the slip carries no payment.  Same font and deterministic output as the
receipts (:mod:`printing.receipt`).
"""

from __future__ import annotations

import io

from reportlab.lib.pagesizes import A5
from reportlab.pdfgen.canvas import Canvas

from app.i18n import N_
from app.i18n import normalize_language
from app.localtime import local_time
from app.services.lifecycle.meter_change import MeterChange
from printing.fonts import SAVE_LOCK
from printing.fonts import font_name
from printing.labels import NOT_AVAILABLE
from printing.labels import Field
from printing.labels import energy
from printing.labels import money
from printing.labels import name_and_code
from printing.labels import text
from printing.receipt import MM
from printing.receipt import _Text

TITLE = N_("Meter change slip")
NOTE = N_("A transfer of the old meter's credit, not a sale: no money changed hands.")
SOURCE_TEXT = {
    "card": N_("the card's write-back from the old meter"),
    "read": N_("a meter read (DL/T 645)"),
    "typed": N_("typed from the old meter's display (approved)"),
}
SIGN_CUSTOMER = N_("Customer's signature")
SIGN_TECHNICIAN = N_("Technician's signature")
SECONDS = "%Y-%m-%d %H:%M:%S"


def slip_fields(change: MeterChange, language: str, tz: str) -> list[Field]:
    """What the slip prints, translated, in printing order."""

    def field(label: str, value: str, key: str) -> Field:
        return Field(text(label, language), value, key)

    c = change.customer
    reading = NOT_AVAILABLE if change.energy_wh is None else energy(change.energy_wh, language)
    return [
        field(N_("Customer"), name_and_code(c.name, c.customer_no, language), "customer"),
        field(N_("Address"), c.address or NOT_AVAILABLE, "address"),
        field(N_("Old meter"), change.old_meter_no, "old_meter"),
        field(N_("Final reading of the old meter"), reading, "final_reading"),
        field(N_("Remaining on the old meter"), money(change.remaining_fen, language), "remaining"),
        field(N_("Purchase not yet loaded"), money(change.unloaded_fen, language), "unloaded"),
        field(N_("New meter"), change.new_meter_no, "new_meter"),
        field(
            N_("Credit carried to the new meter"), money(change.carried_fen, language), "carried"
        ),
        field(N_("Purchase count carried"), str(change.purchase_count), "purchase_count"),
        field(N_("Overdraft turned into arrears"), money(change.arrears_fen, language), "arrears"),
        field(N_("Taken from"), text(SOURCE_TEXT[change.source], language), "source"),
        field(N_("Operator"), change.operator_id, "operator"),
        field(N_("Approver"), change.approver_id or NOT_AVAILABLE, "approver"),
        field(N_("Counter"), change.counter_id, "counter"),
        field(N_("Time"), local_time(change.created_at, tz, SECONDS), "time"),
        field(N_("Slip no."), change.event_id, "event"),
    ]


def render_meter_change_pdf(change: MeterChange, *, language: str, tz: str) -> bytes:
    """The slip of ``change`` as a PDF document in ``language`` ("zh_CN" or "en"), times in
    the office's time zone ``tz``."""
    lang = normalize_language(language)
    t = _Text(font_name())
    width, height = A5
    margin = 14 * MM
    size = 10.0
    buf = io.BytesIO()
    c = Canvas(buf, pagesize=A5, invariant=1, pageCompression=1)
    c.setTitle(f"{text(TITLE, lang)} {change.event_id}")
    c.setCreator("CardVend")
    c.setAuthor("CardVend")
    y = height - margin - 16
    t.draw(c, width / 2, y, text(TITLE, lang), 16, align="center", bold=True)
    y -= 28
    label_w = (width - 2 * margin) * 0.45
    value_x = margin + label_w + 6
    value_w = width - margin - value_x
    for f in slip_fields(change, lang, tz):
        lines = t.wrap(f.value, size, value_w) or [""]
        t.draw(c, margin, y, f.label, size, bold=f.key in ("carried", "new_meter"))
        for line in lines:
            t.draw(c, value_x, y, line, size)
            y -= size * 1.5
        y -= 2
    y -= 6
    for line in t.wrap(text(NOTE, lang), size - 1, width - 2 * margin):
        t.draw(c, margin, y, line, size - 1)
        y -= size * 1.4
    y -= 30
    half = (width - 2 * margin) / 2
    for i, label in enumerate((SIGN_CUSTOMER, SIGN_TECHNICIAN)):
        x = margin + i * half
        c.line(x, y, x + half - 12, y)
        t.draw(c, x, y - size * 1.4, text(label, lang), size - 1)
    c.showPage()
    with SAVE_LOCK:  # font subsetting is not thread-safe
        c.save()
    return buf.getvalue()


class PdfSlipRenderer:
    """:class:`app.ports.SlipRenderer` with reportlab."""

    def meter_change_pdf(self, change: MeterChange, *, language: str, tz: str) -> bytes:
        return render_meter_change_pdf(change, language=language, tz=tz)
