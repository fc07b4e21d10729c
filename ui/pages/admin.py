"""Administration (administrators only): this counter's settings, its operators and the
approval rules (ui/pages/approval_rules.py).

Settings are checked by the settings registry (app/services/configuration.py), written to the
settings file and audited; operators are listed, added, disabled or enabled and given a new
password through app/services/auth.py with the signed-in administrator as the actor. Every
service call runs off the GUI thread (``shell.ops.run``).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtGui import QShortcut
from PySide6.QtWidgets import QAbstractItemView
from PySide6.QtWidgets import QComboBox
from PySide6.QtWidgets import QDialog
from PySide6.QtWidgets import QFormLayout
from PySide6.QtWidgets import QGroupBox
from PySide6.QtWidgets import QHeaderView
from PySide6.QtWidgets import QLabel
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QScrollArea
from PySide6.QtWidgets import QTableWidget
from PySide6.QtWidgets import QTableWidgetItem
from PySide6.QtWidgets import QTabWidget
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget

from app.domain.ids import OPERATOR_ID
from app.domain.operators import Role
from app.errors import CardVendError
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.money import format_yuan
from app.money import parse_yuan
from app.services import auth
from app.services import configuration
from app.services.operators import OperatorView
from app.settings import CARD_READER
from app.settings import CENTRAL_URL
from app.settings import IDLE_MINUTES
from app.settings import LOCKOUT_ATTEMPTS
from app.settings import LOCKOUT_MINUTES
from app.settings import MIN_PASSWORD_LENGTH
from app.settings import OFFLINE_MAX_AMOUNT
from app.settings import OFFLINE_MAX_HOURS
from app.settings import OFFLINE_MAX_SALES
from app.settings import PRINTER
from app.settings import PRINTER_BAUD
from app.settings import PRINTER_NAME
from app.settings import PRINTER_PORT
from app.settings import PSAM_READER
from app.settings import RECEIPT_LANGUAGE
from app.settings import RECEIPT_SIZE
from app.settings import REGISTRY
from app.settings import TIME_ZONE
from ui.bridge import error_text
from ui.bridge import id_problem
from ui.pages.approval_rules import ApprovalRulesTab
from ui.style import mark_invalid
from ui.style import set_tone
from ui.widgets import button_row
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)

# (group title, [(setting key, label)]) -- the settings an administrator edits here
GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        N_("Card readers"),
        (
            (CARD_READER.key, N_("User-card reader (empty: emulated cards, training)")),
            (PSAM_READER.key, N_("Security module (PSAM) reader")),
        ),
    ),
    (
        N_("Printer and receipts"),
        (
            (PRINTER.key, N_("Receipt printer")),
            (PRINTER_NAME.key, N_("System printer name (empty: the default)")),
            (PRINTER_PORT.key, N_("Serial port of the ESC/POS printer")),
            (PRINTER_BAUD.key, N_("Baud rate of the ESC/POS printer")),
            (RECEIPT_SIZE.key, N_("Receipt size")),
            (RECEIPT_LANGUAGE.key, N_("Receipt language")),
        ),
    ),
    (N_("Central system"), ((CENTRAL_URL.key, N_("Address of the central system")),)),
    (
        N_("Offline limits"),
        (
            (OFFLINE_MAX_HOURS.key, N_("Longest wait of unsent sales, hours")),
            (OFFLINE_MAX_AMOUNT.key, N_("Largest unsent amount, yuan")),
            (OFFLINE_MAX_SALES.key, N_("Most unsent sales")),
        ),
    ),
    (
        N_("Sign-in and lock"),
        (
            (IDLE_MINUTES.key, N_("Lock the counter after this many idle minutes")),
            (LOCKOUT_ATTEMPTS.key, N_("Wrong passwords in a row before a lockout")),
            (LOCKOUT_MINUTES.key, N_("Lockout length, minutes")),
            (MIN_PASSWORD_LENGTH.key, N_("Shortest password")),
        ),
    ),
    (N_("Office"), ((TIME_ZONE.key, N_("Time zone (like Asia/Shanghai)")),)),
)
# the label a person reads for each setting key (a msgid, translated when shown)
LABELS = {key: label for _title, rows in GROUPS for key, label in rows}
YUAN_KEYS = frozenset({OFFLINE_MAX_AMOUNT.key})  # kept in fen, shown and typed in yuan
CHOICE_NAMES: dict[str, str] = {
    "pdf": N_("PDF files in the receipts folder"),
    "system": N_("System printer"),
    "escpos": N_("ESC/POS thermal printer (serial port)"),
    "none": N_("No printer"),
    "80": N_("80 mm roll"),
    "58": N_("58 mm roll"),
    "a5": N_("A5 invoice"),
    "a4": N_("A4 invoice"),
    "zh_CN": "简体中文",
    "en": "English",
}


def role_name(role: str) -> str:
    try:
        return translate(Role(role).label)
    except ValueError:
        return role


# --------------------------------------------------------------------------- dialogs


class _FormDialog(QDialog):
    """A small form: Enter moves to the next field and accepts on the last; Esc cancels."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.form = QFormLayout()
        self.error = wrapped_label(tone="error")
        self.ok = QPushButton(_("OK (Enter)"))
        self.cancel = QPushButton(_("Cancel (Esc)"))
        self.fields: list[QWidget] = []
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.error)
        layout.addLayout(
            button_row(
                (self.ok, self.check_and_accept),
                (self.cancel, self.reject),
                auto_default=False,
                align="right",
            )
        )
        self.setMinimumWidth(460)

    def add(self, label: str, field: QWidget) -> None:
        self.form.addRow(QLabel(label), field)
        self.fields.append(field)

    def chain(self) -> None:
        """Enter in a line edit moves to the next one; in the last it accepts."""
        edits = [f for f in self.fields if isinstance(f, QLineEdit)]
        for i, edit in enumerate(edits):
            if i + 1 < len(edits):
                edit.returnPressed.connect(edits[i + 1].setFocus)
            else:
                edit.returnPressed.connect(self.check_and_accept)
        if self.fields:
            self.fields[0].setFocus()

    def problem(self) -> str | None:
        return None

    def check_and_accept(self) -> None:
        problem = self.problem()
        if problem:
            self.error.setText(problem)
            return
        self.accept()


