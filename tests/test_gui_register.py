"""An administrator registers the counter with the central system from the administration
page: a real reference central server with an enrolment key, the token kept out of the
settings, and the background sync started at once."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from app.settings import CENTRAL_URL
from app.settings import Settings
from sync.central.server import CentralServer
from tests.rigs.context import make_ctx
from tests.rigs.context import sign_in

pytestmark = pytest.mark.gui


def dead_url() -> str:
    """An address on this machine where nothing listens (a port taken, then freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_admin_registers_the_counter(qtbot: Any, tmp_path: Path) -> None:
    import main
    from sync.service import background_worker
    from sync.service import token_path
    from ui.main_window import MainWindow

    ctx = make_ctx(tmp_path / "home", data="prepared")
    ctx.registrar = lambda url, key, who: main.register_here(ctx, url, key, who)
    ctx.registered_with = lambda: main.registered_with(ctx)
    ctx.sync_factory = lambda: background_worker(ctx)
    admin = sign_in(ctx, "a01")
    server = CentralServer(f"sqlite:///{tmp_path / 'central.db'}", enrolment_key="office-key")
    server.start()
    window = MainWindow(ctx, principal=admin)
    qtbot.addWidget(window)
    try:
        window.show_page("admin")
        page = window.pages["admin"]
        # an address where nothing answers: said as such, in the interface's language
        page.fields[CENTRAL_URL.key].setText(dead_url())
        page.enrolment_key.setText("office-key")
        page.register_button.click()
        qtbot.waitUntil(lambda: page.register_button.isEnabled(), timeout=60_000)
        assert "cannot be reached, so nothing was registered" in page.register_note.text()
        page.fields[CENTRAL_URL.key].setText(server.url)
        page.enrolment_key.setText("wrong")
        page.register_button.click()
        qtbot.waitUntil(lambda: page.register_button.isEnabled(), timeout=20_000)
        assert "the enrolment key (or code) is not right" in page.register_note.text()
        assert not token_path(ctx).exists()
        page.enrolment_key.setText("office-key")
        page.register_button.click()
        qtbot.waitUntil(
            lambda: "Registered as counter C01 of office DEMO" in page.register_note.text(),
            timeout=20_000,
        )
        token = token_path(ctx).read_text().strip()
        assert len(token) >= 32 and token not in ctx.paths.settings_file.read_text()
        assert Settings.load(ctx.paths.settings_file).get(CENTRAL_URL.key) == server.url
        assert window.sync_worker is not None  # the background sync runs from now on
        # the page says so whenever it is shown again
        page.load_settings()
        assert "Registered as counter C01 of office DEMO" in page.register_note.text()
    finally:
        if window.sync_worker is not None:
            window.sync_worker.stop()
        server.stop()
