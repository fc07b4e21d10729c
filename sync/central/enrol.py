"""Registering counters: who may take a counter id, and what it gets.

- A new counter id registers with the enrolment key (when the central system has one; without
  one any new counter may register) or with an enrolment code issued for that id.
- A counter id that is registered already registers again only
  - with its current token (``Authorization: Bearer``): a new token, the same office, the same
    receipt key;
  - with a one-time enrolment code the central administrator issued for that id
    (``cardvend central enrol``): a new token, the code's office, and a *new* receipt key (the
    old one is kept, so receipts printed before still check); the old token stops working, and
    the audit heads reported so far are set aside (a reinstalled counter starts an audit
    history of its own);
  - as a retry of its own last registration whose answer was lost (the same Idempotency-Key
    within :data:`REPLAY_WINDOW`): a new token, nothing else changes.
  Anything else is ``counter_id_taken`` (409): the shared enrolment key alone never takes an
  existing counter over, and the receipt key is never handed to anyone but the counter.
- Every registration is logged in ``central_enrolments`` with how it was allowed; every refused
  one in ``central_refusals``.

Enrolment codes are random (120 bits), shown once, kept as a hash, valid for a given number of
hours, used once; issuing a new code for a counter id withdraws its unused ones.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from sync import contract as c
from sync.central import models as m
from sync.central.base import Tx
from sync.central.base import clean
from sync.central.base import sha256_hex
from sync.central.rules import COUNTER_ID_TAKEN
from sync.central.rules import OFFICE_MISMATCH
from sync.central.rules import UNAUTHORIZED
from sync.central.rules import Refusal

TOKEN_BYTES = 32
CODE_BYTES = 15  # 24 base32 characters
REPLAY_WINDOW = dt.timedelta(minutes=15)
MAX_CODE_HOURS = 24 * 30
RESOURCE = "counters/register"


@dataclass(frozen=True)
class Credentials:
    """What a registration request brings besides its body (all from its headers)."""

    bearer: str | None = None  # Authorization: Bearer <token>
    enrolment_key: str | None = None  # X-Enrolment-Key
    enrolment_code: str | None = None  # X-Enrolment-Code
    request_key: str | None = None  # Idempotency-Key


def normalize_code(code: str) -> str:
    """An enrolment code as typed (any case, with or without dashes and spaces)."""
    return "".join(ch for ch in code.upper() if ch not in "- \t")


def code_hash(code: str) -> str:
    return sha256_hex("enrolment-code:" + normalize_code(code))


def new_code() -> str:
    text = base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def key_matches(configured: str | None, given: str | None) -> bool:
    """The enrolment key given matches the central system's (or it has none)."""
    if configured is None:
        return True
    return hmac.compare_digest(
        (given or "").encode("utf-8", "surrogateescape"), configured.encode("utf-8")
    )


def _request_hash(request_key: str | None) -> str | None:
    return None if not request_key else sha256_hex("registration:" + request_key)


def _code_row(conn: Connection, code: str | None, now: dt.datetime) -> tuple[str, str] | None:
    """(counter id, office) of a valid code: known, unused, not expired."""
    if not code or len(code) > 64:
        return None
    ec = m.enrolment_codes.c
    row = conn.execute(
        select(ec.counter_id, ec.office_code).where(
            ec.code_hash == code_hash(code), ec.used_at.is_(None), ec.expires_at > now
        )
    ).first()
    return None if row is None else (row.counter_id, row.office_code)


def _token_counter(conn: Connection, token: str | None) -> str | None:
    if not token or len(token) > 256:
        return None
    return conn.execute(
        select(m.counters.c.id).where(m.counters.c.token_hash == sha256_hex(token))
    ).scalar_one_or_none()


def _replaying(
    conn: Connection, counter_id: str | None, request_key: str | None, now: dt.datetime
) -> bool:
    """The request retries a registration made within the replay window (of this counter, or
    of any when ``counter_id`` is None: before the body is read)."""
    digest = _request_hash(request_key)
    if digest is None:
        return False
    e = m.enrolments.c
    query = select(e.request_key_hash).where(e.at >= now - REPLAY_WINDOW)
    if counter_id is None:
        return conn.execute(query.where(e.request_key_hash == digest).limit(1)).first() is not None
    last = conn.execute(
        query.where(e.counter_id == counter_id).order_by(e.id.desc()).limit(1)
    ).scalar_one_or_none()
    return last == digest


