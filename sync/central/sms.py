"""SMS notices of the charge-control loop (seed 3.6, 3.8, 3.9): an outbox and a gateway.

A notice is a row of ``central_sms``, unique by (kind, cause), so it is queued once whatever how
often the loop runs or crashes:

* ``alarm1`` / ``alarm2``: an alarm command the loop decided (cause: the command's id); not for
  the alarm that goes with a close permit (the close notice says it);
* ``trip``: a trip command (cause: its id);
* ``close``: a close permit the meter took after a payment (cause: the command's id, once done);
* ``arrears``: a reminder of overdue arrears (:mod:`sync.central.arrears`; cause: the reminder).

Texts are rendered when queued in the customer's language (``central_sms_prefs``; Chinese when
not set) with the customer's name and balance in yuan.  A customer without a phone number or who
opted out gets a row with status ``unsent`` (so the cause is answered once, and it shows why).

:class:`Notices` sends due notices through an :class:`SmsGateway` (:class:`HttpSmsGateway`:
a JSON POST to the configured URL); a failure is retried with backoff (:data:`BACKOFF_S`), and
after :data:`MAX_ATTEMPTS` it is ``failed``.  Without a gateway (no ``--sms-url``) notices stay
queued; a notice not sent within :data:`EXPIRE` is ``failed`` (expired) rather than sent late.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

import requests
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection

from app.i18n import N_, normalize_language, translate
from app.money import format_yuan
from sync.central import models as m
from sync.central.base import StoreBase, chunks

log = logging.getLogger(__name__)

PENDING, SENT, FAILED, UNSENT = "pending", "sent", "failed", "unsent"
MAX_ATTEMPTS: Final = 6
BACKOFF_S: Final = (10, 30, 90, 300, 900)
EXPIRE: Final = dt.timedelta(days=1)  # an SMS later than this is no news: not sent at all
RECENT: Final = dt.timedelta(days=1)  # commands older than this get no notice (a new gateway)
BATCH: Final = 200
DEFAULT_LANGUAGE: Final = "zh_CN"

TEMPLATES: Final[Mapping[str, str]] = {
    "alarm1": N_(
        "Dear {name}, your electricity balance is {balance} yuan, at the alarm level. "
        "Please pay soon."
    ),
    "alarm2": N_(
        "Dear {name}, your electricity balance is {balance} yuan, close to cut-off. "
        "Please pay now to keep your supply."
    ),
    "trip": N_(
        "Dear {name}, your electricity balance is {balance} yuan and your supply has been cut "
        "off. It is restored soon after you pay."
    ),
    "close": N_(
        "Dear {name}, your payment has been received and your supply is restored. "
        "Balance: {balance} yuan."
    ),
    "arrears": N_(
        "Dear {name}, you have overdue arrears of {owed} yuan. Please pay them at a business "
        "office soon."
    ),
}


class SmsError(Exception):
    """The gateway did not take a message."""


class SmsGateway(Protocol):
    """Where the station hands its SMS over."""

    def send(self, message_id: str, phone: str, text: str, language: str) -> None:
        """Raises :class:`SmsError` (or ``OSError``) when the message was not taken."""
        ...


class HttpSmsGateway:
    """An HTTP JSON gateway: ``POST url`` with ``{"id", "to", "text", "language"}``; a 2xx
    answer means taken.  ``id`` is the same on every retry, so a gateway can drop repeats."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the SMS gateway URL must be http:// or https://")
        self.url = url
        self.timeout = timeout
        self._http = requests.Session()

    def send(self, message_id: str, phone: str, text: str, language: str) -> None:
        body = {"id": message_id, "to": phone, "text": text, "language": language}
        try:
            answer = self._http.post(self.url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SmsError(f"the SMS gateway did not answer: {exc}") from exc
        if not 200 <= answer.status_code < 300:
            raise SmsError(f"the SMS gateway answered {answer.status_code}")

    def close(self) -> None:
        self._http.close()


def render(kind: str, language: str, **values: Any) -> str:
    """The text of a ``kind`` notice in ``language``; amounts given in fen become yuan."""
    shown = {k: format_yuan(v) if k in ("balance", "owed") else v for k, v in values.items()}
    return translate(TEMPLATES[kind], language).format(**shown)


def queue(conn: Connection, notices: Iterable[Mapping[str, Any]], now: dt.datetime) -> int:
    """Queue ``notices`` (customer_no, kind, cause, and the template's values: balance, owed)
    whose (kind, cause) is not queued yet; their name, phone and language come from the
    archive and the preferences.  Answers how many were queued."""
    wanted = {(n["kind"], n["cause"]): n for n in notices}
    if not wanted:
        return 0
    sm, cu, pr = m.sms_outbox.c, m.customers.c, m.sms_prefs.c
    queued = 0
    for part in chunks(list(wanted.values()), BATCH):
        causes = [n["cause"] for n in part]
        seen = {
            (k, c) for k, c in conn.execute(select(sm.kind, sm.cause).where(sm.cause.in_(causes)))
        }
        numbers = {n["customer_no"] for n in part}
        people = {
            r[0]: r[1:]
            for r in conn.execute(
                select(cu.customer_no, cu.name, cu.phone, pr.language, pr.opted_out)
                .outerjoin(m.sms_prefs, pr.customer_no == cu.customer_no)
                .where(cu.customer_no.in_(numbers))
            )
        }
        rows = []
        for n in part:
            if (n["kind"], n["cause"]) in seen or n["customer_no"] not in people:
                continue
            name, phone, language, opted_out = people[n["customer_no"]]
            language = normalize_language(language or DEFAULT_LANGUAGE)
            values = {k: v for k, v in n.items() if k in ("balance", "owed")}
            why = "opted out" if opted_out else "" if phone else "no phone number"
            rows.append(
                {
                    "customer_no": n["customer_no"],
                    "phone": phone or "",
                    "kind": n["kind"],
                    "cause": n["cause"],
                    "language": language,
                    "text": render(n["kind"], language, name=name, **values)[:500],
                    "status": UNSENT if why else PENDING,
                    "attempts": 0,
                    "next_at": now,
                    "last_error": why,
                    "created_at": now,
                }
            )
        if rows:
            conn.execute(insert(m.sms_outbox), rows)
            queued += len(rows)
    return queued


class Notices:
    """The SMS step of the control loop: :meth:`after_decide` (nothing: notices follow the
    commands) and :meth:`after_send` queues the notices of the commands and sends what is due."""

    def __init__(self, store: StoreBase, gateway: SmsGateway | None) -> None:
        self.store = store
        self.gateway = gateway

    def before_send(self) -> None:
        pass

    def after_send(self) -> None:
        self.queue_from_commands()
        self.send_due()

    # ------------------------------------------------------------------ queue

    def queue_from_commands(self) -> int:
        """One notice a recent alarm or trip command and a close permit the meter took."""
        cm, co, sm = m.commands.c, m.control.c, m.sms_outbox.c
        now = self.store.now()
        since = now - RECENT
        no_notice = ~select(sm.id).where(sm.cause == cm.id).exists()
        wanted = or_(
            and_(cm.command == "trip", cm.created_at >= since),
            and_(
                cm.command == "alarm",
                cm.created_at >= since,
                cm.reason.in_(("normal->alarm1", "normal->alarm2", "alarm1->alarm2")),
            ),
            and_(cm.command == "close", cm.status == "done", cm.done_at >= since),
        )
        with self.store.engine.begin() as conn:
            rows = conn.execute(
                select(cm.id, cm.customer_no, cm.command, cm.reason, co.remaining_fen)
                .join(m.control, co.customer_no == cm.customer_no)
                .where(wanted, cm.status != "dropped", no_notice)
            ).all()
            notices = [
                {
                    "customer_no": customer_no,
                    "kind": reason.rsplit(">", 1)[-1] if command == "alarm" else command,
                    "cause": command_id,
                    "balance": int(remaining),
                }
                for command_id, customer_no, command, reason, remaining in rows
            ]
            return queue(conn, notices, now)

    # ------------------------------------------------------------------ send

    def send_due(self) -> tuple[int, int]:
        """Send the notices that are due; (sent, failed this time).  Without a gateway nothing
        is sent; notices older than :data:`EXPIRE` fail as expired."""
        sm = m.sms_outbox.c
        now = self.store.now()
        with self.store.engine.begin() as conn:
            conn.execute(
                update(m.sms_outbox)
                .where(sm.status == PENDING, sm.created_at < now - EXPIRE)
                .values(status=FAILED, last_error="expired: not sent in time")
            )
        if self.gateway is None:
            return 0, 0
        with self.store.engine.connect() as conn:
            due = conn.execute(
                select(sm.id, sm.phone, sm.text, sm.language, sm.attempts)
                .where(sm.status == PENDING, sm.next_at <= now)
                .order_by(sm.id)
                .limit(BATCH)
            ).all()
        sent = failed = 0
        for sms_id, phone, text, language, attempts in due:
            try:
                self.gateway.send(f"sms-{sms_id}", phone, text, language)
            except (SmsError, OSError) as exc:
                self._failed(sms_id, attempts + 1, str(exc)[:200])
                failed += 1
                break  # the gateway is down: the rest wait for the next run
            with self.store.engine.begin() as conn:
                conn.execute(
                    update(m.sms_outbox)
                    .where(sm.id == sms_id)
                    .values(
                        status=SENT, attempts=attempts + 1, sent_at=self.store.now(), last_error=""
                    )
                )
            sent += 1
        if sent or failed:
            log.info("SMS: %d sent, %d failed", sent, failed)
        return sent, failed

    def _failed(self, sms_id: int, attempts: int, error: str) -> None:
        sm = m.sms_outbox.c
        now = self.store.now()
        gave_up = attempts >= MAX_ATTEMPTS
        wait = BACKOFF_S[min(attempts, len(BACKOFF_S)) - 1]
        with self.store.engine.begin() as conn:
            conn.execute(
                update(m.sms_outbox)
                .where(sm.id == sms_id)
                .values(
                    status=FAILED if gave_up else PENDING,
                    attempts=attempts,
                    last_error=error,
                    next_at=now + dt.timedelta(seconds=wait),
                )
            )


__all__ = ["HttpSmsGateway", "Notices", "SmsError", "SmsGateway", "queue", "render"]
