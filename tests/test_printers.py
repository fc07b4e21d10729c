"""Printer backends (printing/backends.py) and the serial line (cardio/serial_link.py) on real parts:
a socat pty pair with the test playing the thermal printer, a PDF folder read back with
pdftotext, and a fake CUPS ``lp`` executable first on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from app.domain.receipt import ReceiptData
from app.errors import PrinterError
from app.settings import Settings
from cardio.serial_link import SerialLink
from cardio.serial_link import SerialPortError
from cardio.serial_link import open_serial
from printing.backends import EscPosPrinter
from printing.backends import PdfFolderPrinter
from printing.backends import SystemPrinter
from printing.backends import make_printer
from printing.backends import receipt_file_name
from printing.escpos import STATUS_OFFLINE
from printing.escpos import STATUS_PRINTER
from printing.escpos import STATUS_QUERY
from printing.escpos import receipt_escpos
from tests.rigs.receipts import NAME
from tests.rigs.receipts import make_receipt
from tests.serial_rig import PtyPair
from tests.serial_rig import needs_socat

QR_COMMAND = b"\x1d(k"  # GS ( k: the ESC/POS QR code functions
# status bytes (fixed bits 1 and 4 set): DLE EOT 1 printer status, DLE EOT 4 paper sensor
PRINTER_READY = 0x12
PRINTER_OFFLINE = 0x12 | 0x08
PAPER_OK = 0x12
PAPER_NEAR_END = 0x12 | 0x0C
PAPER_OUT = 0x12 | 0x60
# DLE EOT 2, the offline cause
CAUSE_NONE = 0x12
CAUSE_COVER_OPEN = 0x12 | 0x04

needs_pdftotext = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) is not installed"
)


def reason_of(err: PrinterError) -> object:
    return err.params["reason"]


# --------------------------------------------------------------------------- serial line


class FakeThermalPrinter:
    """Plays the printer on its end of the line: answers the first status queries with the
    given bytes (none: a printer that is off) and keeps every byte it receives."""

    def __init__(self, port: Path, answers: list[int]) -> None:
        self.link: SerialLink = open_serial(str(port), 9600)
        self.answers = list(answers)
        self.received = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            chunk = self.link.read(1, 0.02)
            if not chunk:
                continue
            self.received += chunk
            tail = bytes(self.received[-3:])
            if self.answers and tail in (STATUS_PRINTER, STATUS_QUERY, STATUS_OFFLINE):
                self.link.write(bytes([self.answers.pop(0)]))

    def collect(self, expected: int, quiet: float = 0.3, limit: float = 10.0) -> bytes:
        """Wait for ``expected`` bytes (or longer) and then for the line to stay quiet."""
        deadline = time.monotonic() + limit
        while len(self.received) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(quiet)
        self._stop.set()
        self._thread.join(5)
        self.link.close()
        return bytes(self.received)


@needs_socat
def test_serial_link_carries_bytes_both_ways(ptys: PtyPair) -> None:
    a = open_serial(str(ptys.a), 9600)
    b = open_serial(str(ptys.b), 9600)
    try:
        block = bytes(range(256)) * 40
        a.write(block)
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < len(block) and time.monotonic() < deadline:
            got += b.read(len(block) - len(got), 0.5)
        assert got == block
        b.write(b"\x12")
        assert a.read(1, 1.0) == b"\x12"
        started = time.monotonic()
        assert a.read(1, 0.2) == b""  # nothing more: the timeout ends the read
        assert 0.15 < time.monotonic() - started < 2
    finally:
        a.close()
        b.close()


def test_serial_link_missing_port_is_typed(tmp_path: Path) -> None:
    with pytest.raises(SerialPortError) as caught:
        open_serial(str(tmp_path / "ttyUSB9"), 9600)
    assert caught.value.kind == "missing"
    assert caught.value.port == str(tmp_path / "ttyUSB9")
    assert "the port does not exist" in str(caught.value)
    with pytest.raises(SerialPortError) as caught:
        open_serial("", 9600)
    assert caught.value.kind == "missing"


@needs_socat
def test_serial_link_refuses_a_port_held_by_another(ptys: PtyPair) -> None:
    first = open_serial(str(ptys.a), 9600)
    try:
        with pytest.raises(SerialPortError) as caught:
            open_serial(str(ptys.a), 9600)
        assert caught.value.kind == "busy"
    finally:
        first.close()


# --------------------------------------------------------------------------- ESC/POS


@needs_socat
@pytest.mark.parametrize(("language", "width"), [("zh_CN", 48), ("en", 32)])
def test_escpos_receipt_reaches_the_printer(ptys: PtyPair, language: str, width: int) -> None:
    receipt = make_receipt()
    expected = (
        STATUS_PRINTER + STATUS_QUERY + receipt_escpos(receipt, language=language, width=width)
    )
    printer = FakeThermalPrinter(ptys.b, [PRINTER_READY, PAPER_OK])
    backend = EscPosPrinter(open_serial, str(ptys.a), 9600, width)
    backend.print_receipt(receipt, language=language)
    captured = printer.collect(len(expected))
    assert captured == expected
    assert QR_COMMAND in captured
    assert receipt.qr_payload.encode("ascii") in captured
    assert NAME.encode("gb18030") in captured
    assert backend.last_status is None


@needs_socat
def test_escpos_paper_near_end_still_prints(ptys: PtyPair) -> None:
    receipt = make_receipt()
    body = receipt_escpos(receipt, language="zh_CN", width=48)
    printer = FakeThermalPrinter(ptys.b, [PRINTER_READY, PAPER_NEAR_END])
    backend = EscPosPrinter(open_serial, str(ptys.a), 9600, 48)
    backend.print_receipt(receipt, language="zh_CN")
    assert printer.collect(6 + len(body)) == STATUS_PRINTER + STATUS_QUERY + body
    assert backend.last_status == "paper_near_end"


@needs_socat
def test_escpos_paper_out_prints_nothing(ptys: PtyPair) -> None:
    # a printer out of paper also reports itself offline; the message names the paper
    printer = FakeThermalPrinter(ptys.b, [PRINTER_OFFLINE, PAPER_OUT])
    backend = EscPosPrinter(open_serial, str(ptys.a), 9600, 48)
    with pytest.raises(PrinterError) as caught:
        backend.print_receipt(make_receipt(), language="zh_CN")
    assert reason_of(caught.value) == "paper out"
    assert str(caught.value) == (
        f"The printer ESC/POS {ptys.a} did not print: paper out. "
        "Load paper and reprint the receipt."
    )
    assert printer.collect(6) == STATUS_PRINTER + STATUS_QUERY  # only the questions


@needs_socat
@pytest.mark.parametrize(
    ("cause", "reason", "hint"),
    [
        (CAUSE_NONE, "it is offline", "put it online, then reprint the receipt."),
        (CAUSE_COVER_OPEN, "its cover is open", "Close the cover and reprint the receipt."),
    ],
)
def test_escpos_offline_printer_names_the_cause(
    ptys: PtyPair, cause: int, reason: str, hint: str
) -> None:
    printer = FakeThermalPrinter(ptys.b, [PRINTER_OFFLINE, PAPER_OK, cause])
    backend = EscPosPrinter(open_serial, str(ptys.a), 9600, 48)
    with pytest.raises(PrinterError) as caught:
        backend.print_receipt(make_receipt(), language="en")
    assert reason_of(caught.value) == reason
    assert str(caught.value).endswith(hint)
    assert printer.collect(9) == STATUS_PRINTER + STATUS_QUERY + STATUS_OFFLINE


@needs_socat
def test_escpos_printer_switched_off_does_not_answer(ptys: PtyPair) -> None:
    printer = FakeThermalPrinter(ptys.b, [])
    backend = EscPosPrinter(open_serial, str(ptys.a), 9600, 48, status_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(PrinterError) as caught:
        backend.print_receipt(make_receipt(), language="zh_CN")
    assert time.monotonic() - started < 3
    assert reason_of(caught.value) == "it does not answer"
    assert "Check that the printer is on and connected" in str(caught.value)
    assert printer.collect(3) == STATUS_PRINTER  # asked once, gave up, printed nothing
    # the port was closed: it can be opened again at once
    open_serial(str(ptys.a), 9600).close()


def test_escpos_missing_port(tmp_path: Path) -> None:
    backend = EscPosPrinter(open_serial, str(tmp_path / "ttyUSB9"), 9600, 48)
    with pytest.raises(PrinterError) as caught:
        backend.print_receipt(make_receipt(), language="zh_CN")
    assert reason_of(caught.value) == "the port is missing"
    assert "printer cable is plugged in" in str(caught.value)
    unset = EscPosPrinter(open_serial, "", 9600, 48)
    with pytest.raises(PrinterError) as caught:
        unset.print_receipt(make_receipt(), language="zh_CN")
    assert reason_of(caught.value) == "no serial port is set"


@needs_socat
def test_escpos_busy_port_names_the_port(ptys: PtyPair) -> None:
    holder = open_serial(str(ptys.a), 9600)
    try:
        backend = EscPosPrinter(open_serial, str(ptys.a), 9600, 48)
        with pytest.raises(PrinterError) as caught:
            backend.print_receipt(make_receipt(), language="en")
        assert f"another program is using the port {ptys.a}" in str(caught.value)
    finally:
        holder.close()


# --------------------------------------------------------------------------- PDF folder


def pdf_text(path: Path) -> str:
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    )
    return done.stdout


@needs_pdftotext
def test_pdf_folder_printer_writes_a_readable_pdf(tmp_path: Path) -> None:
    folder = tmp_path / "receipts"  # created on first use
    printer = PdfFolderPrinter(folder, "80")
    receipt = make_receipt()
    printer.print_receipt(receipt, language="zh_CN")
    path = folder / "20260301-170005-1A2B3C4D.pdf"  # the sale's time in Asia/Shanghai
    assert printer.path_for(receipt) == path
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temporary file left over
    assert path.read_bytes().startswith(b"%PDF")
    assert NAME in pdf_text(path)

    reprint = make_receipt(copy_no=2)
    printer.print_receipt(reprint, language="en")
    assert receipt_file_name(reprint) == "20260301-170005-1A2B3C4D-copy2.pdf"
    assert NAME in pdf_text(folder / receipt_file_name(reprint))


def test_pdf_folder_printer_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    printer = PdfFolderPrinter(blocker / "receipts", "58")
    with pytest.raises(PrinterError) as caught:
        printer.print_receipt(make_receipt(), language="zh_CN")
    assert reason_of(caught.value) == "the folder {folder} cannot be written"
    assert f"the folder {blocker / 'receipts'} cannot be written" in str(caught.value)
    assert "reprint the receipt" in str(caught.value)


# --------------------------------------------------------------------------- system printer

FAKE_LP = """#!/bin/sh
# a stand-in for CUPS lp: records its arguments and the file, or fails like lp does
case "$FAKE_LP_MODE" in
  fail) echo "lp: Error - no default destination available." >&2; exit 1 ;;
  hang) exec sleep 30 ;;
