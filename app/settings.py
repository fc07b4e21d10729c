"""The typed, declarative settings registry.

Each setting is a :class:`ConfigVar` with a key, a type, a default and a description; the file
(``settings.json`` in the config directory) holds only what differs from the defaults plus a
``schema_version``.  Older files are upgraded step by step by :data:`UPGRADES` when loaded.
Secrets never live here (the keystore holds keys, the database holds password hashes).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Generic
from typing import TypeVar
from typing import cast

from app.domain import ids
from app.errors import ValidationError
from app.fileio import write_atomically
from app.i18n import N_

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
T = TypeVar("T")

REGISTRY: dict[str, ConfigVar[Any]] = {}


@dataclass(frozen=True)
class ConfigVar(Generic[T]):
    key: str
    type: type
    default: T
    description: str
    env: str | None = None
    choices: tuple[Any, ...] | None = None
    saved: bool = True  # False: decided at run time, never written to the file
    id_format: ids.IdFormat | None = None  # the value is an id of this kind

    def __post_init__(self) -> None:
        if self.key in REGISTRY:
            raise ValueError(f"setting {self.key} declared twice")
        REGISTRY[self.key] = self

    def value(self, settings: Settings) -> T:
        """This setting's value in ``settings``, typed."""
        return settings.value(self)

    def coerce(self, value: Any) -> T:
        if value is None and self.default is None:
            return self.default
        ok = isinstance(value, self.type) and not (self.type is int and isinstance(value, bool))
        if not ok:
            raise ValidationError(
                N_("setting {key} must be a {type}, got {value!r}"),
                key=self.key,
                type=self.type.__name__,
                value=value,
            )
        if self.id_format is not None and not self.id_format.matches(value):
            raise ValidationError(
                N_("setting {key} {value!r} is not valid: {rule}"),
                key=self.key,
                value=value,
                rule=self.id_format.rule,
            )
        if self.choices is not None and value not in self.choices:
            raise ValidationError(
                N_("setting {key} must be one of {choices}, got {value!r}"),
                key=self.key,
                choices=", ".join(map(str, self.choices)),
                value=value,
            )
        return value  # type: ignore[no-any-return]


DB_URL = ConfigVar[str | None](
    "db_url",
    str,
    None,
    "Database URL; empty means the SQLite file in the data directory",
    env="CARDVEND_DB",
)
COUNTER_ID = ConfigVar(
    "counter_id", str, "C01", "This counter's id within its office", id_format=ids.COUNTER_ID
)
OFFICE_CODE = ConfigVar(
    "office_code",
    str,
    "DEMO",
    "The office (business hall) of this counter",
    id_format=ids.OFFICE_CODE,
)
LANGUAGE = ConfigVar[str | None](
    "language",
    str,
    None,
    "Language of the interface: zh_CN or en; empty follows the system",
    choices=("zh_CN", "en"),
)
LOG_LEVEL = ConfigVar(
    "log_level",
    str,
    "INFO",
    "Log level of the log file",
    choices=("DEBUG", "INFO", "WARNING", "ERROR"),
)
DEMO_MODE = ConfigVar(
    "demo_mode",
    bool,
    True,
    "Load demo data into an empty database and use emulated cards when no reader is configured",
)


CARD_READER = ConfigVar(
    "card_reader",
    str,
    "",
    "PC/SC reader of the user-card slot; empty means emulated cards (demo and training)",
)
KEY_PROVIDER = ConfigVar(
    "key_provider",
    str,
    "software",
    "Where the master keys are: software (encrypted keystore file) or psam (a PSAM card)",
    choices=("software", "psam"),
)
KEYSTORE_FILE = ConfigVar(
    "keystore_file", str, "", "Keystore file; empty means keystore.json in the data directory"
)
PSAM_READER = ConfigVar(
    "psam_reader", str, "Virtual PCD 00 01", "PC/SC reader holding the PSAM card"
)
UTILITY_CODE = ConfigVar(
    "utility_code",
    str,
    "100001",
    "This utility's 6-digit code; cards of another are foreign",
    id_format=ids.UTILITY_CODE,
)