def admits(
    conn: Connection, creds: Credentials, configured_key: str | None, now: dt.datetime
) -> bool:
    """Whether a registration request brings any credential worth reading its body for."""
    return (
        key_matches(configured_key, creds.enrolment_key)
        or _token_counter(conn, creds.bearer) is not None
        or _code_row(conn, creds.enrolment_code, now) is not None
        or _replaying(conn, None, creds.request_key, now)
    )


def register(
    tx: Tx,
    req: c.RegisterRequest,
    creds: Credentials,
    configured_key: str | None,
    token: str,
) -> c.RegisterResponse | Refusal:
    """Register (or register again) the counter of ``req`` under the rules above.  A refusal is
    recorded in ``central_refusals`` and returned (the transaction commits it)."""
    conn, now = tx.conn, tx.now
    co = m.counters.c
    row = conn.execute(
        select(co.office_code, co.receipt_key, co.revoked_at).where(co.id == req.counter_id)
    ).first()
    code = _code_row(conn, creds.enrolment_code, now)
    if code is not None and code[0] != req.counter_id:
        code = None  # issued for another counter
    if row is not None and row.revoked_at is not None and code is None:
        # revoked by the administrator: its token, the enrolment key, nothing but a new code
        return _refuse(
            tx,
            req,
            Refusal(
                UNAUTHORIZED,
                f"counter {req.counter_id} was revoked: it registers again only with a new "
                "enrolment code from the central administrator",
            ),
        )
    replay = row is not None and _replaying(conn, req.counter_id, creds.request_key, now)
    if creds.enrolment_code and code is None and not replay:
        # a code given and wrong: never something else
        return _refuse(
            tx,
            req,
            Refusal(
                UNAUTHORIZED,
                f"the enrolment code is not valid for counter {req.counter_id}: unknown, used, "
                "expired or issued for another counter",
            ),
        )
    if row is None:
        decided = _first_registration(req, creds, code, configured_key)
    else:
        decided = _registration_again(conn, req, creds, code, row, replay)
    if isinstance(decided, Refusal):
        return _refuse(tx, req, decided)
    how, receipt_key = decided
    if how == "code":
        receipt_key = _new_receipt_key(conn, req.counter_id, receipt_key, now)
    values = {
        "office_code": req.office_code,
        "name": clean(req.name) or "",
        "token_hash": sha256_hex(token),
        "receipt_key": receipt_key,
        "registered_at": now,
        "revoked_at": None,
    }
    if row is None:
        conn.execute(insert(m.counters).values(id=req.counter_id, **values))
    else:
        conn.execute(update(m.counters).where(co.id == req.counter_id).values(**values))
    _record_enrolment(conn, req, creds, how, now)
    return c.RegisterResponse(
        counter_id=req.counter_id,
        office_code=req.office_code,
        token=token,
        server_time=now,
        receipt_key=receipt_key,
    )


def _first_registration(
    req: c.RegisterRequest,
    creds: Credentials,
    code: tuple[str, str] | None,
    configured_key: str | None,
) -> tuple[str, str] | Refusal:
    """How a new counter id registers (by code, by the enrolment key, or open), with a fresh
    receipt key."""
    if code is not None:
        if code[1] != req.office_code:
            return _office_refusal(req, code[1], "its enrolment code")
        return "code", ""
    if key_matches(configured_key, creds.enrolment_key):
        return ("open" if configured_key is None else "key"), secrets.token_hex(32)
    return Refusal(UNAUTHORIZED, "the enrolment key is missing or wrong")


def _registration_again(
    conn: Connection,
    req: c.RegisterRequest,
    creds: Credentials,
    code: tuple[str, str] | None,
    row: Any,
    replay: bool,
) -> tuple[str, str] | Refusal:
    """How a counter id that is held registers again: a replay of its own request, its
    current token, or a one-time enrolment code; nothing else takes it over."""
    if replay or _token_counter(conn, creds.bearer) == req.counter_id:
        if req.office_code != row.office_code:
            return _office_refusal(req, row.office_code, "the counter")
        return ("replay" if replay else "token"), str(row.receipt_key)
    if code is not None:
        if code[1] != req.office_code:
            return _office_refusal(req, code[1], "its enrolment code")
        return "code", str(row.receipt_key)
    return Refusal(
        COUNTER_ID_TAKEN,
        f"counter id {req.counter_id} is registered already: it registers again only with its "
        "current token, or with a one-time enrolment code from the central system's "
        "administrator",
    )


