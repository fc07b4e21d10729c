"""The first-run set-up in the window: a wizard over app/services/setup.py.

Shown by ui/app.run_gui before the login when the counter is not configured and demo mode is
off (``CARDVEND_DEMO=0``) or ``--setup`` was given. Seven pages, each checked when the person
presses Next (the step's error shown on the page, translated): office and counter, database,
card reader, key provider, printer, first administrator, central system. "Test connection",
"Test read" and "Test print" run off the GUI thread (card work on the card thread). Finish
applies the plan (settings.json is written last); Cancel writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QComboBox
from PySide6.QtWidgets import QFileDialog
from PySide6.QtWidgets import QFormLayout
from PySide6.QtWidgets import QHBoxLayout
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QPushButton
from PySide6.QtWidgets import QVBoxLayout
from PySide6.QtWidgets import QWidget
from PySide6.QtWidgets import QWizard
from PySide6.QtWidgets import QWizardPage

from app.context import AppContext
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.services import setup
from app.services.setup import SetupPlan
from app.settings import PRINTER
from ui.bridge import Ops
from ui.bridge import error_text
from ui.widgets import radio_buttons
from ui.widgets import wrapped_label

log = logging.getLogger(__name__)


class StepPage(QWizardPage):
    """A page with an error line and a result line; ``check`` stores the page's answers in the
    plan and raises the step's error."""

    def __init__(self, wizard: SetupWizard, title: str) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle(title)
        self.form = QFormLayout()
        self.error = wrapped_label(tone="error")
        self.error.setObjectName("setupError")
        self.passed = False  # verified: the next validatePage lets the wizard move on
        self.busy_text = _("Checking…")
        self.result = wrapped_label()
        self.result.setObjectName("setupResult")
        box = QVBoxLayout(self)
        box.addLayout(self.form)
        box.addWidget(self.result)
        box.addWidget(self.error)
        box.addStretch(1)

    def line(self, label: str, *, secret: bool = False, text: str = "") -> QLineEdit:
        edit = QLineEdit(text)
        if secret:
            edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.form.addRow(label, edit)
        return edit

    def button(self, label: str, action: Callable[[], None]) -> QPushButton:
        b = QPushButton(label)
        b.clicked.connect(action)
        self.form.addRow("", b)
        return b

    def verify(self) -> Any:
        """Check the answers :meth:`store` put in the plan (off the GUI thread)."""
        raise NotImplementedError

    def validatePage(self) -> bool:
        """Next: store the answers, check them off the GUI thread (a database, a keystore, a
        reader may take a while), then move on, or show the step's error."""
        if self.passed:
            self.passed = False
            return True
        if self.w.busy:
            return False
        self.error.clear()
        try:
            self.store()
        except Exception as exc:
            self.error.setText(error_text(exc))
            return False
        self.w.set_busy(True)
        self.result.setText(self.busy_text)

        def done(value: Any) -> None:
            self.w.set_busy(False)
            self.result.clear()
            self.passed = True
            self.finished(value)

        def failed(exc: BaseException) -> None:
            self.w.set_busy(False)
            self.result.clear()
            self.error.setText(error_text(exc))

        self.w.ops.run(self.verify, done, failed)
        return False

    def finished(self, value: Any) -> None:
        self.w.next()

    def trial(self, work: Callable[[], str], *, card: bool = False) -> None:
        """Run a test off the GUI thread; its answer or its error on the page."""
        self.error.clear()
        self.result.setText(_("Trying…"))

        def done(text: str) -> None:
            self.result.setText(text)

        def failed(exc: BaseException) -> None:
            self.result.clear()
            self.error.setText(error_text(exc))

        try:
            self.store()
        except Exception as exc:
            failed(exc)
            return
        (self.w.ops.card if card else self.w.ops.run)(work, done, failed)

    def store(self) -> None:
        """Copy the page's answers into the plan (no check)."""


class OfficePage(StepPage):
    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__(wizard, _("Office and counter"))
        self.setSubTitle(
            _("The office code and this counter's id, as the central system knows them.")
        )
        self.office = self.line(_("Office code"))
        self.counter = self.line(_("Counter id"), text="C01")

    def store(self) -> None:
        self.w.plan.office_code = self.office.text().strip()
        self.w.plan.counter_id = self.counter.text().strip()

    def verify(self) -> Any:
        setup.check_office(self.w.plan)


