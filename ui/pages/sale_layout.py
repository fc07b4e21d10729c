"""The sale page's widgets: the card's situation, the customer, the amounts, the keys, the
remote customers' search and the shortcuts, and the screen's states (ui/pages/sale.py holds what
they do, ui/pages/sale_amounts.py the amount entry)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtGui import QShortcut
from PySide6.QtWidgets import QFrame
from PySide6.QtWidgets import QGridLayout
from PySide6.QtWidgets import QGroupBox
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QProgressBar
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QSizePolicy
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.money import format_yuan
from ui.style import set_tone
from ui.widgets import button_row
from ui.widgets import sized_font
from ui.widgets import wrapped_label

PRESETS = (5000, 10000, 20000, 50000)  # fen: 50, 100, 200, 500 yuan

# states of the screen
WAITING = "waiting"  # no card
READING = "reading"  # reading and assessing the card
READY = "ready"  # customer shown, a sale may follow
BLOCKED = "blocked"  # customer shown, but no sale on this card now (say why)
WRITING = "writing"  # the sale runs, the card is being written
DONE = "done"  # sold; take the card out
FAILED = "failed"  # the card could not be used; take it out (or read again)
REMOTE = "remote"  # a remote fee-control customer found by search
REMOTE_DONE = "remote_done"


_FIELDS = (
    ("customer_no", N_("Customer")),
    ("name", N_("Name")),
    ("address", N_("Address")),
    ("meter_no", N_("Meter")),
    ("tariff", N_("Tariff")),
    ("purchases", N_("Purchases")),
    ("arrears", N_("Arrears")),
    ("fees", N_("Fees")),
    ("balance", N_("Meter balance")),
    ("meter_status", N_("Meter status")),
    ("minimum", N_("Minimum amount")),
    ("maximum", N_("Maximum amount")),
)


class SaleLayout(QWidget):
    """The widgets of the sale page; :class:`ui.pages.sale.SalePage` gives them their slots."""

    _input: QLineEdit | None  # the field the number pad types into

    # the slots, given by SalePage
    def confirm(self) -> None:
        raise NotImplementedError

    def read_card(self) -> None:
        raise NotImplementedError

    def rewrite_card(self) -> None:
        raise NotImplementedError

    def find_remote(self) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    def _focus_search(self) -> None:
        raise NotImplementedError

    def _update_change(self) -> None:
        raise NotImplementedError

    def _edited(self) -> None:
        raise NotImplementedError

    def _training(self) -> bool:
        raise NotImplementedError

    def _preset(self, fen: int) -> Callable[[], None]:
        raise NotImplementedError

    def _pad(self, key: str) -> Callable[[], None]:
        raise NotImplementedError

    def _when_shown(self, slot: Callable[[], None]) -> Callable[[], None]:
        """``slot`` for a shortcut: it acts only while the page is shown."""

        def run() -> None:
            if self.isVisible():
                slot()

        return run

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        self._build_head(outer)
        body = QHBoxLayout()
        outer.addLayout(body, 1)
        self._build_customer(body)
        pay = QVBoxLayout()
        body.addLayout(pay, 2)
        self._build_amounts(pay)
        self._build_keys(pay)
        self.sell_button = QPushButton(_("Sell (Enter / F12)"))
        self.sell_button.setFont(sized_font(18, bold=True))
        self.sell_button.setMinimumHeight(52)
        self.sell_button.clicked.connect(self.confirm)
        pay.addWidget(self.sell_button)
        pay.addStretch(1)
        self._build_foot(outer)

    def _build_head(self, outer: QVBoxLayout) -> None:
        """Title, training mark, the prompt, progress, the card's situation and its actions."""
        top = QHBoxLayout()
        title = QLabel(_("Sell electricity"))
        title.setFont(sized_font(20, bold=True))
        top.addWidget(title)
        top.addStretch(1)
        self.training_mark = QLabel(_("TRAINING SALE — not real, never sent"))
        self.training_mark.setFont(sized_font(14, bold=True))
        set_tone(self.training_mark, "mark")
        self.training_mark.setVisible(self._training())
        top.addWidget(self.training_mark)
        outer.addLayout(top)

        self.prompt = QLabel()
        self.prompt.setFont(sized_font(22, bold=True))
        self.prompt.setWordWrap(True)
        outer.addWidget(self.prompt)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(14)
        outer.addWidget(self.progress)
        self.situation = wrapped_label()
        self.situation.setFont(sized_font(14, bold=True))
        outer.addWidget(self.situation)
        self.control_line = wrapped_label()  # a remote customer's control state (sale_control.py)
        self.call_meter = QPushButton(_("Call the meter"))  # condition release (sale_control.py)
        control_row = QHBoxLayout()
        control_row.addWidget(self.control_line, 1)
        control_row.addWidget(self.call_meter, 0, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(control_row)
        self.condition_line = wrapped_label()  # what the called meter said
        outer.addWidget(self.condition_line)
        self.read_again = QPushButton(_("Read the card again (F9)"))
        self.rewrite_button = QPushButton(_("Rewrite the card (F10)"))
        outer.addLayout(
            button_row((self.read_again, self.read_card), (self.rewrite_button, self.rewrite_card))
        )

    def _build_customer(self, body: QHBoxLayout) -> None:
        self.customer_box = QGroupBox(_("Customer"))
        grid = QGridLayout(self.customer_box)
        self.values: dict[str, QLabel] = {}
        for row, (key, label) in enumerate(_FIELDS):
            name = QLabel(translate(label))
            value = QLabel("—")
            value.setFont(sized_font(14, bold=key in ("name", "minimum", "maximum", "balance")))
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(name, row, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(value, row, 1)
            self.values[key] = value
        grid.setColumnStretch(1, 1)
        body.addWidget(self.customer_box, 3)

    def _build_amounts(self, pay: QVBoxLayout) -> None:
        """Amount, cash received and change."""
        form = QGridLayout()
        form.addWidget(QLabel(_("Amount (yuan)")), 0, 0)
        self.amount = QLineEdit()
        self.amount.setFont(sized_font(24, bold=True))
        self.amount.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.amount.setPlaceholderText("0.00")
        form.addWidget(self.amount, 0, 1)
        form.addWidget(QLabel(_("Cash received (yuan)")), 1, 0)
        self.cash = QLineEdit()
        self.cash.setFont(sized_font(18))
        self.cash.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.cash.setPlaceholderText(_("optional"))
        form.addWidget(self.cash, 1, 1)
        form.addWidget(QLabel(_("Change")), 2, 0)
        self.change = QLabel("—")
        self.change.setFont(sized_font(18, bold=True))
        self.change.setAlignment(Qt.AlignmentFlag.AlignRight)
        form.addWidget(self.change, 2, 1)
        pay.addLayout(form)
        # what the amount does before Enter: arrears and fees deducted, credit and kWh loaded
        self.split = wrapped_label()
        self.split.setFont(sized_font(13))
        pay.addWidget(self.split)
        for field in (self.amount, self.cash):
            field.returnPressed.connect(self.confirm)
            field.textChanged.connect(self._update_change)
            field.textChanged.connect(self._edited)
            field.installEventFilter(self)
        self._input = self.amount

    def _build_keys(self, pay: QVBoxLayout) -> None:
        """The preset amounts and the number pad (they never take the focus)."""
        presets = QHBoxLayout()
        self.preset_buttons: list[QPushButton] = []
        for fen in PRESETS:
            button = QPushButton(format_yuan(fen).removesuffix(".00"))
            button.setFont(sized_font(16, bold=True))
            button.setMinimumHeight(44)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(self._preset(fen))
            presets.addWidget(button)
            self.preset_buttons.append(button)
        pay.addLayout(presets)

        pad = QGridLayout()
        self.pad_buttons: list[QPushButton] = []
        keys = ("7", "8", "9", "4", "5", "6", "1", "2", "3", ".", "0", "⌫")
        for i, key in enumerate(keys):
            button = QPushButton(key)
            button.setFont(sized_font(16, bold=True))
            button.setMinimumHeight(44)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(self._pad(key))
            pad.addWidget(button, i // 3, i % 3)
            self.pad_buttons.append(button)
        clear = QPushButton(_("Clear"))
        clear.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        clear.clicked.connect(self._pad("C"))
        pad.addWidget(clear, 4, 0, 1, 3)
        self.pad_buttons.append(clear)
        pay.addLayout(pad)

    def _build_foot(self, outer: QVBoxLayout) -> None:
        """The message and receipt lines, the remote customers' search, the shortcuts."""
        self.message = wrapped_label()
        self.message.setFont(sized_font(13))
        outer.addWidget(self.message)
        self.receipt_label = wrapped_label()
        outer.addWidget(self.receipt_label)

        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        outer.addWidget(line)
        remote = QHBoxLayout()
        remote.addWidget(QLabel(_("Remote fee-control customer (F11):")))
        self.search = QLineEdit()
        self.search.setPlaceholderText(_("customer number or meter number, then Enter"))
        self.search.returnPressed.connect(self.find_remote)
        self.search.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        remote.addWidget(self.search, 1)
        find = QPushButton(_("Find"))
        find.clicked.connect(self.find_remote)
        remote.addWidget(find)
        outer.addLayout(remote)

        for key, slot in (
            ("F12", self.confirm),
            ("F9", self.read_card),
            ("F10", self.rewrite_card),
            ("F11", self._focus_search),
            ("Esc", self.cancel),
        ):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(self._when_shown(slot))
