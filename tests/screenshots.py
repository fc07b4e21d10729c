"""Screenshots of the counter window, every page, in Simplified Chinese and English, and the check
that every page fits the screen for every role.

    make screenshots                      # both counter screen sizes, under Xvfb
    python -m tests.screenshots [--out DIR] [--lang en] [--pages sale,shift]
    python -m tests.screenshots --check   # what does not fit the screen, as JSON; exit 1 if any

It builds the real window (``ui.main_window.MainWindow``) the way a new machine starts it after
``make run``: a fresh CARDVEND_HOME in a temporary folder, the demo database, no card reader, so
training mode with the emulated card tray.  Before the pictures it works a week at the counter on
a fixed clock (shifts opened and closed with a cash count, remote payments and card sales through
the tray), so the reports and the Z-report have something to show.  Then a teller, a supervisor,
a technician and an administrator each sign in (``app.services.auth.login``, the demo passwords)
and the window opens over the whole screen as the session opens it (``place_on_screen``); each
page they see is filled as at work (a card in the reader, a search, a cash count) and either
grabbed (``widget.grab().save(png)``) into ``<out>/<page>-<lang>.png``, from the first role
that sees it, or checked (:func:`fit_problems`).  ``login-<lang>.png`` is the sign-in dialog.

Everything a page reads runs in the background (ui/bridge.Ops): a page is grabbed once the
window has had no operation running for a moment.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
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
TZ_OFFSET = dt.timedelta(hours=8)  # the demo office is in Asia/Shanghai
TODAY = dt.date(2026, 3, 9)
HISTORY_DAYS = 6  # closed shifts before today
CARD_CUSTOMER = "100000000002"  # the demo card customer shown on the sale page
REMOTE_CUSTOMERS = ("100000000020", "100000000030", "100000000040", "100000000050")

log = logging.getLogger("screenshots")


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC) - TZ_OFFSET


# --------------------------------------------------------------------------- the counter


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
    from app.services import selling
    from app.services import shifts

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
                from app.services.reports import current_shift_id
                from app.services.reports import shift_report

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


def open_window(ctx: Any, audit_state: Any, principal: Any) -> Any:
    """The counter window as the session opens it: over the screen's whole available area."""
    from ui.main_window import MainWindow

    window = MainWindow(ctx, audit_state, principal=principal, training=True, sync_worker=None)
    window.place_on_screen()
    window.show()
    settle(window)
    return window


def fill_page(window: Any, key: str, page: Any) -> list[str]:
    """Put on the page what a person has there at work (a card in the reader, a search, a cash
    count); what could not be done."""
    if key == "sale" and not insert_card(window, CARD_CUSTOMER):
        return ["sale (no card inserted: the tray is not wired)"]
    if key == "sale":
        settle(window, quiet_ms=800)
    elif key == "customers":
        search_customers(window, page, "李")
    elif key == "shift":
        fill_count(page)
        settle(window, quiet_ms=200)
    elif key in ("control_stats", "exceptions"):  # the station's answer (serving_station)
        settle(window, quiet_ms=300)
        if key == "exceptions" and page.table.rowCount():
            page.table.selectRow(0)  # one exception with its history
            settle(window, quiet_ms=300)
    return []


def tour(
    ctx: Any,
    audit_state: Any,
    operators: dict[str, Any],
    lang: str,
    visit: Callable[[Any, str, str], None],
) -> list[str]:
    """Every page each operator (role → principal) sees, in ``lang``, filled as at work;
    ``visit(window, role, view)`` on each (``view``: the page key, ``reports-stats`` for the
    reports' charts).  What could not be shown."""
    from PySide6.QtWidgets import QApplication

    from app.i18n import set_language

    set_language(lang)
    missing: list[str] = []
    for role, principal in operators.items():
        window = open_window(ctx, audit_state, principal)
        for key in list(window.pages):
            window.show_page(key)
            settle(window)
            page = window.pages[key]
            missing += [f"{m}-{lang}" for m in fill_page(window, key, page)]
            visit(window, role, key)
            if key == "reports":
                page.tabs.setCurrentIndex(1)
                settle(window)
                visit(window, role, "reports-stats")
                page.tabs.setCurrentIndex(0)
        window.close()
        QApplication.instance().processEvents()
    return missing


