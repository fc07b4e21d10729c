"""The logic of the reference central server, usable without HTTP.

:class:`CentralStore` owns one database (SQLite or PostgreSQL) and applies the contract's rules.
Everything a counter may ask is a method here that takes the :class:`Counter` its token names,
so the rules hold whatever serves HTTP (the stdlib server today):

- registration (:mod:`sync.central.enrol`): who may take a counter id, and what it gets;
- posted records (:mod:`sync.central.apply`, rules in :mod:`sync.central.rules`): idempotent
  inserts by record UUID, a counter acting only in its own lane, sales that add up, refusals
  with stable codes audited in ``central_refusals``, odd-but-valid sales flagged for review;
- pulls, control status and receipt checks: only the counter's office (its own sales and remote
  purchases); tariffs are everyone's;
- audit heads.

The central administrator's own changes and inspection are in :mod:`sync.central.changes`, the
database and transactions in :mod:`sync.central.base`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy import Select
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from sync import contract as c
from sync.central import enrol
from sync.central import models as m
from sync.central.apply import STREAMS_OF
from sync.central.apply import apply_all
from sync.central.base import DEFAULT_CLOCK_SKEW
from sync.central.base import DEFAULT_LIMIT
from sync.central.base import Counter
from sync.central.base import Dumped
from sync.central.base import Reply
from sync.central.base import Tx
from sync.central.base import body_hash
from sync.central.base import canonical_json
from sync.central.base import check_limit
from sync.central.base import clamp_cursor
from sync.central.base import clean
from sync.central.base import keyed_reply
from sync.central.base import page_json
from sync.central.base import sha256_hex
from sync.central.changes import ARREARS_COLUMNS
from sync.central.changes import CUSTOMER_COLUMNS
from sync.central.changes import CentralChanges
from sync.central.control import control_of
from sync.central.enrol import Credentials
from sync.central.rules import Refusal
from sync.central.rules import Refused

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- statements
# The statements of the requests every counter makes each round, built once with named
# parameters: building a Core statement and its cache key costs about as much CPU as running it
# (0.28 of 0.69 ms for the bearer token's look-up, measured), and SQLAlchemy keeps the compiled
# form of a statement it has seen.


def paged(stmt: Select[Any], seq: Any) -> Select[Any]:
    """``stmt``'s page after the cursor: parameters ``after`` (a clamped cursor) and ``n`` (the
    page's limit plus one, which tells whether there is more)."""
    return stmt.where(seq > bindparam("after")).order_by(seq).limit(bindparam("n"))


def page_params(after: int, limit: int, **scope: Any) -> dict[str, Any]:
    return {"after": clamp_cursor(after), "n": limit + 1, **scope}


_co = m.counters.c
_BY_TOKEN = select(_co.id, _co.office_code, _co.name, _co.last_seen_at).where(
    _co.token_hash == bindparam("digest"), _co.revoked_at.is_(None)
)
_tv = m.tariff_versions.c
_TARIFFS_PAGE = paged(
    select(
        *(_tv[n] for n in "plan_code plan_name version_no kind effective_from spec seq".split())
    ),
    _tv.seq,
)
_cu, _ar = m.customers.c, m.arrears_items.c
_CUSTOMERS_PAGE = paged(
    select(*(_cu[name] for name in CUSTOMER_COLUMNS)).where(_cu.office_code == bindparam("office")),
    _cu.seq,
)
# the open items of a page's customers: the same seq range, joined (one query on the seq
# index, no 5000-value IN list to compile)
_PAGE_ARREARS = (
    select(_ar.customer_no, *(_ar[name] for name in ARREARS_COLUMNS))
    .join(m.customers, _cu.customer_no == _ar.customer_no)
    .where(
        _cu.office_code == bindparam("office"),
        _cu.seq >= bindparam("first"),
        _cu.seq <= bindparam("last"),
        _ar.settled_by_sale.is_(None),
    )
    .order_by(_ar.id)
)
_rs = m.remote_status.c
_REMOTE_PAGE = paged(
    select(_rs.sale_id, _rs.status, _rs.reason, _rs.seq).where(
        _rs.counter_id == bindparam("counter")
    ),
    _rs.seq,
)
_jo = m.jobs.c
_JOBS_PAGE = paged(
    select(
        *(
            _jo[n]
            for n in "id kind customer_no meter_no office_code params status created_at seq".split()
        )
    ).where(_jo.office_code == bindparam("office")),
    _jo.seq,
)
_sa = m.sales.c
_COUNTER_SALES_PAGE = paged(
    select(_sa.body, _sa.received_at, _sa.reversed, _sa.review, _sa.seq).where(
        _sa.counter_id == bindparam("counter")
    ),
    _sa.seq,
)


