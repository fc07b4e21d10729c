"""Meter change (换表) for the customer chosen on the customers page: the old meter's state from
the card's write-back, a DL/T 645 read, or values typed from its display (a supervisor
approves), carried onto the customer's card for the new meter; the slip is saved as a PDF."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QComboBox
from PySide6.QtWidgets import QLineEdit
from PySide6.QtWidgets import QWidget

from app.domain import ids
from app.domain.permissions import Action
from app.errors import ValidationError
from app.files import save_output
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.money import parse_yuan
from app.ports import CardTerminal
from app.presenters.cardwork import approver_of
from app.presenters.meter_change import MeterChangeWork
from app.presenters.meter_change import meter_change_lines
from app.services import meter_reading
from app.services.customers import CustomerView
from app.services.lifecycle import meter_change as mc
from ui.dialogs.operation import OperationDialog
from ui.dialogs.operation import _customer_info
from ui.dialogs.operation import dialog_parent
from ui.dialogs.operation import open_operation

log = logging.getLogger(__name__)

SOURCE_LABELS = (
    (mc.SOURCE_CARD, N_("The card, after the old meter wrote back onto it")),
    (mc.SOURCE_READ, N_("A meter read over DL/T 645 (serial port or HOST:PORT)")),
    (mc.SOURCE_TYPED, N_("Values typed from the old meter's display (approval)")),
)


class MeterChangeDialog(OperationDialog):
    """The customer's meter replaced; the credit and purchase count move on the card."""

    def __init__(self, shell: Any, customer_no: str, parent: QWidget | None = None) -> None:
        super().__init__(shell, _("Change meter"), parent)
        self.customer_no = customer_no
        self.slip_path: Path | None = None
        self.new_meter = QLineEdit()
        self.new_meter.setPlaceholderText(_("12 digits"))
        self.new_meter.setMaxLength(12)
        self.source = QComboBox()
        for key, label in SOURCE_LABELS:
            self.source.addItem(translate(label), key)
        self.where = QLineEdit()
        self.where.setPlaceholderText(_("for example /dev/ttyUSB0 or 10.0.0.5:8001"))
        self.remaining = QLineEdit()
        self.remaining.setPlaceholderText(_("yuan, negative for an overdraft"))
        self.purchase_count = QLineEdit()
        self.reading = QLineEdit()
        self.reading.setPlaceholderText(_("kWh (empty: not known)"))
        self.form.addRow(_("New meter number"), self.new_meter)
        self.form.addRow(_("Old meter's state from"), self.source)
        self.form.addRow(_("Meter line"), self.where)
        self.form.addRow(_("Remaining balance"), self.remaining)
        self.form.addRow(_("Purchase count"), self.purchase_count)
        self.form.addRow(_("Final reading"), self.reading)
        self.source.currentIndexChanged.connect(lambda _i: self._source_changed())
        self._source_changed()
        self.load_customer(customer_no)

    def customer_loaded(self, customer: CustomerView) -> None:
        self.ready(
            _customer_info(customer),
            _(
                "Type the new meter's number, choose where the old meter's state comes from, "
                "put the customer's card in the reader and press Enter. No money is taken."
            ),
            _("Change meter (Enter)"),
        )
        self.new_meter.setFocus()

    def _source_changed(self) -> None:
        key = self.source.currentData()
        self.where.setEnabled(key == mc.SOURCE_READ)
        typed = key == mc.SOURCE_TYPED
        for field in (self.remaining, self.purchase_count, self.reading):
            field.setEnabled(typed)

    def _typed(self) -> tuple[int, int, int | None]:
        remaining = parse_yuan(self.remaining.text().strip(), allow_zero=True, allow_negative=True)
        count_text = self.purchase_count.text().strip()
        if not count_text.isdigit():
            raise ValidationError(N_("Type the old meter's purchase count (a whole number)."))
        reading = self.reading.text().strip()
        wh = parse_yuan(reading, allow_zero=True) * 10 if reading else None
        return remaining, int(count_text), wh

    def start(self) -> None:
        actor = self.actor()
        new_meter = ids.check_meter_no(self.new_meter.text().strip(), _("New meter number"))
        source = str(self.source.currentData())
        if source == mc.SOURCE_TYPED:
            typed = self._typed()
            self.with_approval(
                Action.CHANGE_METER,
                self.customer_no,
                lambda request_id: self._write(actor, new_meter, source, typed, request_id),
                payload={"customer_no": self.customer_no, "new_meter_no": new_meter},
                what=_("customer {customer_no}", customer_no=self.customer_no),
            )
            return
        if source == mc.SOURCE_READ and not self.where.text().strip():
            raise ValidationError(N_("Type the meter line (serial port or HOST:PORT)."))
        self._write(actor, new_meter, source, None, None)

    def _write(
        self,
        actor: Any,
        new_meter: str,
        source: str,
        typed: tuple[int, int, int | None] | None,
        request_id: str | None,
    ) -> None:
        ctx = self.shell.ctx
        work, customer_no = MeterChangeWork.of(ctx), self.customer_no
        where = self.where.text().strip()
        old_meter = self.customer.meter_no if self.customer is not None else ""
        slips = ctx.paths.data_dir / "slips"

        def run(terminal: CardTerminal) -> tuple[mc.MeterChange, Path | None]:
            reading = None
            if source == mc.SOURCE_READ:
                if ctx.meter_reader is None:
                    raise ValidationError(N_("no meter line is set up here"))
                reading = meter_reading.read_for(
                    work.db, actor, work.clock, ctx.meter_reader, where, old_meter
                )
            remaining, count, wh = typed if typed is not None else (None, None, None)
            request = mc.MeterChangeRequest(
                customer_no,
                new_meter,
                source=source,
                remaining_fen=remaining,
                purchase_count=count,
                reading=reading,
                energy_wh=wh,
            )
            change = work.change(terminal, actor, request, request_id)
            return change, _save_slip(work, change, slips)

        self.run_card(run, lambda result: self._done(*result))

    def _done(self, change: mc.MeterChange, slip: Path | None) -> None:
        lines = meter_change_lines(change)
        if self.request is not None:
            lines.append(_("Approved by {approver}.", approver=approver_of(self.request)))
        if slip is not None:
            self.slip_path = slip
            lines.append(_("The meter change slip is saved: {path}", path=str(slip)))
        self.succeed("\n".join(lines), change)


def _save_slip(work: MeterChangeWork, change: mc.MeterChange, folder: Path) -> Path | None:
    """The slip as a PDF in ``folder``; the change stands whatever happens here."""
    if work.slips is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"meter-change-{change.event_id}.pdf"
        save_output(path, work.slip_pdf(change), force=True)
        return path
    except Exception:  # the change is done; the slip can be made again from the event
        log.exception("meter change slip not saved")
        return None


def start_meter_change(
    shell: Any, customer_no: str, parent: QWidget | None = None
) -> OperationDialog:
    return open_operation(MeterChangeDialog(shell, customer_no, dialog_parent(shell, parent)))