def shoot_login(ctx: Any, lang: str, out: Path) -> None:
    from app.i18n import set_language
    from ui.bridge import Ops
    from ui.login import LoginDialog

    set_language(lang)
    ops = Ops(workers=1)
    dialog = LoginDialog(ctx, ops)
    dialog.operator.setText("t01")
    dialog.show()
    settle(ops, quiet_ms=200)
    grab(dialog, out / f"login-{lang}.png")
    dialog.close()
    ops.shutdown()


def shoot(
    ctx: Any, audit_state: Any, operators: dict[str, Any], lang: str, out: Path, pages: set[str]
) -> list[str]:
    """Each page once, from the first role that sees it (a teller's pages, then the
    technician's and the administrator's)."""
    taken: set[str] = set()

    def visit(window: Any, _role: str, view: str) -> None:
        if view in taken or view.split("-")[0] not in pages:
            return
        taken.add(view)
        grab(window, out / f"{view}-{lang}.png")

    missing = tour(ctx, audit_state, operators, lang, visit)
    if "login" in pages:
        shoot_login(ctx, lang, out)
    return missing + [f"{k}-{lang} (page not built)" for k in pages - taken - {"login"}]


# --------------------------------------------------------------------------- the fit check


def fit_problems(window: Any, view: str) -> list[str]:
    """What does not fit on the screen the window is on: the window or its status bar leaving
    the screen, a page that needs scrolling sideways, a key column of a table elided or out of
    view."""
    from PySide6.QtCore import QPoint
    from PySide6.QtCore import QRect
    from PySide6.QtWidgets import QAbstractItemView
    from PySide6.QtWidgets import QScrollArea

    problems: list[str] = []
    screen = window.screen().geometry()
    frame = window.frameGeometry()
    if not screen.contains(frame):
        problems.append(f"window {rect(frame)} leaves the screen {rect(screen)}")
    bar = window.statusBar()
    bar_rect = QRect(bar.mapToGlobal(QPoint(0, 0)), bar.size())
    if not bar.isVisible() or not screen.contains(bar_rect):
        problems.append(f"status bar {rect(bar_rect)} is not on the screen {rect(screen)}")
    area = window.stack.currentWidget()
    if isinstance(area, QScrollArea) and area.horizontalScrollBar().maximum() > 0:
        problems.append(
            f"the page is {area.widget().minimumSizeHint().width()} px wide, "
            f"{area.viewport().width()} px show"
        )
    page = window.current_page()
    problems += label_problems(window, page)
    for table in page.findChildren(QAbstractItemView):
        if not table.isVisibleTo(window) or table.model() is None:
            continue
        problems += column_problems(table)
    return [f"{view}: {p}" for p in problems]


def label_problems(window: Any, page: Any) -> list[str]:
    """Texts cut off: a wrapped label shorter than its lines, a one-line label narrower than
    its text (not a label that scrolls in a box of its own)."""
    from PySide6.QtWidgets import QLabel

    problems = []
    for label in page.findChildren(QLabel):
        text = label.text()
        if not text or not label.isVisibleTo(window) or scrolls_within(label, page):
            continue
        if label.wordWrap():
            need = label.heightForWidth(label.width())
            if need > label.height() + 2:
                problems.append(f"label {text[:40]!r} is {label.height()} px tall, needs {need}")
        elif label.width() + 2 < label.minimumSizeHint().width():
            problems.append(
                f"label {text[:40]!r} is {label.width()} px wide, needs "
                f"{label.minimumSizeHint().width()}"
            )
    return problems


def scrolls_within(widget: Any, page: Any) -> bool:
    """Whether ``widget`` sits in a scroll area of its own inside the page (it may be taller)."""
    from PySide6.QtWidgets import QAbstractScrollArea

    parent = widget.parentWidget()
    while parent is not None and parent is not page:
        if isinstance(parent, QAbstractScrollArea):
            return True
        parent = parent.parentWidget()
    return False


