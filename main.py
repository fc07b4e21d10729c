"""CardVend composition root: arguments, logging, services with their adapters, GUI or CLI."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import logging.handlers
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar

if TYPE_CHECKING:
    from app.context import AppContext
    from app.domain.receipt import ReceiptData
    from app.ports import BackgroundSync
    from app.ports import ByteLink
    from app.ports import CardReaderPort
    from app.ports import CardTray
    from app.ports import PassphraseHandler
    from app.ports import Printer
    from app.services.auth import Principal
    from cardio.wiring import KeySource

log = logging.getLogger("cardvend")

__version__ = "0.1.0"  # setup.cfg reads it (version = attr: main.__version__)


def app_version() -> str:
    """The installed package's version; the bundle's own (PyInstaller: metadata it may have
    copied from the build's checkout can be older than the code)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version

    if getattr(sys, "frozen", False):
        return __version__
    try:
        return version("cardvend")
    except PackageNotFoundError:
        return __version__


# The module that registers each command.  A command line imports only the module of its command
# (together the command modules take about a second to import); -h, no command or an unknown
# one builds them all.  tests/test_main_commands.py holds this table to what the modules register.
COMMAND_MODULES: dict[str, str] = {
    **dict.fromkeys(
        ("approvals", "audit", "customers", "demo", "init", "operators", "tariffs"), "app.cli"
    ),
    **dict.fromkeys(
        ("open-account", "recover", "replace-card", "reverse", "rewrite", "sales", "sell", "shift"),
        "app.cli_sales",
    ),
    **dict.fromkeys(("close-account", "pause-account", "resume-account"), "app.cli_accounts"),
    "jobs": "app.cli_jobs",
    "change-meter": "app.cli_meter_change",
    **dict.fromkeys(("backup", "restore"), "app.cli_backup"),
    **dict.fromkeys(("card", "meter"), "cardio.cli"),
    "fleet": "cardio.cli_fleet",
    "central": "sync.central.cli",
    **dict.fromkeys(("control", "counter", "exceptions", "stats", "sync"), "sync.cli"),
    **dict.fromkeys(("print", "receipt", "report"), "printing.cli"),
    "setup": "app.cli_setup",
    **dict.fromkeys(("diag", "selftest"), "app.cli_diag"),
}


def build_parser(*, commands: bool = True, command: str | None = None) -> argparse.ArgumentParser:
    """The command line; ``commands=False`` only the global options (what starting the window
    needs: the command modules import a lot that the window does not need at start); with
    ``command``, only that command's module (see :data:`COMMAND_MODULES`)."""
    from app.i18n import _

    parser = argparse.ArgumentParser(
        prog="cardvend",
        add_help=commands,  # the light parser leaves -h to the full one
        description=_(
            "CardVend: the counter application for prepaid electricity card meters. "
            "With no command it starts the counter window."
        ),
    )
    parser.add_argument(
        "--home",
        help=_("put configuration, data and logs under this folder (or set CARDVEND_HOME)"),
    )
    parser.add_argument(
        "--db",
        help=_("database URL (or set CARDVEND_DB); default: a SQLite file in the data folder"),
    )
    parser.add_argument("--lang", choices=("zh_CN", "en"), help=_("language of messages"))
    parser.add_argument("-v", "--verbose", action="store_true", help=_("log to stderr too"))
    parser.add_argument(
        "--version", action="version", version=f"cardvend {app_version()}",
        help=_("print the version and quit"),
    )  # fmt: skip
    parser.add_argument(
        "--setup",
        action="store_true",
        help=_("start the window with the first-run set-up (also: CARDVEND_DEMO=0, no settings)"),
    )
    if not commands:
        parser.set_defaults(command=None)
        return parser
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = list(dict.fromkeys(COMMAND_MODULES.values()))  # in the order of the help text
    if command in COMMAND_MODULES:
        modules = [COMMAND_MODULES[command]]
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """The rotating log, created 0600 (it names customers and operators); the rotated files are
    the same file renamed, so they keep that mode."""

    def _open(self) -> io.TextIOWrapper:
        from app.fileio import open_private_append

        f = open_private_append(self.baseFilename, encoding=self.encoding or "utf-8",
                                errors=self.errors)  # fmt: skip
        assert isinstance(f, io.TextIOWrapper)
        return f


def private_process() -> None:
    """Everything this process creates is for its user only (0600 files, 0700 folders), even
    where a library creates the file; our own writes also set their modes explicitly."""
    if os.name == "posix":
        os.umask(0o077)


def configure_logging(log_dir: os.PathLike[str] | str, level: str, verbose: bool) -> None:
    from pathlib import Path

    from app.fileio import private_dir

    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level, logging.INFO))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        private_dir(log_dir, tighten=True)
        handler: logging.Handler = PrivateRotatingFileHandler(
            Path(log_dir) / "cardvend.log", maxBytes=5_000_000, backupCount=5, encoding="utf-8"
        )
    except OSError:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        root.addHandler(stream)


