"""Printer backends (:class:`app.ports.Printer`): a PDF folder, the system printer, ESC/POS.

Each backend has a ``name`` (shown in messages) and ``print_receipt(receipt, *, language)``.
Whatever goes wrong comes out as :class:`app.errors.PrinterError` whose ``reason`` says what
happened and whose ``hint`` says what to do, both marked messages that translate with the error.
A printer fault never touches the sale: the receipt can always be printed again.

- :class:`PdfFolderPrinter` saves ``<YYYYmmdd-HHMMSS>-<short id>[-copyN].pdf`` (the sale's local
  time) in a folder, atomically.
- :class:`SystemPrinter` hands the PDF to CUPS ``lp`` (Linux, macOS) or to the PDF reader's
  "print" verb (Windows, default printer).
- :class:`EscPosPrinter` asks a thermal printer on a serial port for its status (does it
  answer, paper, and for an offline printer why: cover open, paper end), then sends the
  receipt as ESC/POS text with a QR code. The port comes from a :data:`app.ports.SerialOpener`
  (``cardio.serial_link.open_serial`` in the composition root); its errors are recognised by
  their ``kind`` attribute, since ``printing/`` may not import ``cardio/``.

:func:`make_printer` builds the configured one from the settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.domain.receipt import ReceiptData
from app.errors import CardVendError
from app.errors import PrinterError
from app.fileio import private_dir
from app.fileio import write_atomically
from app.i18n import N_
from app.ports import ByteLink
from app.ports import Printer
from app.ports import ReceiptRenderer
from app.ports import SerialOpener
from app.settings import PRINTER
from app.settings import PRINTER_BAUD
from app.settings import PRINTER_NAME
from app.settings import PRINTER_PORT
from app.settings import RECEIPT_DIR
from app.settings import RECEIPT_SIZE
from app.settings import Settings
from printing.escpos import STATUS_OFFLINE
from printing.escpos import STATUS_PRINTER
from printing.escpos import STATUS_QUERY
from printing.escpos import parse_offline_status
from printing.escpos import parse_paper_status
from printing.escpos import parse_printer_status
from printing.escpos import receipt_escpos
from printing.receipt import PdfReceiptRenderer

log = logging.getLogger(__name__)

LP_TIMEOUT = 30.0  # seconds lp may take to hand the job to CUPS
STATUS_TIMEOUT = 1.0  # seconds a thermal printer has to answer a status query
ESCPOS_WIDTHS = {"80": 48, "58": 32}  # characters per line of font A
SPOOL_MAX_AGE = 3600.0  # Windows: PDFs handed to the reader are removed after an hour

HINT_CONNECTED = N_("Check that the printer is on and connected, then reprint the receipt.")
HINT_SETTINGS = N_("Check the printer settings on the administration page.")
HINT_REPORT = N_("The sale is saved. Tell IT support, then reprint the receipt.")

# printer status (printing.escpos.parse_*_status) -> reason, hint; "paper_near_end" still prints
STATUS_FAULTS: dict[str, tuple[str, str]] = {
    "paper_out": (N_("paper out"), N_("Load paper and reprint the receipt.")),
    "cover_open": (N_("its cover is open"), N_("Close the cover and reprint the receipt.")),
    "offline": (
        N_("it is offline"),
        N_("Check the printer's lights, paper and cover, put it online, then reprint the receipt."),
    ),
}
FAULT_ORDER = ("paper_out", "cover_open", "offline")  # the most specific cause is named

# cardio.serial_link.SerialPortError.kind -> reason, hint
PORT_FAULTS: dict[str, tuple[str, str]] = {
    "missing": (
        N_("the port is missing"),
        N_(
            "Check that the printer cable is plugged in and that the printer port in the "
            "settings is right, then reprint the receipt."
        ),
    ),
    "denied": (
        N_("CardVend may not open the port {port}"),
        N_(
            "Ask IT support to give CardVend access to the port (on Linux: the dialout group), "
            "then reprint the receipt."
        ),
    ),
    "busy": (
        N_("another program is using the port {port}"),
        N_("Close the other program, then reprint the receipt."),
    ),
    "timeout": (N_("it stopped taking data"), HINT_CONNECTED),
    "io": (N_("the connection broke off"), HINT_CONNECTED),
    "failed": (
        N_("the port {port} cannot be opened"),
        N_(
            "Check the printer port in the settings and the printer cable, then reprint the receipt."
        ),
    ),
}


def _render_failed(printer: str) -> PrinterError:
    log.exception("the receipt for printer %s could not be rendered", printer)
    return PrinterError(
        printer=printer, reason=N_("the receipt could not be laid out"), hint=HINT_REPORT
    )


def receipt_file_name(receipt: ReceiptData) -> str:
    """``20260301-170000-1A2B3C4D.pdf``; a reprint ends in ``-copy1``, ``-copy2``..."""
    stamp = receipt.local_time.strftime("%Y%m%d-%H%M%S")
    copy = f"-copy{receipt.copy_no}" if receipt.copy_no else ""
    return f"{stamp}-{receipt.short_id}{copy}.pdf"


class PdfFolderPrinter:
    """Saves each receipt as a PDF file in ``folder`` (created when missing)."""

    def __init__(self, folder: Path, size: str, *, renderer: ReceiptRenderer | None = None) -> None:
        self.folder = Path(folder)
        self.size = size
        self.renderer: ReceiptRenderer = renderer or PdfReceiptRenderer()
        self.name = f"PDF {self.folder}"

    def path_for(self, receipt: ReceiptData) -> Path:
        return self.folder / receipt_file_name(receipt)

    def print_receipt(self, receipt: ReceiptData, *, language: str) -> None:
        try:
            pdf = self.renderer.receipt_pdf(receipt, size=self.size, language=language)
        except Exception as exc:
            raise _render_failed(self.name) from exc
        path = self.path_for(receipt)
        try:
            private_dir(self.folder)  # created 0700; a folder the user chose keeps its mode
            write_atomically(path, pdf)  # 0600
        except OSError as exc:
            log.warning("cannot write the receipt %s: %s", path, exc)
            raise PrinterError(
                printer=self.name,
                reason=N_("the folder {folder} cannot be written"),
                hint=N_(
                    "Check that the folder exists and CardVend may write there, or choose "
                    "another receipts folder in the settings, then reprint the receipt."
                ),
                folder=str(self.folder),
            ) from exc
        log.info("receipt %s saved as %s", receipt.short_id, path)


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class SystemPrinter:
    """The operating system's printer: CUPS ``lp`` (Linux, macOS) on ``queue`` or the default
    destination; on Windows the PDF reader prints to the default printer (or to ``queue``)."""

    def __init__(
        self,
        queue: str | None,
        size: str,
        runner: Runner = subprocess.run,
        platform: str = sys.platform,
        *,
        renderer: ReceiptRenderer | None = None,
        timeout: float = LP_TIMEOUT,
    ) -> None:
        self.queue = queue or None
        self.size = size
        self.runner = runner
        self.platform = platform
        self.renderer: ReceiptRenderer = renderer or PdfReceiptRenderer()
        self.timeout = timeout
        self.name = self.queue or N_("(system default)")

    def print_receipt(self, receipt: ReceiptData, *, language: str) -> None:
        try:
            pdf = self.renderer.receipt_pdf(receipt, size=self.size, language=language)
        except Exception as exc:
            raise _render_failed(self.name) from exc
        if self.platform.startswith("win"):
            self._print_windows(receipt, pdf)
        else:
            self._print_lp(receipt, pdf)

    def _error(self, reason: str, hint: str, **params: object) -> PrinterError:
        return PrinterError(printer=self.name, reason=reason, hint=hint, **params)

    def _lp_missing(self) -> PrinterError:
        return self._error(
            N_("the lp command is missing"),
            N_(
                "Install the CUPS client (cups-client) or choose another printer in the "
                "settings, then reprint the receipt."
            ),
        )

    def lp_command(self, receipt: ReceiptData, path: Path) -> list[str]:
        """``lp [-d QUEUE] -t "CardVend <short id>" FILE`` (lp found on PATH when it runs)."""
        queue = ["-d", self.queue] if self.queue else []
        return ["lp", *queue, "-t", f"CardVend {receipt.short_id}", str(path)]

    def _print_lp(self, receipt: ReceiptData, pdf: bytes) -> None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f"cardvend-{receipt.short_id}-", suffix=".pdf")
            with os.fdopen(fd, "wb") as f:
                f.write(pdf)
        except OSError as exc:
            raise self._error(
                N_("the print job cannot be written to a temporary file"),
                N_("Check the free disk space, then reprint the receipt."),
            ) from exc
        try:
            command = self.lp_command(receipt, Path(tmp))
            try:
                done = self.runner(
                    command, capture_output=True, text=True, timeout=self.timeout, check=False
                )
            except FileNotFoundError as exc:  # no lp on PATH
                raise self._lp_missing() from exc
            except subprocess.TimeoutExpired as exc:
                raise self._error(
                    N_("the print system did not answer within {seconds} seconds"),
                    N_("Check that the print service (CUPS) is running, then reprint the receipt."),
                    seconds=f"{self.timeout:g}",
                ) from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # lp has sent the file to the spooler by the time it exits
        if done.returncode != 0:
            lines = [line.strip() for line in (done.stderr or done.stdout or "").splitlines()]
            detail = next((x for x in reversed(lines) if x), f"exit status {done.returncode}")
            log.warning("lp failed (%s): %s", done.returncode, detail)
            raise self._error(
                N_("the print system refused the job ({detail})"),
                N_(
                    "Check that the printer is on and its queue accepts jobs (lpstat -p), or "
                    "choose another printer in the settings, then reprint the receipt."
                ),
                detail=detail.rstrip(".")[:200],
            )
        log.info(
            "receipt %s sent to %s: %s", receipt.short_id, self.name, (done.stdout or "").strip()
        )

    def _print_windows(self, receipt: ReceiptData, pdf: bytes) -> None:  # pragma: no cover
        spool = Path(tempfile.gettempdir()) / "cardvend-print"
        path = spool / f"{receipt.short_id}-{uuid.uuid4().hex[:8]}.pdf"
        try:
            spool.mkdir(exist_ok=True)
            for old in spool.glob("*.pdf"):  # the reader opens the file later: clear old ones
                if time.time() - old.stat().st_mtime > SPOOL_MAX_AGE:
                    old.unlink()
            path.write_bytes(pdf)
            startfile: Any = getattr(os, "startfile")  # noqa: B009  (Windows only)
            if self.queue:
                startfile(str(path), "printto", f'"{self.queue}"')
            else:
                startfile(str(path), "print")
        except OSError as exc:
            log.warning("Windows could not print %s: %s", path, exc)
            raise self._error(
                N_("Windows cannot print the PDF file"),
                N_(
                    "Check that a default printer is set and a PDF reader is installed, then "
                    "reprint the receipt."
                ),
            ) from exc


class EscPosPrinter:
    """A thermal receipt printer speaking ESC/POS on a serial port, ``width`` characters a line
    (48 on 80 mm paper, 32 on 58 mm). ``last_status`` keeps a warning such as
    ``"paper_near_end"`` from the last receipt that printed."""

    def __init__(
        self,
        opener: SerialOpener,
        port: str,
        baudrate: int,
        width: int,
        *,
        status_timeout: float = STATUS_TIMEOUT,
    ) -> None:
        self.opener = opener
        self.port = port
        self.baudrate = baudrate
        self.width = width
        self.status_timeout = status_timeout
        self.name = f"ESC/POS {port}" if port else "ESC/POS"
        self.last_status: str | None = None

    def _error(self, reason: str, hint: str, **params: object) -> PrinterError:
        return PrinterError(printer=self.name, reason=reason, hint=hint, port=self.port, **params)

    def print_receipt(self, receipt: ReceiptData, *, language: str) -> None:
        try:
            data = receipt_escpos(receipt, language=language, width=self.width)
        except Exception as exc:
            raise _render_failed(self.name) from exc
        if not self.port:
            raise self._error(
                N_("no serial port is set"),
                N_("Set the printer port in the settings, then reprint the receipt."),
            )
        try:
            link = self.opener(self.port, self.baudrate)
        except PrinterError:
            raise
        except CardVendError as exc:
            raise self._port_error(exc) from exc
        try:
            self.last_status = self._check_status(link)
            link.write(data)
        except PrinterError:
            raise
        except CardVendError as exc:
            raise self._port_error(exc) from exc
        finally:
            link.close()
        log.info("receipt %s printed on %s (%d bytes)", receipt.short_id, self.name, len(data))

    def _port_error(self, exc: CardVendError) -> PrinterError:
        # a cardio.serial_link.SerialPortError carries a kind; any other error is a failed port
        kind = getattr(exc, "kind", "failed")
        reason, hint = PORT_FAULTS.get(kind, PORT_FAULTS["failed"])
        return self._error(reason, hint)

    def _ask(self, link: ByteLink, query: bytes) -> int | None:
        link.write(query)
        answer = link.read(1, self.status_timeout)
        return answer[-1] if answer else None

    def _check_status(self, link: ByteLink) -> str | None:
        """Ask the printer status (DLE EOT 1) and the paper sensor (DLE EOT 4), and for an
        offline printer the cause (DLE EOT 2). Raise for a printer that cannot print; return a
        warning ("paper_near_end") or None."""
        printer = self._ask(link, STATUS_PRINTER)
        if printer is None:
            raise self._error(N_("it does not answer"), HINT_CONNECTED)
        paper = self._ask(link, STATUS_QUERY)
        if paper is None:
            raise self._error(N_("it does not answer"), HINT_CONNECTED)
        found = [parse_printer_status(printer), parse_paper_status(paper)]
        if "offline" in found and "paper_out" not in found:
            cause = self._ask(link, STATUS_OFFLINE)  # cover open, paper end, an error
            if cause is not None:
                found.append(parse_offline_status(cause))
        for status in FAULT_ORDER:
            if status in found:
                reason, hint = STATUS_FAULTS[status]
                log.warning("%s cannot print: %s (status %s)", self.name, status, found)
                raise self._error(reason, hint)
        warning = next((s for s in found if s is not None), None)
        if warning:
            log.warning("%s: %s", self.name, warning)
        return warning


def make_printer(
    settings: Settings, *, receipt_dir: Path, opener: SerialOpener | None
) -> Printer | None:
    """The printer the settings choose (``printer``: pdf, system, escpos, none).

    ``receipt_dir`` is the pdf printer's folder when the ``receipt_dir`` setting is empty (the
    composition root passes ``receipts/`` in the data directory). ``opener`` opens serial ports
    (``cardio.serial_link.open_serial``); the escpos printer needs it."""
    kind = settings.value(PRINTER)
    size = settings.value(RECEIPT_SIZE)
    if kind == "none":
        return None
    if kind == "pdf":
        configured = settings.value(RECEIPT_DIR)
        return PdfFolderPrinter(Path(configured) if configured else receipt_dir, size)
    if kind == "system":
        return SystemPrinter(settings.value(PRINTER_NAME) or None, size)
    if kind == "escpos":
        if opener is None:
            raise ValueError("the escpos printer needs a serial opener")
        return EscPosPrinter(
            opener,
            settings.value(PRINTER_PORT),
            settings.value(PRINTER_BAUD),
            ESCPOS_WIDTHS.get(size, ESCPOS_WIDTHS["80"]),
        )
    raise ValueError(f"unknown printer kind {kind!r}")


def printer_status(
    settings: Settings, *, receipt_dir: Path, opener: SerialOpener | None
) -> str | None:
    """Whether the configured printer can be reached, without printing (``cardvend
    selftest``): the PDF folder is writable, the CUPS queue is known, the ESC/POS port opens.
    None when no printer is configured; PrinterError saying what is wrong."""
    from app.i18n import _

    printer = make_printer(settings, receipt_dir=receipt_dir, opener=opener)
    if printer is None:
        return None
    if isinstance(printer, PdfFolderPrinter):
        private_dir(printer.folder)
        if not os.access(printer.folder, os.W_OK):
            raise PrinterError(printer=printer.name, reason=N_("the folder cannot be written"),
                               hint=HINT_SETTINGS)  # fmt: skip
        return _("{printer}: the folder can be written", printer=printer.name)
    if isinstance(printer, EscPosPrinter):
        try:
            link = printer.opener(printer.port, printer.baudrate)
        except CardVendError:
            raise
        except Exception as exc:
            raise PrinterError(printer=printer.name, reason=N_("the port cannot be opened"),
                               hint=HINT_SETTINGS) from exc  # fmt: skip
        close = getattr(link, "close", None)
        if callable(close):
            close()
        return _("{printer}: the port opens", printer=printer.name)
    return _("{printer}: configured (the system's print queue)", printer=printer.name)
