"""Changing this counter's settings from the window: checked, saved atomically, audited.

An administrator's change (permission ``CHANGE_SETTINGS``) is validated by the settings registry
(:meth:`app.settings.ConfigVar.coerce`) plus a few checks the registry cannot express (a time
zone that exists, an http(s) URL, sensible minimums).  The settings file is re-read and only the
changed keys are written to it, so values the running program set in memory only (training mode)
never reach the file.  Each save is one audit row with the old and new values; settings hold no
secrets (the central token and keys live elsewhere).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.permissions import Action
from app.errors import ValidationError
from app.i18n import N_
from app.persistence.db import Database
from app.services import audit
from app.services.auth import Principal
from app.settings import CENTRAL_URL
from app.settings import IDLE_MINUTES
from app.settings import LOCKOUT_ATTEMPTS
from app.settings import LOCKOUT_MINUTES
from app.settings import MIN_PASSWORD_LENGTH
from app.settings import PRINTER_BAUD
from app.settings import REGISTRY
from app.settings import SYNC_BATCH
from app.settings import SYNC_INTERVAL
from app.settings import SYNC_TIMEOUT
from app.settings import TIME_ZONE
from app.settings import Settings

log = logging.getLogger(__name__)

# the smallest sensible value of whole-number settings (others: 0)
MINIMUM = {
    IDLE_MINUTES.key: 1,
    LOCKOUT_ATTEMPTS.key: 1,
    LOCKOUT_MINUTES.key: 1,
    MIN_PASSWORD_LENGTH.key: 6,
    PRINTER_BAUD.key: 1200,
    SYNC_INTERVAL.key: 5,
    SYNC_TIMEOUT.key: 1,
    SYNC_BATCH.key: 1,
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def check_setting(key: str, value: Any) -> Any:
    """``value`` as the setting ``key`` stores it, or a :class:`ValidationError` that says why not."""
    var = REGISTRY.get(key)
    if var is None:
        raise ValidationError(N_("there is no setting called {key}"), key=key)
    if var.type is str and value == "" and var.default is None:
        value = None
    value = var.coerce(value)
    if var.type is int and value < MINIMUM.get(key, 0):
        raise ValidationError(
            N_("The setting {key} must be at least {minimum}."),
            key=key,
            minimum=MINIMUM.get(key, 0),
        )
    if key == TIME_ZONE.key:
        from zoneinfo import ZoneInfo
        from zoneinfo import ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationError(
                N_("{value!r} is not a time zone; write one like Asia/Shanghai."), value=value
            ) from exc
    if key == CENTRAL_URL.key and value and not value.startswith(("https://", "http://")):
        raise ValidationError(
            N_("The central system's address must start with https:// (or http://)."),
        )
    return value


def parse_setting(key: str, text: str) -> Any:
    """A setting typed as text by a person (whole numbers, yes/no, text), checked."""
    var = REGISTRY.get(key)
    if var is None:
        raise ValidationError(N_("there is no setting called {key}"), key=key)
    text = text.strip()
    value: Any = text
    if var.type is int:
        try:
            value = int(text)
        except ValueError:
            raise ValidationError(
                N_("The setting {key} needs a whole number, not {value!r}."), key=key, value=text
            ) from None
    elif var.type is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ValidationError(
                N_("The setting {key} needs yes or no, not {value!r}."), key=key, value=text
            )
        value = text.lower() in _TRUE
    return check_setting(key, value)


def change_settings(
    db: Database,
    settings: Settings,
    principal: Principal,
    changes: Mapping[str, Any],
    clock: Clock,
    *,
    counter_id: str,
    path: Path | None = None,
) -> dict[str, Any]:
    """Apply ``changes`` (key -> value) to ``settings`` and its file; returns what changed.

    All values are checked before anything is written; nothing changes when one is invalid.
    """
    principal.authorize(Action.CHANGE_SETTINGS, clock)
    checked = {key: check_setting(key, value) for key, value in changes.items()}
    changed = {k: v for k, v in checked.items() if settings.get(k) != v}
    if not changed:
        return {}
    target = path or settings.path
    if target is None:
        raise ValueError("these settings have no file")
    # the file as it is: in-memory-only values (training mode) stay out of it
    stored = Settings.load(target)
    for key, value in changed.items():
        stored.set(key, value)
    with db.write() as session:
        audit.Actor(principal.operator_id, counter_id, clock).record(
            session,
            AuditAction.SETTINGS_CHANGE,
            ",".join(sorted(changed))[:120],
            detail={k: {"old": settings.get(k), "new": v} for k, v in changed.items()},
        )
        stored.save(target)  # a failed write rolls the audit row back with it
    for key, value in changed.items():
        settings.set(key, value)
    log.info("settings changed by %s: %s", principal.operator_id, ", ".join(sorted(changed)))
    return changed
