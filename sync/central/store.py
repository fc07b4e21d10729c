"""The logic of the reference central server, usable without HTTP.

:class:`CentralStore` owns one database (SQLite or PostgreSQL) and applies the contract's rules:
idempotent inserts by record UUID, sales that are never dropped (flagged for review instead),
arrears settled by sales, customers that reappear in the next delta pull whenever they change,
remote-purchase issuing, management-card jobs, charge-control status and audit heads.

Transactions: every write is one transaction.  On SQLite it begins with ``BEGIN IMMEDIATE`` (one
writer at a time); on PostgreSQL it first locks the rows of the streams it may allocate from, in
name order (``SELECT ... FOR UPDATE``), so two writers of the same stream commit in the order of
their sequence numbers and a reader never sees seq 11 before seq 10.  A race the locks do not
cover (two new records with the same id on different streams, say) ends in an IntegrityError;
the whole transaction is then retried and finds the first one's row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from pydantic import TypeAdapter
from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from app.clock import Clock, SystemClock
from app.persistence.db import WRITE_OPTION, make_engine, normalize_url
from sync import contract as c
from sync.central import models as m

log = logging.getLogger(__name__)
T = TypeVar("T")

TOKEN_BYTES = 32
DEFAULT_LIMIT = 1000
SEQ_LIMIT = 2**62  # a cursor beyond this can only be past the end of every stream
WRITE_ATTEMPTS = 5
IN_CHUNK = 500  # values in one IN (...) of a batch's look-ups
REVIEW_UNKNOWN_CUSTOMER = "unknown_customer"
REVIEW_CUSTOMER_CLOSED = "customer_closed"
REVIEW_UNKNOWN_TARIFF = "unknown_tariff"

# the streams a post may allocate sequence numbers from (locked first, in name order)
STREAMS_OF: dict[str, tuple[str, ...]] = {
    "sales": ("customers", "remote", "sales"),
    "reversals": ("sales",),
    "rewrites": (),
    "replacements": ("customers",),
    "card-bindings": ("customers",),
    "control-reports": (),
    "sms": (),
    "job-results": ("jobs",),
}
# what an event is about (the column ``subject``)
_SUBJECT: dict[str, str] = {
    "reversals": "sale_id",
    "rewrites": "sale_id",
    "replacements": "customer_no",
    "card-bindings": "customer_no",
    "control-reports": "customer_no",
    "sms": "customer_no",
    "job-results": "job_id",
}
_CUSTOMER_COLUMNS = (
    "customer_no",
    "name",
    "address",
    "phone",
    "meter_no",
    "meter_kind",
    "status",
    "office_code",
    "tariff_plan",
    "ct_ratio",
    "pt_ratio",
    "alarm1",
    "alarm2",
    "overdraft_limit",
    "credit_ceiling",
    "card_serial",
    "purchase_count",
    "seq",
)
_ARREARS_COLUMNS = ("ref", "kind", "description", "amount", "must_collect")
_JSON_ANY: TypeAdapter[Any] = TypeAdapter(Any)


# --------------------------------------------------------------------------- small types


@dataclass(frozen=True)
class Counter:
    """A registered counter, as its bearer token identifies it."""

    counter_id: str
    office_code: str
    name: str = ""


@dataclass(frozen=True)
class Reply:
    """An HTTP answer kept under an Idempotency-Key (``replayed``: it was kept before)."""

    status: int
    body: bytes
    replayed: bool = False


@dataclass(slots=True)
class _Posted:
    """A posted record accepted for applying: its place in the batch, its body as stored
    (dumped once) and the canonical hash of that body."""

    index: int
    id: str
    item: c.Model
    body: dict[str, Any]
    hash: str


@dataclass(slots=True)
class _Cust:
    """What applying sales reads of a customer (and follows while a batch runs)."""

    status: str
    meter_kind: str
    purchase_count: int
    card_serial: str | None


class AuditDiverged(Exception):
    """The audit head a counter reports does not continue what it reported before."""


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> str:
    """One text per value: keys sorted, no spaces, ASCII (hashes compare bodies by it)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def body_hash(item: c.Model) -> str:
    """The canonical hash of a validated record (what duplicate/conflict compare)."""
    return sha256_hex(canonical_json(item.model_dump(mode="json")))


def _clean(text: str | None) -> str | None:
    """Free text bound for a text column: PostgreSQL refuses NUL characters."""
    return None if text is None else text.replace("\x00", "")


def _problem(code: str, message: str, ids: Sequence[str] = ()) -> bytes:
    return c.Problem(code=code, message=message, ids=list(ids)).model_dump_json().encode()


def _clamp_cursor(after: int) -> int:
    return min(max(after, 0), SEQ_LIMIT)


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= c.MAX_PAGE:
        raise ValueError(f"limit must be 1 to {c.MAX_PAGE}")
    return limit


# --------------------------------------------------------------------------- transactions


class _Tx:
    """One write transaction: stream locks, sequence numbers, customers to re-sequence."""

    def __init__(self, conn: Connection, now: dt.datetime) -> None:
        self.conn = conn
        self.now = now
        self._touched: dict[str, None] = {}
        self._postgres = conn.dialect.name == "postgresql"

    def lock(self, names: Iterable[str]) -> None:
        wanted = sorted(set(names))
        if wanted and self._postgres:  # SQLite: BEGIN IMMEDIATE already holds the write lock
            self.conn.execute(
                select(m.streams.c.name)
                .where(m.streams.c.name.in_(wanted))
                .order_by(m.streams.c.name)
                .with_for_update()
            ).all()

    def next_seqs(self, stream: str, n: int = 1) -> int:
        """Allocate ``n`` sequence numbers of ``stream``; answers the first of them."""
        last = self.conn.execute(
            update(m.streams)
            .where(m.streams.c.name == stream)
            .values(last_seq=m.streams.c.last_seq + n)
            .returning(m.streams.c.last_seq)
        ).scalar_one()
        return int(last) - n + 1

    def touch_customer(self, customer_no: str) -> None:
        """The customer changed: it gets a new seq (once) when the transaction finishes."""
        self._touched[customer_no] = None

    def finish(self) -> None:
        if not self._touched:
            return
        first = self.next_seqs("customers", len(self._touched))
        self.conn.execute(
            update(m.customers)
            .where(m.customers.c.customer_no == bindparam("no"))
            .values(seq=bindparam("new_seq")),
            [{"no": no, "new_seq": first + i} for i, no in enumerate(self._touched)],
        )
        self._touched.clear()


