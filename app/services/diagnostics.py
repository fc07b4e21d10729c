"""Getting help: ``cardvend selftest`` (one line a check, an exit code) and ``cardvend diag``
(a support bundle without any secret).

The self-test checks the database, its migrations, the audit chain, the key provider, the
reader and a card read, the printer, the central link and the clock skew. Each check is OK,
FAIL or SKIP (not configured here) with a detail; a failing check never stops the others.

The bundle is a zip (0600) of versions, settings, the self-test, sync status, schema revision,
audit verification, the reader list and the log files. Secrets never go in: the settings that
are secrets are left out, the database URL loses its password, and every text in the bundle is
scrubbed of every secret this counter knows (passwords and passphrases from the environment,
the central token, the receipt key, the database password, the meters' password) as a second
line of defence: a log line that quoted one is shown with ``[redacted]``.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import logging
import os
import platform
import sys
import zipfile
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.context import AppContext
from app.domain.card import NoCard
from app.errors import CardVendError
from app.fileio import create_private_file
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.ports import DiagProbe as DiagProbe
from app.settings import CARD_READER
from app.settings import METER_PASSWORD
from app.settings import REGISTRY

log = logging.getLogger(__name__)

OK, FAIL, SKIP = "ok", "fail", "skip"
MAX_SKEW_S = 120  # more than this between the counter's clock and the central system's fails
# environment variables that hold secrets (their values never go in a bundle)
SECRET_ENV = (
    "CARDVEND_PASSWORD",
    "CARDVEND_ADMIN_PASSWORD",
    "CARDVEND_KEYSTORE_PASSPHRASE",
    "CARDVEND_ENROLMENT_KEY",
    "CARDVEND_ENROLMENT_CODE",
    "CARDVEND_TOKEN",
    "PGPASSWORD",
)
SECRET_SETTINGS = frozenset({METER_PASSWORD.key})
REDACTED = "[redacted]"
PACKAGES = ("cardvend", "PySide6-Essentials", "SQLAlchemy", "alembic", "pyscard", "reportlab",
            "requests", "pyserial", "cryptography", "psycopg")  # fmt: skip


@dataclass(frozen=True)
class Check:
    name: str  # msgid
    status: str  # ok, fail, skip
    detail: str

    def line(self) -> str:
        mark = {OK: _("OK"), FAIL: _("FAIL"), SKIP: _("SKIP")}[self.status]
        return f"{mark:<5} {translate(self.name)}: {self.detail}"

    def to_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "detail": self.detail}


def _run(name: str, fn: Callable[[], tuple[str, str]]) -> Check:
    try:
        status, detail = fn()
    except CardVendError as exc:
        return Check(name, FAIL, exc.localized())
    except Exception as exc:  # a check that breaks is a failed check, the others go on
        log.exception("self-test %s", name)
        return Check(name, FAIL, f"{type(exc).__name__}: {exc}")
    return Check(name, status, detail)


def _database(ctx: AppContext) -> tuple[str, str]:
    revision = ctx.db.current_revision()
    return OK, _("{url}, schema {revision}", url=_safe_url(ctx), revision=revision or "-")


def _migrations(ctx: AppContext) -> tuple[str, str]:
    found, head = schema_revisions(ctx)
    if found != head:
        return FAIL, _(
            "schema {found}, this version's is {head}: run 'cardvend init'", found=found, head=head
        )
    return OK, _("at {head}", head=head)


def _audit(ctx: AppContext) -> tuple[str, str]:
    from app.services.audit import verify

    result = verify(ctx.db)
    if not result.ok:
        return FAIL, _(
            "the chain breaks at entry {seq} ({problem}): call the supervisor",
            seq=result.first_bad_seq,
            problem=result.problem,
        )
    return OK, _("{rows} entries, head {seq}", rows=result.rows, seq=result.last_seq)


def _reader(ctx: AppContext, probe: DiagProbe) -> tuple[str, str]:
    reader = str(ctx.settings.value(CARD_READER) or "").strip()
    if not reader:
        return SKIP, _("no card reader configured (training mode on emulated cards)")
    readers = probe.readers()
    if reader not in readers:
        return FAIL, _(
            "reader {reader} is not connected (PC/SC sees: {seen})",
            reader=reader,
            seen=", ".join(readers) or "-",
        )
    try:
        card = probe.read_card(reader)
    except NoCard:
        return FAIL, _("reader {reader} answers, but holds no card to read", reader=reader)
    return OK, _(
        "{reader}: card {serial} ({kind}) read", reader=reader, serial=card.serial_hex,
        kind=translate(card.kind.label),
    )  # fmt: skip


def _printer(probe: DiagProbe) -> tuple[str, str]:
    status = probe.printer_status()
    return (SKIP, _("no printer configured")) if status is None else (OK, status)


def _central(ctx: AppContext, probe: DiagProbe) -> tuple[str, str]:
    their = probe.central_time()
    if their is None:
        return SKIP, _("not registered with a central system")
    skew = (ctx.clock.now() - their).total_seconds()
    if abs(skew) > MAX_SKEW_S:
        return FAIL, _(
            "the central system answers, but this PC's clock is {seconds} s off: set the clock",
            seconds=round(skew),
        )
    return OK, _("answers; clock skew {seconds} s", seconds=round(skew))


def selftest(ctx: AppContext, probe: DiagProbe) -> list[Check]:
    """Every check, in order; none stops the others."""
    return [
        _run(N_("database"), lambda: _database(ctx)),
        _run(N_("migrations"), lambda: _migrations(ctx)),
        _run(N_("audit chain"), lambda: _audit(ctx)),
        _run(N_("key provider"), lambda: (OK, probe.load_keys())),
        _run(N_("card reader"), lambda: _reader(ctx, probe)),
        _run(N_("printer"), lambda: _printer(probe)),
        _run(N_("central link"), lambda: _central(ctx, probe)),
    ]


def schema_revisions(ctx: AppContext) -> tuple[str, str]:
    """The database's schema revision and this version's newest."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(ctx.db.alembic_config()).get_current_head()
    return ctx.db.current_revision() or "-", head or "-"


