"""Screenshots of the counter window, every page, in Simplified Chinese and English.

    make screenshots                      # under Xvfb (xvfb-run -a, QT_QPA_PLATFORM=xcb)
    python -m tests.screenshots [--out DIR] [--lang en] [--pages sale,shift]

It builds the real window (``ui.main_window.MainWindow``) the way a new machine starts it after
``make run``: a fresh CARDVEND_HOME in a temporary folder, the demo database, no card reader, so
training mode with the emulated card tray; teller ``t01`` signs in (``app.services.auth.login``,
password ``demo-t01``).  Before the pictures it works a week at the counter on a fixed clock
(shifts opened and closed with a cash count, remote payments and card sales through the
tray), so the reports and the Z-report have something to show.  Then each page is shown and the
whole window is grabbed (``widget.grab().save(png)``) into ``resources/screenshots/<page>-<lang>.png``
(``sale-<lang>.png`` with a customer's card inserted, ``login-<lang>.png`` the sign-in dialog).

Everything a page reads runs in the background (ui/bridge.Ops): a page is grabbed once the
window has had no operation running for a moment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "screenshots"
LANGS = ("zh_CN", "en")
SIZE = (1440, 900)
TZ_OFFSET = dt.timedelta(hours=8)  # the demo office is in Asia/Shanghai
TODAY = dt.date(2026, 3, 9)
HISTORY_DAYS = 6  # closed shifts before today
CARD_CUSTOMER = "100000000002"  # the demo card customer shown on the sale page
REMOTE_CUSTOMERS = ("100000000020", "100000000030", "100000000040", "100000000050")

log = logging.getLogger("screenshots")


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC) - TZ_OFFSET


# --------------------------------------------------------------------------- the counter


def build_context(home: Path, clock: Any) -> Any:
    """The context main.py builds, in ``home``, on ``clock``."""
    import main
    from app.context import AppContext
    from app.paths import resolve_paths
    from app.settings import Settings

    paths = resolve_paths(home).ensure()
    ctx = AppContext(paths=paths, settings=Settings.load(paths.settings_file), clock=clock)
    main.wire_cards(ctx)
    main.wire_printing(ctx)
    return ctx


def training_on(ctx: Any) -> bool:
    try:
        from ui.app import decide_training

        return bool(decide_training(ctx))
    except ImportError:
        from app.settings import TRAINING_MODE

        ctx.settings.set(TRAINING_MODE.key, True)
        return True


def _try(what: str, fn: Callable[[], Any]) -> Any:
    from app.errors import CardVendError

    try:
        return fn()
    except CardVendError as exc:
        log.warning("%s: %s", what, exc)
        return None


def card_sale(ctx: Any, tray: Any, teller: Any, customer_no: str, amount: int) -> None:
    """A sale onto the demo customer's card in the tray: insert, sell, take out."""
    from app.services import selling

    card = next((c for c in tray.cards() if getattr(c, "customer_no", None) == customer_no), None)
    if card is None:
        return
    tray.insert(card.card_id)
    try:
        _try(
            f"card sale to {customer_no}",
            lambda: selling.sell(
                ctx.db,
                tray.terminal(),
                actor=teller,
                amount=amount,
                clock=ctx.clock,
                settings=ctx.settings,
                cash_received=amount,
            ),
        )
    finally:
        tray.remove()
    _try("meter", lambda: tray.to_meter(card.card_id, hours=20, load_kw=0.6))