class _LazyReceiptRenderer:
    """reportlab is imported by the first receipt, not at start-up."""

    def receipt_pdf(self, receipt: ReceiptData, *, size: str, language: str) -> bytes:
        from printing.receipt import render_receipt_pdf

        return render_receipt_pdf(receipt, size=size, language=language)


class _LazyReportRenderer:
    """Shift, daily and statistics reports as PDF or CSV (printing/reports/)."""

    # the renderer of each report type: printing.reports.<name>_pdf and <name>_csv
    _NAMES: ClassVar[dict[str, str]] = {
        "ShiftReport": "shift_report",
        "DailyReport": "daily_report",
        "StatsReport": "stats_report",
        "Settlement": "settlement",  # the statement of a closed account (PDF only)
    }

    def _render(self, report: object, form: str) -> Any:
        from printing import reports

        return getattr(reports, f"{self._NAMES[type(report).__name__]}_{form}")

    def report_pdf(self, report: object, *, language: str) -> bytes:
        return bytes(self._render(report, "pdf")(report, language=language))

    def report_csv(self, report: object) -> str:
        return str(self._render(report, "csv")(report))


class _LazySlipRenderer:
    """Imports the slip renderer (reportlab) on first use."""

    def meter_change_pdf(self, change: Any, *, language: str, tz: str) -> bytes:
        from printing.meter_change import render_meter_change_pdf

        return render_meter_change_pdf(change, language=language, tz=tz)


def sync_worker(ctx: AppContext) -> BackgroundSync | None:
    """The window's background sync, or None when this counter is not registered (sync/ is
    imported when it is asked for, not by every command)."""
    from sync.service import background_worker

    return background_worker(ctx)


def register_here(ctx: AppContext, url: str, enrolment_key: str | None, operator: Principal) -> str:
    """Register this counter with the central system (the administration page's button, run as
    the signed-in administrator)."""
    from sync.cli import registered_line
    from sync.service import register_counter

    return registered_line(register_counter(ctx, url, enrolment_key, operator=operator), url)


def registered_with(ctx: AppContext) -> str | None:
    """The central system's URL this counter holds a token for, or None."""
    from app.settings import CENTRAL_URL
    from sync.service import load_token

    url = ctx.settings.value(CENTRAL_URL).strip()
    return url if url and load_token(ctx) else None


def wire_printing(ctx: AppContext) -> None:
    def opener(port: str, baudrate: int) -> ByteLink:
        from cardio.serial_link import open_serial

        return open_serial(port, baudrate)

    def printer() -> Printer | None:
        from printing.backends import make_printer

        return make_printer(
            ctx.settings, receipt_dir=ctx.paths.data_dir / "receipts", opener=opener
        )

    ctx.receipt_renderer = _LazyReceiptRenderer()
    ctx.report_renderer = _LazyReportRenderer()
    ctx.slip_renderer = _LazySlipRenderer()
    ctx.serial_opener = opener
    ctx.printer_factory = printer


