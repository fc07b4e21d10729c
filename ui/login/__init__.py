"""Signing in: the login dialog, the first administrator, the lock screen, and the session that
ties them to the counter window.

:class:`CounterSession` runs the counter's life: the login dialog shows at once while the
database is prepared in the background (a sign-in waits for it); with no administrator yet the
first-administrator dialog replaces it; after a sign-in the operator's remembered language is
applied and the window is built in it. An :class:`IdleWatch` on the application notes activity;
after the idle time the window is covered by the lock dialog, which asks the same operator's
password again or lets another operator sign in (the window is then rebuilt for them). Choosing
a language rebuilds the window so every screen shows it, and is remembered for the operator.

All password checks run off the GUI thread (scrypt is slow by design) through ``ui.bridge.Ops``.
"""

from __future__ import annotations

from ui.login.dialogs import LANGUAGE_NAMES
from ui.login.dialogs import FirstAdminDialog
from ui.login.dialogs import LanguageBox
from ui.login.dialogs import LoginDialog
from ui.login.dialogs import language_after_login
from ui.login.idle import ACTIVITY
from ui.login.idle import IdleWatch
from ui.login.session import CounterSession
from ui.login.session import StartGate

__all__ = [
    "ACTIVITY",
    "LANGUAGE_NAMES",
    "CounterSession",
    "FirstAdminDialog",
    "IdleWatch",
    "LanguageBox",
    "LoginDialog",
    "StartGate",
    "language_after_login",
]
