"""First-run set-up: what office IT knows, checked step by step, then applied in one go.

Used by the window's wizard (ui/setup_wizard.py) and by ``cardvend setup`` (app/cli_setup.py).
A :class:`SetupPlan` holds the answers; each ``check_*`` function checks one step and raises a
:class:`SetupError` naming the step (translated, one line); the ``test_*`` functions try a device
(read the card in a reader, print a test receipt) through the :class:`app.ports.SetupProbe` that
main.py wires (app/ imports no cardio/, printing/ or sync/).  :func:`apply` checks everything
again, then writes: the database (migrated), the first administrator, the keystore copy (0600),
the registration with the central system, the audit entry ``counter_setup`` (the choices, never a
secret) and, last, settings.json (0600).  Until settings.json is written the counter counts as
not set up; a failure removes the keystore copy it made, so a cancelled or failed set-up leaves
no configuration behind (a database already migrated and an administrator created stay, and a
second run signs that administrator in instead of creating one).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app.clock import Clock
from app.domain import ids
from app.domain.audit import AuditAction
from app.domain.receipt import ReceiptData
from app.errors import CardVendError
from app.fileio import private_dir
from app.fileio import write_atomically
from app.i18n import N_
from app.paths import Paths
from app.persistence.db import Database
from app.ports import SetupProbe
from app.services import audit
from app.services import auth
from app.settings import CARD_READER
from app.settings import COUNTER_ID
from app.settings import DB_URL
from app.settings import DEMO_MODE
from app.settings import KEY_PROVIDER
from app.settings import KEYSTORE_FILE
from app.settings import LANGUAGE
from app.settings import MIN_PASSWORD_LENGTH
from app.settings import OFFICE_CODE
from app.settings import PRINTER
from app.settings import PRINTER_NAME
from app.settings import PRINTER_PORT
from app.settings import PSAM_READER
from app.settings import Settings

log = logging.getLogger(__name__)

KEYSTORE_NAME = "keystore.json"
# CARDVEND_DEMO=0 (or false/no/off) with no settings file: the window asks for the set-up
DEMO_ENV = "CARDVEND_DEMO"
_OFF = ("0", "false", "no", "off")

# the steps, in the wizard's order; a SetupError names one
OFFICE, DATABASE, READER, KEYS, PRINTING, CENTRAL, ADMIN = (
    N_("office and counter"),
    N_("database"),
    N_("card reader"),
    N_("key provider"),
    N_("printer"),
    N_("central system"),
    N_("administrator"),
)


class SetupError(CardVendError):
    """One step of the set-up is wrong: the step and the problem, both translated; ``params``
    fill the problem's placeholders (the parameter names of the frame are ones no other
    error uses, so an error's own ``step`` or ``reason`` passes through)."""

    code = "setup"
    template = N_("Set-up, {setup_step}: {setup_problem}")

    def __init__(self, step: str, problem: str, /, **params: object) -> None:
        self.step = step
        super().__init__(setup_step=step, setup_problem=problem, **params)


@dataclass
class SetupPlan:
    """The answers of the set-up.  Secrets (passphrase, password, enrolment key/code) are kept
    out of ``repr`` and never written to the settings or the audit log."""

    office_code: str = ""
    counter_id: str = ""
    db_url: str = ""  # empty: a SQLite file in the data folder
    card_reader: str = ""  # empty: emulated cards (training mode)
    key_provider: str = "software"  # software (a keystore file) or psam
    keystore_source: str = ""  # the keystore file to import
    keystore_passphrase: str = field(default="", repr=False)
    psam_reader: str = ""
    printer: str = "pdf"
    printer_name: str = ""
    printer_port: str = ""
    central_url: str = ""  # empty: not registered (the administration page can do it later)
    enrolment_key: str = field(default="", repr=False)
    enrolment_code: str = field(default="", repr=False)
    admin_id: str = ""
    admin_name: str = ""
    admin_password: str = field(default="", repr=False)
    language: str | None = None

    def choices(self) -> dict[str, Any]:
        """What the audit entry records: the choices, no secret (the database URL without its
        password)."""
        return {
            "office": self.office_code,
            "counter": self.counter_id,
            "database": _shown_url(self.db_url) if self.db_url else "sqlite",
            "card_reader": self.card_reader,
            "key_provider": self.key_provider,
            "psam_reader": self.psam_reader if self.key_provider == "psam" else "",
            "printer": self.printer,
            "central_url": self.central_url,
            "admin": self.admin_id,
        }