def _password_field() -> QLineEdit:
    edit = QLineEdit()
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    edit.setMaxLength(128)
    return edit


class AddOperatorDialog(_FormDialog):
    def __init__(self, min_length: int, parent: QWidget | None = None) -> None:
        super().__init__(_("Add an operator"), parent)
        self.min_length = min_length
        self.operator = QLineEdit()
        self.operator.setMaxLength(32)
        self.name = QLineEdit()
        self.name.setMaxLength(64)
        self.role = QComboBox()
        for role in Role:
            self.role.addItem(role_name(role.value), role.value)
        self.password = _password_field()
        self.password2 = _password_field()
        self.add(_("Operator id"), self.operator)
        self.add(_("Name"), self.name)
        self.add(_("Role"), self.role)
        self.add(_("Initial password"), self.password)
        self.add(_("Password again"), self.password2)
        self.chain()

    def problem(self) -> str | None:
        operator_id = self.operator.text().strip()
        if not operator_id:
            return _("Type the operator id.")
        problem = id_problem(OPERATOR_ID, operator_id)
        if problem:
            self.operator.setFocus()
            return problem
        return _password_problem(self.password.text(), self.password2.text(), self.min_length)


class PasswordDialog(_FormDialog):
    def __init__(self, operator_id: str, min_length: int, parent: QWidget | None = None) -> None:
        super().__init__(_("New password for {operator}", operator=operator_id), parent)
        self.min_length = min_length
        self.password = _password_field()
        self.password2 = _password_field()
        self.add(_("New password"), self.password)
        self.add(_("Password again"), self.password2)
        self.chain()

    def problem(self) -> str | None:
        return _password_problem(self.password.text(), self.password2.text(), self.min_length)


def _password_problem(first: str, second: str, min_length: int) -> str | None:
    if first != second:
        return _("The two passwords differ. Type them again.")
    if len(first) < min_length:
        return _("A password needs at least {length} characters.", length=min_length)
    return None


# --------------------------------------------------------------------------- the page