def work_a_week(ctx: Any, clock: Any, teller: Any, tray: Any) -> None:
    """Shifts of the last days, each closed with a count a little off, and today's open one."""
    from app.services import selling, shifts

    for back in range(HISTORY_DAYS, -1, -1):
        day = TODAY - dt.timedelta(days=back)
        clock.set(local(day, 8, 30))
        teller.last_activity = clock.now()
        _try(
            "open shift",
            lambda: shifts.open_shift(ctx.db, actor=teller, float_fen=50000, clock=clock),
        )
        for i, customer in enumerate(REMOTE_CUSTOMERS[: 2 + back % 3]):
            clock.advance(minutes=37 + 11 * i)
            teller.last_activity = clock.now()
            amount = (5000, 10000, 8800, 20000)[(i + back) % 4]
            _try(
                f"remote payment {customer}",
                lambda c=customer, a=amount: selling.remote_payment(
                    ctx.db,
                    actor=teller,
                    customer_no=c,
                    amount=a,
                    clock=clock,
                    settings=ctx.settings,
                    cash_received=a,
                ),
            )
        if tray is not None:
            clock.advance(minutes=25)
            teller.last_activity = clock.now()
            card_sale(ctx, tray, teller, CARD_CUSTOMER, (3000, 5000, 10000)[back % 3])
        if back > 0:
            clock.set(local(day, 17, 30))
            teller.last_activity = clock.now()
            view = shifts.current_shift(ctx.db, ctx.counter_id)
            if view is not None:
                from app.persistence.db import Database  # noqa: F401  (typing only)
                from app.services.reports import current_shift_id, shift_report

                report = shift_report(
                    ctx.db, current_shift_id(ctx.db, ctx.counter_id) or view.shift_id,
                    actor=teller, clock=clock,
                )  # fmt: skip
                off = (0, 50, -100, 0, 20, -10)[back % 6]
                shifts.close_shift(
                    ctx.db,
                    actor=teller,
                    counted_fen=report.expected_cash_fen + off,
                    clock=clock,
                    reason="coins miscounted" if off else "",
                )
    clock.set(local(TODAY, 11, 42))
    teller.last_activity = clock.now()


# --------------------------------------------------------------------------- Qt


def settle(window: Any, quiet_ms: int = 500, timeout: float = 30.0) -> None:
    """Run the event loop until no background operation of ``window.ops`` (or of ``window``,
    an Ops) has run for ``quiet_ms``."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
        if getattr(window, "ops", window).busy == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_ms / 1000:
                return
        else:
            quiet_since = None
    log.warning("still busy after %.0f s; grabbing anyway", timeout)


def grab(widget: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not widget.grab().save(str(path)):
        raise SystemExit(f"could not write {path}")
    print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def insert_card(window: Any, customer_no: str) -> bool:
    """Put the customer's emulated card into the tray's reader, as a person does with the
    card tray; True when it went in."""
    watch = getattr(window, "card_watch", None)
    tray = getattr(watch, "tray", None) if watch is not None else None
    if tray is None:
        return False
    card = next((c for c in tray.cards() if getattr(c, "customer_no", None) == customer_no), None)
    if card is None:
        return False
    insert = getattr(watch, "insert", None)
    if callable(insert):
        insert(card.card_id)
    else:
        tray.insert(card.card_id)
    return True


def search_customers(window: Any, page: Any, text: str) -> None:
    """Type a search as a person does and open the first row's details."""
    field = getattr(page, "search", None)
    if field is None:
        return
    field.setFocus()
    field.setText(text)  # typed (QTest types ASCII only)
    field.textEdited.emit(text)
    settle(window, quiet_ms=800)
    table = getattr(page, "table", None)
    if table is not None and table.model() is not None and table.model().rowCount():
        table.setFocus()
        table.setCurrentIndex(table.model().index(0, 0))
        settle(window, quiet_ms=1200)


def fill_count(page: Any) -> None:
    """A cash count typed into the shift page (not closed)."""
    report = getattr(page, "report", None)
    target = report.expected_cash_fen if report is not None else 0
    for face, box in page.counts.items():
        n, target = divmod(target, face)
        box.setValue(n)