# --------------------------------------------------------------------------- the store


class CentralStore:
    """The central system's database and rules.  Thread-safe (one connection per call)."""

    def __init__(
        self,
        url: str | URL,
        *,
        clock: Clock | None = None,
        engine: Engine | None = None,
        **engine_kwargs: Any,
    ) -> None:
        self.url = normalize_url(url)
        self.clock: Clock = clock or SystemClock()
        if engine is None:
            if self.url.get_backend_name() == "sqlite":
                engine_kwargs.setdefault("connect_args", {}).setdefault("check_same_thread", False)
            else:
                engine_kwargs.setdefault("pool_size", 10)
                engine_kwargs.setdefault("max_overflow", 20)
            engine = make_engine(self.url, **engine_kwargs)
        # an engine given by the caller must come from app.persistence.db.make_engine (on
        # SQLite that installs the BEGIN / BEGIN IMMEDIATE recipe this store relies on)
        self.engine = engine
        self._write_engine = self.engine.execution_options(**{WRITE_OPTION: True})
        self._read_engine = (
            self.engine.execution_options(isolation_level="REPEATABLE READ")
            if self.engine.dialect.name == "postgresql"
            else self.engine
        )
        m.metadata.create_all(self.engine)
        self._ensure_streams()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def now(self) -> dt.datetime:
        return self.clock.now().astimezone(dt.UTC)

    def dispose(self) -> None:
        self.engine.dispose()

    def _ensure_streams(self) -> None:
        try:
            with self._write_engine.begin() as conn:
                have = set(conn.scalars(select(m.streams.c.name)))
                missing = [{"name": s, "last_seq": 0} for s in m.STREAMS if s not in have]
                if missing:
                    conn.execute(insert(m.streams), missing)
        except IntegrityError:  # another process created them at the same moment
            pass

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def _writing(self, streams: Iterable[str] = ()) -> Iterator[_Tx]:
        with self._write_engine.begin() as conn:
            tx = _Tx(conn, self.now())
            tx.lock(streams)
            yield tx
            tx.finish()

    def write(self, work: Callable[[_Tx], T], streams: Iterable[str] = ()) -> T:
        """Run ``work`` in one write transaction, retried when a concurrent writer won a race
        for a unique key (the retry then sees that writer's row)."""
        names = tuple(streams)
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self._writing(names) as tx:
                    return work(tx)
            except IntegrityError:
                if attempt == WRITE_ATTEMPTS:
                    raise
                log.info("write raced another writer (attempt %d), retrying", attempt)
        raise AssertionError("unreachable")

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._read_engine.connect() as conn, conn.begin():
            yield conn

    # ------------------------------------------------------------------ counters

    def register(self, req: c.RegisterRequest, *, token: str | None = None) -> c.RegisterResponse:
        """Register (or re-register) a counter; answers a fresh token and keeps only its hash.
        ``token`` fixes the token instead (tests that must know it before the server runs)."""
        if token is None:
            token = secrets.token_urlsafe(TOKEN_BYTES)
        elif not 32 <= len(token) <= 128:
            raise ValueError("a token has 32 to 128 characters")
        now = self.now()

        def work(tx: _Tx) -> str:
            values = {
                "office_code": req.office_code,
                "name": _clean(req.name) or "",
                "token_hash": sha256_hex(token),
                "registered_at": now,
            }
            done = tx.conn.execute(
                update(m.counters).where(m.counters.c.id == req.counter_id).values(**values)
            )
            if done.rowcount == 0:
                key = secrets.token_hex(32)
                tx.conn.execute(
                    insert(m.counters).values(id=req.counter_id, receipt_key=key, **values)
                )
                return key
            return str(
                tx.conn.execute(
                    select(m.counters.c.receipt_key).where(m.counters.c.id == req.counter_id)
                ).scalar_one()
            )

        receipt_key = self.write(work)
        return c.RegisterResponse(
            counter_id=req.counter_id,
            office_code=req.office_code,
            token=token,
            server_time=now,
            receipt_key=receipt_key,
        )

    def check_receipt(self, sale_id: str, code: str) -> c.ReceiptCheck:
        """Recompute the verification code of a held sale with its counter's receipt key."""
        from app.services.receipts import verification_code

        with self._reading() as conn:
            row = conn.execute(
                select(m.sales.c.body, m.counters.c.receipt_key)
                .join(m.counters, m.counters.c.id == m.sales.c.counter_id)
                .where(m.sales.c.id == sale_id)
            ).first()
        if row is None:
            return c.ReceiptCheck(sale_id=sale_id, valid=False, known=False)
        body = row.body
        expected = verification_code(
            bytes.fromhex(row.receipt_key),
            sale_id,
            str(body["customer_no"]),
            int(body["amount"]),
            int(body["credit"]),
        )
        valid = hmac.compare_digest(expected, code.strip().upper())
        return c.ReceiptCheck(
            sale_id=sale_id, valid=valid, known=True, amount=int(body["amount"]) if valid else None
        )

    def authenticate(self, token: str) -> Counter | None:
        if not token or len(token) > 256:
            return None
        digest = sha256_hex(token)
        with self._reading() as conn:
            row = conn.execute(
                select(m.counters.c.id, m.counters.c.office_code, m.counters.c.name).where(
                    m.counters.c.token_hash == digest
                )
            ).first()
        if row is None:
            return None
        return Counter(counter_id=row.id, office_code=row.office_code, name=row.name)

    def counter(self, counter_id: str) -> Counter | None:
        with self._reading() as conn:
            row = conn.execute(
                select(m.counters.c.id, m.counters.c.office_code, m.counters.c.name).where(
                    m.counters.c.id == counter_id
                )
            ).first()
        return None if row is None else Counter(row.id, row.office_code, row.name)

    # ------------------------------------------------------------------ posted records

    def post(self, resource: str, counter: Counter, items: Sequence[c.Model]) -> list[c.ItemResult]:
        """Apply posted records (one transaction), one result per item in order."""
        if resource not in c.POSTED:
            raise KeyError(resource)
        return self.write(
            lambda tx: self._apply_all(tx, resource, counter, items), STREAMS_OF[resource]
        )

    def post_keyed(
        self,
        resource: str,
        counter: Counter,
        items: Sequence[c.Model],
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
        key = _clean(key) or ""

        def work(tx: _Tx) -> Reply:
            kept = tx.conn.execute(
                select(
                    m.idempotency_keys.c.request_hash,
                    m.idempotency_keys.c.status_code,
                    m.idempotency_keys.c.response,
                ).where(
                    m.idempotency_keys.c.counter_id == counter.counter_id,
                    m.idempotency_keys.c.key == key,
                )
            ).first()
            if kept is not None:
                if kept.request_hash == request_hash:
                    return Reply(kept.status_code, kept.response.encode("utf-8"), replayed=True)
                return Reply(
                    409,
                    _problem(
                        "conflict",
                        "this Idempotency-Key was used before for another request",
                    ),
                )
            results = self._apply_all(tx, resource, counter, items)
            status, body = render(results)
            tx.conn.execute(
                insert(m.idempotency_keys).values(
                    counter_id=counter.counter_id,
                    key=key,
                    request_hash=request_hash,
                    status_code=status,
                    response=body.decode("utf-8"),
                    created_at=tx.now,
                )
            )
            return Reply(status, body)

        return self.write(work, STREAMS_OF[resource])

    def _apply_all(
        self, tx: _Tx, resource: str, counter: Counter, items: Sequence[c.Model]
    ) -> list[c.ItemResult]:
        """Apply a batch set-wise: a few queries for the whole batch (what is held already, the
        customers, tariffs, ... it refers to), the rules per item in Python, one executemany per
        table.  The outcome is exactly that of applying the items one after another (an id
        twice in the batch: the first is created, the second is a duplicate or a conflict)."""
        model = c.POSTED[resource]
        for item in items:
            if not isinstance(item, model):
                raise TypeError(f"{resource} takes {model.__name__}, not {type(item).__name__}")
        results: list[c.ItemResult | None] = [None] * len(items)
        posted: list[_Posted] = []
        for index, item in enumerate(items):
            body = item.model_dump(mode="json")  # once: stored as is, and hashed
            item_id, item_counter = str(body["id"]), str(body["counter_id"])
            if item_counter != counter.counter_id:
                results[index] = c.ItemResult(
                    id=item_id,
                    status="rejected",
                    message=(
                        f"counter_id {item_counter!r} is not the counter "
                        f"this token belongs to ({counter.counter_id!r})"
                    ),
                )
                continue
            digest = sha256_hex(canonical_json(body))
            posted.append(_Posted(index, item_id, item, body, digest))
        if posted:
            if resource == "sales":
                self._apply_sales(tx, posted, results)
            else:
                self._apply_events(tx, resource, posted, results)
        done = [r for r in results if r is not None]
        assert len(done) == len(items)
        return done

    @staticmethod
    def _repeat(
        item_id: str, old_hash: str, new_hash: str, review: str | None = None
    ) -> c.ItemResult:
        if old_hash == new_hash:
            return c.ItemResult(id=item_id, status="duplicate", review=review)
        return c.ItemResult(
            id=item_id,
            status="conflict",
            review=review,
            message=f"{item_id} is already held with another body",
        )

    @staticmethod
    def _apply_sales(
        tx: _Tx, posted: Sequence[_Posted], results: list[c.ItemResult | None]
    ) -> None:
        conn = tx.conn
        s, cu, tv, ev, ar = (
            m.sales.c,
            m.customers.c,
            m.tariff_versions.c,
            m.events.c,
            m.arrears_items.c,
        )
        # what is held already: id -> (body_hash, review); the batch's new sales join it below
        held: dict[str, tuple[str, str | None]] = {}
        for part in _chunks(list(dict.fromkeys(p.id for p in posted))):
            for r in conn.execute(select(s.id, s.body_hash, s.review).where(s.id.in_(part))):
                held[r.id] = (r.body_hash, r.review)
        fresh: dict[str, c.SaleRecord] = {}  # the first of each id not held, in order
        for p in posted:
            if p.id not in held and p.id not in fresh:
                fresh[p.id] = cast(c.SaleRecord, p.item)
        if not fresh:
            for p in posted:
                old_hash, old_review = held[p.id]
                results[p.index] = CentralStore._repeat(p.id, old_hash, p.hash, old_review)
            return

        # everything the new sales refer to, a query each (none changes while the batch runs
        # but the customers' purchase count and card serial and the open arrears, which are
        # followed in memory below)
        numbers = list(dict.fromkeys(sale.customer_no for sale in fresh.values()))
        custs: dict[str, _Cust] = {}
        for part in _chunks(numbers):
            for cr in conn.execute(
                select(
                    cu.customer_no, cu.status, cu.meter_kind, cu.purchase_count, cu.card_serial
                ).where(cu.customer_no.in_(part))
            ):
                custs[cr.customer_no] = _Cust(
                    cr.status, cr.meter_kind, int(cr.purchase_count), cr.card_serial
                )
        plans = list(dict.fromkeys(sale.tariff_plan for sale in fresh.values()))
        tariffs: set[tuple[str, int]] = set()
        for part in _chunks(plans):
            tariffs.update(
                (r.plan_code, int(r.version_no))
                for r in conn.execute(
                    select(tv.plan_code, tv.version_no).where(tv.plan_code.in_(part))
                )
            )
        reversed_before: set[str] = set()
        for part in _chunks(list(fresh)):
            reversed_before.update(
                conn.scalars(select(ev.subject).where(ev.kind == "reversals", ev.subject.in_(part)))
            )
        refs = list(
            dict.fromkeys(
                ref
                for sale in fresh.values()
                if sale.state == "completed" and sale.customer_no in custs
                for ref in sale.settled_refs
                if "\x00" not in ref
            )
        )
        open_refs: dict[str, str] = {}  # open arrears ref -> its customer
        for part in _chunks(refs):
            for a in conn.execute(
                select(ar.ref, ar.customer_no).where(ar.ref.in_(part), ar.settled_by_sale.is_(None))
            ):
                open_refs[a.ref] = a.customer_no

        first_sale = tx.next_seqs("sales", len(fresh))
        issuing = sum(1 for x in fresh.values() if x.kind == "remote" and x.state == "completed")
        first_remote = tx.next_seqs("remote", issuing) if issuing else 0
        sale_rows: list[dict[str, Any]] = []
        remote_rows: list[dict[str, Any]] = []
        settle_rows: list[dict[str, Any]] = []
        changed: dict[str, set[str]] = {}  # customer -> the columns a card sale changed
        for p in posted:
            kept = held.get(p.id)
            if kept is not None:
                results[p.index] = CentralStore._repeat(p.id, kept[0], p.hash, kept[1])
                continue
            sale = fresh[p.id]
            cust = custs.get(sale.customer_no)
            review: str | None = None
            if cust is None:
                review = REVIEW_UNKNOWN_CUSTOMER
            elif cust.status == "closed":
                review = REVIEW_CUSTOMER_CLOSED
            elif (sale.tariff_plan, sale.tariff_version_no) not in tariffs:
                review = REVIEW_UNKNOWN_TARIFF
            sale_rows.append(
                {
                    "id": sale.id,
                    "counter_id": sale.counter_id,
                    "customer_no": sale.customer_no,
                    "kind": sale.kind,
                    "state": sale.state,
                    "credit": sale.credit,
                    "body": p.body,
                    "body_hash": p.hash,
                    "received_at": tx.now,
                    "review": review,
                    "reversed": sale.id in reversed_before,
                    "seq": first_sale + len(sale_rows),
                }
            )
            completed = sale.state == "completed"
            # a sale reversed before it arrived paid nothing off: its money went back
            if cust is not None and completed and sale.id not in reversed_before:
                settled = [
                    ref
                    for ref in dict.fromkeys(sale.settled_refs)
                    if "\x00" not in ref and open_refs.get(ref) == sale.customer_no
                ]
                for ref in settled:
                    del open_refs[ref]
                    settle_rows.append(
                        {"b_ref": ref, "b_customer": sale.customer_no, "b_sale": sale.id}
                    )
                if settled:
                    tx.touch_customer(sale.customer_no)
                if sale.kind == "card":
                    columns: set[str] = set()
                    if (
                        sale.purchase_count is not None
                        and sale.purchase_count > cust.purchase_count
                    ):
                        cust.purchase_count = sale.purchase_count
                        columns.add("purchase_count")
                    serial = _clean(sale.card_serial)
                    if serial and serial != cust.card_serial:
                        cust.card_serial = serial
                        columns.add("card_serial")
                    if columns:
                        changed.setdefault(sale.customer_no, set()).update(columns)
                        tx.touch_customer(sale.customer_no)
            if sale.kind == "remote" and completed:
                status, reason = "issued", ""
                if cust is None:
                    status, reason = "failed", "unknown customer"
                elif cust.meter_kind != "remote":
                    status, reason = (
                        "failed",
                        "the customer's meter is not a remote fee-control meter",
                    )
                elif cust.status != "active":
                    status, reason = "failed", f"the customer is {cust.status}"
                elif review is not None:
                    status, reason = "failed", review.replace("_", " ")
                remote_rows.append(
                    {
                        "sale_id": sale.id,
                        "status": status,
                        "reason": reason,
                        "seq": first_remote + len(remote_rows),
                    }
                )
            held[p.id] = (p.hash, review)
            results[p.index] = c.ItemResult(id=sale.id, status="created", review=review)

        # the UNIQUE id is the last guard: a sale a concurrent writer inserted meanwhile ends
        # this transaction in an IntegrityError, and write() retries it
        conn.execute(insert(m.sales), sale_rows)
        if remote_rows:
            conn.execute(insert(m.remote_status), remote_rows)
        if settle_rows:
            conn.execute(
                update(m.arrears_items)
                .where(
                    ar.ref == bindparam("b_ref"),
                    ar.customer_no == bindparam("b_customer"),
                    ar.settled_by_sale.is_(None),
                )
                .values(settled_by_sale=bindparam("b_sale")),
                settle_rows,
            )
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for no, columns in changed.items():
            names = tuple(sorted(columns))
            cust = custs[no]
            by_columns.setdefault(names, []).append(
                {"b_no": no, **{f"b_{name}": getattr(cust, name) for name in names}}
            )
        for names, rows in by_columns.items():
            conn.execute(
                update(m.customers)
                .where(cu.customer_no == bindparam("b_no"))
                .values({name: bindparam(f"b_{name}") for name in names}),
                rows,
            )

    def _apply_events(
        self,
        tx: _Tx,
        resource: str,
        posted: Sequence[_Posted],
        results: list[c.ItemResult | None],
    ) -> None:
        conn = tx.conn
        e = m.events.c
        held: dict[str, str] = {}  # id -> body_hash; the batch's new events join it below
        for part in _chunks(list(dict.fromkeys(p.id for p in posted))):
            for r in conn.execute(
                select(e.id, e.body_hash).where(e.kind == resource, e.id.in_(part))
            ):
                held[r.id] = r.body_hash
        fresh: list[_Posted] = []
        for p in posted:
            old = held.get(p.id)
            if old is not None:
                results[p.index] = self._repeat(p.id, old, p.hash)
                continue
            held[p.id] = p.hash
            fresh.append(p)
            results[p.index] = c.ItemResult(id=p.id, status="created")
        if not fresh:
            return
        subject = _SUBJECT[resource]
        conn.execute(
            insert(m.events),
            [
                {
                    "kind": resource,
                    "id": p.id,
                    "subject": str(getattr(p.item, subject)),
                    "counter_id": str(p.body["counter_id"]),
                    "body": p.body,
                    "body_hash": p.hash,
                    "received_at": tx.now,
                }
                for p in fresh
            ],
        )
        if resource == "reversals":
            self._reverse_sales(tx, [cast(c.ReversalRecord, p.item) for p in fresh])
        elif resource == "replacements":
            for p in fresh:
                rep = cast(c.ReplacementRecord, p.item)
                self._set_card_serial(tx, rep.customer_no, _clean(rep.new_serial) or None)
        elif resource == "card-bindings":
            for p in fresh:
                bind = cast(c.CardBindingRecord, p.item)
                self._set_card_serial(tx, bind.customer_no, _clean(bind.serial) or None)
        elif resource == "control-reports":
            self._record_control_reports(tx, [cast(c.ControlReport, p.item) for p in fresh])
        elif resource == "job-results":
            self._close_jobs(tx, [cast(c.JobResultRecord, p.item) for p in fresh])

    @staticmethod
    def _reverse_sales(tx: _Tx, reversals: Sequence[c.ReversalRecord]) -> None:
        """Each reversal takes a sales seq (as when applied one by one); the sales it reverses
        (held and not reversed yet) get it.  A reversal that comes before its sale is found by
        the sale when it arrives."""
        s = m.sales.c
        state: dict[str, bool] = {}
        for part in _chunks(list(dict.fromkeys(r.sale_id for r in reversals))):
            for r in tx.conn.execute(select(s.id, s.reversed).where(s.id.in_(part))):
                state[r.id] = bool(r.reversed)
        first = tx.next_seqs("sales", len(reversals))
        rows: list[dict[str, Any]] = []
        for i, rev in enumerate(reversals):
            if state.get(rev.sale_id) is False:
                state[rev.sale_id] = True
                rows.append({"b_id": rev.sale_id, "b_seq": first + i})
        if rows:
            tx.conn.execute(
                update(m.sales)
                .where(s.id == bindparam("b_id"), s.reversed.is_(False))
                .values(reversed=True, seq=bindparam("b_seq")),
                rows,
            )
            # the whole amount went back to the customer: what the sale paid off is owed again
            ar = m.arrears_items.c
            for part in _chunks([r["b_id"] for r in rows]):
                owing = list(
                    dict.fromkeys(
                        tx.conn.scalars(select(ar.customer_no).where(ar.settled_by_sale.in_(part)))
                    )
                )
                if owing:
                    tx.conn.execute(
                        update(m.arrears_items)
                        .where(ar.settled_by_sale.in_(part))
                        .values(settled_by_sale=None)
                    )
                    for customer_no in owing:
                        tx.touch_customer(customer_no)

    @staticmethod
    def _set_card_serial(tx: _Tx, customer_no: str, serial: str | None) -> None:
        if serial is None:
            return
        done = tx.conn.execute(
            update(m.customers)
            .where(
                m.customers.c.customer_no == customer_no,
                (m.customers.c.card_serial.is_(None)) | (m.customers.c.card_serial != serial),
            )
            .values(card_serial=serial)
        )
        if done.rowcount:
            tx.touch_customer(customer_no)

    @staticmethod
    def _record_control_reports(tx: _Tx, reports: Sequence[c.ControlReport]) -> None:
        """The latest write-back per customer wins (a report older than the one held is
        kept as an event only)."""
        cs = m.control_status.c
        last: dict[str, dt.datetime] = {}
        for part in _chunks(list(dict.fromkeys(r.customer_no for r in reports))):
            for r in tx.conn.execute(
                select(cs.customer_no, cs.last_report_at).where(cs.customer_no.in_(part))
            ):
                last[r.customer_no] = r.last_report_at
        held = set(last)
        latest: dict[str, c.ControlReport] = {}
        for rep in reports:
            before = last.get(rep.customer_no)
            if before is None or rep.seen_at > before:
                last[rep.customer_no] = rep.seen_at
                latest[rep.customer_no] = rep
        fresh = [
            {
                "customer_no": no,
                "meter_remaining": rep.meter_remaining,
                "meter_purchase_count": rep.meter_purchase_count,
                "last_report_at": rep.seen_at,
            }
            for no, rep in latest.items()
            if no not in held
        ]
        if fresh:
            tx.conn.execute(insert(m.control_status), fresh)
        newer = [
            {
                "b_no": no,
                "b_remaining": rep.meter_remaining,
                "b_count": rep.meter_purchase_count,
                "b_at": rep.seen_at,
            }
            for no, rep in latest.items()
            if no in held
        ]
        if newer:
            tx.conn.execute(
                update(m.control_status)
                .where(cs.customer_no == bindparam("b_no"))
                .values(
                    meter_remaining=bindparam("b_remaining", type_=cs.meter_remaining.type),
                    meter_purchase_count=bindparam("b_count", type_=cs.meter_purchase_count.type),
                    last_report_at=bindparam("b_at", type_=cs.last_report_at.type),
                ),
                newer,
            )

    @staticmethod
    def _close_jobs(tx: _Tx, outcomes: Sequence[c.JobResultRecord]) -> None:
        """Each job result takes a jobs seq (as when applied one by one); a held job whose
        status it changes gets it."""
        j = m.jobs.c
        status: dict[str, str] = {}
        for part in _chunks(list(dict.fromkeys(r.job_id for r in outcomes))):
            for r in tx.conn.execute(select(j.id, j.status).where(j.id.in_(part))):
                status[r.id] = r.status
        first = tx.next_seqs("jobs", len(outcomes))
        rows: list[dict[str, Any]] = []
        for i, res in enumerate(outcomes):
            now = status.get(res.job_id)
            if now is not None and now != res.outcome:
                status[res.job_id] = res.outcome
                rows.append({"b_id": res.job_id, "b_status": res.outcome, "b_seq": first + i})
        if rows:
            tx.conn.execute(
                update(m.jobs)
                .where(j.id == bindparam("b_id"), j.status != bindparam("b_status"))
                .values(status=bindparam("b_status"), seq=bindparam("b_seq")),
                rows,
            )

    # ------------------------------------------------------------------ pages

    def _page(
        self,
        conn: Connection,
        table_seq: Any,
        stmt: Any,
        after: int,
        limit: int,
    ) -> tuple[list[RowMapping], int, bool]:
        rows = list(
            conn.execute(
                stmt.where(table_seq > _clamp_cursor(after)).order_by(table_seq).limit(limit + 1)
            ).mappings()
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = int(rows[-1]["seq"]) if rows else after
        return rows, next_cursor, has_more

    def tariffs_page(self, after: int = 0, limit: int = DEFAULT_LIMIT) -> c.TariffPage:
        return c.TariffPage.model_validate_json(self.tariffs_page_json(after, limit))

    def tariffs_page_json(self, after: int = 0, limit: int = DEFAULT_LIMIT) -> bytes:
        _check_limit(limit)
        t = m.tariff_versions.c
        stmt = select(
            t.plan_code, t.plan_name, t.version_no, t.kind, t.effective_from, t.spec, t.seq
        )
        with self._reading() as conn:
            rows, cursor, more = self._page(conn, t.seq, stmt, after, limit)
        items = [dict(r) for r in rows]
        return _page_json(items, cursor, more)

    def customers_page(self, after: int = 0, limit: int = DEFAULT_LIMIT) -> c.CustomerPage:
        return c.CustomerPage.model_validate_json(self.customers_page_json(after, limit))

    def customers_page_json(self, after: int = 0, limit: int = DEFAULT_LIMIT) -> bytes:
        """The hot path of a full archive pull: two Core queries (the customers, then the open
        arrears of the same seq range), plain tuples, one JSON dump in pydantic-core."""
        _check_limit(limit)
        cu = m.customers.c
        ar = m.arrears_items.c
        with self._reading() as conn:
            rows = conn.execute(
                select(*(cu[name] for name in _CUSTOMER_COLUMNS))
                .where(cu.seq > _clamp_cursor(after))
                .order_by(cu.seq)
                .limit(limit + 1)
            ).all()
            has_more = len(rows) > limit
            rows = rows[:limit]
            owed: dict[str, list[dict[str, Any]]] = {}
            if rows:
                # the open items of exactly these customers: the same seq range, joined (one
                # query on the seq index, no 5000-value IN list to compile)
                first_seq, last_seq = rows[0][-1], rows[-1][-1]
                for r in conn.execute(
                    select(ar.customer_no, *(ar[name] for name in _ARREARS_COLUMNS))
                    .join(m.customers, cu.customer_no == ar.customer_no)
                    .where(
                        cu.seq >= first_seq,
                        cu.seq <= last_seq,
                        ar.settled_by_sale.is_(None),
                    )
                    .order_by(ar.id)
                ):
                    owed.setdefault(r[0], []).append(
                        dict(zip(_ARREARS_COLUMNS, r[1:], strict=True))
                    )
        items = []
        for r in rows:
            d = dict(zip(_CUSTOMER_COLUMNS, r, strict=True))
            d["arrears"] = owed.get(r[0], [])
            items.append(d)
        cursor = int(rows[-1][-1]) if rows else after
        return _page_json(items, cursor, has_more)

    def remote_page(
        self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> c.RemoteStatusPage:
        return c.RemoteStatusPage.model_validate_json(self.remote_page_json(counter, after, limit))

    def remote_page_json(
        self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> bytes:
        _check_limit(limit)
        rs = m.remote_status.c
        stmt = (
            select(rs.sale_id, rs.status, rs.reason, rs.seq)
            .join(m.sales, m.sales.c.id == rs.sale_id)
            .where(m.sales.c.counter_id == counter.counter_id)
        )
        with self._reading() as conn:
            rows, cursor, more = self._page(conn, rs.seq, stmt, after, limit)
        return _page_json([dict(r) for r in rows], cursor, more)

    def jobs_page(self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT) -> c.JobPage:
        return c.JobPage.model_validate_json(self.jobs_page_json(counter, after, limit))

    def jobs_page_json(self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT) -> bytes:
        _check_limit(limit)
        j = m.jobs.c
        stmt = select(
            j.id,
            j.kind,
            j.customer_no,
            j.meter_no,
            j.office_code,
            j.params,
            j.status,
            j.created_at,
            j.seq,
        ).where(j.office_code == counter.office_code)
        with self._reading() as conn:
            rows, cursor, more = self._page(conn, j.seq, stmt, after, limit)
        return _page_json([dict(r) for r in rows], cursor, more)

    def counter_sales_page(
        self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> c.CounterSalePage:
        return c.CounterSalePage.model_validate_json(
            self.counter_sales_page_json(counter, after, limit)
        )

    def counter_sales_page_json(
        self, counter: Counter, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> bytes:
        _check_limit(limit)
        s = m.sales.c
        stmt = select(s.body, s.received_at, s.reversed, s.review, s.seq).where(
            s.counter_id == counter.counter_id
        )
        with self._reading() as conn:
            rows, cursor, more = self._page(conn, s.seq, stmt, after, limit)
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
        return _page_json(items, cursor, more)

    # ------------------------------------------------------------------ control status, audit

    def control_status(self, customer_no: str) -> c.ControlStatus | None:
        cu = m.customers.c
        cs = m.control_status.c
        s = m.sales.c
        with self._reading() as conn:
            cust = conn.execute(
                select(cu.status, cu.alarm1, cu.alarm2, cu.overdraft_limit).where(
                    cu.customer_no == customer_no
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
        state: str
        if cust.status == "closed":
            state = "closed"
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
            }
        )

    def put_audit_head(self, counter: Counter, head: c.AuditHead) -> c.AuditHeadAck:
        """Record the counter's audit head; :class:`AuditDiverged` when it does not continue
        the heads it reported before."""
        ah = m.audit_heads.c

        def work(tx: _Tx) -> c.AuditHeadAck:
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

    # ------------------------------------------------------------------ central-side changes

    def add_tariff_version(
        self,
        plan_code: str,
        plan_name: str,
        spec: Mapping[str, Any],
        effective_from: dt.datetime,
        *,
        version_no: int | None = None,
    ) -> c.TariffVersionRecord:
        """Issue a tariff version (the next number of the plan unless given); the kind is
        ``spec["kind"]``.  Idempotent when the same plan/version exists already."""
        if effective_from.tzinfo is None:
            raise ValueError("effective_from must be timezone-aware")
        t = m.tariff_versions.c

        def work(tx: _Tx) -> c.TariffVersionRecord:
            no = version_no
            if no is None:
                top = tx.conn.execute(
                    select(func.max(t.version_no)).where(t.plan_code == plan_code)
                ).scalar_one()
                no = int(top or 0) + 1
            row = (
                tx.conn.execute(
                    select(
                        t.plan_code,
                        t.plan_name,
                        t.version_no,
                        t.kind,
                        t.effective_from,
                        t.spec,
                        t.seq,
                    ).where(t.plan_code == plan_code, t.version_no == no)
                )
                .mappings()
                .first()
            )
            if row is None:
                values = {
                    "plan_code": plan_code,
                    "plan_name": plan_name,
                    "version_no": no,
                    "kind": str(spec["kind"]),
                    "effective_from": effective_from,
                    "spec": dict(spec),
                    "seq": tx.next_seqs("tariffs"),
                }
                c.TariffVersionRecord.model_validate(values)  # refuse what a pull could not read
                tx.conn.execute(insert(m.tariff_versions).values(**values))
                return c.TariffVersionRecord.model_validate(values)
            return c.TariffVersionRecord.model_validate(dict(row))

        return self.write(work, ("tariffs",))

    def add_customers(self, rows: Iterable[Mapping[str, Any]], *, chunk: int = 10_000) -> int:
        """Insert the customers that are not there yet, with their open arrears.

        A row holds the fields of :class:`~sync.contract.CustomerRecord` without ``seq``
        (``address``, ``phone``, ``status``, ratios, ``card_serial`` and ``purchase_count`` may
        be left out) and optionally ``arrears``: a list of ``ref``/``kind``/``amount``/...
        dicts.  A customer already there is skipped with its arrears.  Answers how many were
        added.  One transaction, Core executemany in chunks (for archives of a million)."""
        cu = m.customers.c

        def insert_fresh(tx: _Tx, batch: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> int:
            numbers = [b[0]["customer_no"] for b in batch]
            present = set(
                tx.conn.scalars(select(cu.customer_no).where(cu.customer_no.in_(numbers)))
            )
            fresh = [b for b in batch if b[0]["customer_no"] not in present]
            if not fresh:
                return 0
            first = tx.next_seqs("customers", len(fresh))
            for i, (values, _owed) in enumerate(fresh):
                values["seq"] = first + i
            tx.conn.execute(insert(m.customers), [values for values, _owed in fresh])
            owed = [item for _values, items in fresh for item in items]
            if owed:
                self._insert_arrears(tx, owed, chunk=chunk, touch=False)
            return len(fresh)

        def work(tx: _Tx) -> int:
            added = 0
            batch: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
            for row in rows:
                owed = [{**a, "customer_no": row["customer_no"]} for a in row.get("arrears", ())]
                batch.append((_customer_values(row), owed))
                if len(batch) >= chunk:
                    added += insert_fresh(tx, batch)
                    batch = []
            if batch:
                added += insert_fresh(tx, batch)
            return added

        return self.write(work, ("customers",))

    @staticmethod
    def _insert_arrears(
        tx: _Tx, items: Sequence[Mapping[str, Any]], *, chunk: int, touch: bool = True
    ) -> int:
        """Open arrears items (a ref that exists is skipped); their customers change unless
        they are new in this transaction (``touch=False``)."""
        ar = m.arrears_items.c
        count = 0
        for start in range(0, len(items), chunk):
            part = [
                {
                    "ref": i["ref"],
                    "customer_no": i["customer_no"],
                    "kind": i["kind"],
                    "description": i.get("description", ""),
                    "amount": int(i["amount"]),
                    "must_collect": bool(i.get("must_collect", True)),
                    "settled_by_sale": None,
                }
                for i in items[start : start + chunk]
            ]
            present = set(
                tx.conn.scalars(select(ar.ref).where(ar.ref.in_([p["ref"] for p in part])))
            )
            fresh = [p for p in part if p["ref"] not in present]
            if fresh:
                tx.conn.execute(insert(m.arrears_items), fresh)
                count += len(fresh)
                if touch:
                    for no in dict.fromkeys(p["customer_no"] for p in fresh):
                        tx.touch_customer(no)
        return count

    def add_arrears(
        self,
        customer_no: str,
        ref: str,
        amount: int,
        *,
        kind: str = "arrears",
        description: str = "",
        must_collect: bool = True,
    ) -> bool:
        """Add an open arrears item; the customer reappears in the next delta pull.  False when
        the ref exists already."""
        item = c.ArrearsRecord.model_validate(
            {
                "ref": ref,
                "kind": kind,
                "description": description,
                "amount": amount,
                "must_collect": must_collect,
            }
        )

        def work(tx: _Tx) -> bool:
            return bool(
                self._insert_arrears(
                    tx, [{"customer_no": customer_no, **item.model_dump()}], chunk=1
                )
            )

        return self.write(work, ("customers",))

    def update_customer(self, customer_no: str, **changes: Any) -> c.CustomerRecord:
        """Change archive fields of a customer (status, thresholds, tariff_plan, ...); it gets a
        new seq."""
        bad = set(changes) - (set(_CUSTOMER_COLUMNS) - {"customer_no", "seq"})
        if bad:
            raise ValueError(f"not customer fields: {sorted(bad)}")

        def work(tx: _Tx) -> None:
            done = tx.conn.execute(
                update(m.customers)
                .where(m.customers.c.customer_no == customer_no)
                .values(**changes)
            )
            if not done.rowcount:
                raise KeyError(customer_no)
            tx.touch_customer(customer_no)

        self.write(work, ("customers",))
        found = self.customer(customer_no)
        assert found is not None
        return found

    def add_job(
        self,
        job_id: str,
        kind: str,
        customer_no: str,
        params: Mapping[str, Any],
        *,
        status: str = "open",
        office_code: str | None = None,
        meter_no: str | None = None,
        created_at: dt.datetime | None = None,
    ) -> c.Job:
        """Open a management-card job for a customer (office and meter from the archive unless
        given); idempotent by id.  An existing job with another status gets it and a new seq."""
        j = m.jobs.c

        def work(tx: _Tx) -> None:
            nonlocal office_code, meter_no
            old = tx.conn.execute(select(j.status).where(j.id == job_id)).first()
            if old is not None:
                if old.status != status:
                    tx.conn.execute(
                        update(m.jobs)
                        .where(j.id == job_id)
                        .values(status=status, seq=tx.next_seqs("jobs"))
                    )
                return
            if office_code is None or meter_no is None:
                cust = tx.conn.execute(
                    select(m.customers.c.office_code, m.customers.c.meter_no).where(
                        m.customers.c.customer_no == customer_no
                    )
                ).first()
                if cust is None:
                    raise KeyError(customer_no)
                office_code = office_code or cust.office_code
                meter_no = meter_no or cust.meter_no
            values = {
                "id": job_id,
                "kind": kind,
                "customer_no": customer_no,
                "meter_no": meter_no,
                "office_code": office_code,
                "params": dict(params),
                "status": status,
                "created_at": created_at or tx.now,
                "seq": tx.next_seqs("jobs"),
            }
            c.Job.model_validate(values)
            tx.conn.execute(insert(m.jobs).values(**values))

        self.write(work, ("jobs",))
        found = self.job(job_id)
        assert found is not None
        return found

    def set_remote_status(self, sale_id: str, status: str, reason: str = "") -> c.RemoteStatus:
        """Change the issuing status of a remote sale (a new seq in the remote stream)."""
        rs = m.remote_status.c

        def work(tx: _Tx) -> None:
            seq = tx.next_seqs("remote")
            done = tx.conn.execute(
                update(m.remote_status)
                .where(rs.sale_id == sale_id)
                .values(status=status, reason=reason, seq=seq)
            )
            if not done.rowcount:
                tx.conn.execute(
                    insert(m.remote_status).values(
                        sale_id=sale_id, status=status, reason=reason, seq=seq
                    )
                )

        self.write(work, ("remote",))
        found = self.remote_status(sale_id)
        assert found is not None
        return found

    # ------------------------------------------------------------------ inspection

    def customer(self, customer_no: str) -> c.CustomerRecord | None:
        cu = m.customers.c
        ar = m.arrears_items.c
        with self._reading() as conn:
            row = (
                conn.execute(
                    select(*(cu[n] for n in _CUSTOMER_COLUMNS)).where(cu.customer_no == customer_no)
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            owed = conn.execute(
                select(*(ar[n] for n in _ARREARS_COLUMNS))
                .where(ar.customer_no == customer_no, ar.settled_by_sale.is_(None))
                .order_by(ar.id)
            ).mappings()
            return c.CustomerRecord.model_validate({**row, "arrears": [dict(a) for a in owed]})

    def arrears_settled_by(self, ref: str) -> str | None:
        ar = m.arrears_items.c
        with self._reading() as conn:
            return conn.execute(
                select(ar.settled_by_sale).where(ar.ref == ref)
            ).scalar_one_or_none()

    def sale(self, sale_id: str) -> c.CounterSale | None:
        s = m.sales.c
        with self._reading() as conn:
            r = conn.execute(
                select(s.body, s.received_at, s.reversed, s.review, s.seq).where(s.id == sale_id)
            ).first()
        if r is None:
            return None
        return c.CounterSale(
            sale=c.SaleRecord.model_validate(r.body),
            received_at=r.received_at,
            reversed=bool(r.reversed),
            review=r.review,
            seq=r.seq,
        )

    def remote_status(self, sale_id: str) -> c.RemoteStatus | None:
        rs = m.remote_status.c
        with self._reading() as conn:
            r = (
                conn.execute(
                    select(rs.sale_id, rs.status, rs.reason, rs.seq).where(rs.sale_id == sale_id)
                )
                .mappings()
                .first()
            )
        return None if r is None else c.RemoteStatus.model_validate(dict(r))

    def job(self, job_id: str) -> c.Job | None:
        j = m.jobs.c
        with self._reading() as conn:
            r = conn.execute(select(m.jobs).where(j.id == job_id)).mappings().first()
        return None if r is None else c.Job.model_validate(dict(r))

    def event(self, resource: str, item_id: str) -> dict[str, Any] | None:
        """The body of a posted record other than a sale, as stored."""
        e = m.events.c
        with self._reading() as conn:
            body = conn.execute(
                select(e.body).where(e.kind == resource, e.id == item_id)
            ).scalar_one_or_none()
        return None if body is None else dict(body)

    def count(self, table: str) -> int:
        """Rows in one of the tables (``customers``, ``sales``, ``events``, ...)."""
        t = m.metadata.tables[f"central_{table}"]
        with self._reading() as conn:
            return int(conn.execute(select(func.count()).select_from(t)).scalar_one())

    def last_seq(self, stream: str) -> int:
        with self._reading() as conn:
            return int(
                conn.execute(
                    select(m.streams.c.last_seq).where(m.streams.c.name == stream)
                ).scalar_one()
            )


# --------------------------------------------------------------------------- helpers


def _chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``values`` in slices short enough for one ``IN (...)``."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _page_json(items: list[dict[str, Any]], next_cursor: int, has_more: bool) -> bytes:
    return _JSON_ANY.dump_json({"items": items, "next_cursor": next_cursor, "has_more": has_more})


def _customer_values(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "customer_no": row["customer_no"],
        "name": row["name"],
        "address": row.get("address", ""),
        "phone": row.get("phone", ""),
        "meter_no": row["meter_no"],
        "meter_kind": row["meter_kind"],
        "status": row.get("status", "active"),
        "office_code": row["office_code"],
        "tariff_plan": row["tariff_plan"],
        "ct_ratio": row.get("ct_ratio", 1),
        "pt_ratio": row.get("pt_ratio", 1),
        "alarm1": row["alarm1"],
        "alarm2": row["alarm2"],
        "overdraft_limit": row["overdraft_limit"],
        "credit_ceiling": row["credit_ceiling"],
        "card_serial": row.get("card_serial"),
        "purchase_count": row.get("purchase_count", 0),
    }


__all__ = [
    "AuditDiverged",
    "CentralStore",
    "Counter",
    "Reply",
]
