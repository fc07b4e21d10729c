"""Receipt PDFs: 80 mm and 58 mm rolls and an A5/A4 statement, in one language each.

    render_receipt_pdf(receipt, size="80", language="zh_CN") -> bytes

* ``"80"`` / ``"58"``: one long page as wide as the roll (72 mm / 48 mm printable), as tall as
  its content: title, marks, sale, customer and payment fields (label left, value right, long
  values wrapped below their label), the QR code with the short sale id and the verification
  code under it, and the marks again at the bottom (the end a teller tears off first).
* ``"a5"`` / ``"a4"``: a statement with tables (sale details, customer, payment items), the
  QR code beside the verification text; a copy mark in the corner and, for a training sale, a
  watermark on every page.

The text comes from :mod:`printing.labels`; the CJK font (:mod:`printing.fonts`) is embedded as
a subset so ``pdftotext`` gives the Chinese back.  Output is deterministic for the same receipt
(reportlab's ``invariant`` mode: fixed dates and document id).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.lib.pagesizes import A4
from reportlab.lib.pagesizes import A5
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from app.domain.receipt import ReceiptData
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import normalize_language
from printing.fonts import SAVE_LOCK
from printing.fonts import font_name
from printing.labels import Field
from printing.labels import ReceiptText
from printing.labels import receipt_text
from printing.labels import wrap

MM = 72 / 25.4
SIZES = ("80", "58", "a5", "a4")
QR_LEVEL = "M"
QR_BORDER = 4  # quiet zone in modules, inside the drawn square

BLACK = (0.0, 0.0, 0.0)
MARK_COLOUR = (0.70, 0.0, 0.0)
GREY_FILL = (0.92, 0.92, 0.92)
WATERMARK_GREY = (0.45, 0.45, 0.45)
WATERMARK_ALPHA = 0.25

Draw = Callable[[Any, float], None]  # (canvas, y of the block's top edge) -> None


@dataclass(frozen=True)
class RollLayout:
    width_mm: float
    printable_mm: float
    font_size: float
    title_size: float
    mark_size: float
    qr_mm: float


@dataclass(frozen=True)
class PageLayout:
    page: tuple[float, float]  # points
    margin_mm: float
    font_size: float
    title_size: float
    mark_size: float
    qr_mm: float


ROLLS = {
    "80": RollLayout(80, 72, 9, 13, 12, 34),
    "58": RollLayout(58, 48, 8, 11, 10, 30),
}
PAGES = {
    "a5": PageLayout(A5, 12, 9, 15, 12, 27),
    "a4": PageLayout(A4, 18, 10, 18, 14, 36),
}


@dataclass(frozen=True)
class Block:
    height: float
    draw: Draw


class _Text:
    """Font measuring and drawing with the embedded CJK font (bold is stroked text)."""

    def __init__(self, font: str) -> None:
        self.font = font

    def width(self, text: str, size: float) -> float:
        return float(stringWidth(text, self.font, size))

    def wrap(self, text: str, size: float, width: float) -> list[str]:
        return wrap(text, width, lambda s: self.width(s, size))

    def draw(
        self,
        c: Any,
        x: float,
        y: float,
        text: str,
        size: float,
        *,
        align: str = "left",
        bold: bool = False,
        colour: tuple[float, float, float] = BLACK,
    ) -> None:
        c.setFont(self.font, size)
        c.setFillColorRGB(*colour)
        if bold:
            c.setStrokeColorRGB(*colour)
            c.setLineWidth(size * 0.045)
        mode = 2 if bold else 0
        if align == "center":
            c.drawCentredString(x, y, text, mode=mode)
        elif align == "right":
            c.drawRightString(x, y, text, mode=mode)
        else:
            c.drawString(x, y, text, mode=mode)
        if bold:
            c.setStrokeColorRGB(*BLACK)
        if colour != BLACK:
            c.setFillColorRGB(*BLACK)


def line_height(size: float) -> float:
    return size * 1.35


def baseline(top: float, size: float) -> float:
    """The baseline of a line whose box starts at ``top`` (PDF y grows upwards)."""
    return top - size * 1.05


# --------------------------------------------------------------------------- QR code


def qr_modules(payload: str) -> list[list[bool]]:
    """The QR code (error level M, version chosen by the data) of ``payload``, row by row,
    True for a dark module; the quiet zone is not included."""
    widget = QrCodeWidget(payload, barLevel=QR_LEVEL, barBorder=QR_BORDER)
    widget.qr.make()
    return [[bool(m) for m in row] for row in widget.qr.modules]


def draw_qr(c: Any, payload: str, x: float, y: float, size: float) -> None:
    """The QR code of ``payload`` as a ``size`` square (quiet zone included) with its lower left
    corner at (x, y).

    Drawn in module units (one ``cm`` scales a module to its size) as one filled path of the
    horizontal runs of dark modules: "col row width 1 re" with whole numbers, written as a
    literal path (formatting ~300 rectangles through reportlab's number formatting took
    longer than the rest of the page)."""
    modules = qr_modules(payload)
    span = len(modules) + 2 * QR_BORDER
    box = size / span
    ops: list[str] = []
    for r, row in enumerate(modules):
        bottom = span - QR_BORDER - r - 1  # module rows count down from the top
        start = None
        for col, dark in enumerate([*row, False]):
            if dark and start is None:
                start = col
            elif not dark and start is not None:
                ops.append(f"{start + QR_BORDER} {bottom} {col - start} 1 re")
                start = None
    c.saveState()
    c.setFillColorRGB(*BLACK)
    c.transform(box, 0, 0, box, x, y)
    c.addLiteral("\n".join([*ops, "f"]))
    c.restoreState()


# --------------------------------------------------------------------------- blocks


def text_block(
    t: _Text,
    lines: Sequence[str],
    size: float,
    x: float,
    *,
    align: str = "left",
    bold: bool = False,
    colour: tuple[float, float, float] = BLACK,
) -> Block:
    lh = line_height(size)

    def draw(c: Any, top: float) -> None:
        for i, line in enumerate(lines):
            t.draw(
                c,
                x,
                baseline(top - i * lh, size),
                line,
                size,
                align=align,
                bold=bold,
                colour=colour,
            )

    return Block(lh * len(lines), draw)


def gap(height: float) -> Block:
    return Block(height, lambda c, top: None)


def rule(x0: float, x1: float, *, dashed: bool = True, space: float = 4.0) -> Block:
    def draw(c: Any, top: float) -> None:
        y = top - space / 2
        c.setLineWidth(0.6)
        if dashed:
            c.setDash(2, 2)
        c.line(x0, y, x1, y)
        if dashed:
            c.setDash()

    return Block(space, draw)


def mark_block(t: _Text, mark: str, size: float, x0: float, x1: float) -> Block:
    """A mark (copy, training, reversed) in bold, centred in a box."""
    pad = size * 0.35
    lines = t.wrap(mark, size, x1 - x0 - 2 * pad)
    lh = line_height(size)
    height = len(lines) * lh + 2 * pad

    def draw(c: Any, top: float) -> None:
        c.setStrokeColorRGB(*MARK_COLOUR)
        c.setLineWidth(1.2)
        c.rect(x0, top - height, x1 - x0, height, stroke=1, fill=0)
        c.setStrokeColorRGB(*BLACK)
        for i, line in enumerate(lines):
            y = baseline(top - pad - i * lh, size)
            t.draw(c, (x0 + x1) / 2, y, line, size, align="center", bold=True, colour=MARK_COLOUR)

    return Block(height + 3, draw)


def marks_row(t: _Text, marks: Sequence[str], size: float, x0: float, x1: float) -> Block:
    """Several marks side by side, sharing the width (the statement)."""
    space = 6.0
    width = (x1 - x0 - space * (len(marks) - 1)) / len(marks)
    boxes = [
        mark_block(t, m, size, x0 + i * (width + space), x0 + i * (width + space) + width)
        for i, m in enumerate(marks)
    ]
    height = max(b.height for b in boxes)

    def draw(c: Any, top: float) -> None:
        for b in boxes:  # equal heights: centre the shorter boxes vertically
            b.draw(c, top - (height - b.height) / 2)

    return Block(height, draw)


def stack(blocks: Sequence[Block]) -> Block:
    """Blocks drawn one under the other, as one block (kept on one page)."""
    parts = list(blocks)

    def draw(c: Any, top: float) -> None:
        y = top
        for b in parts:
            b.draw(c, y)
            y -= b.height

    return Block(sum(b.height for b in parts), draw)


# --------------------------------------------------------------------------- roll layouts


def _roll_field(t: _Text, field: Field, size: float, x0: float, x1: float, bold: bool) -> Block:
    """Label left and value right on one line, or the label and then the value wrapped."""
    width = x1 - x0
    label_w = t.width(field.label, size)
    value_w = t.width(field.value, size)
    lh = line_height(size)
    if label_w + size + value_w <= width:

        def one_line(c: Any, top: float) -> None:
            y = baseline(top, size)
            t.draw(c, x0, y, field.label, size)
            t.draw(c, x1, y, field.value, size, align="right", bold=bold)

        return Block(lh, one_line)
    indent = size
    label_lines = t.wrap(field.label, size, width)
    value_lines = t.wrap(field.value, size, width - indent)

    def wrapped(c: Any, top: float) -> None:
        for i, line in enumerate(label_lines):
            t.draw(c, x0, baseline(top - i * lh, size), line, size)
        base = top - len(label_lines) * lh
        for i, line in enumerate(value_lines):
            t.draw(c, x0 + indent, baseline(base - i * lh, size), line, size, bold=bold)

    return Block(lh * (len(label_lines) + len(value_lines)), wrapped)


EMPHASISED = frozenset({"amount", "credit"})


def _roll_blocks(rt: ReceiptText, layout: RollLayout, t: _Text) -> tuple[float, list[Block]]:
    page_w = layout.width_mm * MM
    x0 = (layout.width_mm - layout.printable_mm) / 2 * MM
    x1 = page_w - x0
    fs = layout.font_size
    centre = page_w / 2
    blocks: list[Block] = []
    blocks.append(
        text_block(
            t,
            t.wrap(rt.title, layout.title_size, x1 - x0),
            layout.title_size,
            centre,
            align="center",
            bold=True,
        )
    )
    blocks.append(gap(3))
    marks = [mark_block(t, m, layout.mark_size, x0, x1) for m in rt.marks]
    blocks += marks
    for group in (rt.sale, rt.customer, rt.payment):
        blocks.append(rule(x0, x1, space=6))
        blocks += [_roll_field(t, f, fs, x0, x1, f.key in EMPHASISED) for f in group]
    if rt.note:
        blocks.append(gap(3))
        blocks.append(text_block(t, t.wrap(rt.note, fs, x1 - x0), fs, x0, bold=True))
    blocks.append(rule(x0, x1, space=8))
    qr = min(layout.qr_mm * MM, x1 - x0)
    blocks.append(
        Block(qr, lambda c, top: draw_qr(c, rt.qr_payload, centre - qr / 2, top - qr, qr))
    )
    under = [rt.short_id, f"{rt.verification_label} {rt.verification_code}", rt.scan_to_verify]
    blocks.append(text_block(t, under[:1], fs + 2, centre, align="center", bold=True))
    lines = [ln for u in under[1:] for ln in t.wrap(u, fs, x1 - x0)]
    blocks.append(text_block(t, lines, fs, centre, align="center"))
    if marks:
        blocks.append(gap(4))
        blocks += marks
    return page_w, blocks


def _render_roll(rt: ReceiptText, layout: RollLayout, font: str) -> bytes:
    t = _Text(font)
    page_w, blocks = _roll_blocks(rt, layout, t)
    top_margin = bottom_margin = 4 * MM
    page_h = top_margin + sum(b.height for b in blocks) + bottom_margin
    buf = io.BytesIO()
    c = _canvas(buf, (page_w, page_h), rt.title, rt)
    y = page_h - top_margin
    for b in blocks:
        b.draw(c, y)
        y -= b.height
    c.showPage()
    with SAVE_LOCK:  # font subsetting is not thread-safe
        c.save()
    return buf.getvalue()


# --------------------------------------------------------------------------- A5 / A4 statement


@dataclass(frozen=True)
class _Cell:
    text: str
    width: float
    shaded: bool = False
    align: str = "left"
    bold: bool = False


def table_row(t: _Text, cells: Sequence[_Cell], size: float, x0: float) -> Block:
    """One table row: cells side by side with borders, text wrapped inside each cell."""
    pad = size * 0.3
    lh = line_height(size)
    wrapped = [t.wrap(cell.text, size, cell.width - 2 * pad) for cell in cells]
    height = max(len(lines) for lines in wrapped) * lh + 2 * pad

    def draw(c: Any, top: float) -> None:
        x = x0
        c.setLineWidth(0.5)
        for cell, lines in zip(cells, wrapped, strict=True):
            if cell.shaded:
                c.setFillColorRGB(*GREY_FILL)
            c.rect(x, top - height, cell.width, height, stroke=1, fill=1 if cell.shaded else 0)
            c.setFillColorRGB(*BLACK)
            for i, line in enumerate(lines):
                y = baseline(top - pad - i * lh, size)
                if cell.align == "right":
                    t.draw(c, x + cell.width - pad, y, line, size, align="right", bold=cell.bold)
                else:
                    t.draw(c, x + pad, y, line, size, bold=cell.bold)
            x += cell.width

    return Block(height, draw)


def _field_rows(
    t: _Text, rows: Sequence[Sequence[Field]], size: float, x0: float, width: float
) -> list[Block]:
    label_w = width * 0.18
    half_value_w = width / 2 - label_w
    blocks = []
    for row in rows:
        cells: list[_Cell] = []
        for field in row:
            value_w = half_value_w if len(row) == 2 else width - label_w
            cells += [_Cell(field.label, label_w, shaded=True), _Cell(field.value, value_w)]
        blocks.append(table_row(t, cells, size, x0))
    return blocks


def _statement_blocks(rt: ReceiptText, layout: PageLayout, t: _Text) -> list[Block]:
    page_w, _ = layout.page
    x0 = layout.margin_mm * MM
    width = page_w - 2 * x0
    fs = layout.font_size
    by_key = {f.key: f for f in rt.fields()}

    def rows(*keys: tuple[str, ...]) -> list[list[Field]]:
        return [[by_key[k] for k in ks] for ks in keys]

    def heading(text: str) -> Block:
        return stack([gap(5), text_block(t, [text], fs + 1, x0, bold=True), gap(1)])

    blocks: list[Block] = [
        text_block(
            t,
            t.wrap(rt.statement_title, layout.title_size, width),
            layout.title_size,
            page_w / 2,
            align="center",
            bold=True,
        ),
        text_block(
            t, t.wrap(by_key["office"].value, fs + 1, width), fs + 1, page_w / 2, align="center"
        ),
        gap(6),
    ]
    if rt.marks:
        blocks.append(marks_row(t, rt.marks, layout.mark_size, x0, x0 + width))
    sale_rows = rows(("office", "counter"), ("operator", "date_time"), ("sale_no",))
    customer_rows = rows(("customer_no", "name"), ("meter_no", "purchase_no"), ("address",))
    for key, group in (("sale", sale_rows), ("customer", customer_rows)):
        first, *rest = _field_rows(t, group, fs, x0, width)
        blocks.append(stack([heading(rt.headings[key]), first]))  # a heading keeps its row
        blocks += rest
    item_w, amount_w = width * 0.62, width * 0.38
    header = table_row(
        t,
        [
            _Cell(rt.headings["item"], item_w, shaded=True, bold=True),
            _Cell(rt.headings["amount"], amount_w, shaded=True, bold=True, align="right"),
        ],
        fs,
        x0,
    )
    blocks.append(stack([heading(rt.headings["payment"]), header]))
    blocks += [_item_row(t, f, fs, x0, item_w, amount_w) for f in rt.payment]
    if rt.note:
        blocks.append(gap(4))
        blocks.append(text_block(t, t.wrap(rt.note, fs, width), fs, x0, bold=True))
    blocks.append(gap(10))
    blocks.append(_qr_with_text(t, rt, layout, x0, width))
    return blocks


def _item_row(t: _Text, f: Field, fs: float, x0: float, item_w: float, amount_w: float) -> Block:
    bold = f.key in EMPHASISED
    return table_row(
        t,
        [_Cell(f.label, item_w, bold=bold), _Cell(f.value, amount_w, align="right", bold=bold)],
        fs,
        x0,
    )


def _qr_with_text(t: _Text, rt: ReceiptText, layout: PageLayout, x0: float, width: float) -> Block:
    qr = layout.qr_mm * MM
    fs = layout.font_size
    text_x = x0 + qr + 4 * MM
    text_w = width - qr - 4 * MM
    lines = [(rt.short_id, fs + 3, True)]
    for u in (f"{rt.verification_label} {rt.verification_code}", rt.scan_to_verify):
        lines += [(ln, fs, False) for ln in t.wrap(u, fs, text_w)]
    text_h = sum(line_height(s) for _, s, _ in lines)

    def draw(c: Any, top: float) -> None:
        draw_qr(c, rt.qr_payload, x0, top - qr, qr)
        y = top - (qr - text_h) / 2
        for text, size, bold in lines:
            t.draw(c, text_x, baseline(y, size), text, size, bold=bold)
            y -= line_height(size)

    return Block(max(qr, text_h), draw)


def _render_statement(rt: ReceiptText, layout: PageLayout, font: str) -> bytes:
    t = _Text(font)
    page_h = layout.page[1]
    margin = layout.margin_mm * MM
    usable = page_h - 2 * margin
    pages: list[list[Block]] = [[]]
    used = 0.0
    for b in _statement_blocks(rt, layout, t):
        if pages[-1] and used + b.height > usable:
            pages.append([])
            used = 0.0
        pages[-1].append(b)
        used += b.height
    buf = io.BytesIO()
    c = _canvas(buf, layout.page, rt.statement_title, rt)
    for number, blocks in enumerate(pages, start=1):
        y = page_h - margin
        for b in blocks:
            b.draw(c, y)
            y -= b.height
        _decorate_page(c, t, rt, layout, number, len(pages))
        c.showPage()
    with SAVE_LOCK:  # font subsetting is not thread-safe
        c.save()
    return buf.getvalue()


def _decorate_page(
    c: Any, t: _Text, rt: ReceiptText, layout: PageLayout, number: int, pages: int
) -> None:
    """What every page carries, drawn over the content: the training watermark (translucent),
    the copy mark in the top right corner and, on a document of several pages, the page
    number."""
    page_w, page_h = layout.page
    margin = layout.margin_mm * MM
    if rt.training_mark:
        c.saveState()
        c.translate(page_w / 2, page_h / 2)
        c.rotate(35)
        c.setFillAlpha(WATERMARK_ALPHA)
        size = page_w / 14
        lines = t.wrap(rt.training_mark, size, page_h * 0.9)
        for i, line in enumerate(lines):
            y = (len(lines) / 2 - i - 0.8) * line_height(size)
            t.draw(c, 0, y, line, size, align="center", colour=WATERMARK_GREY)
        c.restoreState()
    if rt.copy_mark:
        size = layout.mark_size
        t.draw(
            c,
            page_w - margin,
            page_h - margin / 2 - size * 0.8,
            rt.copy_mark,
            size,
            align="right",
            bold=True,
            colour=MARK_COLOUR,
        )
    if pages > 1:
        t.draw(c, page_w / 2, margin / 2, f"{number}/{pages}", layout.font_size - 1, align="center")


# --------------------------------------------------------------------------- entry points


def _canvas(buf: io.BytesIO, size: tuple[float, float], title: str, rt: ReceiptText) -> Any:
    c = Canvas(buf, pagesize=size, invariant=1, pageCompression=1)
    c.setTitle(f"{title} {rt.short_id}")
    c.setCreator("CardVend")
    c.setAuthor("CardVend")
    c.setSubject(rt.qr_payload)
    return c


def render_receipt_pdf(receipt: ReceiptData, *, size: str, language: str) -> bytes:
    """The receipt of ``receipt`` as a PDF document: ``size`` "80", "58" (mm rolls), "a5" or
    "a4"; ``language`` "zh_CN" or "en" (other locale names are normalised).

    Raises :class:`app.errors.ValidationError` for an unknown size and
    :class:`printing.fonts.FontError` if the embedded font cannot be loaded."""
    key = str(size).lower()
    if key not in SIZES:
        raise ValidationError(
            detail=N_("the receipt size {size} is not one of {sizes}"),
            size=size,
            sizes=", ".join(SIZES),
        )
    lang = normalize_language(language)
    font = font_name()
    if key in ROLLS:
        return _render_roll(receipt_text(receipt, lang), ROLLS[key], font)
    return _render_statement(receipt_text(receipt, lang, full_sale_id=True), PAGES[key], font)


class PdfReceiptRenderer:
    """:class:`app.ports.ReceiptRenderer` with reportlab."""

    def receipt_pdf(self, receipt: ReceiptData, *, size: str, language: str) -> bytes:
        return render_receipt_pdf(receipt, size=size, language=language)
