"""The audit log: append, verify, head, CSV export, and tampering found at the right row.

The 10,000-row tests show that every single-row edit, delete, insert and swap is detected with
the first bad row named exactly: for every position in memory (against ``verify_rows``), and for
a sample of positions end to end on a SQLite database changed with raw SQL (against ``verify``).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import itertools
import json
import random
import shutil
import threading
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.clock import FixedClock
from app.domain.audit import BEYOND_HEAD
from app.domain.audit import CONTENT_CHANGED
from app.domain.audit import GENESIS
from app.domain.audit import HEAD_MISMATCH
from app.domain.audit import HEAD_MISSING
from app.domain.audit import LINK_BROKEN
from app.domain.audit import SEQUENCE_BROKEN
from app.domain.audit import TAIL_MISSING
from app.domain.audit import AuditRow
from app.domain.audit import VerifyResult
from app.domain.audit import canonical_detail
from app.domain.audit import hash_of
from app.domain.audit import row_hash
from app.domain.audit import verify_rows
from app.i18n import translate
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.persistence.models import AuditHead
from app.services import audit
from tests.rigs.audit import load_chain
from tests.rigs.audit import make_chain

N = 10_000
# the columns a single-row edit changes, rotated by the row's position: every column of a row,
# the sequence number last
FIELDS = (*(f.name for f in dataclasses.fields(AuditRow) if f.name != "seq"), "seq")
EVENT_FIELDS = FIELDS[:7]  # what happened: all but the chain's own columns


def record(db: Database, clock: FixedClock, i: int, **kw: Any) -> None:
    with db.write() as session:
        actor = audit.Actor(kw.pop("operator_id", "t01"), kw.pop("counter_id", "C01"), clock)
        actor.record(
            session,
            kw.pop("action", "sale_complete"),
            kw.pop("target", f"客户 {100000000000 + i} 王小明"),
            detail=kw.pop("detail", {"金额": i * 100, "备注": f"第{i}次购电"}),
            **kw,
        )
    clock.advance(seconds=1, microseconds=7)


def sql(db: Database, statement: str, **params: Any) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def bad(result: VerifyResult) -> tuple[int | None, int | None, str]:
    assert not result.ok, result
    return result.first_bad_seq, result.position, result.problem


def flip(hex_digest: str) -> str:
    return hex_digest[:-1] + ("0" if hex_digest[-1] != "0" else "1")


# --------------------------------------------------------------------------- (a) record + verify


def test_record_then_verify_on_both_databases(db: Database, clock: FixedClock) -> None:
    assert audit.verify(db) == VerifyResult(True, 0, 0, GENESIS)
    assert audit.latest(db) == (0, GENESIS)
    record(db, clock, 0, action="login", operator_id="t01", target="t01", detail=None)
    record(db, clock, 1, action="login_failed", operator_id=None, result="denied")
    for i in range(2, 30):
        record(db, clock, i)
    result = audit.verify_or_raise(db)
    assert (result.ok, result.rows, result.last_seq) == (True, 30, 30)
    assert audit.latest(db) == (30, result.last_hash)
    # every page size gives the same answer (keyset pagination across page boundaries)
    for batch in (1, 2, 7, 29, 30, 31):
        assert audit.verify(db, batch=batch) == result
    with pytest.raises(ValueError):
        audit.verify(db, batch=0)

    sql(db, "UPDATE audit_log SET target = :t WHERE seq = 17", t="客户 100000000016 李四")
    for batch in (1, 16, 17, 5000):
        assert bad(audit.verify(db, batch=batch)) == (17, 16, CONTENT_CHANGED)
    with pytest.raises(audit.AuditVerifyFailed) as caught:
        audit.verify_or_raise(db)
    assert caught.value.result.first_bad_seq == 17
    assert str(caught.value) == (
        "The audit log was changed: row 17 (content changed after it was written). "
        "Report this to your supervisor; do not continue selling."
    )
    chinese = caught.value.localized("zh_CN")
    assert "17" in chinese and translate(CONTENT_CHANGED, "zh_CN") in chinese
    assert translate(CONTENT_CHANGED, "zh_CN") != CONTENT_CHANGED


def test_record_refuses_an_unknown_result(db: Database, clock: FixedClock) -> None:
    with pytest.raises(ValueError), db.write() as session:
        audit.Actor("t01", "C01", clock).record(session, "login", result="?")
    assert audit.latest(db) == (0, GENESIS)


def test_a_rolled_back_action_leaves_no_row(db: Database, clock: FixedClock) -> None:
    record(db, clock, 0)
    with pytest.raises(RuntimeError), db.write() as session:
        audit.Actor("t01", "C01", clock).record(session, "sale_begin")
        raise RuntimeError("the sale failed")
    record(db, clock, 1)
    result = audit.verify(db)
    assert (result.ok, result.rows, result.last_seq) == (True, 2, 2)


def test_appends_from_two_threads_stay_one_chain(db: Database, clock: FixedClock) -> None:
    per_thread = 40
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def counter(counter_id: str) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with db.write() as session:  # a session and a transaction of its own per row
                    audit.Actor("t01", counter_id, clock).record(
                        session, "sale_complete", f"{counter_id} 第{i}笔"
                    )
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=counter, args=(c,)) for c in ("C01", "C02")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    result = audit.verify(db)
    assert (result.ok, result.rows, result.last_seq) == (True, 2 * per_thread, 2 * per_thread)
    with db.read() as session:
        seqs = [s for (s,) in session.execute(text("SELECT seq FROM audit_log ORDER BY seq"))]
        counters = session.execute(
            text("SELECT counter_id, count(*) FROM audit_log GROUP BY counter_id")
        ).all()
    assert seqs == list(range(1, 2 * per_thread + 1))
    assert sorted(counters) == [("C01", per_thread), ("C02", per_thread)]


def test_verify_sees_one_snapshot_while_counters_append(db: Database, clock: FixedClock) -> None:
    """Pages and head come from one snapshot: rows appended meanwhile are never half-seen (on
    PostgreSQL, READ COMMITTED would let a page see rows newer than the head it read)."""
    for i in range(20):
        record(db, clock, i)
    stop = threading.Event()
    errors: list[BaseException] = []

    def appender() -> None:
        try:
            while not stop.is_set():
                with db.write() as session:
                    audit.Actor("t02", "C02", clock).record(session, "sale_complete")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=appender)
    thread.start()
    try:
        results = [audit.verify(db, batch=3) for _ in range(15)]
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert results[-1].rows > 20  # the appender did run meanwhile


# --------------------------------------------------------------------------- (b) 10,000 rows


@pytest.fixture(scope="module")
def chain() -> list[AuditRow]:
    return make_chain(N)


def test_the_built_chain_is_valid(chain: list[AuditRow]) -> None:
    head = (chain[-1].seq, chain[-1].hash)
    assert verify_rows(chain, head=head) == VerifyResult(True, N, N, chain[-1].hash)
    assert any("王" in r.target for r in chain) and any("购电" in r.detail for r in chain)


def edited(row: AuditRow, field: str) -> AuditRow:
    """``row`` with one field changed to another plausible value."""
    if field == "at":
        return dataclasses.replace(row, at=row.at + dt.timedelta(microseconds=1))
    if field == "operator_id":
        return dataclasses.replace(row, operator_id="t99" if row.operator_id is None else None)
    if field == "result":
        others = [r for r in audit.RESULTS if r != row.result]
        return dataclasses.replace(row, result=others[row.seq % len(others)])
    if field == "detail":
        detail = json.loads(row.detail)
        detail["金额"] += 1
        return dataclasses.replace(row, detail=canonical_detail(detail))
    if field == "seq":
        return dataclasses.replace(row, seq=row.seq + N)
    changes: dict[str, Any] = {
        field: flip(getattr(row, field)) if field.endswith("hash") else getattr(row, field) + "改"
    }
    return dataclasses.replace(row, **changes)


def test_every_single_row_change_of_10000_rows_is_found_at_its_row(
    chain: list[AuditRow],
) -> None:
    """Edit, delete, insert and swap at every position i, each reported at exactly i or i+1.

    Verifying all of a changed log for each of ~90,000 changes costs O(n) each, O(n²) in all.
    But verification is a left fold over the rows whose state after row j-1 is just (seq, hash)
    of row j-1, and a change at position i leaves rows[:i] untouched.  The unchanged chain was
    verified once in full (``whole`` below), so every prefix rows[:i] is good and verifying the
    changed log is the same as ``verify_rows(changed[i:], start_seq=, start_hash=)`` from the
    state after rows[:i].  The suffix is passed lazily and verify_rows stops at the first bad
    row, so each change costs O(1).  The end-to-end test below verifies whole changed
    databases."""
    n = len(chain)
    head = (chain[-1].seq, chain[-1].hash)
    whole = verify_rows(chain, head=head)
    assert whole.ok and whole.rows == n

    def state(i: int) -> tuple[int, str]:  # the fold's state after rows[:i]
        return (chain[i - 1].seq, chain[i - 1].hash) if i else (0, GENESIS)

    def rest(k: int, shift: int = 0) -> Iterator[AuditRow]:  # rows[k:], seq moved by ``shift``
        for j in range(k, n):
            yield dataclasses.replace(chain[j], seq=chain[j].seq + shift) if shift else chain[j]

    def forged(i: int, seq: int) -> AuditRow:  # a new row correctly hashed onto rows[:i]
        prev = state(i)[1]
        at = chain[min(i, n - 1)].at - dt.timedelta(microseconds=1)
        fields = (at, "t66", "C09", "sale_reversed", "客户 伪造", "ok", '{"金额":1}')
        return AuditRow(seq, *fields, prev_hash=prev, hash=row_hash(prev, seq, *fields))

    wrong: list[str] = []
    checks = 0

    def expect(
        kind: str, i: int, rows: Iterable[AuditRow], at: int, seq: int | None, problem: str
    ) -> None:
        nonlocal checks
        checks += 1
        start_seq, start_hash = state(i)
        r = verify_rows(rows, start_seq=start_seq, start_hash=start_hash, head=head)
        got = (r.ok, i + (r.position or 0), r.first_bad_seq, r.problem)
        if got != (False, at, seq, problem):
            wrong.append(f"{kind} at {i}: got {r}, expected position {at} seq {seq} {problem!r}")

    for i in range(n):
        row = chain[i]
        # edit one field of row i, the field rotated by i
        field = FIELDS[i % len(FIELDS)]
        change = edited(row, field)
        problem = {"prev_hash": LINK_BROKEN, "seq": SEQUENCE_BROKEN}.get(field, CONTENT_CHANGED)
        expect(f"edit {field}", i, itertools.chain([change], rest(i + 1)), i, change.seq, problem)
        # delete row i: the next row stands where row i was; a deleted last row is missed at
        # the head
        if i < n - 1:
            expect("delete", i, rest(i + 1), i, chain[i + 1].seq, SEQUENCE_BROKEN)
        else:
            expect("delete", i, rest(i + 1), i, head[0], TAIL_MISSING)
        # insert before row i, rows i.. renumbered to make room: a row hashed correctly onto its
        # predecessor passes, and the row after it no longer follows
        new = forged(i, row.seq)
        expect(
            "insert forged", i, itertools.chain([new], rest(i, 1)), i + 1, row.seq + 1, LINK_BROKEN
        )
        # insert without renumbering: row i's seq comes twice
        expect(
            "insert, seq twice", i, itertools.chain([new], rest(i)), i + 1, row.seq, SEQUENCE_BROKEN
        )
        # insert a copy of row i-1 under row i's seq, rows i.. renumbered: it does not follow
        if i > 0:
            copy = dataclasses.replace(chain[i - 1], seq=row.seq)
            expect("insert copy", i, itertools.chain([copy], rest(i, 1)), i, row.seq, LINK_BROKEN)
        if i == n - 1:
            continue
        nxt = chain[i + 1]
        # swap rows i and i+1 in the order read
        expect(
            "swap order", i, itertools.chain([nxt, row], rest(i + 2)), i, nxt.seq, SEQUENCE_BROKEN
        )
        # swap their seq numbers, which in seq order is swapping every other column
        a, b = dataclasses.replace(nxt, seq=row.seq), dataclasses.replace(row, seq=nxt.seq)
        expect("swap seq", i, itertools.chain([a, b], rest(i + 2)), i, row.seq, LINK_BROKEN)
        # swap only what happened (time, who, what), leaving seq and the hashes in place
        a = dataclasses.replace(row, **{f: getattr(nxt, f) for f in EVENT_FIELDS})
        b = dataclasses.replace(nxt, **{f: getattr(row, f) for f in EVENT_FIELDS})
        expect("swap content", i, itertools.chain([a, b], rest(i + 2)), i, row.seq, CONTENT_CHANGED)
    # a correctly hashed row appended after the last one, the head left alone
    expect("append beyond head", n, [forged(n, n + 1)], n, n + 1, BEYOND_HEAD)
    # the last row rewritten and its hash recomputed: only the head knows
    last = dataclasses.replace(chain[-1], target="客户 改写")
    last = dataclasses.replace(last, hash=hash_of(last))
    expect("rewrite last", n - 1, [last], n - 1, n, HEAD_MISMATCH)

    assert not wrong, f"{len(wrong)} of {checks} changes not found right:\n" + "\n".join(wrong[:20])
    assert checks == 8 * n - 4 + 2


# ---------------------------------------------------------------- (b) end to end on SQLite

STORED_AT = "%Y-%m-%d %H:%M:%S.%f"  # how SQLite keeps a UTC time (app/persistence/types.py)
BIG = 1_000_000
_rng = random.Random(20260301)
POSITIONS = [1, N, *sorted(_rng.sample(range(2, N), 3))]  # seq of the row changed
EVERY_FIELD_AT = POSITIONS[2]


def _cases() -> Iterator[tuple[str, int, str]]:
    for p in POSITIONS:
        yield "edit", p, FIELDS[p % len(FIELDS)]
        yield "delete", p, ""
        yield "insert forged", p, ""
        yield "insert copy", p, ""
        for how in ("seq", "columns", "content"):
            yield "swap", p, how
    for field in FIELDS:
        if field != FIELDS[EVERY_FIELD_AT % len(FIELDS)]:
            yield "edit", EVERY_FIELD_AT, field
    for junk in ("at=text", "at=integer", "target=blob"):  # SQLite keeps any type in a column
        yield "edit", EVERY_FIELD_AT, junk
    yield "append", N + 1, ""


@pytest.fixture(scope="module")
def pristine(chain: list[AuditRow], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit10k") / "pristine.db"
    db = Database(str(path))
    db.migrate()
    load_chain(db, chain)
    db.dispose()  # the last connection closed: the WAL is checkpointed into the file
    return path


def _renumber_from(db: Database, p: int) -> None:
    """Make room at seq p: rows p.. move up by one (in two steps: seq is the primary key)."""
    sql(db, "UPDATE audit_log SET seq = seq + :big WHERE seq >= :p", big=BIG, p=p)
    sql(db, "UPDATE audit_log SET seq = seq - :big + 1 WHERE seq >= :big", big=BIG)


def _insert(db: Database, row: AuditRow) -> None:
    sql(
        db,
        "INSERT INTO audit_log (seq, at, operator_id, counter_id, action, target, result, detail,"
        " prev_hash, hash) VALUES (:seq, :at, :operator_id, :counter_id, :action, :target,"
        " :result, :detail, :prev_hash, :hash)",
        **{**dataclasses.asdict(row), "at": row.at.astimezone(dt.UTC).strftime(STORED_AT)},
    )


def _stored(db: Database, seq: int) -> dict[str, Any]:
    with db.engine.connect() as conn:
        return dict(
            conn.execute(text("SELECT * FROM audit_log WHERE seq = :s"), {"s": seq}).one()._mapping
        )


def _swap(db: Database, p: int, columns: tuple[str, ...]) -> None:
    a, b = _stored(db, p), _stored(db, p + 1)
    assign = ", ".join(f"{c} = :{c}" for c in columns)
    for seq, values in ((p, b), (p + 1, a)):
        sql(db, f"UPDATE audit_log SET {assign} WHERE seq = :seq_", seq_=seq, **values)


def tamper(
    db: Database, chain: list[AuditRow], kind: str, p: int, how: str
) -> tuple[int, int, str]:
    """Change the stored log with plain SQL; return the (first bad seq, position, problem) that
    ``verify`` must report."""
    n = len(chain)
    row = chain[p - 1] if p <= n else chain[-1]
    prev = chain[p - 2].hash if p > 1 else GENESIS
    if kind == "edit":
        column, _, junk = how.partition("=")
        if junk:
            value = {"text": "not a time", "integer": 1234, "blob": b"\xe5\xae"}[junk]
            sql(db, f"UPDATE audit_log SET {column} = :v WHERE seq = :p", v=value, p=p)
            return p, p - 1, CONTENT_CHANGED
        if how == "seq":
            sql(db, "UPDATE audit_log SET seq = seq + :big WHERE seq = :p", big=BIG, p=p)
            return (p + 1, p - 1, SEQUENCE_BROKEN) if p < n else (p + BIG, p - 1, SEQUENCE_BROKEN)
        if how == "at":
            later = (row.at + dt.timedelta(microseconds=1)).strftime(STORED_AT)
            sql(db, "UPDATE audit_log SET at = :v WHERE seq = :p", v=later, p=p)
        elif how == "operator_id":
            sql(
                db,
                "UPDATE audit_log SET operator_id = CASE WHEN operator_id IS NULL THEN 't99'"
                " ELSE NULL END WHERE seq = :p",
                p=p,
            )
        elif how in ("prev_hash", "hash"):
            value = flip(getattr(row, how))
            sql(db, f"UPDATE audit_log SET {how} = :v WHERE seq = :p", v=value, p=p)
        else:
            sql(db, f"UPDATE audit_log SET {how} = {how} || '改' WHERE seq = :p", p=p)
        return p, p - 1, LINK_BROKEN if how == "prev_hash" else CONTENT_CHANGED
    if kind == "delete":
        sql(db, "DELETE FROM audit_log WHERE seq = :p", p=p)
        return (p + 1, p - 1, SEQUENCE_BROKEN) if p < n else (n, n - 1, TAIL_MISSING)
    if kind in ("insert forged", "append"):
        # a new row whose hash is right for its place; the rows after it renumbered
        if kind == "insert forged":
            _renumber_from(db, p)
        fields = (row.at, "t66", "C09", "sale_reversed", "客户 伪造", "ok", '{"金额":1}')
        _insert(db, AuditRow(p, *fields, prev_hash=prev, hash=row_hash(prev, p, *fields)))
        return (p + 1, p, LINK_BROKEN) if kind == "insert forged" else (p, p - 1, BEYOND_HEAD)
    if kind == "insert copy":
        # a copy of the row before (of the original row 1 when inserting before row 1)
        _renumber_from(db, p)
        source = p - 1 if p > 1 else 2
        sql(
            db,
            "INSERT INTO audit_log SELECT :p, at, operator_id, counter_id, action, target,"
            " result, detail, prev_hash, hash FROM audit_log WHERE seq = :s",
            p=p,
            s=source,
        )
        return (p, p - 1, LINK_BROKEN) if p > 1 else (2, 1, LINK_BROKEN)
    if kind == "swap":
        p = min(p, n - 1)  # the last row is swapped with the one before
        if how == "seq":
            sql(db, "UPDATE audit_log SET seq = -1 WHERE seq = :p", p=p)
            sql(db, "UPDATE audit_log SET seq = :p WHERE seq = :q", p=p, q=p + 1)
            sql(db, "UPDATE audit_log SET seq = :q WHERE seq = -1", q=p + 1)
            return p, p - 1, LINK_BROKEN
        chain_columns = ("seq", "prev_hash", "hash")
        if how == "columns":
            _swap(db, p, tuple(f for f in FIELDS if f != "seq"))
            return p, p - 1, LINK_BROKEN
        _swap(db, p, tuple(f for f in FIELDS if f not in chain_columns))
        return p, p - 1, CONTENT_CHANGED
    raise AssertionError(kind)


@pytest.mark.parametrize(("kind", "p", "how"), list(_cases()), ids=lambda v: str(v))
def test_a_change_to_a_10000_row_database_is_found_at_its_row(
    chain: list[AuditRow], pristine: Path, tmp_path: Path, kind: str, p: int, how: str
) -> None:
    path = tmp_path / "changed.db"
    shutil.copyfile(pristine, path)
    db = Database(str(path))
    try:
        expected = tamper(db, chain, kind, p, how)
        result = audit.verify(db)
    finally:
        db.dispose()
    assert bad(result) == expected


def test_the_10000_row_database_verifies(
    chain: list[AuditRow], pristine: Path, tmp_path: Path
) -> None:
    shutil.copyfile(pristine, tmp_path / "untouched.db")
    db = Database(str(tmp_path / "untouched.db"))
    try:
        assert audit.verify(db) == VerifyResult(True, N, N, chain[-1].hash)
        assert audit.latest(db) == (N, chain[-1].hash)
    finally:
        db.dispose()


# --------------------------------------------------------------------------- (c) CSV export


def test_export_csv_round_trip(db: Database, clock: FixedClock, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    path = out / "审计日志.csv"
    path.write_text("an older export", encoding="utf-8")
    odd = '王, "小明"\n第二行'  # a comma, quotes and a line break survive the CSV quoting
    record(db, clock, 0, action="login_failed", operator_id=None, target="t09", result="denied")
    record(db, clock, 1, target=odd)
    for i in range(2, 12):
        record(db, clock, i)
    assert audit.export_csv(db, path) == 12
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and not data[3:].startswith(b"\xef\xbb\xbf")
    assert "王小明".encode() in data
    with path.open(encoding="utf-8-sig", newline="") as f:
        header, *lines = list(csv.reader(f))
    assert tuple(header) == audit.CSV_HEADER
    assert [line[0] for line in lines] == [str(s) for s in range(1, 13)]
    assert lines[0][2] == "" and lines[1][5] == odd
    assert json.loads(lines[5][7]) == {"金额": 500, "备注": "第5次购电"}
    # the export is complete and exact: the chain can be checked again from the file alone
    rows = [
        AuditRow(
            int(seq),
            dt.datetime.fromisoformat(at),
            op or None,
            counter,
            action,
            target,
            result,
            detail,
            prev,
            digest,
        )
        for seq, at, op, counter, action, target, result, detail, prev, digest in lines
    ]
    assert verify_rows(rows, head=audit.latest(db)).ok
    assert sorted(p.name for p in out.iterdir()) == [path.name]  # no temporary file left
    assert audit.export_csv(db, out / "again.csv", batch=5) == 12
    assert (out / "again.csv").read_bytes() == data


def test_export_csv_of_an_empty_log_and_a_missing_folder(db: Database, tmp_path: Path) -> None:
    assert audit.export_csv(db, tmp_path / "empty.csv") == 0
    assert (tmp_path / "empty.csv").read_text(encoding="utf-8-sig").splitlines() == [
        ",".join(audit.CSV_HEADER)
    ]
    with pytest.raises(FileNotFoundError):
        audit.export_csv(db, tmp_path / "no such folder" / "a.csv")


# ----------------------------------------------------------------- (d) what only the head knows


def _twenty(db: Database, clock: FixedClock) -> VerifyResult:
    for i in range(20):
        record(db, clock, i)
    result = audit.verify(db)
    assert result.ok and result.rows == 20
    return result


def test_a_deleted_tail_is_found_through_the_head(db: Database, clock: FixedClock) -> None:
    _twenty(db, clock)
    sql(db, "DELETE FROM audit_log WHERE seq > 15")
    assert bad(audit.verify(db)) == (20, 15, TAIL_MISSING)
    sql(db, "DELETE FROM audit_log")
    assert bad(audit.verify(db)) == (20, 0, TAIL_MISSING)


def test_a_rewritten_last_row_is_found_through_the_head(db: Database, clock: FixedClock) -> None:
    _twenty(db, clock)
    with db.read() as session:
        entry = session.get(AuditEntry, 20)
        assert entry is not None
        last = AuditRow(
            entry.seq,
            entry.at,
            entry.operator_id,
            entry.counter_id,
            entry.action,
            "客户 改写",
            entry.result,
            entry.detail,
            entry.prev_hash,
            entry.hash,
        )
    digest = hash_of(last)
    sql(db, "UPDATE audit_log SET target = :t, hash = :h WHERE seq = 20", t=last.target, h=digest)
    assert bad(audit.verify(db)) == (20, 19, HEAD_MISMATCH)


def test_a_row_appended_beyond_the_head_is_found(db: Database, clock: FixedClock) -> None:
    good = _twenty(db, clock)
    at = clock.now()
    fields = (at, "t01", "C01", "sale_complete", "客户 伪造", "ok", "{}")
    digest = row_hash(good.last_hash, 21, *fields)
    with db.write() as session:
        session.add(
            AuditEntry(
                seq=21,
                at=at,
                operator_id="t01",
                counter_id="C01",
                action="sale_complete",
                target="客户 伪造",
                result="ok",
                detail="{}",
                prev_hash=good.last_hash,
                hash=digest,
            )
        )
    assert bad(audit.verify(db)) == (21, 20, BEYOND_HEAD)


def test_a_missing_head_is_reported(db: Database, clock: FixedClock) -> None:
    _twenty(db, clock)
    sql(db, "DELETE FROM audit_head")
    assert bad(audit.verify(db)) == (20, 19, HEAD_MISSING)
    with pytest.raises(audit.AuditVerifyFailed):
        audit.latest(db)
    with pytest.raises(audit.AuditVerifyFailed):
        audit.verify_or_raise(db)


def test_record_after_the_session_read_an_older_head(db: Database, clock: FixedClock) -> None:
    """A unit of work that looked at the head before another counter appended still appends
    after that counter's row (PostgreSQL; SQLite has one writer at a time)."""
    if db.dialect != "postgresql":
        pytest.skip("on SQLite no other writer can commit during a write unit of work")
    record(db, clock, 0)
    with db.write() as session:
        assert session.get(AuditHead, 1) is not None  # the head as it was: seq 1
        record(db, clock, 1)  # another counter appends and commits meanwhile
        entry = audit.Actor("t01", "C01", clock).record(session, "logout")
        assert entry.seq == 3
    result = audit.verify(db)
    assert (result.ok, result.rows) == (True, 3)
