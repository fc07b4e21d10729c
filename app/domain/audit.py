"""The audit log's hash chain.

Each row's hash is ``SHA-256(prev_hash + "\\n" + canonical(row))`` where ``canonical`` is the
compact JSON array ``[seq, at, operator_id, counter_id, action, target, result, detail]`` (``at``
in UTC with microseconds, ``detail`` the stored JSON text).  The first row's ``prev_hash`` is the
genesis hash of 64 zeros.  Editing a row changes its hash; deleting, inserting or swapping rows
breaks ``seq`` continuity or the link to the previous hash, so :func:`verify_rows` names the first
bad row.  A whole tail rewritten with recomputed hashes is caught only against a hash kept
elsewhere: the latest hash goes to the central system with every sync.

**Sale seals.**  The chain protects the log, not the ledger it describes: an ``UPDATE sales SET
amount = 1`` leaves every audit row intact.  So every audit row that records a change of a sale
(its creation, each change of state, a reversal; the actions :data:`SEAL_ACTIONS`) carries in its
detail ``"sale_seal"``: :func:`sale_seal` of the sale's fields :data:`SEALED_FIELDS` as they are
after that change.  The rule: *the latest sealing row of a sale holds the seal of the sale as it
stands*.  Fields that may still change legitimately without an audited change of state (the
note, ``updated_at``, the card a rewrite put it on and the rewrite count, the remote-payment
status and the review flag that sync sets, the meter balance shown on the receipt) are not
sealed; every field that is money, identity or state is.  ``audit verify`` checks every sale
against its latest seal, and every seal against a sale that still exists.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.i18n import N_

GENESIS = "0" * 64
# json.dumps(..., ensure_ascii=False, separators=(",", ":")) without building an encoder per row
_BODY = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# What :func:`verify_rows` found wrong (English message ids, translated where a person reads them)
SEQUENCE_BROKEN = N_("sequence gap or rows out of order")
LINK_BROKEN = N_("does not follow the previous row")
CONTENT_CHANGED = N_("content changed after it was written")
TAIL_MISSING = N_("rows missing at the end of the log")
BEYOND_HEAD = N_("row after the recorded end of the log")
HEAD_MISMATCH = N_("last row does not match the recorded end of the log")
HEAD_MISSING = N_("the record of the end of the log is missing")
SALE_CHANGED = N_("its money, state or identity differs from its audit record")
SALE_UNSEALED = N_("it has no audit record")
SALE_DELETED = N_("it was deleted from the ledger")

# the fields of a sale that its seal covers, in this order (see the module docstring)
SEALED_FIELDS = (
    "id",
    "kind",
    "customer_id",
    "purchase_count",
    "amount",
    "arrears",
    "fees",
    "credit",
    "energy_wh",
    "tariff_version_id",
    "cash_received",
    "operator_id",
    "counter_id",
    "shift_id",
    "created_at",
    "training",
    "state",
)


class AuditAction(enum.StrEnum):
    """Every action the audit log records. The values are the strings stored in sealed rows
    (each row's hash covers its action, and the central system holds a copy of the chain), so
    they stay as first written; the member names follow one scheme, SUBJECT_VERB."""

    ACCOUNT_CLOSE = "account_close"
    ACCOUNT_PAUSE = "account_pause"
    ACCOUNT_RESUME = "account_resume"
    APPROVAL_APPROVE = "approval.approve"
    APPROVAL_EXPIRE = "approval.expire"
    APPROVAL_REJECT = "approval.reject"
    APPROVAL_REQUEST = "approval.request"
    APPROVAL_RULE = "approval.rule"
    APPROVAL_USE = "approval.use"
    APPROVAL_WITHDRAW = "approval.withdraw"
    AUDIT_DIVERGED = "audit_diverged"
    AUDIT_EXPORT = "audit_export"
    AUDIT_VERIFY = "audit_verify"
    BACKUP_RESTORE = "backup_restore"
    CARD_ANOMALY = "card_anomaly"
    CARD_BLANK = "card_blank"
    CARD_ERASE = "card_erase"
    CARD_ISSUE = "card_issue"
    COUNTER_REGISTER = "counter_register"
    COUNTER_SETUP = "counter_setup"  # the first-run set-up (app/services/setup.py)
    CUSTOMERS_IMPORT = "customers_import"
    DEMO_LOAD = "demo_load"
    EXCHANGE_CARD = "exchange_card"
    LOGIN = "login"
    LOGOUT = "logout"
    METER_CHANGE = "meter_change"
    OFFLINE_LIMIT = "offline_limit"
    OFFLINE_OVERRIDE = "offline_override"
    OPEN_ACCOUNT = "open_account"
    OPERATOR_ADD = "operator_add"
    OPERATOR_DISABLE = "operator_disable"
    PASSWORD_CHANGE = "password_change"
    PASSWORD_RESET = "password_reset"
    RECEIPT_REPRINT = "receipt_reprint"
    REMOTE_PAYMENT = "remote_payment"
    REPLACE_CARD = "replace_card"
    REPLACE_CARD_RESUMED = "replace_card_resumed"
    REVERSAL_BEGIN = "reversal_begin"
    REVERSAL_COMPLETE = "reversal_complete"
    REVERSAL_FAILED = "reversal_failed"
    REWRITE = "rewrite"
    SALE_BEGIN = "sale_begin"
    SALE_COMPLETE = "sale_complete"
    SALE_FAILED = "sale_failed"
    SALE_IN_DOUBT = "sale_in_doubt"
    SALE_PENDING = "sale_pending"
    SALE_REVERSED = "sale_reversed"
    SALE_REVIEW = "sale_review"
    SALE_SEALED = "sale_sealed"
    SETTINGS_CHANGE = "settings_change"
    SHIFT_CLOSE = "shift_close"
    SHIFT_OPEN = "shift_open"
    SYNC_REFUSED = "sync_refused"
    SYNC_RETRY = "sync_retry"


# audit actions that record a change of a sale and carry its seal (target: the sale id)
SEAL_ACTIONS = (
    AuditAction.SALE_BEGIN,
    AuditAction.SALE_COMPLETE,
    AuditAction.SALE_FAILED,
    AuditAction.SALE_IN_DOUBT,
    AuditAction.SALE_PENDING,
    AuditAction.SALE_REVERSED,
    AuditAction.REVERSAL_COMPLETE,
    AuditAction.REMOTE_PAYMENT,
    AuditAction.SALE_SEALED,  # a sale made before sales were sealed, sealed by the upgrade
)
SEAL_KEY = "sale_seal"


def _seal_value(value: Any) -> Any:
    """The canonical form of one sealed value: what the application writes keeps its type
    (a boolean as 0/1, a time as UTC ISO text); anything else becomes text that no seal holds."""
    if value is None or type(value) in (int, str):
        return value
    if type(value) is bool:
        return int(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # SQLite keeps UTC without an offset
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return f"{type(value).__name__}:{value!r}"


def sale_seal(values: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the sale's :data:`SEALED_FIELDS`, ``values`` a mapping from field name
    to value (a row or the ORM object's attributes)."""
    return seal_of_values([values[name] for name in SEALED_FIELDS])


def seal_of_values(values: Sequence[Any]) -> str:
    """:func:`sale_seal` of the values of :data:`SEALED_FIELDS` in their order: the compact JSON
    array of their canonical forms, hashed."""
    canonical = [
        v if v is None or type(v) is int or type(v) is str else _seal_value(v) for v in values
    ]
    return hashlib.sha256(_BODY.encode(canonical).encode()).hexdigest()


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: dt.datetime
    operator_id: str | None
    counter_id: str
    action: str
    target: str
    result: str
    detail: str  # canonical JSON text
    prev_hash: str
    hash: str


def canonical_detail(detail: Mapping[str, Any] | None) -> str:
    return json.dumps(
        dict(detail or {}), ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str
    )


def row_hash(
    prev_hash: str,
    seq: int,
    at: dt.datetime,
    operator_id: str | None,
    counter_id: str,
    action: str,
    target: str,
    result: str,
    detail: str,
) -> str:
    stamp = at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    body = _BODY.encode([seq, stamp, operator_id, counter_id, action, target, result, detail])
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def hash_of(row: AuditRow) -> str:
    return row_hash(
        row.prev_hash,
        row.seq,
        row.at,
        row.operator_id,
        row.counter_id,
        row.action,
        row.target,
        row.result,
        row.detail,
    )


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int  # rows checked
    last_seq: int
    last_hash: str
    first_bad_seq: int | None = None  # the seq found where the first bad row stands
    position: int | None = None  # 0-based index of the first bad row in the order read
    problem: str = ""  # English id of what is wrong there
    sale_id: str | None = None  # the sale that differs from its seal (first_bad_seq: the seal)

    def to_json(self) -> dict[str, Any]:
        return {
            "sale_id": self.sale_id,
            "ok": self.ok,
            "rows": self.rows,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "first_bad_seq": self.first_bad_seq,
            "position": self.position,
            "problem": self.problem,
        }


def verify_rows(
    rows: Iterable[AuditRow],
    *,
    start_seq: int = 0,
    start_hash: str = GENESIS,
    head: tuple[int, str] | None = None,
) -> VerifyResult:
    """Check a run of rows in ``seq`` order that follows ``(start_seq, start_hash)``.

    ``head``: the recorded last (seq, hash); a tail deleted after the last row is caught there,
    and so are a row appended beyond it and a last row rewritten with a recomputed hash.
    Stops at the first bad row."""
    expect_seq, prev = start_seq + 1, start_hash
    count = 0
    for i, row in enumerate(rows):
        count += 1
        problem = ""
        if row.seq != expect_seq:
            problem = SEQUENCE_BROKEN
        elif row.prev_hash != prev:
            problem = LINK_BROKEN
        elif hash_of(row) != row.hash:
            problem = CONTENT_CHANGED
        elif head is not None and row.seq > head[0]:
            problem = BEYOND_HEAD
        if problem:
            return VerifyResult(False, count, expect_seq - 1, prev, row.seq, i, problem)
        expect_seq, prev = row.seq + 1, row.hash
    last_seq = expect_seq - 1
    if head is not None and last_seq < head[0]:
        return VerifyResult(False, count, last_seq, prev, head[0], count, TAIL_MISSING)
    if head is not None and head != (last_seq, prev):  # same seq, another hash
        return VerifyResult(
            False, count, last_seq, prev, last_seq, max(count - 1, 0), HEAD_MISMATCH
        )
    return VerifyResult(True, count, last_seq, prev)
