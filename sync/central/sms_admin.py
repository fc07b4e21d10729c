"""The station administrator's side of the SMS notices: a customer's language and opt-out
(``central_sms_prefs``), and the notices with their delivery status.

Preferences come two ways: the archive feed (:meth:`CentralChanges.add_customers` takes optional
``sms_language`` and ``sms_opted_out`` on a new customer's row, :func:`prefs_from_archive`) and
``cardvend central sms prefs CUSTOMER_NO [--language zh_CN|en] [--opt-out|--opt-in]``
(:func:`set_prefs`), which changes them afterwards.  A customer without a row reads Chinese and
gets notices.  The counters' contract does not carry them: only the station sends SMS.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import Final

from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection

from sync.central import models as m
from sync.central.base import StoreBase
from sync.central.base import chunks
from sync.central.sms import DEFAULT_LANGUAGE
from sync.central.sms import STATUSES

LANGUAGES: Final = ("zh_CN", "en")
LIST_LIMIT: Final = 100


def _language(value: str) -> str:
    if value not in LANGUAGES:
        raise ValueError(f"an SMS language is one of {', '.join(LANGUAGES)}, not {value!r}")
    return value


def write_prefs(
    conn: Connection, customer_no: str, *, language: str | None, opted_out: bool | None
) -> dict[str, Any]:
    """Set what is given of a customer's preferences (the rest kept, or the defaults)."""
    pr = m.sms_prefs.c
    row = conn.execute(
        select(pr.language, pr.opted_out).where(pr.customer_no == customer_no)
    ).first()
    now = {
        "language": _language(language) if language else row[0] if row else DEFAULT_LANGUAGE,
        "opted_out": bool(opted_out if opted_out is not None else row[1] if row else False),
    }
    if row is None:
        conn.execute(insert(m.sms_prefs).values(customer_no=customer_no, **now))
    else:
        conn.execute(update(m.sms_prefs).where(pr.customer_no == customer_no).values(**now))
    return {"customer_no": customer_no, **now}


def set_prefs(
    store: StoreBase,
    customer_no: str,
    *,
    language: str | None = None,
    opted_out: bool | None = None,
) -> dict[str, Any] | None:
    """The administrator sets a customer's SMS language and/or opt-out; answers the
    preferences now, or None when the archive holds no such customer."""
    cu = m.customers.c
    with store.begin() as conn:
        known = conn.execute(select(cu.customer_no).where(cu.customer_no == customer_no)).first()
        if known is None:
            return None
        return write_prefs(conn, customer_no, language=language, opted_out=opted_out)


def prefs_from_archive(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
    """The preferences the archive feed gives for new customers (rows with ``sms_language``
    and/or ``sms_opted_out``); answers how many customers got a row."""
    wanted = [
        {
            "customer_no": r["customer_no"],
            "language": _language(str(r.get("sms_language") or DEFAULT_LANGUAGE)),
            "opted_out": bool(r.get("sms_opted_out", False)),
        }
        for r in rows
        if r.get("sms_language") is not None or r.get("sms_opted_out") is not None
    ]
    for part in chunks(wanted, 5000):
        conn.execute(insert(m.sms_prefs), list(part))
    return len(wanted)


def prefs(store: StoreBase, customer_no: str) -> dict[str, Any] | None:
    """A customer's preferences (the defaults when none were set); None: no such customer."""
    pr, cu = m.sms_prefs.c, m.customers.c
    with store.engine.connect() as conn:
        if (
            conn.execute(select(cu.customer_no).where(cu.customer_no == customer_no)).first()
            is None
        ):
            return None
        row = conn.execute(
            select(pr.language, pr.opted_out).where(pr.customer_no == customer_no)
        ).first()
    language, opted_out = row if row else (DEFAULT_LANGUAGE, False)
    return {"customer_no": customer_no, "language": language, "opted_out": bool(opted_out)}


def list_notices(
    store: StoreBase,
    *,
    customer_no: str | None = None,
    status: str | None = None,
    limit: int = LIST_LIMIT,
) -> list[dict[str, Any]]:
    """The latest notices (newest first), with status, attempts, last error and times."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"an SMS status is one of {', '.join(STATUSES)}, not {status!r}")
    sm = m.sms_outbox.c
    query = select(
        sm.id, sm.customer_no, sm.phone, sm.kind, sm.cause, sm.language, sm.text, sm.status,
        sm.attempts, sm.last_error, sm.created_at, sm.next_at, sm.sent_at, sm.gateway_id,
    ).order_by(sm.id.desc()).limit(max(1, limit))  # fmt: skip
    if customer_no is not None:
        query = query.where(sm.customer_no == customer_no)
    if status is not None:
        query = query.where(sm.status == status)
    with store.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    times = ("created_at", "next_at", "sent_at")
    return [
        {k: (v.isoformat() if k in times and v is not None else v) for k, v in r.items()}
        for r in rows
    ]


__all__ = ["LANGUAGES", "list_notices", "prefs", "prefs_from_archive", "set_prefs", "write_prefs"]