def shoot(
    ctx: Any, audit_state: Any, teller: Any, lang: str, out: Path, pages: set[str]
) -> list[str]:
    from PySide6.QtWidgets import QApplication

    from app.i18n import set_language
    from app.services import auth
    from ui.main_window import MainWindow

    set_language(lang)
    missing: list[str] = []
    if "login" in pages:
        try:
            from ui.bridge import Ops
            from ui.login import LoginDialog

            ops = Ops(workers=1)
            dialog = LoginDialog(ctx, ops)
            dialog.operator.setText("t01")
            dialog.show()
            settle(ops, quiet_ms=200)
            grab(dialog, out / f"login-{lang}.png")
            dialog.close()
            ops.shutdown()
        except Exception:
            log.exception("login dialog")
            missing.append(f"login-{lang}")
    window = MainWindow(ctx, audit_state, principal=teller, training=True, sync_worker=None)
    window.resize(*SIZE)
    window.show()
    settle(window)
    for key in list(window.pages):
        if key not in pages:
            continue
        window.show_page(key)
        settle(window)
        page = window.pages[key]
        if key == "sale":
            if insert_card(window, CARD_CUSTOMER):
                settle(window, quiet_ms=800)
            else:
                missing.append(f"sale-{lang} (no card inserted: the tray is not wired)")
        elif key == "customers":
            search_customers(window, page, "李")
        elif key == "shift":
            fill_count(page)
            settle(window, quiet_ms=200)
        elif key == "reports":
            grab(window, out / f"reports-{lang}.png")
            page.tabs.setCurrentIndex(1)
            settle(window)
            grab(window, out / f"reports-stats-{lang}.png")
            page.tabs.setCurrentIndex(0)
            continue
        grab(window, out / f"{key}-{lang}.png")
    built = set(window.pages)
    window.close()
    QApplication.instance().processEvents()
    if "admin" in pages and "admin" not in built:  # an administrator's page: a01 signs in
        admin = auth.login(ctx.db, "a01", "demo-a01", counter_id=ctx.counter_id, clock=ctx.clock)
        window = MainWindow(ctx, audit_state, principal=admin, training=True, sync_worker=None)
        window.resize(*SIZE)
        window.show()
        settle(window)
        if "admin" in window.pages:
            window.show_page("admin")
            settle(window)
            grab(window, out / f"admin-{lang}.png")
            built.add("admin")
        window.close()
        QApplication.instance().processEvents()
    for spec_key in pages - built - {"login"}:
        missing.append(f"{spec_key}-{lang} (page not built)")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the PNGs")
    parser.add_argument("--lang", action="append", choices=LANGS, help="language (repeatable)")
    parser.add_argument("--pages", help="comma-separated page keys (default: all, and login)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for key in [k for k in os.environ if k.startswith("CARDVEND_")]:
        del os.environ[key]  # never a real home or database

    from PySide6.QtWidgets import QApplication

    from app.clock import FixedClock
    from app.services import auth
    from ui.app import prepare
    from ui.main_window import PAGES

    qapp = QApplication.instance() or QApplication(["cardvend-screenshots"])
    wanted = set(args.pages.split(",")) if args.pages else {p.key for p in PAGES} | {"login"}
    with tempfile.TemporaryDirectory(prefix="cardvend-shots-") as home:
        clock = FixedClock(local(TODAY - dt.timedelta(days=HISTORY_DAYS + 1), 8, 0))
        ctx = build_context(Path(home), clock)
        training_on(ctx)
        audit_state = prepare(ctx)
        teller = auth.login(ctx.db, "t01", "demo-t01", counter_id=ctx.counter_id, clock=clock)
        tray = ctx.tray_factory() if ctx.tray_factory is not None else None
        work_a_week(ctx, clock, teller, tray)
        missing: list[str] = []
        for lang in args.lang or LANGS:
            missing += shoot(ctx, audit_state, teller, lang, args.out, wanted)
        ctx.db.dispose()
    del qapp
    if missing:
        print("missing: " + "; ".join(missing), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