def _new_receipt_key(conn: Connection, counter_id: str, old_key: str, now: dt.datetime) -> str:
    """A registration by enrolment code: the old receipt key (if any) and audit heads are
    retired, a new receipt key made."""
    if old_key:
        conn.execute(
            insert(m.retired_receipt_keys).values(
                counter_id=counter_id, receipt_key=old_key, retired_at=now
            )
        )
        _retire_audit_heads(conn, counter_id, now)
    return secrets.token_hex(32)


def _record_enrolment(
    conn: Connection, req: c.RegisterRequest, creds: Credentials, how: str, now: dt.datetime
) -> None:
    if how == "code":
        ec = m.enrolment_codes.c
        conn.execute(
            update(m.enrolment_codes)
            .where(ec.code_hash == code_hash(creds.enrolment_code or ""))
            .values(used_at=now)
        )
    conn.execute(
        insert(m.enrolments).values(
            counter_id=req.counter_id,
            office_code=req.office_code,
            how=how,
            request_key_hash=_request_hash(creds.request_key),
            at=now,
        )
    )


def _retire_audit_heads(conn: Connection, counter_id: str, now: dt.datetime) -> None:
    """The install the code enrols starts an audit history of its own; the heads reported
    before are kept aside."""
    ah = m.audit_heads.c
    old = conn.execute(
        select(ah.seq, ah.hash, ah.at, ah.received_at).where(ah.counter_id == counter_id)
    ).mappings()
    rows = [{**row, "counter_id": counter_id, "retired_at": now} for row in old]
    if rows:
        conn.execute(insert(m.retired_audit_heads), rows)
        conn.execute(delete(m.audit_heads).where(ah.counter_id == counter_id))


def _office_refusal(req: c.RegisterRequest, office: str, whose: str) -> Refusal:
    return Refusal(
        OFFICE_MISMATCH,
        f"counter {req.counter_id} asks for office {req.office_code!r}, but {whose} is of "
        f"office {office!r} (the central administrator's enrolment code for the new office "
        "moves a counter)",
    )


def _refuse(tx: Tx, req: c.RegisterRequest, refusal: Refusal) -> Refusal:
    tx.conn.execute(
        insert(m.refusals).values(
            counter_id=req.counter_id,
            resource=RESOURCE,
            record_id=req.counter_id,
            code=refusal.code,
            message=refusal.message[:300],
            at=tx.now,
        )
    )
    return refusal


def issue_code(tx: Tx, counter_id: str, office_code: str, hours: float) -> tuple[str, dt.datetime]:
    """A new one-time enrolment code for ``counter_id`` in ``office_code`` (its unused codes are
    withdrawn); answers the code (shown once) and when it expires."""
    c.RegisterRequest(counter_id=counter_id, office_code=office_code)  # the same formats
    if not 0 < hours <= MAX_CODE_HOURS:
        raise ValueError(f"an enrolment code is valid for up to {MAX_CODE_HOURS} hours")
    offices = set(tx.conn.scalars(select(m.offices.c.code)))
    if offices and office_code not in offices:  # no offices kept yet: an older database
        raise ValueError(
            f"the station has no office {office_code}: add it first "
            "(cardvend central offices add CODE --name N --province P --city C)"
        )
    ec = m.enrolment_codes.c
    tx.conn.execute(
        delete(m.enrolment_codes).where(ec.counter_id == counter_id, ec.used_at.is_(None))
    )
    code = new_code()
    expires = tx.now + dt.timedelta(hours=hours)
    tx.conn.execute(
        insert(m.enrolment_codes).values(
            code_hash=code_hash(code),
            counter_id=counter_id,
            office_code=office_code,
            issued_at=tx.now,
            expires_at=expires,
            used_at=None,
        )
    )
    return code, expires


def receipt_keys(conn: Connection, counter_id: str) -> list[bytes]:
    """The counter's receipt key and the ones it held before, newest first."""
    current = conn.execute(
        select(m.counters.c.receipt_key).where(m.counters.c.id == counter_id)
    ).scalar_one_or_none()
    rk = m.retired_receipt_keys.c
    older = conn.scalars(
        select(rk.receipt_key).where(rk.counter_id == counter_id).order_by(rk.id.desc())
    ).all()
    return [bytes.fromhex(k) for k in ([current] if current else []) + list(older)]


def new_token(token: str | None = None) -> str:
    if token is None:
        return secrets.token_urlsafe(TOKEN_BYTES)
    if not 32 <= len(token) <= 128:
        raise ValueError("a token has 32 to 128 characters")
    return token
