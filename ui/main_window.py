"""The first counter window: where the counter stands, and a customer lookup."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QLabel,
    QLineEdit,
    QListWidget,
    QMainWindow,
    QVBoxLayout,
    QWidget,
)

from app.context import AppContext
from app.domain.audit import VerifyResult
from app.errors import CardVendError
from app.i18n import _, get_language
from app.services import customers as customer_service
from app.services.audit import AuditVerifyFailed


class MainWindow(QMainWindow):
    def __init__(self, ctx: AppContext, audit_state: VerifyResult | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle(_("CardVend counter"))
        self.resize(900, 600)
        central = QWidget(self)
        layout = QVBoxLayout(central)
        title = QLabel(_("CardVend counter"), central)
        font = QFont()
        font.setPointSize(20)
        title.setFont(font)
        layout.addWidget(title)
        self.audit_warning = QLabel(central)
        self.audit_warning.setStyleSheet("color: white; background: #b00020; padding: 6px;")
        self.audit_warning.setWordWrap(True)
        layout.addWidget(self.audit_warning)
        if audit_state is not None and not audit_state.ok:
            self.audit_warning.setText(AuditVerifyFailed(audit_state).localized())
        else:
            self.audit_warning.hide()
        self.info = QLabel(central)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.info)
        self.search = QLineEdit(central)
        self.search.setPlaceholderText(
            _("Customer number, meter number, name or the last digits of the phone")
        )
        self.search.returnPressed.connect(self.run_search)
        layout.addWidget(self.search)
        self.results = QListWidget(central)
        layout.addWidget(self.results)
        self.message = QLabel(central)
        layout.addWidget(self.message)
        self.setCentralWidget(central)
        self.refresh_info()

    def refresh_info(self) -> None:
        count = customer_service.count_customers(self.ctx.db)
        self.info.setText(
            _(
                "Office {office} · counter {counter} · {count} customers · database {db} · {lang}",
                office=self.ctx.office_code,
                counter=self.ctx.counter_id,
                count=count,
                db=self.ctx.db.url.render_as_string(hide_password=True),
                lang=get_language(),
            )
        )

    def run_search(self) -> None:
        self.results.clear()
        self.message.clear()
        try:
            found = customer_service.find_customers(self.ctx.db, self.search.text())
        except CardVendError as exc:
            self.message.setText(exc.localized())
            return
        for c in found:
            self.results.addItem(f"{c.customer_no}  {c.meter_no}  {c.name}  {c.address}")
        if not found:
            self.message.setText(_("No customer matches {text!r}.", text=self.search.text()))
