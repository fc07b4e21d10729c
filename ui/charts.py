"""Simple bar charts drawn with QPainter (PySide6-Essentials has no QtCharts).

``BarChart.set_bars([(label, value), ...])`` with integer values (fen, counts); ``value_text``
turns a value into the text shown on the axis and above the highest bar.  Negative values are
drawn below the zero line.  The chart keeps its data (``bars``) for tests and screenshots.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence

from PySide6.QtCore import QRectF
from PySide6.QtCore import QSize
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtGui import QFont
from PySide6.QtGui import QPainter
from PySide6.QtGui import QPaintEvent
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QSizePolicy
from PySide6.QtWidgets import QWidget

BAR = QColor("#1565c0")
BAR_NEGATIVE = QColor("#c62828")
AXIS = QColor("#424242")
GRID = QColor("#e0e0e0")
CATEGORY_BARS = 8  # up to this many bars, each is labelled (wrapped) under it


def _plain(value: int) -> str:
    return str(value)


class BarChart(QWidget):
    def __init__(
        self,
        title: str = "",
        value_text: Callable[[int], str] = _plain,
        parent: QWidget | None = None,
        *,
        colors: Sequence[QColor] | None = None,
        horizontal: bool = False,
    ) -> None:
        super().__init__(parent)
        self.horizontal = horizontal  # bars from the left, labels beside them (long labels)
        self.title = title
        self.value_text = value_text
        self.colors = list(colors) if colors else []
        self.bars: list[tuple[str, int]] = []
        self.empty_text = ""
        self.setMinimumSize(320, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(520, 260)

    def set_bars(self, bars: Sequence[tuple[str, int]], *, empty_text: str = "") -> None:
        self.bars = [(str(label), int(value)) for label, value in bars]
        self.empty_text = empty_text
        self.setAccessibleDescription(
            "; ".join(f"{label}: {self.value_text(value)}" for label, value in self.bars)
        )
        self.update()

    # ------------------------------------------------------------------ drawing

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        try:
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            p.fillRect(self.rect(), self.palette().base())
            self._draw(p)
        finally:
            p.end()

    def _draw(self, p: QPainter) -> None:
        fm = p.fontMetrics()
        line = fm.height()
        width, height = self.width(), self.height()
        top = 6
        if self.title:
            title_font = QFont(p.font())
            title_font.setBold(True)
            p.save()
            p.setFont(title_font)
            p.setPen(self.palette().text().color())
            p.drawText(QRectF(6, top, width - 12, line + 4), Qt.AlignmentFlag.AlignLeft, self.title)
            p.restore()
            top += line + 8
        values = [v for _, v in self.bars]
        if not values or not any(values):
            p.setPen(AXIS)
            p.drawText(
                QRectF(0, top, width, height - top),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self.empty_text or "—",
            )
            if not values:
                return
        high = max(0, *values)
        low = min(0, *values)
        span = (high - low) or 1
        if self.horizontal:
            self._draw_horizontal(p, QRectF(6, top, width - 12, height - top - 6), low, span)
            return
        self._draw_vertical(p, top, high, low)

    def _draw_vertical(self, p: QPainter, top: float, high: int, low: int) -> None:
        """Bars up (and down for negative values) over a labelled axis."""
        fm = p.fontMetrics()
        line = fm.height()
        width, height = self.width(), self.height()
        values = [v for _, v in self.bars]
        span = (high - low) or 1
        axis_labels = [self.value_text(high), self.value_text(low)]
        left = max(fm.horizontalAdvance(t) for t in axis_labels) + 12
        right = 8
        n = len(self.bars)
        # a few categories: every bar labelled, wrapped on up to three lines; many (days):
        # one line, every k-th bar labelled so the labels never overlap
        categories = n <= CATEGORY_BARS
        bottom = line * (3 if categories else 1) + 8
        plot = QRectF(left, top + line, max(10, width - left - right), height - top - line - bottom)
        if plot.height() < 10:
            return
        slot = plot.width() / n
        if categories:
            step = 1
        else:
            widest = max(fm.horizontalAdvance(label) for label, _ in self.bars) + 8
            step = max(1, math.ceil(widest / slot))

        def y_of(value: int) -> float:
            return plot.bottom() - (value - low) / span * plot.height()

        # grid: the top value, zero and (when negative) the bottom value
        p.setPen(QPen(GRID, 1))
        for v in {high, 0, low}:
            y = y_of(v)
            p.drawLine(int(plot.left()), int(y), int(plot.right()), int(y))
        p.setPen(AXIS)
        for v in {high, low} - {0} or {0}:
            y = y_of(v)
            p.drawText(
                QRectF(0, y - line / 2, left - 6, line),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                self.value_text(v),
            )
        zero = y_of(0)
        if 0 not in (high, low):
            p.drawText(
                QRectF(0, zero - line / 2, left - 6, line),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                self.value_text(0),
            )

        bar_w = max(2.0, slot * 0.7)
        top_index = values.index(high) if high > 0 else -1
        for i, (label, value) in enumerate(self.bars):
            x = plot.left() + i * slot + (slot - bar_w) / 2
            y = y_of(value)
            if self.colors:
                color = self.colors[i % len(self.colors)]
            else:
                color = BAR if value >= 0 else BAR_NEGATIVE
            rect = QRectF(x, min(y, zero), bar_w, max(1.0, abs(zero - y)))
            if value != 0:
                p.fillRect(rect, color)
            if i == top_index or (categories and value != 0):
                p.setPen(AXIS)
                text = self.value_text(value)
                # centred over its bar but kept inside the chart (the first or last bar's
                # value used to be cut at the edge)
                text_w = min(fm.horizontalAdvance(text) + 4, width)
                spot_left = min(max(x + bar_w / 2 - text_w / 2, 0.0), width - text_w)
                spot = QRectF(spot_left, rect.top() - line - 2, text_w, line)
                p.drawText(spot, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, text)
            if i % step == 0:
                p.setPen(AXIS)
                p.drawText(
                    QRectF(
                        plot.left() + i * slot - slot * (step - 1) / 2,
                        plot.bottom() + 4,
                        slot * step,
                        bottom - 4,
                    ),
                    Qt.AlignmentFlag.AlignHCenter
                    | Qt.AlignmentFlag.AlignTop
                    | Qt.TextFlag.TextWordWrap,
                    label,
                )
        p.setPen(QPen(AXIS, 1))
        p.drawLine(int(plot.left()), int(zero), int(plot.right()), int(zero))

    def _draw_horizontal(self, p: QPainter, area: QRectF, low: int, span: int) -> None:
        """One row per bar: the label on the left, the bar, its value after it."""
        fm = p.fontMetrics()
        n = len(self.bars)
        texts = [self.value_text(v) for _, v in self.bars]
        label_w = min(max(fm.horizontalAdvance(label) for label, _ in self.bars) + 10,
                      area.width() * 0.45)  # fmt: skip
        value_w = max(fm.horizontalAdvance(t) for t in texts) + 10
        plot = QRectF(area.left() + label_w, area.top(), area.width() - label_w - value_w,
                      area.height())  # fmt: skip
        if plot.width() < 10:
            return
        row = plot.height() / n
        thick = max(2.0, min(row * 0.6, fm.height() * 1.6))

        def x_of(value: int) -> float:
            return plot.left() + (value - low) / span * plot.width()

        zero = x_of(0)
        for i, (label, value) in enumerate(self.bars):
            mid = plot.top() + i * row + row / 2
            p.setPen(AXIS)
            p.drawText(
                QRectF(area.left(), mid - row / 2, label_w - 8, row),
                Qt.AlignmentFlag.AlignRight
                | Qt.AlignmentFlag.AlignVCenter
                | Qt.TextFlag.TextWordWrap,
                label,
            )
            x = x_of(value)
            if value != 0:
                color = (
                    self.colors[i % len(self.colors)]
                    if self.colors
                    else (BAR if value >= 0 else BAR_NEGATIVE)
                )
                p.fillRect(QRectF(min(x, zero), mid - thick / 2, max(1.0, abs(x - zero)), thick),
                           color)  # fmt: skip
            p.setPen(AXIS)
            p.drawText(
                QRectF(max(x, zero) + 4, mid - row / 2, value_w, row),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                texts[i],
            )
        p.setPen(QPen(AXIS, 1))
        p.drawLine(int(zero), int(plot.top()), int(zero), int(plot.bottom()))
