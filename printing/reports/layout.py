"""PDF building blocks: a fast fixed-row table flowable and an A4 page with its header, footer and styles."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.platypus import Flowable
from reportlab.platypus import Paragraph
from reportlab.platypus import SimpleDocTemplate
from reportlab.platypus import Table
from reportlab.platypus import TableStyle

from printing.fonts import SAVE_LOCK
from printing.fonts import font_name
from printing.reports.labels import BODY_SIZE
from printing.reports.labels import COL_AMOUNT
from printing.reports.labels import COL_ITEM
from printing.reports.labels import GENERATED
from printing.reports.labels import GRID
from printing.reports.labels import HEAD_BG
from printing.reports.labels import MARGIN
from printing.reports.labels import NONE
from printing.reports.labels import PAGE
from printing.reports.labels import ROW_HEIGHT
from printing.reports.labels import TABLE_SIZE
from printing.reports.labels import TOTAL_BG
from printing.reports.labels import WIDTH
from printing.reports.labels import _t
from printing.reports.labels import _when
from printing.reports.labels import _yuan

# --------------------------------------------------------------------------- PDF building blocks


class _Ledger(Flowable):  # type: ignore[misc]  # reportlab has no type hints
    """A table of one-line text cells with fixed row heights, drawn straight onto the canvas.

    platypus' Table measures and styles every cell (about 50 µs a cell); a Z-report of 5,000
    sales has 50,000 cells, so this flowable draws one text object per page part instead and
    splits between any two rows, repeating the header."""

    def __init__(
        self,
        font: str,
        header: list[str],
        rows: list[list[str]],
        widths: list[float],
        numeric_from: int,
        *,
        shaded_last: bool,
    ) -> None:
        super().__init__()
        self.font, self.header, self.rows = font, header, rows
        self.widths, self.numeric_from, self.shaded_last = widths, numeric_from, shaded_last
        self.hAlign = "LEFT"

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        self.width = sum(self.widths)
        self.height = ROW_HEIGHT * (len(self.rows) + 1)
        return self.width, self.height

    def split(self, avail_width: float, avail_height: float) -> list[_Ledger]:
        fit = int(avail_height // ROW_HEIGHT) - 1  # rows that fit below the header
        if fit < 1:
            return []
        if fit >= len(self.rows):
            return [self]
        return [self._part(self.rows[:fit], False), self._part(self.rows[fit:], self.shaded_last)]

    def _part(self, rows: list[list[str]], shaded_last: bool) -> _Ledger:
        return _Ledger(
            self.font,
            self.header,
            rows,
            self.widths,
            self.numeric_from,
            shaded_last=shaded_last,
        )

    def draw(self) -> None:
        canvas = self.canv
        width, height = sum(self.widths), ROW_HEIGHT * (len(self.rows) + 1)
        canvas.saveState()
        canvas.setFillColor(HEAD_BG)
        canvas.rect(0, height - ROW_HEIGHT, width, ROW_HEIGHT, stroke=0, fill=1)
        if self.shaded_last:
            canvas.setFillColor(TOTAL_BG)
            canvas.rect(0, 0, width, ROW_HEIGHT, stroke=0, fill=1)
        xs = [0.0]
        for w in self.widths:
            xs.append(xs[-1] + w)
        canvas.setStrokeColor(GRID)
        canvas.setLineWidth(0.3)
        canvas.grid(xs, [height - i * ROW_HEIGHT for i in range(len(self.rows) + 2)])
        text = canvas.beginText()
        text.setFont(self.font, TABLE_SIZE)
        text.setFillColor(colors.black)
        pad, numeric_from = 2.0, self.numeric_from
        widths: dict[str, float] = {}  # amounts repeat a lot ("0.00")
        for r, row in enumerate([self.header, *self.rows]):
            y = height - (r + 1) * ROW_HEIGHT + 3.2
            for j, cell in enumerate(row):
                if not cell:
                    continue
                if r and j >= numeric_from:
                    if cell not in widths:
                        widths[cell] = pdfmetrics.stringWidth(cell, self.font, TABLE_SIZE)
                    x = xs[j + 1] - pad - widths[cell]
                else:
                    x = xs[j] + pad
                text.setTextOrigin(x, y)
                text.textOut(cell)
        canvas.drawText(text)
        canvas.restoreState()


class _Page:
    """Fonts, styles and the page decoration of one report in one language."""

    def __init__(self, title: str, language: str, generated: dt.datetime) -> None:
        self.font = font_name()
        self.language = language
        self.title = title
        self.generated = _t(GENERATED, language, time=_when(generated))
        self.h1 = ParagraphStyle("h1", fontName=self.font, fontSize=15, leading=19, spaceAfter=4)
        self.h2 = ParagraphStyle(
            "h2", fontName=self.font, fontSize=11, leading=14, spaceBefore=8, spaceAfter=3
        )
        self.body = ParagraphStyle("body", fontName=self.font, fontSize=BODY_SIZE, leading=12)

    def t(self, msgid: str, /, **params: object) -> str:
        return _t(msgid, self.language, **params)

    def decorate(self, canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(self.font, 7)
        canvas.setFillColor(colors.HexColor("#555555"))
        canvas.drawString(MARGIN, 8 * mm, f"CardVend · {self.title} · {self.generated}")
        canvas.drawRightString(A4[0] - MARGIN, 8 * mm, self.t(PAGE, page=doc.page))
        canvas.restoreState()

    def para(self, text: str, style: ParagraphStyle | None = None) -> Paragraph:
        safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return Paragraph(safe, style or self.body)

    def heading(self, pairs: Sequence[tuple[str, str]]) -> list[Any]:
        """How every report begins: its title, then what it covers as :meth:`fields`."""
        return [self.para(self.title, self.h1), self.fields(pairs)]

    def fields(self, pairs: Sequence[tuple[str, str]]) -> Table:
        """Label/value pairs, two pairs a row."""
        cells = [(self.t(label), value) for label, value in pairs]
        if len(cells) % 2:
            cells.append(("", ""))
        rows = [[*cells[i], *cells[i + 1]] for i in range(0, len(cells), 2)]
        table = Table(rows, colWidths=[0.14 * WIDTH, 0.36 * WIDTH] * 2, hAlign="LEFT")
        table.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), self.font, BODY_SIZE),
                    ("TEXTCOLOR", (0, 0), (0, -1), colors.HexColor("#555555")),
                    ("TEXTCOLOR", (2, 0), (2, -1), colors.HexColor("#555555")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LEFTPADDING", (0, 0), (0, -1), 0),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                    ("TOPPADDING", (0, 0), (-1, -1), 2),
                ]
            )
        )
        return table

    def grid(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[str]],
        widths: Sequence[float],
        *,
        numeric_from: int,
        total: Sequence[str] | None = None,
    ) -> list[Any]:
        """A ruled table with the header repeated on every page; columns from ``numeric_from``
        on are right-aligned; ``total`` is a last, shaded row."""
        body = [list(r) for r in rows]
        if total is not None:
            body.append(list(total))
        if not body:
            return [self.para(self.t(NONE))]
        return [
            _Ledger(
                self.font,
                [self.t(h) for h in header],
                body,
                [w * WIDTH for w in widths],
                numeric_from,
                shaded_last=total is not None,
            )
        ]

    def build(self, story: list[Any]) -> bytes:
        out = io.BytesIO()
        doc = SimpleDocTemplate(
            out,
            pagesize=A4,
            leftMargin=MARGIN,
            rightMargin=MARGIN,
            topMargin=MARGIN,
            bottomMargin=MARGIN,
            title=self.title,
            author="CardVend",
            creator="CardVend",
        )
        with SAVE_LOCK:  # reportlab's font subsetting is not thread-safe
            doc.build(story, onFirstPage=self.decorate, onLaterPages=self.decorate)
        return out.getvalue()


def _money_table(page: _Page, items: Sequence[tuple[str, int | None]]) -> list[Any]:
    return page.grid(
        (COL_ITEM, COL_AMOUNT),
        [(label, _yuan(fen)) for label, fen in items],
        (0.45, 0.2),
        numeric_from=1,
    )