def column_problems(table: Any) -> list[str]:
    header = table.horizontalHeader() if hasattr(table, "horizontalHeader") else None
    if header is None:
        return []
    model = table.model()
    from ui.pages.common import KEY_COLUMNS

    keys = table.property(KEY_COLUMNS)
    keys = list(keys) if keys else [0]
    name = table.objectName() or type(table).__name__
    problems = []
    shown = table.viewport().width()
    for column in keys:
        if column >= model.columnCount() or header.isSectionHidden(column):
            continue
        title = model.headerData(column, header.orientation())
        need = max(table.sizeHintForColumn(column), header.sectionSizeHint(column))
        width = header.sectionSize(column)
        if model.rowCount() and width + 2 < need:
            problems.append(f"{name} column {title!r} is {width} px, its text needs {need}")
        left = header.sectionViewportPosition(column)
        if left < 0 or left + min(width, need) > shown:
            problems.append(f"{name} column {title!r} is out of view ({left}+{width} > {shown})")
    return problems


def rect(r: Any) -> str:
    return f"{r.width()}x{r.height()}+{r.x()}+{r.y()}"


def check(ctx: Any, audit_state: Any, operators: dict[str, Any], lang: str) -> list[str]:
    """Every page for every role in ``lang``: what does not fit."""
    problems: list[str] = []

    def visit(window: Any, role: str, view: str) -> None:
        problems.extend(f"{lang} {role} {p}" for p in fit_problems(window, view))

    problems += tour(ctx, audit_state, operators, lang, visit)
    return problems


OPERATORS = {"teller": "t01", "supervisor": "s01", "technician": "f01", "admin": "a01"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the PNGs")
    parser.add_argument("--lang", action="append", choices=LANGS, help="language (repeatable)")
    parser.add_argument("--pages", help="comma-separated page keys (default: all, and login)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="no pictures: open every page for every role and print, as JSON, what does not "
        "fit the screen (exit 1 when something does not)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for key in [k for k in os.environ if k.startswith("CARDVEND_")]:
        del os.environ[key]  # never a real home or database

    from PySide6.QtWidgets import QApplication

    from app.clock import FixedClock
    from tests.rigs.context import make_ctx
    from tests.rigs.context import sign_in
    from ui.app import prepare
    from ui.main_window import PAGES

    qapp = QApplication.instance() or QApplication(["cardvend-screenshots"])
    wanted = set(args.pages.split(",")) if args.pages else {p.key for p in PAGES} | {"login"}
    screen = qapp.primaryScreen().geometry()
    with tempfile.TemporaryDirectory(prefix="cardvend-shots-") as home:
        clock = FixedClock(local(TODAY - dt.timedelta(days=HISTORY_DAYS + 1), 8, 0))
        ctx = make_ctx(Path(home), clock=clock, wire=("cards", "printing"))
        from tests.rigs.stats_data import serving_station

        station = contextlib.ExitStack()
        ctx.station = station.enter_context(serving_station(Path(home)))[2]
        training_on(ctx)
        audit_state = prepare(ctx)
        operators = {role: sign_in(ctx, op) for role, op in OPERATORS.items()}
        tray = ctx.tray_factory() if ctx.tray_factory is not None else None
        work_a_week(ctx, clock, operators["teller"], tray)
        for principal in operators.values():
            principal.last_activity = clock.now()
        missing: list[str] = []
        problems: list[str] = []
        for lang in args.lang or LANGS:
            if args.check:
                problems += check(ctx, audit_state, operators, lang)
            else:
                missing += shoot(ctx, audit_state, operators, lang, args.out, wanted)
        ctx.db.dispose()
        station.close()
    del qapp
    if missing:
        print("missing: " + "; ".join(missing), file=sys.stderr)
    if args.check:
        print(json.dumps({"screen": [screen.width(), screen.height()], "problems": problems}))
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