LOCKOUT_ATTEMPTS = ConfigVar(
    "lockout_attempts", int, 5, "Failed logins in a row that lock an operator out"
)
LOCKOUT_MINUTES = ConfigVar("lockout_minutes", int, 30, "How long a lockout lasts, in minutes")
IDLE_MINUTES = ConfigVar(
    "idle_minutes", int, 15, "Minutes without activity after which the password is asked again"
)
MIN_PASSWORD_LENGTH = ConfigVar("min_password_length", int, 8, "Shortest password accepted")


REPLACEMENT_FEE = ConfigVar(
    "replacement_fee_fen", int, 2000, "Fee for a replacement card, in fen (20.00 yuan)"
)
EXCHANGE_FEE = ConfigVar(
    "exchange_fee_fen",
    int,
    1000,
    "Fee for exchanging a damaged or faulty card the customer brings, in fen (10.00 yuan)",
)
CLOSE_REFUND_MODE = ConfigVar(
    "close_refund_mode",
    str,
    "refund",
    "What a closed account's remaining credit becomes: refund (cash handed back on the shift) "
    "or credit_note (kept as a credit note)",
    choices=("refund", "credit_note"),
)
REVERSAL_WINDOW = ConfigVar(
    "reversal_window",
    str,
    "shift",
    "A sale can be reversed within the same shift or day",
    choices=("shift", "day"),
)
OFFLINE_MAX_HOURS = ConfigVar(
    "offline_max_hours",
    int,
    72,
    "Longest time unsynced sales may wait before selling stops (since the last sync)",
)
OFFLINE_MAX_AMOUNT = ConfigVar(
    "offline_max_amount_fen", int, 10_000_000, "Largest unsynced amount, in fen (100,000 yuan)"
)
OFFLINE_MAX_SALES = ConfigVar("offline_max_sales", int, 1000, "Most unsynced sales")
JOB_CARD_OVERDUE_DAYS = ConfigVar(
    "job_card_overdue_days",
    int,
    7,
    "Days a programmed management card may stay out before its job is flagged overdue",
)

CENTRAL_URL = ConfigVar(
    "central_url",
    str,
    "",
    "Base URL of the central marketing system (https://...); empty: this counter is not "
    "registered. The counter's token is kept in central.token in the data directory, not here",
    env="CARDVEND_CENTRAL_URL",
)
CENTRAL_CA_BUNDLE = ConfigVar(
    "central_ca_bundle", str, "", "CA bundle file that verifies the central system's certificate"
)
SYNC_INTERVAL = ConfigVar("sync_interval_s", int, 60, "Seconds between background sync rounds")
SYNC_TIMEOUT = ConfigVar("sync_timeout_s", int, 30, "Seconds to wait for the central system")
SYNC_BATCH = ConfigVar("sync_batch", int, 500, "Records sent in one request (1 to 1000)")

TRAINING_MODE = ConfigVar(
    "training_mode",
    bool,
    False,
    "Training: sales are marked as training on screen and receipts and never sent to the "
    "central system (the window turns it on when it runs on emulated cards)",
    saved=False,
)
TIME_ZONE = ConfigVar(
    "time_zone", str, "Asia/Shanghai", "Time zone of the office: receipts, reports, business days"
)
PRINTER = ConfigVar(
    "printer",
    str,
    "pdf",
    "Receipt printer: pdf (files in the receipts folder), system (CUPS lp / Windows default), "
    "escpos (thermal printer on a serial port), none",
    choices=("pdf", "system", "escpos", "none"),
)
PRINTER_NAME = ConfigVar("printer_name", str, "", "System printer (CUPS queue); empty: default")
METER_PORT = ConfigVar("meter_port", str, "", "Serial port of the RS485 meter bus (DL/T 645)")
METER_BAUD = ConfigVar("meter_baud", int, 2400, "Baud rate of the RS485 meter bus")
METER_PARITY = ConfigVar(
    "meter_parity", str, "E", "Parity of the RS485 meter bus", choices=("N", "E", "O")
)
METER_TIMEOUT_MS = ConfigVar(
    "meter_timeout_ms", int, 1000, "How long to wait for a meter's answer to begin, in ms"
)
METER_RETRIES = ConfigVar("meter_retries", int, 2, "How often a meter question is asked again")
METER_PASSWORD = ConfigVar(
    "meter_password", str, "000000", "The meters' password for relay commands (6 hex digits)"
)
METER_PASSWORD_LEVEL = ConfigVar(
    "meter_password_level", int, 2, "The level of the meters' password (0 is the highest)"
)
PRINTER_PORT = ConfigVar("printer_port", str, "", "Serial port of the ESC/POS printer")
PRINTER_BAUD = ConfigVar("printer_baud", int, 9600, "Baud rate of the ESC/POS printer")
RECEIPT_SIZE = ConfigVar(
    "receipt_size",
    str,
    "80",
    "Receipt layout: 80 or 58 (mm rolls), a5 or a4 (invoice)",
    choices=("80", "58", "a5", "a4"),
)
RECEIPT_LANGUAGE = ConfigVar(
    "receipt_language", str, "zh_CN", "Language of receipts", choices=("zh_CN", "en")
)
RECEIPT_DIR = ConfigVar(
    "receipt_dir", str, "", "Folder of the pdf printer; empty: receipts/ in the data directory"
)

