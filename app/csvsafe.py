"""Formula-safe CSV: every CSV file CardVend writes goes through :func:`writer`.

A spreadsheet opening a CSV runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a
formula (and a leading tab or carriage return can hide one), so a customer named
``=HYPERLINK("http://…")`` or an operator id typed as ``=cmd|' /C calc'!A0`` would become a
link or a command on the accountant's machine.  Such a cell gets a leading ``'`` (OWASP, "CSV
Injection"); the spreadsheet shows it as text.

Two choices beyond that rule:

- A cell that is a plain decimal number (``-5.00``, ``-500``: ASCII digits, an optional leading
  ``-`` and an optional fraction, nothing else) is left alone.  It is not a formula in any
  spreadsheet, and a report's negative variance or net cash must stay a number that can be added
  up.  ``-1+1``, ``-5.00 `` or ``+5`` are not plain numbers and are escaped.
- A cell that already begins with ``'`` gets one more, so the escape can be undone exactly:
  :func:`unescape_cell` drops one leading ``'`` from any cell that has one (the audit export
  can be checked against its hash chain from the file alone).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any
from typing import Protocol

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")
PREFIX = "'"
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)


class _Writable(Protocol):
    def write(self, s: str, /) -> object: ...


def safe_cell(value: object) -> str:
    """``value`` as CSV cell text that no spreadsheet runs as a formula."""
    text = "" if value is None else str(value)
    if text.startswith(TRIGGERS) and not _PLAIN_NUMBER.fullmatch(text):
        return PREFIX + text
    return text


def unescape_cell(text: str) -> str:
    """The value :func:`safe_cell` was given (for reading our own exports back)."""
    return text[1:] if text.startswith(PREFIX) else text


class SafeWriter:
    """``csv.writer`` whose every cell passes through :func:`safe_cell`."""

    def __init__(self, out: _Writable, **kwargs: Any) -> None:
        self._writer = csv.writer(out, **kwargs)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out: _Writable, **kwargs: Any) -> SafeWriter:
    """The one way CardVend writes CSV (keyword arguments as for ``csv.writer``)."""
    return SafeWriter(out, **kwargs)
