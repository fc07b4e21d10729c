"""What every part of the central store shares: the database, write transactions with stream
sequence numbers, and small helpers.

Transactions: every write is one transaction.  On SQLite it begins with ``BEGIN IMMEDIATE`` (one
writer at a time).  On PostgreSQL writers of different offices run side by side:

* a counter's posted records are applied under its office's lock (a transaction-scoped advisory
  lock; a combined group takes its offices' locks in order), so two writes that read and change
  the same customers (purchase counts, open arrears, card serials) never interleave;
* the station's own data changes (tariffs, the customer archive, arrears, jobs) take the lock of
  every office at once (the exclusive side of a lock the posts share), since they may touch any
  customer;
* sequence numbers come from each stream's own PostgreSQL sequence, which locks nothing: the
  office locks already make the writers of one office commit one after another, so an office's
  rows commit in the order of their numbers, and a pull (always one office's or one counter's
  rows) never sees seq 11 before seq 10.  The tariffs, which every office pulls, are written
  only by the station's own changes, under every office's lock.

Locks are always taken in the same order (the shared or exclusive station lock, then offices by
key), so writers wait for each other but never deadlock.  A race the locks do not cover (two
offices binding the same meter at the same moment, say) ends in an IntegrityError; the whole
transaction is then retried and finds the first one's row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import AbstractContextManager
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from typing import Protocol
from typing import TypeVar

from pydantic import TypeAdapter
from sqlalchemy import Connection
from sqlalchemy import Engine
from sqlalchemy import any_
from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable

from app.clock import Clock
from app.clock import SystemClock
from app.persistence.db import WRITE_OPTION
from app.persistence.db import JsonText
from app.persistence.db import make_engine
from app.persistence.db import normalize_url
from sync import contract as c
from sync.central import models as m
from sync.central import schema

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_LIMIT = 1000
SEQ_LIMIT = 2**62  # a cursor beyond this can only be past the end of every stream
WRITE_ATTEMPTS = 5
IN_CHUNK = 500  # values in one IN (...) of a batch's look-ups
# records in one group commit at the most: a 500-sale batch and a little more.  A group holds
# its offices' locks until it commits, so a larger group makes the other workers' groups of
# those offices (and a 500-sale batch behind it) wait longer: with 2,000, the full load bench's
# 500-sale batches took 12 s at the median, with 600 2.1 s (when the stream locks still made
# every group wait for the one before it)
GROUP_RECORDS = 600
# groups a worker writes at once on PostgreSQL (SQLite: one writer at a time): two offices'
# groups run side by side, and a second one overlaps the first one's waits for the database
GROUP_WRITERS = 2
# the first key of the station's advisory locks (the second: 0 for the station, else an office)
LOCK_NAMESPACE = 0x43560016
# how far ahead of the central clock a record's time may be (the counters' clocks drift)
DEFAULT_CLOCK_SKEW = dt.timedelta(minutes=10)
_JSON_ANY: TypeAdapter[Any] = TypeAdapter(Any)


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


@dataclass
class RequestRefused(Exception):
    """A refused request: ``status`` and ``code`` become the Problem answered."""

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return self.message


def lock_namespace(schema_name: str | None) -> int:
    """The first key of a station's advisory locks.  Advisory locks are the whole PostgreSQL
    database's, not a schema's: a station in a schema of its own (several stations, or a
    station's tests, in one database) takes its locks under a key of its own, so that it never
    waits for another's.  A station in ``public`` keeps :data:`LOCK_NAMESPACE`, the key every
    earlier version took, so hosts of two versions still exclude each other while a rolling
    upgrade runs."""
    if not schema_name or schema_name == "public":
        return LOCK_NAMESPACE
    key = (zlib.crc32(f"cardvend.station.{schema_name}".encode()) ^ 0x80000000) - 0x80000000
    return key if key not in (0, LOCK_NAMESPACE) else LOCK_NAMESPACE + 1


def office_lock_key(office_code: str) -> int:
    """The advisory-lock key of an office: a signed 32-bit number other than 0 (the station's).
    Two offices that share a key only wait for each other."""
    key = (zlib.crc32(office_code.encode("utf-8")) ^ 0x80000000) - 0x80000000
    return key or 1


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> str:
    """One text per value: keys sorted, no spaces, ASCII (hashes compare bodies by it)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def body_hash(item: c.Model) -> str:
    """The canonical hash of a validated record (what duplicate/conflict compare)."""
    return Dumped.of(item).hash


@dataclass(frozen=True, slots=True)
class Dumped:
    """A posted record dumped once: its JSON value (what the rules read), its canonical text
    (stored as the row's body, which reads back as the same value) and that text's hash."""

    item: c.Model
    value: dict[str, Any]
    text: JsonText
    hash: str

    @classmethod
    def of(cls, item: c.Model) -> Dumped:
        value = item.model_dump(mode="json")
        text = canonical_json(value)
        return cls(item, value, JsonText(text), sha256_hex(text))


def request_hash(request_line: str, records: Sequence[Dumped]) -> str:
    """The hash an Idempotency-Key keeps of a post: its method and path and the canonical text
    of its records as a list (the same text as ``canonical_json`` of their values)."""
    listed = ",".join(d.text for d in records)
    return sha256_hex(f"{request_line}\n[{listed}]")


def clean(text: str | None) -> str | None:
    """Free text bound for a text column: PostgreSQL refuses NUL characters."""
    return None if text is None else text.replace("\x00", "")


def problem_json(code: str, message: str, ids: Sequence[str] = ()) -> bytes:
    return c.Problem(code=code, message=message, ids=list(ids)).model_dump_json().encode()


def failed_attempt(
    attempts: int, error: str, now: dt.datetime, most: int, backoff_s: Sequence[int]
) -> dict[str, Any]:
    """The columns of a queued row (a command to a meter, an SMS) whose attempt ``attempts``
    failed with ``error``: ``failed`` once ``most`` attempts were made, else ``pending`` again
    after that attempt's wait in ``backoff_s`` (its last wait repeats)."""
    wait = backoff_s[min(attempts, len(backoff_s)) - 1]
    return {
        "status": "failed" if attempts >= most else "pending",
        "attempts": attempts,
        "last_error": error,
        "next_at": now + dt.timedelta(seconds=wait),
    }


def clamp_cursor(after: int) -> int:
    return min(max(after, 0), SEQ_LIMIT)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= c.MAX_PAGE:
        raise ValueError(f"limit must be 1 to {c.MAX_PAGE}")
    return limit


class AmongList:
    """A statement whose rows are looked up among a list (``among(column, name)`` where the
    statement has its condition), built once for each kind of database: on PostgreSQL
    ``column = ANY(:name)``, the list sent as one array, so that every length of list is one
    SQL text (rendered, parsed, prepared and planned once); elsewhere an expanding ``IN``.
    An ``IN`` of 500 values rendered a new text of 500 parameters for each batch."""

    def __init__(self, build: Callable[[Callable[[Any, str], Any]], Executable]) -> None:
        self.postgres = build(lambda col, name: col == any_(bindparam(name, type_=ARRAY(col.type))))
        self.other = build(lambda col, name: col.in_(bindparam(name, expanding=True)))

    def on(self, conn: Connection) -> Executable:
        return self.postgres if conn.dialect.name == "postgresql" else self.other


def chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``values`` in slices short enough for one ``IN (...)``."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def page_json(items: list[dict[str, Any]], next_cursor: int, has_more: bool) -> bytes:
    return _JSON_ANY.dump_json({"items": items, "next_cursor": next_cursor, "has_more": has_more})


def customer_values(row: Mapping[str, Any]) -> dict[str, Any]:
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


# the write path's statements, built once (see the note in store.py)
_LOCK_STATION_SHARED = text("SELECT pg_advisory_xact_lock_shared(:ns, 0)")
_LOCK = text("SELECT pg_advisory_xact_lock(:ns, :key)")
_NEXTVALS = text("SELECT nextval(CAST(:seq AS regclass)) FROM generate_series(1, :n)")
_st = m.streams.c
_COUNT_UP = (
    update(m.streams)
    .where(_st.name == bindparam("stream"))
    .values(last_seq=_st.last_seq + bindparam("n"))
    .returning(_st.last_seq)
)
_RESEQUENCE = (
    update(m.customers)
    .where(m.customers.c.customer_no == bindparam("no"))
    .values(seq=bindparam("new_seq"))
)
_ik = m.idempotency_keys.c
_KEPT = select(_ik.request_hash, _ik.status_code, _ik.response).where(
    _ik.counter_id == bindparam("counter"), _ik.key == bindparam("key")
)
_KEEP = insert(m.idempotency_keys)


class Tx:
    """One write transaction: locks, sequence numbers, customers to re-sequence.

    ``offices`` is None for the station's own changes (every office locked: the exclusive side
    of the station lock, taken at once when ``streams`` are declared, else at the first
    allocation) and the offices written for when a counter's records are applied (their locks
    taken at once; a post allocates only from the ``streams`` it declared)."""

    def __init__(
        self,
        conn: Connection,
        now: dt.datetime,
        streams: Iterable[str] = (),
        offices: Iterable[str] | None = None,
        namespace: int = LOCK_NAMESPACE,
    ) -> None:
        self.conn = conn
        self.now = now
        self._namespace = namespace  # the first key of this station's advisory locks
        self._touched: dict[str, None] = {}
        self._postgres = conn.dialect.name == "postgresql"
        self._streams = frozenset(streams)
        self._post = offices is not None
        # whether this transaction holds what allocating needs (SQLite: BEGIN IMMEDIATE)
        self._locked = not self._postgres or self._post
        if not self._postgres:
            return
        if offices is None:
            if self._streams:
                self._lock_station()
            return
        conn.execute(_LOCK_STATION_SHARED, {"ns": namespace})
        for key in sorted({office_lock_key(o) for o in offices}):
            conn.execute(_LOCK, {"ns": namespace, "key": key})

    def _lock_station(self) -> None:
        self.conn.execute(_LOCK, {"ns": self._namespace, "key": 0})
        self._locked = True

    def seqs(self, stream: str, n: int) -> list[int]:
        """Allocate ``n`` sequence numbers of ``stream``, in increasing order.

        On PostgreSQL they come from the stream's sequence (``central_seq_<stream>``), which
        takes no lock: the office locks make the writers of an office commit one after another,
        so an office's rows commit in the order of their numbers and a pull, which always reads
        one office's (or one counter's) rows, never sees seq 11 before seq 10.  The numbers are
        unique but not contiguous (two offices' writers interleave; a rolled-back allocation is
        a gap).  On SQLite the one writer counts in ``central_streams``."""
        if n <= 0:
            return []
        if self._post and stream not in self._streams:
            raise ValueError(f"stream {stream!r} was not declared for this transaction")
        if not self._locked:
            self._lock_station()
        if self._postgres:
            values = self.conn.execute(
                _NEXTVALS, {"seq": m.stream_sequence(stream), "n": n}
            ).scalars()
            return sorted(int(v) for v in values)
        last = self.conn.execute(_COUNT_UP, {"stream": stream, "n": n}).scalar_one()
        return list(range(int(last) - n + 1, int(last) + 1))

    def next_seq(self, stream: str) -> int:
        """One sequence number of ``stream``."""
        return self.seqs(stream, 1)[0]

    def number_rows(self, stream: str, rows: Sequence[dict[str, Any]]) -> None:
        """Give each row, in order, the next sequence number of ``stream`` (its ``seq``)."""
        for row, seq in zip(rows, self.seqs(stream, len(rows)), strict=True):
            row["seq"] = seq

    def touch_customer(self, customer_no: str) -> None:
        """The customer changed: it gets a new seq (once) when the transaction finishes."""
        self._touched[customer_no] = None

    def finish(self) -> None:
        if not self._touched:
            return
        seqs = self.seqs("customers", len(self._touched))
        self.conn.execute(
            _RESEQUENCE,
            [{"no": no, "new_seq": seq} for no, seq in zip(self._touched, seqs, strict=True)],
        )
        self._touched.clear()


def keyed_reply(
    tx: Tx,
    counter_id: str,
    key: str,
    request_hash: str,
    answer: Callable[[], tuple[int, bytes]],
) -> Reply:
    """A write under a counter's Idempotency-Key: the answer kept with the key is replayed for
    the same request and the same key with another request is a 409 conflict; else ``answer()``
    (status and body) is kept with the key in ``tx`` and returned."""
    kept = tx.conn.execute(_KEPT, {"counter": counter_id, "key": key}).first()
    if kept is not None:
        if kept.request_hash == request_hash:
            return Reply(kept.status_code, kept.response.encode("utf-8"), replayed=True)
        return Reply(
            409,
            problem_json("conflict", "this Idempotency-Key was used before for another request"),
        )
    status, body = answer()
    tx.conn.execute(
        _KEEP,
        {
            "counter_id": counter_id,
            "key": key,
            "request_hash": request_hash,
            "status_code": status,
            "response": body.decode("utf-8"),
            "created_at": tx.now,
        },
    )
    return Reply(status, body)


class WriteTimes(Protocol):
    """Where posted records spend their time on the write path (the station's metrics)."""

    def queued(self, seconds: float) -> None:
        """A post waited ``seconds`` for a group to take it."""

    def written(self, records: int, locks: float, applying: float) -> None:
        """A transaction wrote ``records``: ``locks`` seconds to get a connection, begin and take
        its offices' locks, then ``applying`` seconds to apply them and commit."""


# the time a write took: (seconds to get a connection, begin and lock; seconds to work and commit)
Timed = Callable[[float, float], None]


@dataclass
class _Queued:
    """One request waiting to be written with others (see :class:`WriteCombiner`)."""

    work: Callable[[Tx], Any]
    streams: tuple[str, ...]
    offices: tuple[str, ...]
    size: int
    queued_at: float = 0.0  # time.perf_counter() when submitted
    taken: bool = False  # in a group being written
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class WriteCombiner:
    """Group commit for posted records: requests that arrive while a write is under way are
    written together in the next transaction, each in its own savepoint, so the per-transaction
    costs (the office locks and the commit's flush to disk) are paid once per group instead of
    once per request.  A request's failure rolls back its savepoint only; a unique-key race
    (another writer got there first) sends every request of the group through
    :meth:`StoreBase.write` alone, which retries it.  A waiting request's thread writes the
    group it takes (no thread of its own); the others wait for their result.  Up to
    ``writers`` groups are written at once: while one waits for the database (a round trip,
    its offices' locks, the commit's flush), the next one's Python runs.
    """

    def __init__(self, store: StoreBase, most: int = GROUP_RECORDS, writers: int = 1) -> None:
        self.store = store
        self.most = most  # records in one group at the most (a transaction stays short)
        self.writers = max(1, writers)
        self._cond = threading.Condition()
        self._queue: list[_Queued] = []
        self._active = 0  # groups being written
        self.groups = 0  # transactions that held more than one request
        self.largest = 0  # the most requests one transaction held
        self.times: WriteTimes | None = None  # where the time goes (set by the server's metrics)

    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)

    def submit(
        self, work: Callable[[Tx], T], streams: Iterable[str], offices: Iterable[str], size: int
    ) -> T:
        """Write ``work`` (a counter's records for ``offices``) with whatever else is waiting."""
        entry = _Queued(work, tuple(streams), tuple(offices), max(1, size), time.perf_counter())
        with self._cond:
            self._queue.append(entry)
            while not entry.done:
                if not entry.taken and self._active < self.writers:
                    self._active += 1
                    group = self._take()
                    self._cond.release()
                    try:
                        self._write(group)
                    finally:
                        self._cond.acquire()
                        self._active -= 1
                        self._cond.notify_all()
                    continue
                self._cond.wait()
        if entry.error is not None:
            raise entry.error
        result: T = entry.result
        return result

    def _take(self) -> list[_Queued]:
        group: list[_Queued] = []
        total = 0
        while self._queue and (not group or total + self._queue[0].size <= self.most):
            entry = self._queue.pop(0)
            entry.taken = True
            if self.times is not None:
                self.times.queued(time.perf_counter() - entry.queued_at)
            group.append(entry)
            total += entry.size
        return group

    def _write(self, group: list[_Queued]) -> None:
        if len(group) > 1:
            try:
                self._together(group)
                return
            except IntegrityError:
                log.info("a group of %d writes raced another writer: one by one", len(group))
            except Exception:  # the commit itself failed: each request on its own
                log.exception("a group of %d writes failed: one by one", len(group))
        for entry in group:
            try:
                entry.result = self.store.write(
                    entry.work, entry.streams, entry.offices, timed=self._timed(entry.size)
                )
            except BaseException as exc:  # handed to the request's own thread
                entry.error = exc
            entry.done = True

    def _timed(self, records: int) -> Timed | None:
        times = self.times
        if times is None:
            return None
        return lambda locks, applying: times.written(records, locks, applying)

    def _together(self, group: list[_Queued]) -> None:
        streams = sorted({s for entry in group for s in entry.streams})
        offices = sorted({o for entry in group for o in entry.offices})
        outcomes: list[tuple[Any, BaseException | None]] = []

        def work(tx: Tx) -> None:
            outcomes.clear()
            for entry in group:
                try:
                    with tx.conn.begin_nested():
                        outcomes.append((entry.work(tx), None))
                except IntegrityError:
                    raise  # the whole group goes one by one
                except Exception as exc:  # this request only: its savepoint is rolled back
                    outcomes.append((None, exc))

        size = sum(entry.size for entry in group)
        with self.store._writing(streams, offices, timed=self._timed(size)) as tx:
            work(tx)
        self.groups += 1
        self.largest = max(self.largest, len(group))
        for entry, (result, error) in zip(group, outcomes, strict=True):
            entry.result, entry.error, entry.done = result, error, True


AUTOVACUUM_OFF = (
    "PostgreSQL's autovacuum is off: the planner keeps the statistics of the tables as they were"
    " when last analyzed (a station's sales table grows fast); run ANALYZE on a schedule"
)


_SHOW_AUTOVACUUM = text("SHOW autovacuum")


def autovacuum_setting(conn: Connection) -> str | None:
    """PostgreSQL's ``autovacuum`` setting (None on SQLite): the station relies on it for the
    planner's statistics (see sync/README.md)."""
    if conn.dialect.name != "postgresql":
        return None
    return str(conn.execute(_SHOW_AUTOVACUUM).scalar())


class StoreBase:
    """The central system's database: engines, transactions and the clock.  Thread-safe (one
    connection per call)."""

    def __init__(
        self,
        url: str | URL,
        *,
        clock: Clock | None = None,
        engine: Engine | None = None,
        enrolment_key: str | None = None,
        clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
        **engine_kwargs: Any,
    ) -> None:
        self.url = normalize_url(url)
        self.clock: Clock = clock or SystemClock()
        # the shared key a new counter id registers with (None: any new counter may register)
        self.enrolment_key = enrolment_key
        if clock_skew < dt.timedelta(0):
            raise ValueError("the clock skew allowance cannot be negative")
        self.clock_skew = clock_skew
        if engine is None:
            if self.url.get_backend_name() == "sqlite":
                engine_kwargs.setdefault("connect_args", {}).setdefault("check_same_thread", False)
            else:
                engine_kwargs.setdefault("pool_size", 10)
                engine_kwargs.setdefault("max_overflow", 20)
                # under a surge a request waits for a connection rather than failing with a 500
                engine_kwargs.setdefault("pool_timeout", 120)
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
        # one statement needs no transaction: its own snapshot, without BEGIN and ROLLBACK
        self._statement_engine = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql"
            else None
        )
        schema.upgrade(self.engine)
        self._lock_namespace = LOCK_NAMESPACE
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                self._lock_namespace = lock_namespace(conn.scalar(text("SELECT current_schema()")))
                if autovacuum_setting(conn) == "off":
                    log.warning(AUTOVACUUM_OFF)
        self._ensure_streams()
        self.combiner = WriteCombiner(
            self, writers=GROUP_WRITERS if self.engine.dialect.name == "postgresql" else 1
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def now(self) -> dt.datetime:
        return self.clock.now().astimezone(dt.UTC)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether this store can serve: the database answers and its schema is the newest
        revision this code knows (another host may have been upgraded, or not yet)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1)).scalar()
                revision = schema.current(conn)
                autovacuum = autovacuum_setting(conn)
        except Exception as exc:  # any failure of the database is "not ready", said
            return False, {"database": f"unreachable: {type(exc).__name__}"}
        wanted = schema.head()
        detail = {"database": "ok", "schema": revision, "schema_wanted": wanted}
        if autovacuum is not None:  # said, not a condition: the station serves either way
            detail["autovacuum"] = autovacuum
        return revision == wanted, detail

    def begin(self) -> AbstractContextManager[Connection]:
        """A connection in a write transaction of its own (committed at the end of the block,
        rolled back on an error), for a station task's or an administrator's change outside the
        posts' locks.  On SQLite it begins ``BEGIN IMMEDIATE``, like every write here: under a
        plain ``BEGIN`` a transaction that reads and then writes fails at once with "database
        is locked" while another connection writes (SQLite does not wait to turn a reader into
        a writer, whatever the busy timeout), as an administrator's ``central sms prefs`` did
        beside a serving station."""
        return self._write_engine.begin()

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

    @contextmanager
    def _writing(
        self,
        streams: Iterable[str] = (),
        offices: Iterable[str] | None = None,
        *,
        timed: Timed | None = None,
    ) -> Iterator[Tx]:
        """A write transaction; ``timed`` hears, once it has committed, how long the connection,
        BEGIN and the locks took and how long the rest did."""
        start = time.perf_counter()
        with self._write_engine.begin() as conn:
            tx = Tx(conn, self.now(), streams, offices, self._lock_namespace)
            locked = time.perf_counter()
            yield tx
            tx.finish()
        if timed is not None:
            timed(locked - start, time.perf_counter() - locked)

    def write(
        self,
        work: Callable[[Tx], T],
        streams: Iterable[str] = (),
        offices: Iterable[str] | None = None,
        *,
        timed: Timed | None = None,
    ) -> T:
        """Run ``work`` in one write transaction, retried when a concurrent writer won a race
        for a unique key (the retry then sees that writer's row).  ``offices``: the offices a
        counter's records are applied for (see :class:`Tx`)."""
        names = tuple(streams)
        scope = None if offices is None else tuple(offices)
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self._writing(names, scope, timed=timed) as tx:
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

    @contextmanager
    def _reading_one(self) -> Iterator[Connection]:
        """A read of one statement (a bearer token, a page): on PostgreSQL in autocommit, the
        statement its own snapshot, two round trips fewer than :meth:`_reading`."""
        if self._statement_engine is None:
            with self._reading() as conn:
                yield conn
            return
        with self._statement_engine.connect() as conn:
            yield conn
