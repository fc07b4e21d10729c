"""Group commit on the station: posts that arrive while a write holds their offices are written
together, each in its own savepoint, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text

from sync import contract as c
from sync.central import CentralStore
from sync.central import Counter
from sync.central import models as m
from sync.central.api import _render_batch
from sync.central.base import LOCK_NAMESPACE
from sync.central.base import Tx
from sync.central.base import lock_namespace
from tests.conftest import PG_URL
from tests.conftest import in_schema
from tests.conftest import pg_schema
from tests.rigs.central import REMOTE
from tests.rigs.central import sale

C1 = Counter("C1", "DEMO")


# the fixture store (seeded, on each database): tests/rigs/central.py


def _wait_for(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_posts_that_queue_behind_a_write_commit_together(store: CentralStore) -> None:
    posts = 8
    replies: dict[int, int] = {}
    bodies = [
        [c.SaleRecord.model_validate(sale(REMOTE, kind="remote")) for _ in range(3)]
        for _ in range(posts)
    ]

    def post(n: int) -> None:
        reply = store.post_keyed(
            "sales",
            C1,
            bodies[n],
            key=f"group-key-{n:02d}",
            request_hash=f"h{n}",
            render=_render_batch,
        )
        replies[n] = reply.status

    # the station's own write holds every office: the posts queue behind it
    with store._writing(("customers", "remote", "sales")):
        threads = [threading.Thread(target=post, args=(n,)) for n in range(posts)]
        for t in threads:
            t.start()
        # each of the combiner's writers took one post and waits inside the store
        _wait_for(lambda: store.combiner.waiting() >= posts - store.combiner.writers)
    for t in threads:
        t.join(30)
    assert replies == dict.fromkeys(range(posts), 200)
    # one transaction for those that queued
    assert store.combiner.largest >= posts - store.combiner.writers
    with store.engine.connect() as conn:
        seqs = sorted(conn.scalars(select(m.sales.c.seq)))
        keys = conn.scalar(select(text("count(*)")).select_from(m.idempotency_keys))
    assert seqs == list(range(1, 3 * posts + 1)) and keys == posts
    # the same key again replays, not applies
    again = store.post_keyed(
        "sales", C1, bodies[0], key="group-key-00", request_hash="h0", render=_render_batch
    )
    assert again.replayed and store.count("sales") == 3 * posts


def test_a_failing_request_does_not_take_its_group_down(store: CentralStore) -> None:
    written: list[str] = []

    def good(name: str) -> object:
        def work(tx: Tx) -> str:
            tx.conn.execute(
                insert(m.refusals).values(
                    counter_id="C1",
                    resource="test",
                    record_id=name,
                    code="x",
                    message=name,
                    at=tx.now,
                )
            )
            written.append(name)
            return name

        return work

    def bad(tx: Tx) -> str:
        tx.conn.execute(
            insert(m.refusals).values(
                counter_id="C1",
                resource="test",
                record_id="bad",
                code="x",
                message="bad",
                at=tx.now,
            )
        )
        raise ValueError("this request is wrong")

    results: dict[str, object] = {}

    def submit(name: str, work: object) -> None:
        try:
            results[name] = store.combiner.submit(work, ("sales",), ("DEMO",), 1)  # type: ignore[arg-type]
        except ValueError as exc:
            results[name] = exc

    with store._writing(("sales",)):
        threads = [
            threading.Thread(target=submit, args=(name, bad if name == "bad" else good(name)))
            for name in ("a", "bad", "b", "c")
        ]
        for t in threads:
            t.start()
        _wait_for(lambda: store.combiner.waiting() >= 4 - store.combiner.writers)
    for t in threads:
        t.join(30)
    assert isinstance(results["bad"], ValueError)
    assert {results[n] for n in ("a", "b", "c")} == {"a", "b", "c"}
    with store.engine.connect() as conn:
        held = set(
            conn.scalars(select(m.refusals.c.record_id).where(m.refusals.c.resource == "test"))
        )
    assert held == {"a", "b", "c"}  # the failed request's row was rolled back with its savepoint


def test_offices_write_side_by_side_on_postgresql() -> None:
    """Two workers (two stores on one database): a write for office A that has taken its seq
    does not hold up one for office B, while another write for A, and the station's own
    changes, wait for it: an office's seqs (from the stream's sequence, which locks nothing)
    commit in order."""
    with pg_schema() as schema:
        one = CentralStore(PG_URL, **in_schema(schema))
        two = CentralStore(PG_URL, **in_schema(schema))
        try:
            opened, release = threading.Event(), threading.Event()
            seqs: dict[str, int] = {}
            finished: list[str] = []

            def hold_a() -> None:
                with one._writing(("sales",), ("A",)) as tx:
                    seqs["a"] = tx.next_seq("sales")
                    opened.set()
                    release.wait(20)
                    # said while its locks are still held: the writers waiting for them can only
                    # finish after this (said after the commit, a waiter could come first)
                    finished.append("a")

            def write(name: str, office: str | None, streams: tuple[str, ...]) -> None:
                with two._writing(streams, None if office is None else (office,)) as tx:
                    if streams:
                        seqs[name] = tx.next_seq(streams[0])
                finished.append(name)

            holder = threading.Thread(target=hold_a)
            holder.start()
            assert opened.wait(10)
            other_office = threading.Thread(target=write, args=("b", "B", ("sales",)))
            other_office.start()
            other_office.join(10)  # another office: not held up, though A holds a seq
            assert finished == ["b"] and (seqs["a"], seqs["b"]) == (1, 2)
            others = [
                threading.Thread(target=write, args=("a2", "A", ("sales",))),
                threading.Thread(target=write, args=("station", None, ("customers",))),
            ]
            for t in others:
                t.start()
            time.sleep(0.5)
            assert finished == ["b"]  # the same office and the station's change both wait
            release.set()
            holder.join(20)
            for t in others:
                t.join(20)
            assert finished[:2] == ["b", "a"] and set(finished[2:]) == {"a2", "station"}
            assert seqs["a2"] == 3
        finally:
            release.set()
            one.dispose()
            two.dispose()


def test_c0011_continues_each_stream_after_its_last_seq(tmp_path: Path) -> None:
    """A station at c0010 (seqs counted in central_streams): c0011 gives each stream a sequence
    that hands out the seq after its last; the downgrade writes the last one back."""
    from alembic import command

    from app.persistence.db import make_engine
    from sync.central import schema as central_schema
    from tests.conftest import station_db

    with station_db("postgresql", tmp_path) as url:
        engine = make_engine(url)
        try:
            central_schema.upgrade(engine, "c0010")
            with engine.begin() as conn:
                conn.execute(
                    insert(m.streams),
                    [{"name": "customers", "last_seq": 41}, {"name": "sales", "last_seq": 7}],
                )
            store = CentralStore(url, engine=engine)  # upgrades to the head
            assert [store.last_seq(s) for s in ("customers", "sales", "jobs")] == [41, 7, 0]
            with store._writing(("sales",), ("A",)) as tx:
                assert tx.seqs("sales", 3) == [8, 9, 10]
            with store._writing(("jobs",)) as tx:
                assert tx.next_seq("jobs") == 1
            assert [store.last_seq(s) for s in ("customers", "sales", "jobs")] == [41, 10, 1]
            with engine.connect() as conn:
                command.downgrade(central_schema._config(conn), "c0010")
                conn.commit()
            with engine.connect() as conn:
                kept = dict(conn.execute(select(m.streams.c.name, m.streams.c.last_seq)).all())
                gone = conn.execute(text("SELECT to_regclass('central_seq_sales')")).scalar()
            assert (kept["customers"], kept["sales"], kept["jobs"], gone) == (41, 10, 1, None)
        finally:
            engine.dispose()


def test_a_post_may_only_allocate_from_its_declared_streams() -> None:
    with pg_schema() as schema:
        s = CentralStore(PG_URL, **in_schema(schema))
        try:
            with (
                pytest.raises(ValueError, match="not declared"),
                s._writing(("sales",), ("A",)) as tx,
            ):
                tx.next_seq("jobs")
        finally:
            s.dispose()


def test_stations_in_two_schemas_never_wait_for_each_others_locks() -> None:
    """Advisory locks belong to the whole PostgreSQL database: two stations in two schemas of one
    database (or two test sessions) took the same keys, so one's office A waited for the other's,
    and the station-wide change of one held up every write of the other.  Each schema now takes
    its locks under a key of its own; ``public`` keeps the key earlier versions took."""
    assert lock_namespace("public") == lock_namespace(None) == LOCK_NAMESPACE
    assert lock_namespace("station_a") == lock_namespace("station_a")
    assert len({lock_namespace("station_a"), lock_namespace("station_b"), LOCK_NAMESPACE}) == 3
    with pg_schema() as first_schema, pg_schema() as second_schema:
        first = CentralStore(PG_URL, **in_schema(first_schema))
        second = CentralStore(PG_URL, **in_schema(second_schema))
        try:
            assert first._lock_namespace == lock_namespace(first_schema) != LOCK_NAMESPACE
            assert first._lock_namespace != second._lock_namespace
            finished: list[str] = []

            def write(office: str | None) -> None:
                streams = ("sales",) if office else ("customers",)
                with second._writing(streams, None if office is None else (office,)) as tx:
                    tx.next_seq(streams[0])
                finished.append(office or "station")

            # the first station's change holds all its offices (the exclusive station lock)
            with first._writing(("customers",)) as tx:
                tx.next_seq("customers")
                writers = [threading.Thread(target=write, args=(o,)) for o in ("A", None)]
                for t in writers:
                    t.start()
                for t in writers:
                    t.join(10)
                assert sorted(finished) == ["A", "station"]  # neither waited for the first
        finally:
            first.dispose()
            second.dispose()
