"""Reprinting a sale's receipt from the window (as ``cardvend receipt SALE_ID`` does): on the
configured printer, or as a PDF file the operator names when no printer is configured. The
rules ask a supervisor's approval for a reprint: the approval dialog opens when it is needed and
the reprint goes on by itself once approved. A copy is counted and audited only once it exists
(:func:`app.services.receipts.reprint`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QFileDialog
from PySide6.QtWidgets import QWidget

from app.domain.permissions import Action
from app.domain.receipt import ReceiptData
from app.files import save_output
from app.i18n import _
from app.services import approvals
from app.services import receipts
from app.settings import RECEIPT_LANGUAGE
from app.settings import RECEIPT_SIZE
from ui.bridge import error_text
from ui.dialogs.approval import ApprovalDialog


def reprint_receipt(
    shell: Any,
    sale_id: str,
    parent: QWidget,
    report: Callable[[str, bool], None],
    request_id: str | None = None,
) -> None:
    """Reprint ``sale_id``'s receipt; ``report(text, error)`` says how it went."""
    ctx, actor = shell.ctx, shell.principal
    if actor is None:
        return
    printer = ctx.printer_factory() if ctx.printer_factory is not None else None
    path = ""
    if printer is None:
        path, _filter = QFileDialog.getSaveFileName(
            parent, _("Save the receipt copy as PDF"), f"receipt-{sale_id[:8]}.pdf", "PDF (*.pdf)"
        )
        if not path:
            return
    renderer = ctx.receipt_renderer
    language = str(ctx.settings.value(RECEIPT_LANGUAGE))
    size = str(ctx.settings.value(RECEIPT_SIZE))

    def deliver(data: ReceiptData) -> None:
        if printer is not None:
            printer.print_receipt(data, language=language)
        else:
            save_output(path, renderer.receipt_pdf(data, size=size, language=language), force=True)

    def work() -> ReceiptData:
        return receipts.reprint(
            ctx.db,
            actor=actor,
            sale_id=sale_id,
            settings=ctx.settings,
            key=ctx.receipt_key(),
            clock=ctx.clock,
            approval_request=request_id,
            deliver=deliver,
        )

    def done(data: ReceiptData) -> None:
        where = printer.name if printer is not None else path
        report(
            _("Copy {copy} of the receipt of sale {sale} went to {where}.",
              copy=data.copy_no, sale=sale_id[:8], where=where),
            False,
        )  # fmt: skip

    def failed(exc: BaseException) -> None:
        if isinstance(exc, approvals.ApprovalRequired) and request_id is None:
            dialog = ApprovalDialog(shell, Action.REPRINT, sale_id, parent=parent)
            dialog.approved.connect(
                lambda view: reprint_receipt(shell, sale_id, parent, report, view.id)
            )
            dialog.rejected.connect(lambda: report(_("Not approved: nothing was printed."), True))
            dialog.open()
            return
        report(error_text(exc), True)

    shell.ops.run(work, done, failed)
