"""Qt item models over the services.

:class:`CustomerSearchModel` is the customer search over the whole archive (a million customers
and more): it never asks for more than a page of rows at a time, and never on the GUI thread.

* Typing is debounced (``debounce_ms``, 150 ms): a query starts when the typing pauses.
* At most one query is in flight; text typed meanwhile waits and only the newest is asked for.
* Every answer carries the *generation* it was asked for; an answer for an older text (or for a
  page of an older text) is dropped, so a slow answer never overwrites a newer one.
* ``canFetchMore``/``fetchMore`` load the next page (``page_size`` rows) when the view scrolls
  to the end; the page is asked for with the cursor the previous page returned
  (:func:`app.services.customers.search_customers`), so page 100 costs what page 1 costs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractTableModel
from PySide6.QtCore import QModelIndex
from PySide6.QtCore import QObject
from PySide6.QtCore import QPersistentModelIndex
from PySide6.QtCore import Qt
from PySide6.QtCore import QTimer
from PySide6.QtCore import Signal

from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.money import format_yuan
from app.services.customers import SearchCursor
from app.services.customers import SearchHit
from app.services.customers import SearchPage
from ui.bridge import Ops
from ui.bridge import error_text

log = logging.getLogger(__name__)

SearchFn = Callable[[str, SearchCursor | None, int], SearchPage]
Index = QModelIndex | QPersistentModelIndex

HIT_ROLE = Qt.ItemDataRole.UserRole + 1  # the row's SearchHit

METER_KINDS = {"card": N_("card meter"), "remote": N_("remote fee control")}
STATUSES = {"active": N_("active"), "paused": N_("paused"), "closed": N_("closed")}


def meter_kind_text(kind: str) -> str:
    return translate(METER_KINDS.get(kind, kind))


def status_text(status: str) -> str:
    return translate(STATUSES.get(status, status))


class CustomerSearchModel(QAbstractTableModel):
    COLUMNS = (
        N_("Customer no."),
        N_("Name"),
        N_("Address"),
        N_("Meter no."),
        N_("Meter kind"),
        N_("Status"),
        N_("Arrears"),
    )
    ARREARS_COLUMN = 6

    busy_changed = Signal(bool)  # a query is running
    status_changed = Signal(str, bool)  # text for the person, is it an error
    results_changed = Signal()  # a new search's first page is in

    def __init__(
        self,
        ops: Ops,
        search: SearchFn,
        *,
        page_size: int = 50,
        debounce_ms: int = 150,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.ops = ops
        self.search_fn = search
        self.page_size = page_size
        self.text = ""  # the text the rows answer (or will answer)
        self.generation = 0
        self.hits: list[SearchHit] = []
        self.cursor: SearchCursor | None = None
        self.busy = False
        self._waiting: tuple[int, str, SearchCursor | None] | None = None  # the next query
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(debounce_ms)
        self._debounce.timeout.connect(self._search_now)

    # ------------------------------------------------------------------ Qt model

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.hits)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.COLUMNS):
            return translate(self.COLUMNS[section])
        if orientation == Qt.Orientation.Vertical:
            return str(section + 1)
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.hits):
            return None
        hit = self.hits[index.row()]
        c = hit.customer
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (
                c.customer_no,
                c.name,
                c.address,
                c.meter_no,
                meter_kind_text(c.meter_kind),
                status_text(c.status),
                format_yuan(hit.owed_fen) if hit.owed_fen else "—",
            )[col]
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 2:
                return c.address
            if col == self.ARREARS_COLUMN and hit.owed_fen:
                return _(
                    "Arrears {arrears} yuan, fees {fees} yuan",
                    arrears=format_yuan(hit.arrears_fen),
                    fees=format_yuan(hit.fees_fen),
                )
            return None
        if role == Qt.ItemDataRole.TextAlignmentRole and col == self.ARREARS_COLUMN:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == HIT_ROLE:
            return hit
        return None

    @property
    def idle(self) -> bool:
        """No search waits for the typing to pause, runs or waits for another to finish."""
        return not self.busy and not self._debounce.isActive() and self._waiting is None

    def hit(self, row: int) -> SearchHit | None:
        return self.hits[row] if 0 <= row < len(self.hits) else None

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        if parent.isValid():
            return False
        return self.cursor is not None and not self.busy and not self._debounce.isActive()

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if not self.canFetchMore(parent):
            return
        self._query(self.generation, self.text, self.cursor)

    # ------------------------------------------------------------------ searching

    def set_text(self, text: str) -> None:
        """The search box changed: search after the typing pauses."""
        text = text.strip()
        if text == self.text and (self._debounce.isActive() or self.hits or self.busy):
            return
        self.text = text
        self.generation += 1  # whatever is in flight now answers an older text
        self._waiting = None
        self.cursor = None  # the rows shown answer the old text: no page of theirs follows
        if not text:
            self._debounce.stop()
            self._clear()
            self.status_changed.emit("", False)
            return
        self._debounce.start()

    def search_now(self, text: str | None = None) -> None:
        """Search at once (Enter in the search box), without waiting for the pause."""
        if text is not None and text.strip() != self.text:
            self.set_text(text)
        if self.text and not self.busy:
            self._debounce.stop()
            self._search_now()
        elif self.text:
            self._debounce.stop()
            self._waiting = (self.generation, self.text, None)

    def hold(self) -> None:
        """Do not start the search the typing would start (the page is hidden); see
        :meth:`search_now`."""
        self._debounce.stop()

    def refresh(self) -> None:
        """Ask again for the first page of the current text (after an operation changed it)."""
        if self.text:
            self.generation += 1
            self._query(self.generation, self.text, None)

    def _search_now(self) -> None:
        self._query(self.generation, self.text, None)

    def _query(self, generation: int, text: str, after: SearchCursor | None) -> None:
        if self.busy:
            if after is None:  # a new search waits for the running one; the newest wins
                self._waiting = (generation, text, after)
            return
        self._set_busy(True)
        if after is None:
            self.status_changed.emit(_("Searching…"), False)
        limit = self.page_size
        search = self.search_fn
        self.ops.run(
            lambda: search(text, after, limit),
            lambda page: self._answer(generation, after, page),
            lambda exc: self._failed(generation, exc),
        )

    def _answer(self, generation: int, after: SearchCursor | None, page: SearchPage) -> None:
        self._set_busy(False)
        if generation == self.generation:
            if after is None:
                self.beginResetModel()
                self.hits = list(page.hits)
                self.cursor = page.next
                self.endResetModel()
                self.results_changed.emit()
            elif page.hits:
                first = len(self.hits)
                self.beginInsertRows(QModelIndex(), first, first + len(page.hits) - 1)
                self.hits.extend(page.hits)
                self.cursor = page.next
                self.endInsertRows()
            else:
                self.cursor = page.next
            self._report()
        else:
            log.debug("dropped a stale search answer (generation %d)", generation)
        self._next()

    def _failed(self, generation: int, exc: BaseException) -> None:
        self._set_busy(False)
        if generation == self.generation:
            self._clear()
            self.status_changed.emit(error_text(exc), True)
        self._next()

    def _next(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None and waiting[0] == self.generation:
            self._query(*waiting)

    def _clear(self) -> None:
        if self.hits or self.cursor is not None:
            self.beginResetModel()
            self.hits = []
            self.cursor = None
            self.endResetModel()

    def _set_busy(self, busy: bool) -> None:
        if busy != self.busy:
            self.busy = busy
            self.busy_changed.emit(busy)

    def _report(self) -> None:
        n = len(self.hits)
        if n == 0:
            text = _("No customer found. Check the number, or type fewer letters of the name.")
        elif self.cursor is not None:
            text = _("{count} customers shown; scroll down for more.", count=n)
        elif n == 1:
            text = _("1 customer found.")
        else:
            text = _("{count} customers found.", count=n)
        self.status_changed.emit(text, False)