class AuditDiverged(Exception):
    """The audit head a counter reports does not continue what it reported before."""


SEEN_EVERY = dt.timedelta(minutes=1)


class CentralStore(CentralChanges):
    """The central system's database and rules.  Thread-safe (one connection per call).

    ``enrolment_key``: what a new counter id registers with (None: any new counter may);
    ``clock_skew``: how far ahead of this store's clock a record's time may be."""

    # ------------------------------------------------------------------ counters

    def admits(self, creds: Credentials) -> bool:
        """Whether a registration request brings a credential worth reading its body for (the
        enrolment key, a valid token, a valid enrolment code, or the retry of a registration);
        checked before the body is read."""
        with self._reading() as conn:
            return enrol.admits(conn, creds, self.enrolment_key, self.now())

    def register(
        self,
        req: c.RegisterRequest,
        creds: Credentials | None = None,
        *,
        token: str | None = None,
    ) -> c.RegisterResponse:
        """Register (or register again) a counter under the rules of
        :mod:`sync.central.enrol`; answers a fresh token and keeps only its hash.  ``token``
        fixes the token instead (tests that must know it before the server runs).  Raises
        :class:`Refused` (recorded in ``central_refusals``)."""
        fresh = enrol.new_token(token)
        answer = self.write(
            lambda tx: enrol.register(tx, req, creds or Credentials(), self.enrolment_key, fresh)
        )
        if isinstance(answer, Refusal):
            log.warning("registration of %s refused: %s", req.counter_id, answer.message)
            raise Refused(answer)
        return answer

    def authenticate(self, token: str) -> Counter | None:
        if not token or len(token) > 256:
            return None
        with self._reading_one() as conn:
            row = conn.execute(_BY_TOKEN, {"digest": sha256_hex(token)}).first()
        if row is None:
            return None
        now = self.now()
        if row.last_seen_at is None or now - row.last_seen_at >= SEEN_EVERY:
            # kept to the minute: a busy counter costs one small write a minute, not one a call
            with self._write_engine.begin() as conn:
                conn.execute(
                    update(m.counters).where(m.counters.c.id == row.id).values(last_seen_at=now)
                )
        return Counter(counter_id=row.id, office_code=row.office_code, name=row.name)

    def counter(self, counter_id: str) -> Counter | None:
        with self._reading() as conn:
            row = conn.execute(
                select(m.counters.c.id, m.counters.c.office_code, m.counters.c.name).where(
                    m.counters.c.id == counter_id
                )
            ).first()
        return None if row is None else Counter(row.id, row.office_code, row.name)

    def check_receipt(self, counter: Counter, sale_id: str, code: str) -> c.ReceiptCheck:
        """Recompute the verification code of a held sale with the receipt keys of the counter
        that made it; a sale made in another office than ``counter``'s is unknown here."""
        from app.services.receipts import verification_code

        unknown = c.ReceiptCheck(sale_id=sale_id, valid=False, known=False)
        if "\x00" in sale_id:
            return unknown
        with self._reading() as conn:
            row = conn.execute(
                select(m.sales.c.body, m.sales.c.counter_id)
                .join(m.counters, m.counters.c.id == m.sales.c.counter_id)
                .where(m.sales.c.id == sale_id, m.counters.c.office_code == counter.office_code)
            ).first()
            if row is None:
                return unknown
            keys = enrol.receipt_keys(conn, row.counter_id)
        body = row.body
        given = code.strip().upper()
        valid = any(
            hmac.compare_digest(
                verification_code(
                    key,
                    sale_id,
                    str(body["customer_no"]),
                    int(body["amount"]),
                    int(body["credit"]),
                ),
                given,
            )
            for key in keys
        )
        return c.ReceiptCheck(
            sale_id=sale_id, valid=valid, known=True, amount=int(body["amount"]) if valid else None
        )

    # ------------------------------------------------------------------ posted records

    def post(self, resource: str, counter: Counter, items: Sequence[c.Model]) -> list[c.ItemResult]:
        """Apply posted records (one transaction), one result per item in order."""
        if resource not in c.POSTED:
            raise KeyError(resource)
        return self.write(
            lambda tx: apply_all(tx, resource, counter, items, self.clock_skew),
            STREAMS_OF[resource],
            (counter.office_code,),
        )

    def post_keyed(
        self,
        resource: str,
        counter: Counter,
        items: Sequence[c.Model | Dumped],
        *,
        key: str,
        request_hash: str,
        render: Callable[[list[c.ItemResult]], tuple[int, bytes]],
    ) -> Reply:
        """:meth:`post` under an Idempotency-Key: the first answer is kept with the key in the
        same transaction; the same key with the same request replays it, with another request
        it is a 409 conflict."""
        if resource not in c.POSTED:
            raise KeyError(resource)
        key = clean(key) or ""

        def work(tx: Tx) -> Reply:
            return keyed_reply(
                tx,
                counter.counter_id,
                key,
                request_hash,
                lambda: render(apply_all(tx, resource, counter, items, self.clock_skew)),
            )

        return self.combiner.submit(work, STREAMS_OF[resource], (counter.office_code,), len(items))

    # ------------------------------------------------------------------ pages

    def _page(
        self, stmt: Select[Any], after: int, limit: int, **scope: Any
    ) -> tuple[list[RowMapping], int, bool]:
        """A page of a :func:`paged` statement (one statement: its own snapshot)."""
        check_limit(limit)
        with self._reading_one() as conn:
            rows = list(conn.execute(stmt, page_params(after, limit, **scope)).mappings())
        has_more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = int(rows[-1]["seq"]) if rows else after
        return rows, next_cursor, has_more

    def tariffs_page(self, after: int = 0, limit: int = DEFAULT_LIMIT) -> c.TariffPage:
        return c.TariffPage.model_validate_json(self.tariffs_page_json(after, limit))

    def tariffs_page_json(self, after: int = 0, limit: int = DEFAULT_LIMIT) -> bytes:
        rows, cursor, more = self._page(_TARIFFS_PAGE, after, limit)
        items = [dict(r) for r in rows]
        return page_json(items, cursor, more)

    def customers_page(
        self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> c.CustomerPage:
        return c.CustomerPage.model_validate_json(self.customers_page_json(counter, after, limit))

    def customers_page_json(
        self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> bytes:
        """The archive of ``counter``'s office after the cursor (other offices' customers are
        not in it).  The hot path of a full archive pull: two Core queries (the customers, then
        the open arrears of the same seq range), plain tuples, one JSON dump in pydantic-core."""
        check_limit(limit)
        office = counter.office_code
        with self._reading() as conn:
            rows = conn.execute(_CUSTOMERS_PAGE, page_params(after, limit, office=office)).all()
            has_more = len(rows) > limit
            rows = rows[:limit]
            owed: dict[str, list[dict[str, Any]]] = {}
            if rows:
                span = {"office": office, "first": rows[0].seq, "last": rows[-1].seq}
                for r in conn.execute(_PAGE_ARREARS, span):
                    owed.setdefault(r[0], []).append(dict(zip(ARREARS_COLUMNS, r[1:], strict=True)))
        items = []
        for r in rows:
            d = dict(zip(CUSTOMER_COLUMNS, r, strict=True))
            d["arrears"] = owed.get(r.customer_no, [])
            items.append(d)
        cursor = int(rows[-1][-1]) if rows else after
        return page_json(items, cursor, has_more)

    def remote_page(
        self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> c.RemoteStatusPage:
        return c.RemoteStatusPage.model_validate_json(self.remote_page_json(counter, after, limit))

    def remote_page_json(
        self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> bytes:
        """The issuing status of ``counter``'s own remote purchases (on the counter's own
        index: the other counters' rows are never read)."""
        rows, cursor, more = self._page(_REMOTE_PAGE, after, limit, counter=counter.counter_id)
        return page_json([dict(r) for r in rows], cursor, more)

    def jobs_page(self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT) -> c.JobPage:
        return c.JobPage.model_validate_json(self.jobs_page_json(counter, after, limit))

    def jobs_page_json(self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT) -> bytes:
        """The management-card jobs of ``counter``'s office."""
        rows, cursor, more = self._page(_JOBS_PAGE, after, limit, office=counter.office_code)
        return page_json([dict(r) for r in rows], cursor, more)

    def counter_sales_page(
        self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> c.CounterSalePage:
        return c.CounterSalePage.model_validate_json(
            self.counter_sales_page_json(counter, after, limit)
        )

    def counter_sales_page_json(
        self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> bytes:
        """The sales ``counter`` made, as the central system holds them."""
        rows, cursor, more = self._page(
            _COUNTER_SALES_PAGE, after, limit, counter=counter.counter_id
        )
        items = [
            {
                "sale": r["body"],
                "received_at": r["received_at"],
                "reversed": bool(r["reversed"]),
                "review": r["review"],
                "seq": r["seq"],
            }
            for r in rows
        ]
        return page_json(items, cursor, more)

    # ------------------------------------------------------------------ control status, audit

    def control_status(self, counter: Counter, customer_no: str) -> c.ControlStatus | None:
        """Charge control of a customer of ``counter``'s office; None for a customer the
        archive does not hold or that belongs to another office."""
        cu = m.customers.c
        cs = m.control_status.c
        s = m.sales.c
        with self._reading() as conn:
            cust = conn.execute(
                select(cu.status, cu.alarm1, cu.alarm2, cu.overdraft_limit).where(
                    cu.customer_no == customer_no, cu.office_code == counter.office_code
                )
            ).first()
            if cust is None:
                return None
            rep = conn.execute(
                select(cs.meter_remaining, cs.meter_purchase_count, cs.last_report_at).where(
                    cs.customer_no == customer_no
                )
            ).first()
            credit = conn.execute(
                select(func.coalesce(func.sum(s.credit), 0)).where(
                    s.customer_no == customer_no,
                    s.state == "completed",
                    s.reversed.is_(False),
                )
            ).scalar_one()
            ctl = control_of(conn, customer_no)  # the one reader of central_control
        state: str
        if cust.status == "closed":
            state = "closed"
        elif ctl is not None:  # a remote customer under charge control: the station's own state
            state = ctl["state"]
        elif rep is None:
            state = "unknown"
        elif rep.meter_remaining <= -cust.overdraft_limit:
            state = "tripped"
        elif rep.meter_remaining <= cust.alarm2:
            state = "alarm2"
        elif rep.meter_remaining <= cust.alarm1:
            state = "alarm1"
        else:
            state = "normal"
        return c.ControlStatus.model_validate(
            {
                "customer_no": customer_no,
                "state": state,
                "meter_remaining": None if rep is None else rep.meter_remaining,
                "meter_purchase_count": None if rep is None else rep.meter_purchase_count,
                "system_credit": min(int(credit), 10**12),
                "last_report_at": None if rep is None else rep.last_report_at,
                "remaining_fen": None if ctl is None else ctl["remaining_fen"],
                "relay": None if ctl is None else ctl["relay"],
                "last_reading_at": None if ctl is None else ctl["last_reading_at"],
                "close_permit_sent_at": None if ctl is None else ctl["close_permit_sent_at"],
                "lifted_at": None if ctl is None else ctl["lifted_at"],
                "commission": None if ctl is None else ctl["commission"],
            }
        )

    def put_audit_head(self, counter: Counter, head: c.AuditHead) -> c.AuditHeadAck:
        """Record the counter's audit head; :class:`AuditDiverged` when it does not continue
        the heads it reported before."""
        ah = m.audit_heads.c

        def work(tx: Tx) -> c.AuditHeadAck:
            conn = tx.conn
            last = conn.execute(
                select(ah.seq, ah.hash, ah.received_at)
                .where(ah.counter_id == counter.counter_id)
                .order_by(ah.seq.desc())
                .limit(1)
            ).first()
            if last is not None:
                if head.seq < last.seq:
                    raise AuditDiverged(
                        f"audit head seq {head.seq} is below the last reported seq {last.seq}"
                    )
                if head.seq == last.seq:
                    if head.hash != last.hash:
                        raise AuditDiverged(
                            f"audit seq {head.seq} was reported before with another hash"
                        )
                    return c.AuditHeadAck(
                        seq=head.seq, hash=head.hash, received_at=last.received_at
                    )
                if head.previous_seq is not None and head.at_previous_seq is not None:
                    then = conn.execute(
                        select(ah.hash).where(
                            ah.counter_id == counter.counter_id, ah.seq == head.previous_seq
                        )
                    ).scalar_one_or_none()
                    if then is not None and then != head.at_previous_seq:
                        raise AuditDiverged(
                            f"the audit chain at seq {head.previous_seq} differs from the hash "
                            "reported then: it was rewritten"
                        )
            conn.execute(
                insert(m.audit_heads).values(
                    counter_id=counter.counter_id,
                    seq=head.seq,
                    hash=head.hash,
                    at=head.at,
                    previous_seq=head.previous_seq,
                    at_previous_seq=head.at_previous_seq,
                    received_at=tx.now,
                )
            )
            return c.AuditHeadAck(seq=head.seq, hash=head.hash, received_at=tx.now)

        return self.write(work)

    def audit_heads(self, counter_id: str) -> list[c.AuditHead]:
        ah = m.audit_heads.c
        with self._reading() as conn:
            rows = conn.execute(
                select(ah.seq, ah.hash, ah.at, ah.previous_seq, ah.at_previous_seq)
                .where(ah.counter_id == counter_id)
                .order_by(ah.seq)
            ).mappings()
            return [c.AuditHead.model_validate(dict(r)) for r in rows]


__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_LIMIT",
    "AuditDiverged",
    "CentralStore",
    "Counter",
    "Credentials",
    "Refused",
    "Reply",
    "body_hash",
    "canonical_json",
    "sha256_hex",
]