def wire_meters(ctx: AppContext) -> None:
    """Meters over DL/T 645 for the technician's meter page (cardio/meter_wire.py): a serial
    port with the configured RS485 settings, or a terminal's HOST:PORT."""

    def reader(where: str, addr: str) -> Any:
        from cardio.meter_wire import read_at

        return read_at(ctx.settings, where, addr)

    def commander(where: str, addr: str, command: str, operator: str) -> None:
        from cardio.meter_wire import relay_at

        relay_at(ctx.settings, ctx.clock, where, addr, command, operator)

    def remote_meters(where: str) -> Any:
        from cardio.meter_wire import TerminalMeters

        return TerminalMeters(ctx.settings, ctx.clock, where)

    ctx.meter_reader, ctx.meter_commander = reader, commander
    ctx.remote_meters_factory = remote_meters


def wire_cards(ctx: AppContext, handler: PassphraseHandler | None = None) -> KeySource:
    """The card side: the one card thread (the GUI's card work and every APDU run on it; it
    starts on first use), the one key provider (built on first use; a passphrase the
    environment does not give is asked through ``handler``, by default a prompt on the command
    line), card terminals, card events for the window from the PC/SC readers, and training
    mode's emulated card tray (cardio/tray.py). Readers and tray are built only when the window
    asks for them. Returns the key source, for the caller to close."""
    from cardio.pcsc import CardThread
    from cardio.wiring import KeySource
    from cardio.wiring import TerminalPassphrase
    from cardio.wiring import terminal_factory

    card_thread = CardThread("card")
    keys = KeySource(ctx, handler or TerminalPassphrase(), card_thread)
    ctx.card_worker = card_thread
    ctx.terminal_factory = terminal_factory(ctx, card_thread, keys)

    def tray() -> CardTray:
        from cardio.tray import TrainingCardTray

        return TrainingCardTray(ctx)

    def reader_port() -> CardReaderPort:
        from cardio.pcsc import PcscReaderPort

        return PcscReaderPort(card_thread)

    ctx.tray_factory = tray
    ctx.reader_port_factory = reader_port
    return keys


