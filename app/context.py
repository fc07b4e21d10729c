"""What a running CardVend needs, built once by the composition root (main.py)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from functools import cached_property
from pathlib import Path
from typing import Any

from app.clock import Clock
from app.clock import SystemClock
from app.fileio import write_atomically
from app.paths import Paths
from app.persistence.db import Database
from app.ports import BackgroundSync
from app.ports import CardReaderPort
from app.ports import CardTerminal
from app.ports import CardTray
from app.ports import CardWorker
from app.ports import CounterRegistrar
from app.ports import DiagProbe
from app.ports import Printer
from app.ports import ReceiptRenderer
from app.ports import RemoteMeters
from app.ports import ReportRenderer
from app.ports import SerialOpener
from app.ports import SetupProbe
from app.ports import SlipRenderer
from app.ports import StationViews
from app.settings import COUNTER_ID
from app.settings import DB_URL
from app.settings import OFFICE_CODE
from app.settings import Settings

log = logging.getLogger(__name__)
RECEIPT_KEY_FILE = "receipt.key"


# (reader name, card image path, key provider wanted) -> a card terminal; set by main.py
TerminalFactory = Callable[[str | None, str | None], CardTerminal]
# -> the background sync worker, or None when this counter is not registered; set by main.py
SyncFactory = Callable[[], BackgroundSync | None]


@dataclass
class AppContext:
    paths: Paths
    settings: Settings
    db_url_override: str | None = None
    clock: Clock = field(default_factory=SystemClock)
    terminal_factory: TerminalFactory | None = None
    sync_factory: SyncFactory | None = None
    registrar: CounterRegistrar | None = None  # registers with the central system (sync/)
    # where this counter is registered (the central system's URL), or None: set by main.py
    registered_with: Callable[[], str | None] | None = None
    diag_probe: DiagProbe | None = None  # selftest and diag's device checks: set by main.py
    receipt_renderer: ReceiptRenderer | None = None  # set by main.py (printing/)
    report_renderer: ReportRenderer | None = None  # set by main.py (printing/)
    slip_renderer: SlipRenderer | None = None  # set by main.py (printing/)
    printer_factory: Callable[[], Printer | None] | None = None  # the configured printer
    serial_opener: SerialOpener | None = None  # set by main.py (cardio/)
    # training mode's emulated card tray (cardio/), built by main.py when no reader is set
    tray_factory: Callable[[], CardTray] | None = None
    # the PC/SC readers for card events (cardio/), built by main.py; the window follows the
    # ``card_reader`` setting's reader through it
    reader_port_factory: Callable[[], CardReaderPort] | None = None
    card_worker: CardWorker | None = None  # the one card thread (cardio/), built by main.py
    # meters over DL/T 645 (cardio/), set by main.py: see app/services/meter_reading.py
    meter_reader: Callable[[str, str], Any] | None = None
    meter_commander: Callable[[str, str, str, str], None] | None = None
    # the station's remote meters behind a terminal (where -> RemoteMeters), built by main.py
    remote_meters_factory: Callable[[str], RemoteMeters] | None = None
    setup_probe: SetupProbe | None = None  # the first-run set-up's devices, set by main.py
    station: StationViews | None = None  # the station's views for pages (sync/), by main.py

    def open_terminal(self, reader: str | None = None, image: str | None = None) -> CardTerminal:
        """The card in ``reader`` (or the configured reader), or an emulated card image."""
        if self.terminal_factory is None:
            raise RuntimeError("no card adapters were configured")
        return self.terminal_factory(reader, image)

    @property
    def db_url(self) -> str:
        return (
            self.db_url_override or self.settings.value(DB_URL) or str(self.paths.default_db_file)
        )

    @cached_property
    def db(self) -> Database:
        db = Database(self.db_url)
        log.info("database: %s", db.url.render_as_string(hide_password=True))
        return db

    @property
    def counter_id(self) -> str:
        return self.settings.value(COUNTER_ID)

    @property
    def office_code(self) -> str:
        return self.settings.value(OFFICE_CODE)

    @property
    def receipt_key_file(self) -> Path:
        return self.paths.data_dir / RECEIPT_KEY_FILE

    def receipt_key(self) -> bytes:
        """The key of receipt verification codes: the one the central system issued at
        registration, or a local random one (0600) until then."""
        path = self.receipt_key_file
        try:
            return bytes.fromhex(path.read_text(encoding="ascii").strip())
        except (FileNotFoundError, ValueError):
            key = os.urandom(32)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, key.hex().encode("ascii") + b"\n")
            os.chmod(path, 0o600)
            return key
