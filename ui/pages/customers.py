"""F3 Customers: search the whole archive, see one customer, start the card operations.

Type in the search box: a 12-digit customer or meter number, the last 4 to 11 digits of a
phone, the beginning of a name, or part of an address (人民路12号).  Rows arrive page by page
while scrolling (:class:`ui.models.CustomerSearchModel`).  Keyboard: Down or Enter goes from the
search box to the table; arrows move; Enter opens the customer's details and actions; Esc goes
back (details → table → search box).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QEvent
from PySide6.QtCore import QModelIndex
from PySide6.QtCore import QObject
from PySide6.QtCore import Qt
from PySide6.QtCore import QTimer
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QAbstractItemView
from PySide6.QtWidgets import QComboBox
from PySide6.QtWidgets import QFormLayout
from PySide6.QtWidgets import QFrame
from PySide6.QtWidgets import QGridLayout
from PySide6.QtWidgets import QGroupBox
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QHeaderView
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QProgressBar
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QScrollArea
from PySide6.QtWidgets import QSplitter
from PySide6.QtWidgets import QTableView
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.domain.customers import CustomerStatus
from app.domain.customers import MeterKind
from app.domain.ledger import SaleState
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.money import format_yuan
from app.services import ledger
from app.services.customers import SearchCursor
from app.services.customers import SearchHit
from app.services.customers import SearchPage
from app.services.customers import search_customers
from app.settings import TIME_ZONE
from ui import dialogs
from ui.bridge import error_text
from ui.dialogs.accounts import start_close_account
from ui.dialogs.accounts import start_pause_account
from ui.dialogs.accounts import start_resume_account
from ui.dialogs.reprint import reprint_receipt
from ui.models import CustomerSearchModel
from ui.models import meter_kind_text
from ui.models import status_text
from ui.pages.common import KEY_COLUMNS
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)

RECENT_SALES = 5
DETAILS_DELAY_MS = 120  # arrows held down do not read every customer they pass


class CustomerDetails:
    """What the details panel shows: the customer with what it owes, and its latest sales."""

    def __init__(self, hit: SearchHit, sales: list[ledger.SaleView]) -> None:
        self.hit = hit
        self.sales = sales

    @property
    def reversible(self) -> ledger.SaleView | None:
        return ledger.last_reversible(self.sales)


class CustomersPage(QWidget):
    PAGE_SIZE = 50

    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.dialog: dialogs.OperationDialog | None = None
        self.details: CustomerDetails | None = None
        self._details_generation = 0
        self._details_for: str | None = None
        self._answered = ""  # the text of the rows shown
        db = shell.ctx.db

        def search(text: str, after: SearchCursor | None, limit: int) -> SearchPage:
            return search_customers(db, text, after=after, limit=limit)

        self.model = CustomerSearchModel(shell.ops, search, page_size=self.PAGE_SIZE, parent=self)

        outer = QVBoxLayout(self)
        top = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText(
            _("Customer no., meter no., name, last digits of the phone, or address")
        )
        self.search.setClearButtonEnabled(True)
        font = self.search.font()
        font.setPointSize(max(font.pointSize(), 12) + 4)
        self.search.setFont(font)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setTextVisible(False)
        self.busy.setMaximumWidth(80)
        self.busy.hide()
        top.addWidget(self.search, 1)
        top.addWidget(self.busy)
        outer.addLayout(top)
        self.status = wrapped_label()
        outer.addWidget(self.status)

        split = QSplitter(Qt.Orientation.Vertical)  # the table keeps the page's whole width
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setTabKeyNavigation(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        # what identifies the customer and what they owe come first and show whole; the address,
        # last, takes the width left over (elided when the screen is small)
        arrears = self.model.ARREARS_COLUMN
        self.table.setProperty(KEY_COLUMNS, [0, 1, arrears])
        for visual, logical in enumerate((0, 1, arrears, 5, 3, 4, 2)):
            header.moveSection(header.visualIndex(logical), visual)
        header.setStretchLastSection(True)
        for column, width in ((0, 150), (1, 100), (arrears, 90), (5, 70), (3, 150), (4, 140)):
            self.table.setColumnWidth(column, width)
        self.model.modelReset.connect(self._fit_key_columns)
        self.model.rowsInserted.connect(self._fit_key_columns)
        split.addWidget(self.table)
        split.addWidget(self._build_details())
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        outer.addWidget(split, 1)

        self.details_timer = QTimer(self)
        self.details_timer.setSingleShot(True)
        self.details_timer.setInterval(DETAILS_DELAY_MS)
        self.details_timer.timeout.connect(self._load_current)

        self.search.textEdited.connect(self.model.set_text)
        self.search.returnPressed.connect(self._search_enter)
        self.search.installEventFilter(self)
        self.table.installEventFilter(self)
        self.details_box.installEventFilter(self)
        self.table.activated.connect(lambda _index: self.open_details())
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        self.model.busy_changed.connect(self.busy.setVisible)
        self.model.status_changed.connect(self._status)
        self.model.results_changed.connect(self._results)
        self.model.modelReset.connect(self._show_details_of_current)

    # ------------------------------------------------------------------ building

    def _fit_key_columns(self, *_args: object) -> None:
        """The customer number, name and arrears as wide as their text (at least as before)."""
        for column in self.table.property(KEY_COLUMNS):
            width = max(self.table.sizeHintForColumn(column), 90)
            if width > self.table.columnWidth(column):
                self.table.setColumnWidth(column, width)

    def _build_details(self) -> QWidget:
        """Below the table: the fields on the left; the latest sales and the actions on the
        right."""
        self.details_box = QGroupBox(_("Customer"))
        columns = QHBoxLayout(self.details_box)
        columns.addLayout(self._build_fields(), 3)
        columns.addLayout(self._build_actions(), 2)
        return self.details_box

    def _build_fields(self) -> QVBoxLayout:
        """The customer's name above its fields (which scroll)."""
        left = QVBoxLayout()
        self.details_title = wrapped_label(_("Search for a customer, then press Enter on a row."))
        font = self.details_title.font()
        font.setPointSize(max(font.pointSize(), 12) + 4)
        font.setBold(True)
        self.details_title.setFont(font)
        left.addWidget(self.details_title)
        form = QFormLayout()
        self.fields: dict[str, QLabel] = {}
        for key, label in (
            ("customer_no", N_("Customer no.")),
            ("address", N_("Address")),
            ("phone", N_("Phone")),
            ("meter", N_("Meter")),
            ("status", N_("Status")),
            ("tariff", N_("Tariff plan")),
            ("card", N_("Card")),
            ("owed", N_("Owed")),
            ("thresholds", N_("Thresholds")),
        ):
            value = wrapped_label("—", selectable=True)
            self.fields[key] = value
            form.addRow(translate(label), value)
        # the fields scroll inside the box rather than being cut off when a 768-pixel screen
        # leaves the box less height than their wrapped lines need
        fields = QWidget()
        fields_column = QVBoxLayout(fields)
        fields_column.setContentsMargins(0, 0, 0, 0)
        fields_column.addLayout(form)
        fields_column.addStretch(1)
        fields_area = QScrollArea()
        fields_area.setWidget(fields)
        fields_area.setWidgetResizable(True)
        fields_area.setFrameShape(QFrame.Shape.NoFrame)
        fields_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        left.addWidget(fields_area, 1)
        return left

    def _build_actions(self) -> QVBoxLayout:
        """The latest sales (one to reprint) and the buttons of what can be done for the
        customer, all disabled until one is chosen."""
        right = QVBoxLayout()
        right.addWidget(QLabel(_("Latest sales")))
        self.sales_label = wrapped_label("—")
        self.sales_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        sales = QScrollArea()  # the latest sales scroll rather than being cut off
        sales.setWidget(self.sales_label)
        sales.setWidgetResizable(True)
        sales.setFrameShape(QFrame.Shape.NoFrame)
        right.addWidget(sales, 1)
        reprint = QHBoxLayout()
        self.reprint_sale = QComboBox()
        reprint.addWidget(self.reprint_sale, 1)
        self.reprint_button = QPushButton(_("Re&print receipt…"))
        self.reprint_button.setEnabled(False)
        self.reprint_button.clicked.connect(self.reprint)
        reprint.addWidget(self.reprint_button)
        right.addLayout(reprint)
        self.open_button = QPushButton(_("&Open account"))
        self.rewrite_button = QPushButton(_("Re&write card"))
        self.replace_button = QPushButton(_("Re&placement card"))
        self.reverse_button = QPushButton(_("Re&verse last sale"))
        self.sell_button = QPushButton(_("&Sell (F2)"))
        self.meter_button = QPushButton(_("Change &meter…"))
        self.meter_button.clicked.connect(self.meter_change)
        self.open_button.clicked.connect(self.open_account)
        self.rewrite_button.clicked.connect(self.rewrite)
        self.replace_button.clicked.connect(self.replacement)
        self.reverse_button.clicked.connect(self.reversal)
        self.sell_button.clicked.connect(lambda: self.shell.show_page("sale"))
        self.pause_button = QPushButton(_("Pa&use account…"))
        self.resume_button = QPushButton(_("Resu&me account…"))
        self.close_account_button = QPushButton(_("C&lose account…"))
        self.pause_button.clicked.connect(self.pause_account)
        self.resume_button.clicked.connect(self.resume_account)
        self.close_account_button.clicked.connect(self.close_account)
        self.action_buttons = (
            self.open_button,
            self.rewrite_button,
            self.replace_button,
            self.reverse_button,
            self.sell_button,
            self.meter_button,
            self.pause_button,
            self.resume_button,
            self.close_account_button,
        )
        grid = QGridLayout()
        for n, button in enumerate(self.action_buttons):
            button.setEnabled(False)
            button.setAutoDefault(True)
            grid.addWidget(button, n // 2, n % 2)
        right.addLayout(grid)
        return right

    # ------------------------------------------------------------------ page

    def activated(self) -> None:
        self.search.setFocus()
        self.search.selectAll()
        if self.model.text and self.model.idle and self.model.text != self._answered:
            self.model.search_now()  # typing was cut short by a page switch

    def hideEvent(self, event: Any) -> None:
        # nothing starts while the page is away (or the window closing)
        self.details_timer.stop()
        self.model.hold()
        super().hideEvent(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.KeyPress or not isinstance(event, QKeyEvent):
            return False
        key = event.key()
        if watched is self.search and key == Qt.Key.Key_Down and self.model.rowCount():
            self._focus_table()
            return True
        if watched is self.table:
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.open_details()
                return True
            if key == Qt.Key.Key_Escape:
                self.search.setFocus()
                self.search.selectAll()
                return True
        if watched is self.details_box and key == Qt.Key.Key_Escape:
            self._focus_table()
            return True
        return False

    def _focus_table(self) -> None:
        self.table.setFocus()
        if not self.table.currentIndex().isValid() and self.model.rowCount():
            self.table.setCurrentIndex(self.model.index(0, 0))

    def _search_enter(self) -> None:
        if self.model.busy or self.model.text != self.search.text().strip():
            self.model.search_now(self.search.text())
            return
        if self.model.rowCount() == 1:
            self.table.setCurrentIndex(self.model.index(0, 0))
            self.open_details()
        elif self.model.rowCount():
            self._focus_table()

    def _status(self, text: str, error: bool) -> None:
        self.status.setText(text)
        dialogs.tone(self.status, "error" if error else "")

    def _results(self) -> None:
        """A search's first page is in: the customer shown stays selected if it is there,
        else the first row (its details follow)."""
        self._answered = self.model.text
        rows = self.model.rowCount()
        if not rows:
            return
        row = 0
        for n in range(rows):
            hit = self.model.hit(n)
            if hit is not None and hit.customer.customer_no == self._details_for:
                row = n
                break
        self.table.setCurrentIndex(self.model.index(row, 0))
        self.table.scrollTo(self.model.index(row, 0))

    # ------------------------------------------------------------------ details

    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.details_timer.start()

    def _show_details_of_current(self) -> None:
        if not self.model.rowCount():
            self._details_generation += 1
            self._details_for = None
            self.details = None
            self._clear_details()

    def _load_current(self, *, focus: bool = False) -> None:
        hit = self.model.hit(self.table.currentIndex().row())
        if hit is None:
            return
        self.load_details(hit.customer.customer_no, focus=focus)

    def open_details(self) -> None:
        """Enter on a row: the customer's details, focus on its first possible action."""
        self.details_timer.stop()
        self._load_current(focus=True)

    def load_details(self, customer_no: str, *, focus: bool = False) -> None:
        self._details_generation += 1
        generation = self._details_generation
        self._details_for = customer_no
        db = self.shell.ctx.db

        def work() -> CustomerDetails:
            page = search_customers(db, customer_no, limit=1)
            if not page.hits:
                raise LookupError(customer_no)
            sales = ledger.list_sales(db, customer_no=customer_no, limit=RECENT_SALES)
            return CustomerDetails(page.hits[0], sales)

        def done(details: CustomerDetails) -> None:
            if generation == self._details_generation:
                self._show_details(details, focus=focus)

        def failed(exc: BaseException) -> None:
            if generation == self._details_generation:
                self._status(error_text(exc), True)

        dialogs.run_quietly(self.shell, work, done, failed)

    def _clear_details(self) -> None:
        self.details_title.setText(_("Search for a customer, then press Enter on a row."))
        for value in self.fields.values():
            value.setText("—")
        self.sales_label.setText("—")
        for button in self.action_buttons:
            button.setEnabled(False)

    def _show_details(self, details: CustomerDetails, *, focus: bool) -> None:
        self.details = details
        hit = details.hit
        c = hit.customer
        tz = self.shell.ctx.settings.value(TIME_ZONE)
        self.details_title.setText(c.name)
        self.fields["customer_no"].setText(c.customer_no)
        self.fields["address"].setText(c.address or "—")
        self.fields["phone"].setText(c.phone or "—")
        self.fields["meter"].setText(
            _(
                "{meter_no}, {kind}, CT {ct} / PT {pt}",
                meter_no=c.meter_no,
                kind=meter_kind_text(c.meter_kind),
                ct=c.ct_ratio,
                pt=c.pt_ratio,
            )
        )
        self.fields["status"].setText(
            _("{status}, office {office}", status=status_text(c.status), office=c.office)
            + (
                "\n" + _("Reason: {reason}", reason=c.status_reason)
                if c.status_reason and c.status != CustomerStatus.ACTIVE.value
                else ""
            )
        )
        self.fields["tariff"].setText(c.tariff_plan)
        self.fields["card"].setText(
            _("{serial}, purchase {count}", serial=c.card_serial, count=c.purchase_count)
            if c.card_serial
            else _("no card yet")
        )
        self.fields["owed"].setText(
            _(
                "arrears {arrears} yuan, fees {fees} yuan",
                arrears=format_yuan(hit.arrears_fen),
                fees=format_yuan(hit.fees_fen),
            )
            if hit.owed_fen
            else _("nothing")
        )
        self.fields["thresholds"].setText(
            _(
                "alarms {alarm1} / {alarm2} yuan, credit ceiling {ceiling} yuan",
                alarm1=format_yuan(c.alarm1),
                alarm2=format_yuan(c.alarm2),
                ceiling=format_yuan(c.credit_ceiling),
            )
        )
        lines = [
            _(
                "{when}  purchase {count}  {amount} yuan  {state}  {seller}",
                when=dialogs.when_text(s.created_at, tz),
                count=s.purchase_count if s.purchase_count is not None else "—",
                amount=format_yuan(s.amount_fen),
                state=SaleState.text_of(s.state),
                seller=s.operator_id,
            )
            for s in details.sales
        ]
        self.sales_label.setText("\n".join(lines) if lines else _("no sales yet"))
        self.reprint_sale.clear()
        for s in details.sales:
            if s.state == SaleState.COMPLETED:
                self.reprint_sale.addItem(
                    f"{dialogs.when_text(s.created_at, tz)}  {format_yuan(s.amount_fen)}", s.sale_id
                )
        self.reprint_button.setEnabled(self.reprint_sale.count() > 0)
        card_meter = c.meter_kind == MeterKind.CARD.value
        active = c.status == CustomerStatus.ACTIVE.value
        self.open_button.setEnabled(card_meter and active and not c.card_serial)
        self.rewrite_button.setEnabled(card_meter and bool(c.card_serial))
        self.replace_button.setEnabled(card_meter and bool(c.card_serial))
        self.reverse_button.setEnabled(details.reversible is not None)
        self.sell_button.setEnabled(active)
        self.meter_button.setEnabled(card_meter and active and bool(c.card_serial))
        self.pause_button.setEnabled(active)
        self.resume_button.setEnabled(c.status == CustomerStatus.PAUSED.value)
        self.close_account_button.setEnabled(c.status != CustomerStatus.CLOSED.value)
        if focus:
            for button in self.action_buttons:
                if button.isEnabled():
                    button.setFocus()
                    break

    # ------------------------------------------------------------------ operations

    def _customer_no(self) -> str | None:
        return self.details.hit.customer.customer_no if self.details is not None else None

    def _opened(self, dialog: dialogs.OperationDialog) -> dialogs.OperationDialog:
        self.dialog = dialog
        dialog.finished_ok.connect(lambda _outcome: self._after_operation())
        return dialog

    def _after_operation(self) -> None:
        customer_no = self._customer_no()
        if customer_no is not None:
            self.load_details(customer_no)
        self.model.refresh()

    def open_account(self) -> None:
        customer_no = self._customer_no()
        if customer_no is not None:
            self._opened(dialogs.start_open_account(self.shell, customer_no, self))

    def rewrite(self) -> None:
        customer_no = self._customer_no()
        if customer_no is not None:
            self._opened(dialogs.start_rewrite(self.shell, customer_no, self))

    def replacement(self) -> None:
        customer_no = self._customer_no()
        if customer_no is not None:
            self._opened(dialogs.start_replacement(self.shell, customer_no, self))

    def meter_change(self) -> None:
        from ui.dialogs.meter_change import start_meter_change

        customer_no = self._customer_no()
        if customer_no is not None:
            self._opened(start_meter_change(self.shell, customer_no, self))

    def reprint(self) -> None:
        sale_id = self.reprint_sale.currentData()
        if sale_id:
            reprint_receipt(self.shell, str(sale_id), self, self._status)

    def reversal(self) -> None:
        if self.details is None:
            return
        sale = self.details.reversible
        self._opened(
            dialogs.start_reversal(
                self.shell,
                sale_id=sale.sale_id if sale is not None else None,
                customer_no=self.details.hit.customer.customer_no,
                parent=self,
            )
        )

    def pause_account(self) -> None:
        customer_no = self._customer_no()
        if customer_no is not None:
            self._opened(start_pause_account(self.shell, customer_no, self))

    def resume_account(self) -> None:
        customer_no = self._customer_no()
        if customer_no is not None:
            self._opened(start_resume_account(self.shell, customer_no, self))

    def close_account(self) -> None:
        customer_no = self._customer_no()
        if customer_no is not None:
            self._opened(start_close_account(self.shell, customer_no, self))