BACKUP_DIR = ConfigVar(
    "backup_dir", str, "", "Folder of scheduled backups; empty: backups/ in the data directory"
)
BACKUP_INTERVAL_HOURS = ConfigVar(
    "backup_interval_hours", int, 24, "Hours between scheduled backups; 0 turns them off"
)
BACKUP_KEEP = ConfigVar("backup_keep", int, 14, "How many scheduled backups to keep")


def _upgrade_0_to_1(data: dict[str, Any]) -> dict[str, Any]:
    # version 0 files (no schema_version) called the database setting "database"
    if "database" in data and "db_url" not in data:
        data["db_url"] = data.pop("database")
    return data


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _upgrade_0_to_1}


class Settings:
    def __init__(self, values: dict[str, Any] | None = None, path: Path | None = None) -> None:
        self.path = path
        self._values: dict[str, Any] = {}
        for key, value in (values or {}).items():
            self.set(key, value)

    @classmethod
    def load(cls, path: Path) -> Settings:
        """Load a settings file; a missing file gives the defaults."""
        if not path.exists():
            return cls(path=path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValidationError(
                N_("the settings file {path} cannot be read: {detail}"), path=str(path), detail=exc
            ) from exc
        if not isinstance(data, dict):
            raise ValidationError(
                N_("the settings file {path} is not a JSON object"), path=str(path)
            )
        version = data.pop("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValidationError(
                N_("the settings file {path} was written by a newer CardVend (schema {version})"),
                path=str(path),
                version=version,
            )
        while version < SCHEMA_VERSION:
            data = UPGRADES[version](data)
            version += 1
        unknown = [k for k in data if k not in REGISTRY]
        for key in unknown:
            log.warning("ignoring unknown setting %s in %s", key, path)
            data.pop(key)
        return cls(data, path=path)

    def get(self, key: str) -> Any:
        var = REGISTRY[key]
        if var.env and os.environ.get(var.env):
            return os.environ[var.env]
        return self._values.get(key, var.default)

    def value(self, var: ConfigVar[T]) -> T:
        """The typed value of ``var``: its environment variable (for the string settings that
        have one), else what the settings hold, else its default. Prefer this to :meth:`get`."""
        return cast(T, self.get(var.key))

    def is_set(self, key: str) -> bool:
        """Whether the settings hold ``key`` themselves (not its default)."""
        return key in self._values

    def set(self, key: str, value: Any) -> None:
        if key not in REGISTRY:
            raise ValidationError(N_("there is no setting called {key}"), key=key)
        self._values[key] = REGISTRY[key].coerce(value)

    def is_configured(self) -> bool:
        return self.path is not None and self.path.exists()

    def save(self, path: Path | None = None) -> None:
        """Write atomically (temporary file + rename) so a crash never leaves half a file."""
        target = path or self.path
        if target is None:
            raise ValueError("no settings path")
        target.parent.mkdir(parents=True, exist_ok=True)
        kept = {k: v for k, v in self._values.items() if REGISTRY[k].saved}
        data = {"schema_version": SCHEMA_VERSION, **kept}
        text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True)
        write_atomically(target, text.encode("utf-8"))