def setup_needed(settings: Settings, *, forced: bool = False) -> bool:
    """Whether the window shows the set-up first: asked for (``--setup``), or no settings file
    and demo mode turned off (CARDVEND_DEMO=0). Without either, an unconfigured counter starts
    the demo as before."""
    if forced:
        return True
    if settings.is_configured():
        return False
    return os.environ.get(DEMO_ENV, "").strip().lower() in _OFF


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "?"


def _fail(step: str, exc: CardVendError) -> SetupError:
    """``exc`` said about ``step`` (translated when the message is read)."""
    return SetupError(step, exc.message_template, **exc.params)


# --------------------------------------------------------------------------- the steps


def check_office(plan: SetupPlan) -> None:
    try:
        ids.OFFICE_CODE.check(plan.office_code)
        ids.COUNTER_ID.check(plan.counter_id)
    except CardVendError as exc:
        raise _fail(OFFICE, exc) from None


def database_url(plan: SetupPlan, paths: Paths) -> str:
    return plan.db_url.strip() or str(paths.default_db_file)


def check_database(plan: SetupPlan, paths: Paths) -> str:
    """The office's PostgreSQL answers (``SELECT 1``, nothing written), or the data folder can
    hold the SQLite file. Returns what was found, for the person."""
    url = plan.db_url.strip()
    if not url:
        folder = paths.data_dir
        probe = folder if folder.exists() else folder.parent
        if not os.access(probe, os.W_OK):
            raise SetupError(DATABASE, N_("the data folder {path} cannot be written"),
                             path=str(folder))  # fmt: skip
        return str(paths.default_db_file)
    if not url.startswith(("postgresql", "sqlite")):
        raise SetupError(DATABASE, N_("{url} is not a PostgreSQL URL (postgresql://…)"), url=url)
    db: Database | None = None
    try:
        db = Database(url)
        with db.read() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        log.info("set-up: database %s does not answer: %s", _shown_url(url), exc)
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        raise SetupError(DATABASE, N_("the database does not answer: {detail}"),
                         detail=detail) from None  # fmt: skip
    finally:
        if db is not None:
            db.dispose()
    return _shown_url(url)


def _readers(probe: SetupProbe | None, step: str) -> list[str]:
    if probe is None:
        raise SetupError(step, N_("no card readers can be used in this program"))
    try:
        return probe.readers()
    except CardVendError as exc:
        raise _fail(step, exc) from None


def check_reader(plan: SetupPlan, probe: SetupProbe | None) -> None:
    """Empty (emulated cards, training) or one of the readers pcscd sees."""
    if plan.card_reader and plan.card_reader not in _readers(probe, READER):
        raise SetupError(READER, N_("there is no reader called {reader}"), reader=plan.card_reader)


def test_read(plan: SetupPlan, probe: SetupProbe | None) -> str:
    """Read the card in the chosen reader: its kind and serial number."""
    from app.i18n import _
    from app.i18n import translate

    check_reader(plan, probe)
    if not plan.card_reader or probe is None:
        raise SetupError(READER, N_("choose a card reader first"))
    try:
        card = probe.read_card(plan.card_reader)
    except CardVendError as exc:
        raise _fail(READER, exc) from None
    return _("{kind}, serial {serial}", kind=translate(card.kind.label), serial=card.serial_hex)


def check_keys(plan: SetupPlan, probe: SetupProbe | None) -> None:
    """The keystore opens with the passphrase, or the PSAM answers in its reader."""
    if plan.key_provider == "psam":
        if plan.psam_reader not in _readers(probe, KEYS):
            raise SetupError(KEYS, N_("there is no reader called {reader}"),
                             reader=plan.psam_reader)  # fmt: skip
        opener: Callable[[], None] = lambda: probe.open_psam(plan.psam_reader)  # type: ignore[union-attr]  # noqa: E731
    elif plan.key_provider == "software":
        if not plan.keystore_source or not Path(plan.keystore_source).is_file():
            raise SetupError(KEYS, N_("there is no keystore file at {path}"),
                             path=plan.keystore_source)  # fmt: skip
        if not plan.keystore_passphrase:
            raise SetupError(KEYS, N_("enter the keystore's passphrase"))
        if probe is None:
            raise SetupError(KEYS, N_("no card readers can be used in this program"))
        opener = lambda: probe.open_keystore(plan.keystore_source, plan.keystore_passphrase)  # noqa: E731
    else:
        raise SetupError(KEYS, N_("choose a keystore file or a PSAM reader"))
    try:
        opener()
    except CardVendError as exc:
        raise _fail(KEYS, exc) from None