esac
printf '%s\\n' "$@" > "$FAKE_LP_OUT.args"
for last; do :; done
cp "$last" "$FAKE_LP_OUT.pdf"
echo "request id is Counter-17 (1 file(s))"
"""


@pytest.fixture
def fake_lp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    lp = bin_dir / "lp"
    lp.write_text(FAKE_LP)
    lp.chmod(0o755)
    out = tmp_path / "lp-capture"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_LP_OUT", str(out))
    monkeypatch.delenv("FAKE_LP_MODE", raising=False)
    return out


def spooled_files(receipt: ReceiptData) -> list[Path]:
    import tempfile

    return list(Path(tempfile.gettempdir()).glob(f"cardvend-{receipt.short_id}-*.pdf"))


@needs_pdftotext
def test_system_printer_hands_the_pdf_to_lp(fake_lp: Path) -> None:
    receipt = make_receipt()
    before = spooled_files(receipt)
    printer = SystemPrinter("Counter", "80", platform="linux")
    printer.print_receipt(receipt, language="zh_CN")
    args = (fake_lp.parent / "lp-capture.args").read_text().splitlines()
    assert args[:4] == ["-d", "Counter", "-t", "CardVend 1A2B3C4D"]
    assert len(args) == 5 and args[4].endswith(".pdf")
    assert not Path(args[4]).exists()  # the temporary file is gone after lp
    assert spooled_files(receipt) == before
    assert NAME in pdf_text(fake_lp.parent / "lp-capture.pdf")

    SystemPrinter(None, "58", platform="linux").print_receipt(receipt, language="en")
    args = (fake_lp.parent / "lp-capture.args").read_text().splitlines()
    assert args[:2] == ["-t", "CardVend 1A2B3C4D"] and len(args) == 3  # default destination


def test_system_printer_reports_what_lp_said(
    fake_lp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LP_MODE", "fail")
    receipt = make_receipt()
    before = spooled_files(receipt)
    with pytest.raises(PrinterError) as caught:
        SystemPrinter(None, "80", platform="linux").print_receipt(receipt, language="zh_CN")
    message = str(caught.value)
    assert message.startswith("The printer (system default) did not print: the print system")
    assert "lp: Error - no default destination available)" in message
    assert "lpstat -p" in message
    assert spooled_files(receipt) == before


def test_system_printer_lp_hangs(fake_lp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LP_MODE", "hang")
    printer = SystemPrinter("Counter", "80", platform="linux", timeout=0.5)
    with pytest.raises(PrinterError) as caught:
        printer.print_receipt(make_receipt(), language="en")
    assert "the print system did not answer within 0.5 seconds" in str(caught.value)
    assert reason_of(caught.value) == "the print system did not answer within {seconds} seconds"


def test_system_printer_without_lp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(PrinterError) as caught:
        SystemPrinter("Counter", "80", platform="linux").print_receipt(
            make_receipt(), language="en"
        )
    assert reason_of(caught.value) == "the lp command is missing"
    assert "cups-client" in str(caught.value)


# --------------------------------------------------------------------------- from the settings


def test_make_printer_follows_the_settings(tmp_path: Path) -> None:
    def opener(port: str, baudrate: int) -> SerialLink:
        raise AssertionError("make_printer opens nothing")

    default_dir = tmp_path / "data" / "receipts"
    pdf = make_printer(Settings(), receipt_dir=default_dir, opener=None)
    assert isinstance(pdf, PdfFolderPrinter)
    assert pdf.folder == default_dir and pdf.size == "80"
    chosen = make_printer(
        Settings({"receipt_dir": str(tmp_path / "chosen"), "receipt_size": "a5"}),
        receipt_dir=default_dir,
        opener=None,
    )
    assert isinstance(chosen, PdfFolderPrinter)
    assert chosen.folder == tmp_path / "chosen" and chosen.size == "a5"

    system = make_printer(
        Settings({"printer": "system", "printer_name": "Counter", "receipt_size": "58"}),
        receipt_dir=default_dir,
        opener=None,
    )
    assert isinstance(system, SystemPrinter)
    assert (system.queue, system.size, system.name) == ("Counter", "58", "Counter")
    default_queue = make_printer(
        Settings({"printer": "system"}), receipt_dir=default_dir, opener=None
    )
    assert isinstance(default_queue, SystemPrinter) and default_queue.queue is None

    for size, width in (("80", 48), ("58", 32)):
        escpos = make_printer(
            Settings(
                {
                    "printer": "escpos",
                    "printer_port": "/dev/ttyUSB0",
                    "printer_baud": 19200,
                    "receipt_size": size,
                }
            ),
            receipt_dir=default_dir,
            opener=opener,
        )
        assert isinstance(escpos, EscPosPrinter)
        assert (escpos.port, escpos.baudrate, escpos.width) == ("/dev/ttyUSB0", 19200, width)
        assert escpos.opener is opener

    assert make_printer(Settings({"printer": "none"}), receipt_dir=default_dir, opener=None) is None
    with pytest.raises(ValueError):
        make_printer(Settings({"printer": "escpos"}), receipt_dir=default_dir, opener=None)


def test_system_printer_runner_and_silent_failure(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def runner(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        assert kwargs["timeout"] == 30.0 and kwargs["check"] is False
        return subprocess.CompletedProcess(command, 3, stdout="", stderr="")

    with pytest.raises(PrinterError) as caught:
        SystemPrinter("Counter", "80", runner, "darwin").print_receipt(
            make_receipt(), language="en"
        )
    assert calls and calls[0][:5] == ["lp", "-d", "Counter", "-t", "CardVend 1A2B3C4D"]
    assert "the print system refused the job (exit status 3)" in str(caught.value)


class BrokenRenderer:
    def receipt_pdf(self, receipt: ReceiptData, *, size: str, language: str) -> bytes:
        raise RuntimeError("font missing")


def test_a_receipt_that_cannot_be_laid_out_is_a_printer_error(tmp_path: Path) -> None:
    for printer in (
        PdfFolderPrinter(tmp_path, "80", renderer=BrokenRenderer()),
        SystemPrinter(None, "80", platform="linux", renderer=BrokenRenderer()),
    ):
        with pytest.raises(PrinterError) as caught:
            printer.print_receipt(make_receipt(), language="en")
        assert reason_of(caught.value) == "the receipt could not be laid out"
        assert isinstance(caught.value.__cause__, RuntimeError)
    assert list(tmp_path.iterdir()) == []
