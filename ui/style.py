"""One look for the whole counter: the application's font and one stylesheet, for the window and
every dialog alike, in both languages.

Widgets never carry a stylesheet of their own.  They say what they are with a property and the
stylesheet below draws it:

- ``tone``: ``error`` (red, bold), ``warn`` (orange, bold), ``ok`` (green, bold), ``note`` (a pale
  box), ``alarm`` (a pale red box), ``title`` (a page title); set with :func:`set_tone`;
- ``banner``: ``training``, ``audit``, ``offline`` (white on a strong colour, across the window);
- ``invalid``: a field whose value was refused (a red border); set with :func:`mark_invalid`.

Because the font is the application's (not a window's), a dialog shows the window's type, and a
field whose error clears keeps its size (a widget stylesheet set and cleared again used to drop
the window's font for the platform's smaller one).
"""

from __future__ import annotations

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QApplication
from PySide6.QtWidgets import QWidget

BASE_POINT_SIZE = 12  # large type at the counter

ERROR_COLOR = "#b00020"
WARN_COLOR = "#e65100"
OK_COLOR = "#1b5e20"
TRAINING_COLOR = "#6a1b9a"

STYLESHEET = f"""
QLabel[tone="error"] {{ color: {ERROR_COLOR}; font-weight: bold; }}
QLabel[tone="warn"] {{ color: {WARN_COLOR}; font-weight: bold; }}
QLabel[tone="ok"] {{ color: {OK_COLOR}; font-weight: bold; }}
QLabel[tone="note"] {{ background: #fff3e0; padding: 6px; }}
QLabel[tone="notice"] {{ background: #fff3e0; color: {WARN_COLOR}; padding: 6px; font-weight: bold; }}
QLabel[tone="alarm"] {{ background: #ffebee; color: {ERROR_COLOR}; padding: 6px; font-weight: bold; }}
QLabel[tone="title"] {{ font-size: 18pt; font-weight: bold; }}
QLabel[tone="mark"] {{ color: white; background: {TRAINING_COLOR}; padding: 4px 10px;
                       border-radius: 4px; }}
QLabel[banner="training"] {{ color: white; background: {TRAINING_COLOR}; padding: 6px;
                             font-weight: bold; }}
QLabel[banner="audit"] {{ color: white; background: {ERROR_COLOR}; padding: 6px; font-weight: bold; }}
QLabel[banner="offline"] {{ color: white; background: {WARN_COLOR}; padding: 6px;
                            font-weight: bold; }}
QLineEdit[invalid="true"], QSpinBox[invalid="true"], QComboBox[invalid="true"],
QDoubleSpinBox[invalid="true"] {{ border: 2px solid {ERROR_COLOR}; }}
"""

TONES = ("error", "warn", "ok", "note", "notice", "alarm", "title", "mark")


def apply_style(app: QApplication | None = None) -> None:
    """Give the application the counter's font and stylesheet (again: it is idempotent)."""
    app = app or QApplication.instance()  # type: ignore[assignment]
    if app is None:
        return
    font = QFont(app.font())
    if font.pointSize() < BASE_POINT_SIZE:
        font.setPointSize(BASE_POINT_SIZE)
        app.setFont(font)
    if app.styleSheet() != STYLESHEET:
        app.setStyleSheet(STYLESHEET)


def _repolish(widget: QWidget) -> None:
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
    widget.update()


def set_tone(widget: QWidget, tone: str | None) -> None:
    """Draw ``widget`` in one of :data:`TONES` (None: plainly)."""
    if tone is not None and tone not in TONES:
        raise ValueError(f"unknown tone {tone!r}")
    if widget.property("tone") == (tone or ""):
        return
    widget.setProperty("tone", tone or "")
    _repolish(widget)


def set_banner(widget: QWidget, kind: str) -> None:
    widget.setProperty("banner", kind)
    _repolish(widget)


def mark_invalid(widget: QWidget, invalid: bool = True) -> None:
    """A red border on a field whose value was refused (False: taken away again)."""
    if bool(widget.property("invalid")) == invalid:
        return
    widget.setProperty("invalid", invalid)
    _repolish(widget)