def _printer_values(plan: SetupPlan) -> dict[str, str]:
    return {
        PRINTER.key: plan.printer,
        PRINTER_NAME.key: plan.printer_name,
        PRINTER_PORT.key: plan.printer_port,
    }


def printer_settings(plan: SetupPlan) -> Settings:
    """Settings naming the plan's printer (for the test print)."""
    return Settings(_printer_values(plan))


def check_printer(plan: SetupPlan) -> None:
    if plan.printer not in (PRINTER.choices or ()):
        raise SetupError(PRINTING, N_("choose one of {choices}"),
                         choices=", ".join(PRINTER.choices or ()))  # fmt: skip
    if plan.printer == "escpos" and not plan.printer_port.strip():
        raise SetupError(PRINTING, N_("a thermal printer needs its serial port"))


def test_receipt(plan: SetupPlan, clock: Clock) -> ReceiptData:
    """A receipt marked as training, for the test print (no sale behind it)."""
    return ReceiptData(
        sale_id="00000000-0000-4000-8000-000000000000", kind="card", state="completed",
        office_code=plan.office_code or "-", office_name="", counter_id=plan.counter_id or "-",
        operator_id="", operator_name="", created_at=clock.now(), time_zone="Asia/Shanghai",
        customer_no="000000000000", customer_name="TEST", address="", meter_no="000000000000",
        purchase_count=None, amount=0, arrears=0, fees=0, credit=0, tariff_plan="",
        tariff_name="", tariff_version_no=0, energy_wh=0, meter_balance=None,
        cash_received=None, change=None, verification_code="TEST", training=True,
    )  # fmt: skip


def test_print(plan: SetupPlan, probe: SetupProbe | None, clock: Clock) -> str:
    """Print a test receipt (marked as training) on the chosen printer; says where it went."""
    from app.i18n import _

    check_printer(plan)
    if plan.printer == "none":
        return _("no printer: receipts are not printed")
    if probe is None:
        raise SetupError(PRINTING, N_("printing is not available in this program"))
    try:
        where = probe.test_print(printer_settings(plan), test_receipt(plan, clock))
        return _("a test receipt went to {printer}", printer=where)
    except CardVendError as exc:
        raise _fail(PRINTING, exc) from None


def check_central(plan: SetupPlan) -> None:
    url = plan.central_url.strip()
    if url and not url.startswith(("https://", "http://")):
        raise SetupError(CENTRAL, N_("{url} is not a web address (https://…)"), url=url)


def check_admin(plan: SetupPlan, settings: Settings, repeat: str | None = None) -> None:
    try:
        ids.OPERATOR_ID.check(plan.admin_id)
    except CardVendError as exc:
        raise _fail(ADMIN, exc) from None
    length = settings.value(MIN_PASSWORD_LENGTH)
    if len(plan.admin_password) < length:
        raise SetupError(ADMIN, N_("a password needs at least {length} characters"),
                         length=length)  # fmt: skip
    if repeat is not None and repeat != plan.admin_password:
        raise SetupError(ADMIN, N_("the two passwords differ"))


def check_all(plan: SetupPlan, paths: Paths, settings: Settings, probe: SetupProbe | None) -> None:
    check_office(plan)
    check_database(plan, paths)
    check_reader(plan, probe)
    check_keys(plan, probe)
    check_printer(plan)
    check_central(plan)
    check_admin(plan, settings)


# --------------------------------------------------------------------------- applying


def new_settings(plan: SetupPlan, paths: Paths, base: Settings) -> Settings:
    """The settings the plan gives (on top of what ``base`` holds itself), not yet saved."""
    s = Settings({k: base.get(k) for k in _held(base)})
    s.set(OFFICE_CODE.key, plan.office_code)
    s.set(COUNTER_ID.key, plan.counter_id)
    if plan.db_url.strip():
        s.set(DB_URL.key, plan.db_url.strip())
    s.set(CARD_READER.key, plan.card_reader)
    s.set(KEY_PROVIDER.key, plan.key_provider)
    if plan.key_provider == "software":
        s.set(KEYSTORE_FILE.key, str(paths.data_dir / KEYSTORE_NAME))
    else:
        s.set(PSAM_READER.key, plan.psam_reader)
    for key, value in _printer_values(plan).items():
        s.set(key, value)
    s.set(DEMO_MODE.key, False)
    if plan.language:
        s.set(LANGUAGE.key, plan.language)
    return s


