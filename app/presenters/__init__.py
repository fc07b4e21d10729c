"""Presenters: what the CLI and the GUI both do around a service call, written once.

Pure Python (no Qt, no printing): a front end calls these and renders what they return,
the CLI as printed lines, the GUI in its dialogs and pages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import TypeVar

from app.clock import Clock
from app.context import AppContext
from app.persistence.db import Database
from app.settings import Settings

T = TypeVar("T")
B = TypeVar("B", bound="Bound")


@dataclass(frozen=True)
class Bound:
    """Use cases bound to one database and the context's clock and settings. Build it on the
    calling thread (``of``); its calls may run anywhere."""

    db: Database
    clock: Clock
    settings: Settings

    @classmethod
    def of(cls: type[B], ctx: AppContext, db: Database | None = None) -> B:
        """``ctx``'s database (or ``db``, one the caller has checked), clock and settings."""
        return cls(ctx.db if db is None else db, ctx.clock, ctx.settings)

    def call(self, use_case: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``use_case(db, *args, clock=, settings=, **kw)``: a service use case as the services
        take them, with this database, clock and settings."""
        return use_case(self.db, *args, clock=self.clock, settings=self.settings, **kw)
