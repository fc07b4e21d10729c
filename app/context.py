"""What a running CardVend needs, built once by the composition root (main.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

from app.clock import Clock, SystemClock
from app.paths import Paths
from app.persistence.db import Database
from app.settings import COUNTER_ID, DB_URL, OFFICE_CODE, Settings

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    paths: Paths
    settings: Settings
    db_url_override: str | None = None
    clock: Clock = field(default_factory=SystemClock)

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