def _held(settings: Settings) -> list[str]:
    from app.settings import REGISTRY

    return [k for k in REGISTRY if settings.is_set(k) and REGISTRY[k].saved]


def _admin(db: Database, plan: SetupPlan, settings: Settings, clock: Clock) -> auth.Principal:
    """Create the first administrator, or (a second run) sign in the one that exists."""
    policy = auth.SecurityPolicy.from_settings(settings)
    try:
        if not auth.admin_exists(db):
            auth.create_first_admin(db, plan.admin_id, plan.admin_name or plan.admin_id,
                                    plan.admin_password, counter_id=plan.counter_id, clock=clock,
                                    policy=policy)  # fmt: skip
        return auth.login(db, plan.admin_id, plan.admin_password, counter_id=plan.counter_id,
                          clock=clock, policy=policy)  # fmt: skip
    except CardVendError as exc:
        raise _fail(ADMIN, exc) from None


def _import_keystore(plan: SetupPlan, paths: Paths) -> Callable[[], None] | None:
    """Copy the keystore into the data folder (0600); returns what undoes it (the file that
    was there before, e.g. a demo keystore, comes back), None when nothing was copied."""
    if plan.key_provider != "software":
        return None
    target = paths.data_dir / KEYSTORE_NAME
    source = Path(plan.keystore_source)
    if target.exists() and source.resolve() == target.resolve():
        return None
    before = target.read_bytes() if target.exists() else None
    private_dir(target.parent)
    write_atomically(target, source.read_bytes())
    os.chmod(target, 0o600)

    def undo() -> None:
        if before is None:
            target.unlink(missing_ok=True)
        else:
            write_atomically(target, before)

    return undo


@dataclass
class SetupResult:
    settings_file: Path
    registered: str  # what the central system answered; empty when not registered


def apply(
    plan: SetupPlan,
    paths: Paths,
    base: Settings,
    clock: Clock,
    probe: SetupProbe | None,
) -> SetupResult:
    """Check every step, then write (see the module's text)."""
    check_all(plan, paths, base, probe)
    paths.ensure()
    settings = new_settings(plan, paths, base)
    url = database_url(plan, paths)
    db = Database(url)
    undo: Callable[[], None] | None = None
    try:
        try:
            db.migrate()
        except CardVendError as exc:
            raise _fail(DATABASE, exc) from None
        admin = _admin(db, plan, settings, clock)
        undo = _import_keystore(plan, paths)
        registered = ""
        if plan.central_url.strip():
            registered = _register(plan, paths, settings, url, admin, clock, probe)
        with db.write() as session:
            audit.Actor(admin.operator_id, plan.counter_id, clock).record(
                session, AuditAction.COUNTER_SETUP, plan.counter_id, detail=plan.choices()
            )
        settings.save(paths.settings_file)
        os.chmod(paths.settings_file, 0o600)
    except BaseException:
        if undo is not None:
            undo()
        raise
    finally:
        db.dispose()
    log.info("counter set up: %s", plan.choices())
    return SetupResult(paths.settings_file, registered)


def _register(
    plan: SetupPlan,
    paths: Paths,
    settings: Settings,
    url: str,
    admin: auth.Principal,
    clock: Clock,
    probe: SetupProbe | None,
) -> str:
    from app.context import AppContext

    if probe is None:
        raise SetupError(CENTRAL, N_("registering is not available in this program"))
    # settings without a path: registering saves nothing; apply() writes them at the end
    ctx = AppContext(paths=paths, settings=settings, db_url_override=url, clock=clock)
    try:
        return probe.register(ctx, plan.central_url.strip(), plan.enrolment_key or None,
                              plan.enrolment_code or None, admin)  # fmt: skip
    except CardVendError as exc:
        raise _fail(CENTRAL, exc) from None
    finally:
        if "db" in ctx.__dict__:
            ctx.db.dispose()


def discard(paths: Paths) -> None:
    """Nothing to undo: until :func:`apply` the set-up writes nothing (kept for the wizard's
    cancel, which calls it to say so in the log)."""
    log.info("set-up cancelled; nothing was written under %s", paths.config_dir)