class DatabasePage(StepPage):
    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__(wizard, _("Database"))
        self.local, self.office = radio_buttons(
            self,
            _("This PC (a SQLite file in the data folder)"),
            _("The office's PostgreSQL server"),
        )
        self.form.addRow(self.local)
        self.form.addRow(self.office)
        self.url = self.line(_("PostgreSQL URL"))
        self.url.setPlaceholderText("postgresql://user@host/cardvend")
        self.url.textEdited.connect(lambda _text: self.office.setChecked(True))
        self.test = self.button(_("Test connection"), self.test_connection)

    def store(self) -> None:
        self.w.plan.db_url = self.url.text().strip() if self.office.isChecked() else ""
        if self.office.isChecked() and not self.w.plan.db_url:
            raise setup.SetupError(setup.DATABASE, N_("enter the PostgreSQL URL"))

    def test_connection(self) -> None:
        plan, paths = self.w.plan, self.w.ctx.paths
        self.trial(lambda: _("The database answers: {url}", url=setup.check_database(plan, paths)))

    def verify(self) -> Any:
        return setup.check_database(self.w.plan, self.w.ctx.paths)


class ReaderPage(StepPage):
    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__(wizard, _("Card reader"))
        self.reader = QComboBox()
        self.form.addRow(_("User-card reader"), self.reader)
        self.button(_("Look for readers again"), self.refresh)
        self.test = self.button(_("Test read"), self.test_read)

    def initializePage(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        current = self.reader.currentData()
        self.reader.clear()
        self.reader.addItem(_("No reader: emulated cards (training)"), "")
        self.error.clear()
        try:
            names = setup._readers(self.w.ctx.setup_probe, setup.READER)
        except Exception as exc:
            names = []
            self.error.setText(error_text(exc))
        for name in names:
            self.reader.addItem(name, name)
        at = self.reader.findData(current)
        self.reader.setCurrentIndex(at if at >= 0 else (1 if names else 0))

    def store(self) -> None:
        self.w.plan.card_reader = str(self.reader.currentData() or "")

    def test_read(self) -> None:
        plan, probe = self.w.plan, self.w.ctx.setup_probe
        self.trial(lambda: setup.test_read(plan, probe))

    def verify(self) -> Any:
        setup.check_reader(self.w.plan, self.w.ctx.setup_probe)


class KeysPage(StepPage):
    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__(wizard, _("Key provider"))
        self.software, self.psam = radio_buttons(
            self, _("A keystore file (import it)"), _("A PSAM card in a reader")
        )
        self.form.addRow(self.software)
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        self.file = QLineEdit()
        browse = QPushButton(_("Choose…"))
        browse.clicked.connect(self.browse)
        lay.addWidget(self.file)
        lay.addWidget(browse)
        self.form.addRow(_("Keystore file"), row)
        self.passphrase = self.line(_("Passphrase"), secret=True)
        self.form.addRow(self.psam)
        self.psam_reader = QComboBox()
        self.psam_reader.setEditable(True)
        self.form.addRow(_("PSAM reader"), self.psam_reader)

    def initializePage(self) -> None:
        self.psam_reader.clear()
        try:
            self.psam_reader.addItems(setup._readers(self.w.ctx.setup_probe, setup.KEYS))
        except Exception as exc:
            log.info("no readers for the PSAM: %s", exc)

    def browse(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(self, _("Keystore file"))
        if path:
            self.file.setText(path)

    def store(self) -> None:
        plan = self.w.plan
        plan.key_provider = "psam" if self.psam.isChecked() else "software"
        plan.keystore_source = self.file.text().strip()
        plan.keystore_passphrase = self.passphrase.text()
        plan.psam_reader = self.psam_reader.currentText().strip()

    def verify(self) -> Any:
        setup.check_keys(self.w.plan, self.w.ctx.setup_probe)


PRINTER_LABELS = {
    "pdf": N_("PDF files in the receipts folder"),
    "system": N_("The system printer"),
    "escpos": N_("A thermal printer (ESC/POS) on a serial port"),
    "none": N_("No printer"),
}


class PrinterPage(StepPage):
    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__(wizard, _("Printer"))
        self.kind = QComboBox()
        for kind in PRINTER.choices or ():
            self.kind.addItem(translate(PRINTER_LABELS.get(kind, kind)), kind)
        self.form.addRow(_("Receipts go to"), self.kind)
        self.name = self.line(_("System printer (empty: the default)"))
        self.port = self.line(_("Serial port"))
        self.test = self.button(_("Test print"), self.test_print)

    def store(self) -> None:
        plan = self.w.plan
        plan.printer = str(self.kind.currentData())
        plan.printer_name = self.name.text().strip()
        plan.printer_port = self.port.text().strip()

    def test_print(self) -> None:
        plan, probe, clock = self.w.plan, self.w.ctx.setup_probe, self.w.ctx.clock
        self.trial(lambda: setup.test_print(plan, probe, clock))

    def verify(self) -> Any:
        setup.check_printer(self.w.plan)


class AdminPage(StepPage):
    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__(wizard, _("First administrator"))
        self.setSubTitle(_("The administrator adds the tellers and the other operators."))
        self.admin_id = self.line(_("Operator id"), text="admin")
        self.admin_name = self.line(_("Name"))
        self.password = self.line(_("Password"), secret=True)
        self.repeat = self.line(_("Password again"), secret=True)
        self.repeated = ""

    def store(self) -> None:
        plan = self.w.plan
        plan.admin_id = self.admin_id.text().strip()
        plan.admin_name = self.admin_name.text().strip()
        plan.admin_password = self.password.text()
        self.repeated = self.repeat.text()

    def verify(self) -> Any:
        setup.check_admin(self.w.plan, self.w.ctx.settings, self.repeated)


class CentralPage(StepPage):
    """The last page: Finish checks everything again and applies the plan."""

    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__(wizard, _("Central system"))
        self.setSubTitle(
            _("Register this counter now, or leave the address empty and register it later.")
        )
        self.busy_text = _("Setting up…")
        self.url = self.line(_("Central system URL"))
        self.url.setPlaceholderText("https://central.example/")
        self.key = self.line(_("Enrolment key"), secret=True)
        self.code = self.line(_("One-time enrolment code"))

    def store(self) -> None:
        plan = self.w.plan
        plan.central_url = self.url.text().strip()
        plan.enrolment_key = self.key.text().strip()
        plan.enrolment_code = self.code.text().strip()

    def verify(self) -> Any:
        """Finish: check this page, then apply the plan (migrating, registering)."""
        setup.check_central(self.w.plan)
        ctx = self.w.ctx
        return setup.apply(self.w.plan, ctx.paths, ctx.settings, ctx.clock, ctx.setup_probe)

    def finished(self, value: Any) -> None:
        self.w.outcome = value
        self.w.accept()


class SetupWizard(QWizard):
    """``outcome`` is the applied set-up once Finish succeeded (None after Cancel)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.plan = SetupPlan()
        self.outcome: setup.SetupResult | None = None
        self.busy = False  # Finish is applying the plan: Cancel waits for it
        self.ops = Ops(card=ctx.card_worker)
        self.setWindowTitle(_("CardVend set-up"))
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.pages: list[StepPage] = [
            OfficePage(self),
            DatabasePage(self),
            ReaderPage(self),
            KeysPage(self),
            PrinterPage(self),
            AdminPage(self),
            CentralPage(self),
        ]
        for page in self.pages:
            self.addPage(page)
        self.rejected.connect(lambda: setup.discard(ctx.paths))

    def set_busy(self, busy: bool) -> None:
        """A page is checking (or applying): Back, Next, Finish and Cancel wait for it."""
        self.busy = busy
        for which in (
            QWizard.WizardButton.BackButton,
            QWizard.WizardButton.NextButton,
            QWizard.WizardButton.FinishButton,
            QWizard.WizardButton.CancelButton,
        ):
            self.button(which).setEnabled(not busy)

    def reject(self) -> None:
        if not self.busy:
            super().reject()

    def shutdown(self) -> None:
        self.ops.shutdown()


def run_setup(ctx: AppContext) -> bool:
    """Show the wizard; True when the counter was set up (the settings are then reloaded)."""
    from app.settings import Settings

    wizard = SetupWizard(ctx)
    try:
        done = wizard.exec() == QWizard.DialogCode.Accepted and wizard.outcome is not None
    finally:
        wizard.shutdown()
    if done:
        ctx.settings = Settings.load(ctx.paths.settings_file)
    return done
