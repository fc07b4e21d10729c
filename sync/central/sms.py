"""SMS notices of the charge-control loop (seed 3.6, 3.8, 3.9): an outbox and a gateway.

A notice is a row of ``central_sms``, unique by (kind, cause), so it is queued once whatever how
often the loop runs or crashes:

* ``alarm1`` / ``alarm2``: an alarm command the loop decided (cause: the command's id); not for
  the alarm that goes with a close permit (the close notice says it);
* ``trip``: a trip command (cause: its id);
* ``close``: a close permit the meter took after a payment (cause: the command's id, once done);
* ``arrears``: a reminder of overdue arrears (:mod:`sync.central.arrears`; cause: the reminder);
* ``purchase``: a confirmation of a completed, not reversed sale the station received (a card
  sale or a remote payment; cause: the sale id), with the amount paid and, for a remote
  customer under control, the new balance; a sale reversed after its confirmation was queued
  gets a ``reversal`` notice (cause: the sale id), and one reversed before it was sent is
  ``unsent`` instead.

Texts are rendered when queued in the customer's language (``central_sms_prefs``; Chinese when
not set) with the customer's name and balance in yuan.  A customer without a phone number or who
opted out gets a row with status ``unsent`` (so the cause is answered once, and it shows why).

:class:`Notices` sends due notices through an :class:`SmsGateway` (:class:`HttpSmsGateway`:
a JSON POST to the configured URL); a failure is retried with backoff (:data:`BACKOFF_S`), and
after :data:`MAX_ATTEMPTS` it is ``failed``.  Without a gateway (no ``--sms-url``) notices stay
queued; a notice not sent within :data:`EXPIRE` is ``failed`` (expired) rather than sent late.

A customer gets at most :attr:`Limits.per_hour` / :attr:`Limits.per_day` SMS in a rolling hour
/ day (counted when sent); a notice over the limit is ``limited`` and never sent, except trip and
close notices (:data:`ALWAYS`), which always go (and count).  A gateway may answer with the
message id it gave (``{"message_id": ...}``): it is kept in ``gateway_id`` for delivery enquiries.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from typing import Final
from typing import Protocol

import requests
from sqlalchemy import String
from sqlalchemy import and_
from sqlalchemy import case
from sqlalchemy import cast
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import literal
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection

from app.i18n import N_
from app.i18n import normalize_language
from app.i18n import translate
from app.money import format_yuan
from sync.central import models as m
from sync.central.base import StoreBase
from sync.central.base import chunks
from sync.central.base import failed_attempt

log = logging.getLogger(__name__)

PENDING, SENT, FAILED, UNSENT, LIMITED = "pending", "sent", "failed", "unsent", "limited"
STATUSES: Final = (PENDING, SENT, FAILED, UNSENT, LIMITED)
ALWAYS: Final = frozenset({"trip", "close"})  # never held back by the rate limit
PER_HOUR: Final = 3
PER_DAY: Final = 10
MAX_ATTEMPTS: Final = 6
BACKOFF_S: Final = (10, 30, 90, 300, 900)
EXPIRE: Final = dt.timedelta(days=1)  # an SMS later than this is no news: not sent at all
RECENT: Final = dt.timedelta(days=1)  # commands and sales older than this get no notice
REVERSAL_WINDOW: Final = dt.timedelta(days=7)  # a reversal later than this gets no notice
CHANNEL_CAUSE: Final = "ch-"  # a channel payment's confirmation: this and the payment's row id
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
    "purchase": N_("Dear {name}, your payment of {amount} yuan has been received. Thank you."),
    "purchase+balance": N_(
        "Dear {name}, your payment of {amount} yuan has been received. Balance: {balance} yuan."
    ),
    "reversal": N_("Dear {name}, your payment of {amount} yuan has been reversed at the counter."),
}
MONEY: Final = ("balance", "owed", "amount")  # template values given in fen


@dataclass(frozen=True)
class Limits:
    """SMS a customer may get in a rolling hour and day (0: no limit of that kind)."""

    per_hour: int = PER_HOUR
    per_day: int = PER_DAY

    def __post_init__(self) -> None:
        if self.per_hour < 0 or self.per_day < 0:
            raise ValueError("an SMS rate limit cannot be negative")


class SmsError(Exception):
    """The gateway did not take a message."""


class SmsGateway(Protocol):
    """Where the station hands its SMS over."""

    def send(self, message_id: str, phone: str, text: str, language: str) -> str | None:
        """The gateway's own id of the message, if it gives one; raises :class:`SmsError` (or
        ``OSError``) when the message was not taken."""
        ...


class HttpSmsGateway:
    """An HTTP JSON gateway: ``POST url`` with ``{"id", "to", "text", "language"}``; a 2xx
    answer means taken (a JSON ``message_id`` in it is the gateway's id).  ``id`` is the same on
    every retry, so a gateway can drop repeats."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the SMS gateway URL must be http:// or https://")
        self.url = url
        self.timeout = timeout
        self._http = requests.Session()

    def send(self, message_id: str, phone: str, text: str, language: str) -> str | None:
        body = {"id": message_id, "to": phone, "text": text, "language": language}
        try:
            answer = self._http.post(self.url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SmsError(f"the SMS gateway did not answer: {exc}") from exc
        if not 200 <= answer.status_code < 300:
            raise SmsError(f"the SMS gateway answered {answer.status_code}")
        try:
            given = answer.json().get("message_id")
        except (ValueError, AttributeError):
            return None
        return str(given)[:64] if given else None

    def close(self) -> None:
        self._http.close()


def render(kind: str, language: str, **values: Any) -> str:
    """The text of a ``kind`` notice in ``language``; amounts given in fen become yuan."""
    shown = {k: format_yuan(v) if k in MONEY else v for k, v in values.items()}
    return translate(TEMPLATES[kind], language).format(**shown)


def queue(conn: Connection, notices: Iterable[Mapping[str, Any]], now: dt.datetime) -> int:
    """Queue ``notices`` (customer_no, kind, cause, and the template's values: balance, owed,
    amount; ``template`` when it is not the kind's own; ``why_unsent`` to record one unsent)
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
            values = {k: v for k, v in n.items() if k in MONEY}
            why = "opted out" if opted_out else "" if phone else "no phone number"
            why = why or n.get("why_unsent", "")
            rows.append(
                {
                    "customer_no": n["customer_no"],
                    "phone": phone or "",
                    "kind": n["kind"],
                    "cause": n["cause"],
                    "language": language,
                    "text": render(n.get("template", n["kind"]), language, name=name, **values)[
                        :500
                    ],
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
    """The SMS step of the control loop: :meth:`after_send` queues the notices of the commands
    and of the sales received, then sends what is due within the rate limit.  :attr:`last`
    holds the counts of the last run (``central control run --json``)."""

    def __init__(
        self, store: StoreBase, gateway: SmsGateway | None, *, limits: Limits | None = None
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.limits = limits or Limits()
        self.last: dict[str, int] = {}

    def before_send(self) -> None:
        pass

    def after_send(self) -> None:
        queued = self.queue_from_commands() + self.queue_purchases()
        sent, failed, limited = self.send_due()
        self.last = {"queued": queued, "sent": sent, "failed": failed, "limited": limited}

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
        with self.store.begin() as conn:
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

    def queue_purchases(self) -> int:
        """A confirmation for each completed, not reversed sale received within :data:`RECENT`
        that has none yet (an anti-join on the (kind, cause) key, the sales found through
        their ``received_at`` index), and for each payment a third-party channel made; a
        ``reversal`` notice for a sale whose confirmation went
        out and that was reversed since; a confirmation still waiting for a reversed sale is
        ``unsent``.  Answers how many notices were queued."""
        sa, co, sm = m.sales.c, m.control.c, m.sms_outbox.c
        now = self.store.now()
        since = now - RECENT

        def notice_of(kind: str) -> Any:
            return select(sm.id).where(sm.kind == kind, sm.cause == sa.id).exists()

        with self.store.begin() as conn:
            fresh = conn.execute(
                select(sa.id, sa.customer_no, sa.kind, sa.credit, sa.body, co.remaining_fen)
                .outerjoin(m.control, and_(co.customer_no == sa.customer_no, sa.kind == "remote"))
                .where(
                    sa.received_at >= since,
                    sa.state == "completed",
                    sa.reversed.is_(False),
                    ~notice_of("purchase"),
                )
                .order_by(sa.received_at)
            ).all()
            reversed_sale = select(sa.id).where(sa.id == sm.cause, sa.reversed.is_(True))
            conn.execute(
                update(m.sms_outbox)
                .where(sm.kind == "purchase", sm.status == PENDING, reversed_sale.exists())
                .values(status=UNSENT, last_error="the sale was reversed")
            )
            recent = select(sm.cause).where(
                sm.kind == "purchase", sm.status == SENT, sm.created_at >= now - REVERSAL_WINDOW
            )
            undone = conn.execute(
                select(sa.id, sa.customer_no, sa.credit, sa.body).where(
                    sa.id.in_(recent), sa.reversed.is_(True), ~notice_of("reversal")
                )
            ).all()
            # a third party's payment (channels.py) is a remote customer's purchase too: its
            # cause is "ch-" and the payment's row id (unique; the txn id alone is per channel)
            cp = m.channel_payments.c
            by_channel = conn.execute(
                select(cp.id, cp.customer_no, cp.amount_fen, co.remaining_fen)
                .outerjoin(m.control, co.customer_no == cp.customer_no)
                .where(
                    cp.received_at >= since,
                    ~select(sm.id)
                    .where(
                        sm.kind == "purchase",
                        sm.cause == literal(CHANNEL_CAUSE) + cast(cp.id, String),
                    )
                    .exists(),
                )
                .order_by(cp.received_at)
            ).all()
            notices = (
                [
                    _purchase(sale_id, number, kind, credit, body, remaining)
                    for sale_id, number, kind, credit, body, remaining in fresh
                ]
                + [
                    _purchase(f"{CHANNEL_CAUSE}{row_id}", number, "remote", fen, None, remaining)
                    for row_id, number, fen, remaining in by_channel
                ]
                + [
                    {
                        "customer_no": number,
                        "kind": "reversal",
                        "cause": sale_id,
                        "amount": _amount(body, credit),
                    }
                    for sale_id, number, credit, body in undone
                ]
            )
            return queue(conn, notices, now)

    # ------------------------------------------------------------------ send

    def send_due(self) -> tuple[int, int, int]:
        """Send the notices that are due; (sent, failed, limited this time).  Without a
        gateway nothing is sent; notices older than :data:`EXPIRE` fail as expired; one over
        the customer's rate limit is ``limited`` (trip and close always go)."""
        sm = m.sms_outbox.c
        now = self.store.now()
        with self.store.begin() as conn:
            conn.execute(
                update(m.sms_outbox)
                .where(sm.status == PENDING, sm.created_at < now - EXPIRE)
                .values(status=FAILED, last_error="expired: not sent in time")
            )
        if self.gateway is None:
            return 0, 0, 0
        with self.store.engine.connect() as conn:
            due = conn.execute(
                select(sm.id, sm.customer_no, sm.kind, sm.phone, sm.text, sm.language, sm.attempts)
                .where(sm.status == PENDING, sm.next_at <= now)
                .order_by(sm.id)
                .limit(BATCH)
            ).all()
            counts = self._sent_counts(conn, {r[1] for r in due}, now)
        sent = failed = 0
        limited: list[tuple[int, str]] = []
        for sms_id, number, kind, phone, text, language, attempts in due:
            hour, day = counts.get(number, (0, 0))
            over = self._over(hour, day)
            if over and kind not in ALWAYS:
                limited.append((sms_id, over))
                continue
            try:
                given = self.gateway.send(f"sms-{sms_id}", phone, text, language)
            except (SmsError, OSError) as exc:
                self._failed(sms_id, attempts + 1, str(exc)[:200])
                failed += 1
                break  # the gateway is down: the rest wait for the next run
            counts[number] = (hour + 1, day + 1)
            with self.store.begin() as conn:
                conn.execute(
                    update(m.sms_outbox)
                    .where(sm.id == sms_id)
                    .values(
                        status=SENT,
                        attempts=attempts + 1,
                        sent_at=self.store.now(),
                        last_error="",
                        gateway_id=given,
                    )
                )
            sent += 1
        self._limited(limited)
        if sent or failed or limited:
            log.info("SMS: %d sent, %d failed, %d limited", sent, failed, len(limited))
        return sent, failed, len(limited)

    def _over(self, hour: int, day: int) -> str:
        """Why one more SMS is over the limit ('' when it is not)."""
        if self.limits.per_hour and hour >= self.limits.per_hour:
            return f"rate limit: {self.limits.per_hour} an hour"
        if self.limits.per_day and day >= self.limits.per_day:
            return f"rate limit: {self.limits.per_day} a day"
        return ""

    @staticmethod
    def _sent_counts(
        conn: Connection, customers: set[str], now: dt.datetime
    ) -> dict[str, tuple[int, int]]:
        """Customer -> SMS sent to them in the last hour and day."""
        sm = m.sms_outbox.c
        hour = func.sum(case((sm.sent_at > now - dt.timedelta(hours=1), 1), else_=0))
        found: dict[str, tuple[int, int]] = {}
        for part in chunks(sorted(customers), BATCH):
            for number, in_hour, in_day in conn.execute(
                select(sm.customer_no, hour, func.count())
                .where(
                    sm.customer_no.in_(part),
                    sm.sent_at > now - dt.timedelta(days=1),
                    sm.status == SENT,
                )
                .group_by(sm.customer_no)
            ):
                found[str(number)] = (int(in_hour or 0), int(in_day))
        return found

    def _limited(self, limited: list[tuple[int, str]]) -> None:
        if not limited:
            return
        sm = m.sms_outbox.c
        with self.store.begin() as conn:
            for sms_id, why in limited:
                conn.execute(
                    update(m.sms_outbox)
                    .where(sm.id == sms_id, sm.status == PENDING)
                    .values(status=LIMITED, last_error=why)
                )

    def _failed(self, sms_id: int, attempts: int, error: str) -> None:
        sm = m.sms_outbox.c
        now = self.store.now()
        with self.store.begin() as conn:
            conn.execute(
                update(m.sms_outbox)
                .where(sm.id == sms_id)
                .values(**failed_attempt(attempts, error, now, MAX_ATTEMPTS, BACKOFF_S))
            )


def _amount(body: Any, credit: Any) -> int:
    """What the customer paid for a sale (its ``amount``; the credit if the body lacks it)."""
    amount = body.get("amount") if isinstance(body, Mapping) else None
    return int(amount) if isinstance(amount, int) else int(credit)


def _purchase(
    sale_id: str, number: str, kind: str, credit: Any, body: Any, remaining: Any
) -> dict[str, Any]:
    """The confirmation notice of a sale; a remote customer under control gets the balance."""
    notice: dict[str, Any] = {
        "customer_no": number,
        "kind": "purchase",
        "cause": sale_id,
        "amount": _amount(body, credit),
    }
    if kind == "remote" and remaining is not None:
        notice.update(balance=int(remaining), template="purchase+balance")
    return notice


__all__ = [
    "HttpSmsGateway",
    "Limits",
    "Notices",
    "SmsError",
    "SmsGateway",
    "queue",
    "render",
]