class SetupDevices:
    """The first-run set-up's devices (app.ports.SetupProbe): cardio/ readers, cards, keystores
    and PSAMs on the one card thread, printing/ the test receipt, sync/ the registration."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    @contextlib.contextmanager
    def _port(self) -> Any:
        from cardio.pcsc import PcscReaderPort

        port = PcscReaderPort(self._ctx.card_worker)  # type: ignore[arg-type]
        try:
            yield port
        finally:
            port.close()

    def readers(self) -> list[str]:
        with self._port() as port:
            return list(port.readers())

    def read_card(self, reader: str) -> Any:
        from cardio.terminal import ApduTerminal

        wait = float(os.environ.get("CARDVEND_CARD_WAIT", "2"))
        with self._port() as port:
            terminal = ApduTerminal(port.connect(reader, timeout=wait))
            try:
                return terminal.read()
            finally:
                terminal.close()

    def open_keystore(self, path: str, passphrase: str) -> None:
        from cardio.keys import open_keystore

        open_keystore(path, passphrase)

    def open_psam(self, reader: str) -> None:
        from cardio.keys import PsamKeyProvider

        with self._port() as port:
            PsamKeyProvider(port.connect(reader, timeout=2.0)).close()

    def test_print(self, settings: Any, receipt: ReceiptData) -> str:
        from printing.backends import make_printer

        ctx = self._ctx
        printer = make_printer(settings, receipt_dir=ctx.paths.data_dir / "receipts",
                               opener=ctx.serial_opener)  # fmt: skip
        if printer is None:
            return ""
        printer.print_receipt(receipt, language=str(settings.get("receipt_language")))
        return printer.name

    def register(
        self, ctx: AppContext, url: str, key: str | None, code: str | None, operator: Principal
    ) -> str:
        from sync.service import register_counter

        answer = register_counter(ctx, url, key, operator=operator, enrolment_code=code)
        return f"{answer.office_code}/{answer.counter_id}"


class DiagDevices(SetupDevices):
    """The self-test's and the support bundle's devices (app.ports.DiagProbe): the configured
    key provider (cardio/), printer (printing/) and central system (sync/)."""

    def load_keys(self) -> str:
        from app.i18n import _
        from app.settings import KEY_PROVIDER
        from app.settings import PSAM_READER
        from cardio.wiring import key_provider
        from cardio.wiring import keystore_path

        ctx = self._ctx
        provider = key_provider(ctx, card_thread=ctx.card_worker)  # type: ignore[arg-type]
        close = getattr(provider, "close", None)
        if callable(close):
            close()
        if ctx.settings.value(KEY_PROVIDER) == "psam":
            return _("PSAM in {reader}", reader=ctx.settings.value(PSAM_READER))
        return _("keystore {path} opened", path=keystore_path(ctx))

    def printer_status(self) -> str | None:
        from printing.backends import printer_status

        ctx = self._ctx
        return printer_status(ctx.settings, receipt_dir=ctx.paths.data_dir / "receipts",
                              opener=ctx.serial_opener)  # fmt: skip

    def central_time(self) -> Any:
        from sync.service import make_client

        if registered_with(self._ctx) is None:
            return None
        client = make_client(self._ctx)
        try:
            return client.health().server_time
        finally:
            client.close()

    def secrets(self) -> list[str]:
        from sync.service import load_token

        token = load_token(self._ctx)
        return [token] if token else []


def main(argv: Sequence[str] | None = None) -> int:
    from app import i18n
    from app.context import AppContext
    from app.errors import CardVendError
    from app.paths import resolve_paths
    from app.settings import LANGUAGE
    from app.settings import LOG_LEVEL
    from app.settings import Settings

    private_process()
    argv = list(sys.argv[1:] if argv is None else argv)
    # until the log file is set up (a settings file that cannot be loaded fails before it), a
    # warning goes nowhere rather than to stderr next to the one line the person reads
    logging.getLogger().addHandler(logging.NullHandler())
    i18n.set_language(i18n.language_from_environment())
    # a language option must be known before the help texts are built
    for i, arg in enumerate(argv):
        if arg.startswith("--lang="):
            i18n.set_language(arg.split("=", 1)[1])
        elif arg == "--lang" and i + 1 < len(argv):
            i18n.set_language(argv[i + 1])
    light = build_parser(commands=False)
    args, rest = light.parse_known_args(argv)
    if rest:  # a command (or -h): the full parser, with only that command's module if known
        command = rest[0] if not rest[0].startswith("-") else None
        args = build_parser(command=command).parse_args(argv)
    try:
        paths = resolve_paths(args.home)
        # the folders exist and are private (0700); one that cannot be made is said where it
        # is needed (the log falls back to stderr, the database says which file it cannot open)
        with contextlib.suppress(OSError):
            paths.ensure()
        settings = Settings.load(paths.settings_file)
        language = settings.value(LANGUAGE)
        if not args.lang and language and "CARDVEND_LANG" not in os.environ:
            i18n.set_language(language)
        configure_logging(paths.log_dir, settings.value(LOG_LEVEL), args.verbose)
        ctx = AppContext(paths=paths, settings=settings, db_url_override=args.db)
        handler: PassphraseHandler | None = None
        if args.command is None:  # the window asks in a dialog, never on the terminal
            from ui.passphrase import QtPassphraseHandler

            handler = QtPassphraseHandler()
        keys = wire_cards(ctx, handler)
        ctx.sync_factory = lambda: sync_worker(ctx)
        ctx.registrar = lambda url, key, operator: register_here(ctx, url, key, operator)
        ctx.registered_with = lambda: registered_with(ctx)
        if args.command is None:  # only the window's pages read the station's views
            from sync.views import for_counter as station_views

            ctx.station = station_views(ctx)
        wire_printing(ctx)
        wire_meters(ctx)
        ctx.setup_probe = SetupDevices(ctx)
        ctx.diag_probe = DiagDevices(ctx)
        if args.command is None:
            from ui.app import run_gui

            try:
                return run_gui(ctx, setup=args.setup)
            finally:
                keys.close()
        try:
            return int(args.func(ctx, args))
        finally:
            keys.close()
    except CardVendError as exc:
        log.warning("command failed: %s", exc)
        print(f"cardvend: {exc.localized()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into a pager or head that closed early
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # the last line of defence: one clear line, details in the log
        log.exception("unexpected error")
        print(
            "cardvend: "
            + i18n._(
                "Unexpected error: {detail}. Details are in the log file.",
                detail=f"{type(exc).__name__}: {exc}",
            ),
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
