"""A counter's application context for tests, built the way main.py builds it, and its
signed-in operators: the one place tests make an ``AppContext``.

``make_ctx(home)`` is a counter in ``home`` with its settings file (none yet: the defaults) and
nothing in its database; the keywords say what a test needs beyond that."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Collection
from pathlib import Path
from typing import Literal

import main as composition
from app.clock import Clock
from app.context import AppContext
from app.paths import resolve_paths
from app.services import auth
from app.services import demo
from app.services import shifts
from app.services.auth import Principal
from app.settings import Settings
from cardio import wiring

# what is in the database: "empty" (nothing, not even the tables), "demo" (migrated and the
# demo loaded, as ``cardvend demo`` does), "prepared" (ui.app.prepare, as the window's start
# does: migrated, the demo loaded into an unconfigured counter, the audit log verified)
Data = Literal["empty", "demo", "prepared"]
# the composition root's adapters, wired in this order
WIRING: dict[str, Callable[[AppContext], object]] = {
    "cards": composition.wire_cards,  # card thread, key source, terminals, readers, tray
    "printing": composition.wire_printing,  # receipt/report renderers and the printer
    "meters": composition.wire_meters,  # the technician's meters over DL/T 645
    "demo_keys": wiring.ensure_demo_keystore,  # a demo keystore in the home, if it has none
    "setup": lambda ctx: setattr(ctx, "setup_probe", composition.SetupDevices(ctx)),
}
# a counter that sells: its cards (emulated or PC/SC) on the demo keystore, and printing
SELLING = ("cards", "printing", "demo_keys")


def make_ctx(
    home: Path,
    *,
    data: Data = "empty",
    wire: Collection[str] = (),
    clock: Clock | None = None,
    settings: Settings | None = None,
    db_url: str | None = None,
    **values: object,
) -> AppContext:
    """The context of a counter in ``home``: ``settings`` (default: loaded from the home's
    settings file) with ``values`` set (not saved), on ``clock`` (default: the system's), its
    database at ``db_url`` (default: the settings', else the home's file) holding ``data``,
    and the adapters named in ``wire`` (keys of ``WIRING``) wired."""
    unknown = set(wire) - WIRING.keys()
    if unknown:
        raise ValueError(f"nothing to wire called {sorted(unknown)}")
    paths = resolve_paths(home).ensure()
    ctx = AppContext(
        paths=paths,
        settings=Settings.load(paths.settings_file) if settings is None else settings,
        db_url_override=db_url,
    )
    if clock is not None:
        ctx.clock = clock
    for key, value in values.items():
        ctx.settings.set(key, value)
    if data == "demo":
        ctx.db.migrate()
        demo.load_demo(ctx.db, ctx.clock)
    elif data == "prepared":
        from ui.app import prepare

        prepare(ctx)
    elif data != "empty":
        raise ValueError(f"no such data: {data!r}")
    for name, wire_up in WIRING.items():
        if name in wire:
            wire_up(ctx)
    return ctx


def sign_in(ctx: AppContext, operator_id: str) -> Principal:
    """A demo operator signed in at this counter (password ``demo-`` + id)."""
    return auth.login(
        ctx.db, operator_id, f"demo-{operator_id}", counter_id=ctx.counter_id, clock=ctx.clock
    )


def teller_with_shift(ctx: AppContext) -> Principal:
    """Teller t01 signed in with a shift open (no float)."""
    teller = sign_in(ctx, "t01")
    shifts.open_shift(ctx.db, actor=teller, float_fen=0, clock=ctx.clock)
    return teller
