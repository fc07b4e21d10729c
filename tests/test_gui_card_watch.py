"""The window's card connection (ui/card_watch.py) when the card changes while it is being
opened: the connection opened across the change is closed at once, never left holding the
reader (a held reader is "in use" for every other program until the counter program ends), and
the card now in is opened again.  The card is an emulated user card behind the real terminal;
the change is the window's own ``reset`` (what a card-removed event does), made while the
terminal is being opened."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.domain.card import CardRemoved
from app.domain.card import NoReader
from app.ports import CardTerminal
from app.settings import CARD_READER
from cardio import wiring
from cardio.emulator import CardImage
from tests.rigs.context import SELLING
from tests.rigs.context import make_ctx
from tests.rigs.context import sign_in
from tests.rigs.sale_window import main_window

READER = "Counter reader 0"


class Opened:
    """The terminals the window opened, each noted as closed when it is."""

    def __init__(self) -> None:
        self.terminals: list[CardTerminal] = []
        self.closed: list[CardTerminal] = []


def watched_window(
    qtbot: Any, tmp_path: Path, during_open: Callable[[Any, int], None]
) -> tuple[Any, Opened]:
    ctx = make_ctx(tmp_path / "home", data="demo", wire=SELLING, **{CARD_READER.key: READER})
    image = tmp_path / "card.json"
    serial = b"\x01" * 8
    master = wiring.load_master_keys(ctx)
    keys = master.diversified_card_keys(serial)
    CardImage.blank(serial, {int(r): k for r, k in keys.items()}).save(image)
    real = ctx.terminal_factory
    assert real is not None
    opened = Opened()
    window: Any = None

    def factory(reader: str | None, _image: str | None) -> CardTerminal:
        assert reader == READER
        terminal = real(None, str(image))
        close = terminal.close

        def closing() -> None:
            opened.closed.append(terminal)
            close()

        terminal.close = closing  # type: ignore[method-assign]
        opened.terminals.append(terminal)
        during_open(window, len(opened.terminals))
        return terminal

    ctx.terminal_factory = factory
    window = main_window(qtbot, ctx, sign_in(ctx, "t01"))
    return window, opened


def test_a_connection_opened_while_the_card_changed_is_closed_and_opened_again(
    qtbot: Any, tmp_path: Path
) -> None:
    def change_once(window: Any, count: int) -> None:
        if count == 1:
            window.card_watch.reset()  # the card left and came back while it was being opened

    window, opened = watched_window(qtbot, tmp_path, change_once)
    watch = window.card_watch
    terminal = watch.terminal()
    first, second = opened.terminals
    assert terminal is second and opened.closed == [first]
    assert watch.terminal() is second  # kept for the card now in: not opened a third time
    assert len(opened.terminals) == 2
    watch.stop()  # the window stops watching: the kept connection is closed
    assert opened.closed == [first, second]
    with pytest.raises(NoReader):
        watch.terminal()  # nothing is opened once the window stopped watching
    assert len(opened.terminals) == 2


@pytest.mark.parametrize(
    ("during_open", "error", "opened"),
    [
        # the card keeps changing: reported as taken out after three tries
        (lambda w, _n: w.card_watch.reset(), CardRemoved, 3),
        # the window stops watching while the card is being opened
        (lambda w, _n: w.card_watch.stop(), NoReader, 1),
    ],
    ids=["card-keeps-changing", "window-stops-watching"],
)
def test_no_connection_is_left_open_when_none_can_be_kept(
    qtbot: Any,
    tmp_path: Path,
    during_open: Callable[[Any, int], None],
    error: type[Exception],
    opened: int,
) -> None:
    window, seen = watched_window(qtbot, tmp_path, during_open)
    with pytest.raises(error):
        window.card_watch.terminal()
    assert len(seen.terminals) == opened and seen.closed == seen.terminals


def test_a_connection_dropped_as_the_window_closes_is_closed(qtbot: Any, tmp_path: Path) -> None:
    """The card leaves (reset queues the close on the card thread) while the card thread is
    still busy, and the window closes: closing cancels the queued work, and the connection is
    closed by the watch as it stops instead."""
    window, opened = watched_window(qtbot, tmp_path, lambda _w, _n: None)
    watch = window.card_watch
    terminal = watch.terminal()
    busy = threading.Event()
    release = threading.Event()

    def card_work() -> None:
        busy.set()
        release.wait(10)

    window.ops.card(card_work)  # the card thread is busy with the window's card work
    assert busy.wait(10)
    watch.reset()  # the card left: its close waits behind that work
    assert opened.closed == []
    releaser = threading.Timer(0.5, release.set)  # the work under way ends while it closes
    releaser.start()
    try:
        window.close()
    finally:
        releaser.cancel()
        release.set()
    assert opened.closed == [terminal]