class AdminPage(QWidget):
    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.fields: dict[str, QWidget] = {}
        self.operators: list[OperatorView] = []
        self.dialog: QDialog | None = None  # the operator dialog open now (tests look at it)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self._settings_tab(), _("Settings"))
        self.tabs.addTab(self._operators_tab(), _("Operators"))
        self.rules = ApprovalRulesTab(shell)
        self.tabs.addTab(self.rules, _("Approval rules"))
        layout = QVBoxLayout(self)
        title = QLabel(_("Administration"))
        font = title.font()
        font.setPointSize(20)
        font.setBold(True)
        title.setFont(font)
        layout.addWidget(title)
        layout.addWidget(self.tabs, 1)
        save = QShortcut(QKeySequence("Ctrl+S"), self)
        save.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        save.activated.connect(self.save_settings)
        self.load_settings()

    # ------------------------------------------------------------------ settings

    def _settings_tab(self) -> QWidget:
        inner = QWidget()
        column = QVBoxLayout(inner)
        for title, rows in GROUPS:
            box = QGroupBox(translate(title))
            form = QFormLayout(box)
            for key, label in rows:
                field = self._field_for(key)
                self.fields[key] = field
                form.addRow(QLabel(translate(label)), field)
            if title == GROUPS[0][0]:
                form.addRow(
                    wrapped_label(
                        _(
                            "Reader changes take effect when CardVend is started again. With no "
                            "user-card reader the counter runs in training mode on emulated "
                            "cards. Reader names are those of the PC/SC system, like "
                            "'Virtual PCD 00 00'."
                        ),
                        selectable=True,
                    )
                )
            if title == N_("Central system"):
                self.enrolment_key = QLineEdit()
                self.enrolment_key.setEchoMode(QLineEdit.EchoMode.Password)
                self.enrolment_key.setPlaceholderText(_("from the central system's administrator"))
                form.addRow(QLabel(_("Enrolment key")), self.enrolment_key)
                self.register_button = QPushButton(_("Register this counter"))
                self.register_button.setAutoDefault(False)
                self.register_button.clicked.connect(self.register_counter)
                form.addRow(self.register_button)
                self.register_note = wrapped_label(selectable=True)
                form.addRow(self.register_note)
            column.addWidget(box)
        self.settings_error = wrapped_label(tone="error")
        column.addWidget(self.settings_error)
        self.save_button = QPushButton(_("Save settings (Ctrl+S)"))
        self.revert_button = QPushButton(_("Undo changes"))
        column.addLayout(
            button_row(
                (self.save_button, self.save_settings),
                (self.revert_button, self.load_settings),
                auto_default=False,
            )
        )
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        central = self.fields[CENTRAL_URL.key]
        assert isinstance(central, QLineEdit)
        central.textChanged.connect(self._show_register_note)
        return scroll

    def _field_for(self, key: str) -> QWidget:
        var = REGISTRY[key]
        if var.choices:
            box = QComboBox()
            for choice in var.choices:
                name = CHOICE_NAMES.get(str(choice))
                box.addItem(translate(name) if name else str(choice), choice)
            return box
        edit = QLineEdit()
        edit.setMaxLength(300)
        edit.returnPressed.connect(self.save_settings)
        return edit

    def _show_register_note(self, url: str) -> None:
        set_tone(self.register_note, None)
        ctx = self.shell.ctx
        registered = ctx.registered_with() if ctx.registered_with is not None else None
        if registered and registered.rstrip("/") == url.strip().rstrip("/"):
            self.register_note.setText(
                _(
                    "Registered as counter {counter} of office {office} with {url}. Register "
                    "again only to replace this counter's token.",
                    counter=ctx.counter_id,
                    office=ctx.office_code,
                    url=registered,
                )
            )
            return
        self.register_note.setText(
            _(
                "Registering gives this counter its token (kept in the data folder, not in the "
                "settings); it is done once per counter, here or with "
                "'cardvend counter register --central {url} --enrolment-key KEY --operator ID'.",
                url=url.strip() or "https://…",
            )
        )

    def register_counter(self) -> None:
        """Register with the central system at the address typed above, off the GUI thread;
        then the background sync starts."""
        shell = self.shell
        registrar = shell.ctx.registrar
        central = self.fields[CENTRAL_URL.key]
        assert isinstance(central, QLineEdit)
        url = central.text().strip()
        principal = shell.principal
        if registrar is None or not url or principal is None:
            self.register_note.setText(_("Type the address of the central system first."))
            set_tone(self.register_note, "error")
            return
        key = self.enrolment_key.text() or None
        self.register_button.setEnabled(False)

        def done(message: str) -> None:
            self.register_button.setEnabled(True)
            self.enrolment_key.clear()
            self._show_register_note(url)  # "registered as …", kept while the page lives
            shell.notify(message)
            if getattr(shell, "sync_worker", None) is None and shell.ctx.sync_factory is not None:
                worker = shell.ctx.sync_factory()
                if worker is not None:
                    shell.sync_worker = worker.start()
            shell.refresh_status()

        def failed(exc: BaseException) -> None:
            self.register_button.setEnabled(True)
            self.register_note.setText(error_text(exc))
            set_tone(self.register_note, "error")

        shell.ops.run(lambda: registrar(url, key, principal), done, failed)

    def load_settings(self) -> None:
        """Show the settings as they are now (in memory: no I/O)."""
        settings = self.shell.ctx.settings
        for key, field in self.fields.items():
            value = settings.get(key)
            if isinstance(field, QComboBox):
                index = field.findData(value)
                field.setCurrentIndex(max(index, 0))
            elif isinstance(field, QLineEdit):
                if key in YUAN_KEYS:
                    field.setText(format_yuan(int(value)))
                else:
                    field.setText("" if value is None else str(value))
                mark_invalid(field, False)
        self.settings_error.setText("")
        self._show_register_note(str(settings.get(CENTRAL_URL.key) or ""))

    def collect(self) -> dict[str, Any]:
        """The typed values of every field, checked; the first bad one raises with its field
        focused and marked."""
        values: dict[str, Any] = {}
        for key, field in self.fields.items():
            mark_invalid(field, False)
            try:
                if isinstance(field, QComboBox):
                    values[key] = configuration.check_setting(key, field.currentData())
                elif isinstance(field, QLineEdit):
                    text = field.text()
                    if key in YUAN_KEYS:
                        values[key] = configuration.check_setting(
                            key, parse_yuan(text, allow_zero=True)
                        )
                    else:
                        values[key] = configuration.parse_setting(key, text)
            except CardVendError as exc:
                mark_invalid(field)
                field.setFocus()
                if "key" in exc.params:  # a person reads the field's label, not the setting key
                    exc.params["key"] = LABELS.get(key, key)
                raise
        return values

    def save_settings(self) -> None:
        try:
            values = self.collect()
        except CardVendError as exc:
            self.settings_error.setText(error_text(exc))
            self.shell.notify(error_text(exc), error=True)
            return
        self.settings_error.setText("")
        shell = self.shell
        ctx = shell.ctx
        principal = shell.principal
        if principal is None:
            return
        self.save_button.setEnabled(False)

        def work() -> dict[str, Any]:
            return configuration.change_settings(
                ctx.db,
                ctx.settings,
                principal,
                values,
                ctx.clock,
                counter_id=ctx.counter_id,
                path=ctx.settings.path or ctx.paths.settings_file,
            )

        self.shell.ops.run(work, self._saved, self._save_failed)

    def _saved(self, changed: dict[str, Any]) -> None:
        self.save_button.setEnabled(True)
        if not changed:
            self.shell.notify(_("Nothing was changed."))
            return
        self.shell.notify(_("Settings saved: {keys}.", keys=", ".join(sorted(changed))))
        self.shell.refresh_status()

    def _save_failed(self, exc: BaseException) -> None:
        self.save_button.setEnabled(True)
        self.settings_error.setText(error_text(exc))
        self.shell.notify(error_text(exc), error=True)

    # ------------------------------------------------------------------ operators

    def _operators_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels([_("Operator id"), _("Name"), _("Role"), _("State")])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        layout.addWidget(self.table, 1)
        self.add_button = QPushButton(_("Add operator (Ins)"))
        self.toggle_button = QPushButton(_("Disable / enable (Del)"))
        self.reset_button = QPushButton(_("New password"))
        self.reload_button = QPushButton(_("Refresh"))
        layout.addLayout(
            button_row(
                (self.add_button, self.add_operator),
                (self.toggle_button, self.toggle_operator),
                (self.reset_button, self.reset_password),
                (self.reload_button, self.load_operators),
                auto_default=False,
            )
        )
        for key, slot in (("Ins", self.add_operator), ("Del", self.toggle_operator)):
            shortcut = QShortcut(QKeySequence(key), tab)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
        return tab

    def activated(self) -> None:
        self.load_settings()
        self.load_operators()
        self.rules.load()

    def load_operators(self) -> None:
        ctx = self.shell.ctx
        principal = self.shell.principal
        if principal is None:
            return
        self.shell.ops.run(
            lambda: auth.list_operators(ctx.db, principal, ctx.clock),
            self._show_operators,
            self._failed,
        )

    def _show_operators(self, operators: list[OperatorView]) -> None:
        selected = self.selected()
        self.operators = operators
        self.table.setRowCount(len(operators))
        for i, op in enumerate(operators):
            state = _("disabled") if op.disabled else _("active")
            locked = auth.locked_text(op, str(self.shell.ctx.settings.get(TIME_ZONE.key)))
            state = f"{state}, {locked}" if locked else state
            for j, text in enumerate((op.id, op.name, role_name(op.role), state)):
                self.table.setItem(i, j, QTableWidgetItem(text))
            if selected is not None and op.id == selected.id:
                self.table.selectRow(i)

    def selected(self) -> OperatorView | None:
        row = self.table.currentRow()
        if 0 <= row < len(self.operators):
            return self.operators[row]
        return None

    def _policy_length(self) -> int:
        principal = self.shell.principal
        return int(principal.policy.min_password_length) if principal is not None else 8

    def _failed(self, exc: BaseException) -> None:
        self.shell.notify(error_text(exc), error=True)

    def _done(self, text: str) -> Any:
        def done(_result: Any) -> None:
            self.shell.notify(text)
            self.load_operators()

        return done

    def add_operator(self) -> None:
        dialog = AddOperatorDialog(self._policy_length(), self)
        dialog.accepted.connect(lambda: self._add_from(dialog))
        self._open(dialog)

    def _open(self, dialog: QDialog) -> None:
        self.dialog = dialog
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()

    def _add_from(self, dialog: AddOperatorDialog) -> None:
        operator_id = dialog.operator.text().strip()
        name = dialog.name.text().strip()
        role = Role(str(dialog.role.currentData()))
        password = dialog.password.text()
        ctx = self.shell.ctx
        principal = self.shell.principal
        self.shell.ops.run(
            lambda: auth.add_operator(
                ctx.db,
                principal,
                operator_id,
                name,
                role,
                password,
                ctx.clock,
                office=ctx.office_code,
            ),
            self._done(
                _(
                    "Operator {operator} added as {role}.",
                    operator=operator_id,
                    role=role_name(role),
                )
            ),
            self._failed,
        )

    def toggle_operator(self) -> None:
        op = self.selected()
        if op is None:
            self.shell.notify(_("Choose an operator in the list first."), error=True)
            return
        disable = not op.disabled
        ctx = self.shell.ctx
        principal = self.shell.principal
        text = (
            _("Operator {operator} disabled.", operator=op.id)
            if disable
            else _("Operator {operator} enabled.", operator=op.id)
        )
        self.shell.ops.run(
            lambda: auth.set_disabled(ctx.db, principal, op.id, disable, ctx.clock),
            self._done(text),
            self._failed,
        )

    def reset_password(self) -> None:
        op = self.selected()
        if op is None:
            self.shell.notify(_("Choose an operator in the list first."), error=True)
            return
        dialog = PasswordDialog(op.id, self._policy_length(), self)
        dialog.accepted.connect(lambda: self._reset_from(dialog, op.id))
        self._open(dialog)

    def _reset_from(self, dialog: PasswordDialog, operator_id: str) -> None:
        password = dialog.password.text()
        ctx = self.shell.ctx
        principal = self.shell.principal
        self.shell.ops.run(
            lambda: auth.reset_password(ctx.db, principal, operator_id, password, ctx.clock),
            self._done(_("Password of {operator} changed.", operator=operator_id)),
            self._failed,
        )
