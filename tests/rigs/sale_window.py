"""The counter window for GUI tests of the sale page: a demo home with the card adapters wired,
teller t01 with a shift open, the window in training mode with its card tray."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

import main as composition
from app.context import AppContext
from app.paths import resolve_paths
from app.persistence.models import Customer, Sale
from app.services import auth, demo, shifts
from app.services.auth import Principal
from app.settings import Settings
from cardio import wiring

WAIT_MS = 20_000
CUSTOMER = "100000000002"  # a demo card customer without arrears
OWING = "100000000001"  # owes 30.00 arrears and a 5.00 fee


def make_ctx(home: Path, **settings: object) -> AppContext:
    paths = resolve_paths(home).ensure()
    ctx = AppContext(paths=paths, settings=Settings.load(paths.settings_file))
    for key, value in settings.items():
        ctx.settings.set(key, value)
    ctx.db.migrate()
    demo.load_demo(ctx.db, ctx.clock)
    composition.wire_cards(ctx)
    composition.wire_printing(ctx)
    wiring.ensure_demo_keystore(ctx)
    return ctx


def teller_with_shift(ctx: AppContext) -> Principal:
    teller = sign_in(ctx, "t01")
    shifts.open_shift(ctx.db, actor=teller, float_fen=0, clock=ctx.clock)
    return teller


def sales_of(ctx: AppContext, customer_no: str) -> list[Sale]:
    with ctx.db.read() as session:
        cid = session.scalar(select(Customer.id).where(Customer.customer_no == customer_no))
        rows = session.scalars(
            select(Sale).where(Sale.customer_id == cid).order_by(Sale.purchase_count)
        ).all()
        session.expunge_all()
        return list(rows)


def sign_in(ctx: AppContext, operator_id: str) -> Principal:
    """A demo operator signed in at this counter (password ``demo-`` + id)."""
    return auth.login(
        ctx.db, operator_id, f"demo-{operator_id}", counter_id=ctx.counter_id, clock=ctx.clock
    )


def training_window(qtbot, ctx: AppContext, principal: Principal | None = None):  # type: ignore[no-untyped-def]
    """The main window in training mode, ``principal`` signed in (default: teller t01 with a
    shift open): (window, sale page, training card tray)."""
    from ui.main_window import MainWindow

    principal = principal or teller_with_shift(ctx)
    window = MainWindow(ctx, principal=principal, training=True)
    qtbot.addWidget(window)
    window.show()
    return window, window.pages["sale"], window.tray_dock


def tray_card(dock, customer_no: str) -> str:  # type: ignore[no-untyped-def]
    return next(c.card_id for c in dock.cards if c.customer_no == customer_no)