def _safe_url(ctx: AppContext) -> str:
    return str(ctx.db.url.render_as_string(hide_password=True))


# --------------------------------------------------------------------------- the bundle


def known_secrets(ctx: AppContext, probe: DiagProbe) -> list[str]:
    """Every secret this counter knows of, to be scrubbed from whatever goes in a bundle."""
    found = [os.environ.get(name, "") for name in SECRET_ENV]
    found.append(str(ctx.settings.get(METER_PASSWORD.key) or ""))
    found.append(str(ctx.db.url.password or ""))
    try:
        found.append(ctx.receipt_key_file.read_text(encoding="ascii").strip())
    except OSError:
        pass
    try:
        found += probe.secrets()
    except Exception as exc:  # the bundle is still made; the log says why
        log.warning("diag: secrets not read: %s", exc)
    # short values (a default "000000") would blank out ordinary figures: 4 characters at least
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def _settings(ctx: AppContext) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for key in sorted(REGISTRY):
        if key in SECRET_SETTINGS:
            shown[key] = REDACTED
        elif key == "db_url":
            shown[key] = _safe_url(ctx)
        else:
            shown[key] = ctx.settings.get(key)
    return shown


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "-"
    return found


def _section(fn: Callable[[], Any]) -> Any:
    """One part of the bundle; a part that cannot be had says why instead."""
    try:
        return fn()
    except CardVendError as exc:
        return {"error": exc.localized("en")}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def write_bundle(ctx: AppContext, probe: DiagProbe, out: Path) -> list[Check]:
    """The support bundle at ``out`` (0600); returns the self-test it holds."""
    from app.services.audit import verify
    from app.services.sync_status import sync_status

    checks = selftest(ctx, probe)
    parts: dict[str, Any] = {
        "versions.json": versions(),
        "settings.json": _settings(ctx),
        "selftest.json": [c.to_json() for c in checks],
        "schema.json": _section(
            lambda: dict(zip(("found", "head"), schema_revisions(ctx), strict=True))
        ),
        "audit.json": _section(lambda: verify(ctx.db).to_json()),
        "sync_status.json": _section(
            lambda: sync_status(ctx.db, ctx.clock, ctx.counter_id).to_json()
        ),
        "readers.json": _section(probe.readers),
    }
    secrets = known_secrets(ctx, probe)
    summary = [
        f"CardVend diagnostics, office {ctx.office_code}, counter {ctx.counter_id}",
        f"taken {ctx.clock.now().isoformat()}",
        *(c.line() for c in checks),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    create_private_file(out)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("summary.txt", scrub("\n".join(summary) + "\n", secrets))
        for name, data in parts.items():
            text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
            z.writestr(name, scrub(text, secrets))
        for path in sorted(ctx.paths.log_dir.glob("*.log*")):
            text = path.read_text(encoding="utf-8", errors="replace")
            z.writestr(f"logs/{path.name}", scrub(text, secrets))
    os.chmod(out, 0o600)
    return checks


def default_bundle_name(now: dt.datetime, counter_id: str) -> str:
    return f"cardvend-diag-{counter_id}-{now.strftime('%Y%m%dT%H%M%S')}.zip"
