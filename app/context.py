"""What a running CardVend needs, built once by the composition root (main.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from app.clock import Clock, SystemClock
from app.paths import Paths
from app.persistence.db import Database
from app.ports import BackgroundSync, CardTerminal
from app.settings import COUNTER_ID, DB_URL, OFFICE_CODE, Settings

log = logging.getLogger(__name__)


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

    def open_terminal(self, reader: str | None = None, image: str | None = None) -> CardTerminal:
        """The card in ``reader`` (or the configured reader), or an emulated card image."""
        if self.terminal_factory is None:
            raise RuntimeError("no card adapters were configured")
        return self.terminal_factory(reader, image)

    @property
    def db_url(self) -> str:
        return (
            self.db_url_override or self.settings.get(DB_URL.key) or str(self.paths.default_db_file)
        )

    @cached_property
    def db(self) -> Database:
        db = Database(self.db_url)
        log.info("database: %s", db.url.render_as_string(hide_password=True))
        return db

    @property
    def counter_id(self) -> str:
        return str(self.settings.get(COUNTER_ID.key))

    @property
    def office_code(self) -> str:
        return str(self.settings.get(OFFICE_CODE.key))
