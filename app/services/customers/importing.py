"""CSV import of the customer archive by an administrator, audited, in flat memory."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import Table
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.customers import CustomerStatus
from app.domain.customers import Thresholds
from app.domain.customers import check_customer_no
from app.domain.customers import check_meter_no
from app.domain.customers import check_phone
from app.domain.customers import check_text
from app.domain.customers import parse_meter_kind
from app.domain.customers import parse_ratio
from app.domain.customers import phone_digits
from app.domain.ids import OFFICE_CODE
from app.domain.permissions import Action
from app.errors import CardVendError
from app.errors import ImportFileError
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import translate
from app.persistence.db import Database
from app.persistence.models import Customer
from app.persistence.models import Office
from app.persistence.models import TariffPlan
from app.services import audit

if TYPE_CHECKING:
    from app.services.auth import Principal


COLUMNS = (
    "customer_no",
    "name",
    "address",
    "phone",
    "meter_no",
    "meter_kind",
    "tariff_plan",
    "office",
    "ct_ratio",
    "pt_ratio",
)
REQUIRED = ("customer_no", "name", "meter_no", "meter_kind", "tariff_plan", "office")
BATCH = 2000
MAX_ROW_CHARS = 4096  # longest row of an import file, its line breaks inside quotes included
_READ = MAX_ROW_CHARS + 2  # what one read asks for: a row that long and its CR LF
_TOO_LONG = N_(
    "the row is longer than {max} characters (is this a CSV file? a missing quote?); the rest "
    "of the file is read on"
)
# bytes that were not UTF-8 come through the surrogateescape decoder as lone surrogates
_UNDECODABLE = re.compile("[\udc80-\udcff]")
IMPORT_CACHE_KIB = 65536


@dataclass(frozen=True)
class RowError:
    line: int
    customer_no: str
    message: str  # English message id, already formatted
    localized: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "customer_no": self.customer_no, "message": self.message}


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    bad: int = 0
    offices_created: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)  # the first MAX_KEPT errors
    committed: bool = False
    MAX_KEPT = 1000

    def summary(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "bad": self.bad,
            "committed": self.committed,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "offices_created": self.offices_created,
            "errors": [e.to_json() for e in self.errors],
        }


# --------------------------------------------------------------------------- import


class _RowProblem(Exception):
    def __init__(self, err: CardVendError | str, **params: object) -> None:
        if isinstance(err, CardVendError):
            self.template, self.params = err.message_template, err.params
        else:
            self.template, self.params = err, params
        super().__init__(self.template)

    def render(self, language: str) -> str:
        return translate(self.template, language).format(**self.params)


class _RowTooLong(Exception):
    """A row longer than MAX_ROW_CHARS (never held whole: its rest was read and dropped)."""


def _eol(chunk: str) -> int:
    if chunk.endswith("\r\n"):
        return 2
    return 1 if chunk.endswith(("\n", "\r")) else 0


class _Lines:
    """The physical lines of a text file, as :func:`csv.reader` asks for them, read at most
    ``_READ`` characters at a time.  A line longer than that is read on in pieces of that size
    and dropped, then :class:`_RowTooLong` stands for it; so does a row whose lines (a quoted
    field may span several) come to more than MAX_ROW_CHARS.  The first line is not read past
    its limit: a file whose first line is that long (``/dev/zero``) is no CSV file and need not
    be read to its end.  ``row_chars`` counts the row being read; its reader resets it."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self.text = text
        self.line = 0  # physical lines read so far
        self.row_chars = 0
        self._back: str | None = None  # a piece read too far, given out next

    def __iter__(self) -> _Lines:
        return self

    def _read(self) -> str:
        if self._back is not None:
            chunk, self._back = self._back, None
            return chunk
        return self.text.readline(_READ)

    def _ends_line(self, chunk: str) -> bool:
        if len(chunk) < _READ or chunk[-1] == "\n":
            return True  # the read stopped at the end of the line or of the file
        if chunk[-1] != "\r":
            return False
        # a CR on the read's edge ends the line, whether an LF follows or not
        after = self.text.readline(_READ)
        if after and after != "\n":
            self._back = after
        return True

    def __next__(self) -> str:
        chunk = self._read()
        if not chunk:
            raise StopIteration
        self.line += 1
        ended = self._ends_line(chunk)
        self.row_chars += len(chunk)
        if ended and self.row_chars - _eol(chunk) <= MAX_ROW_CHARS:
            return chunk
        while not ended and self.line > 1:
            chunk = self._read()
            ended = not chunk or self._ends_line(chunk)
        raise _RowTooLong


def _records(path: Path) -> Generator[tuple[int, list[str] | None], None, None]:
    """(first line, fields) of each CSV record; fields None for a row longer than
    MAX_ROW_CHARS, after which reading goes on at the next line."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise ImportFileError(path=str(path), detail=exc.strerror or str(exc)) from exc
    with (
        raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="") as text,
    ):
        lines = _Lines(text)
        reader = csv.reader(lines, strict=True)
        while True:
            start = lines.line + 1
            lines.row_chars = 0
            try:
                record = next(reader)
            except StopIteration:
                return
            except _RowTooLong:
                reader = csv.reader(lines, strict=True)  # what it held of the row is dropped
                yield start, None
                continue
            except csv.Error as exc:
                raise ImportFileError(path=str(path), detail=f"line {lines.line}: {exc}") from exc
            yield start, record


def import_csv(
    db: Database,
    path: str | Path,
    clock: Clock,
    *,
    actor: Principal,
    all_or_nothing: bool = False,
    on_error: Callable[[RowError], None] | None = None,
    language: str = "en",
) -> ImportReport:
    """Import the customers of a CSV file for ``actor`` (permission ``import_customers``:
    administrators; a refusal changes nothing).  Every import is audited: a file that cannot
    be imported, or how many rows were imported and were bad (in the import's transaction)."""
    path = Path(path)

    def log(result: str, **detail: object) -> None:
        with db.write() as session:
            _audit_import(session, actor, clock, path, result, detail)

    actor.authorize(Action.IMPORT_CUSTOMERS, clock)
    try:
        report = _import(db, path, clock, actor, all_or_nothing, on_error, language)
    except ImportFileError as exc:
        log("failed", problem=str(exc))
        raise
    if not report.committed:  # all or nothing, and a row was bad: rolled back
        log("failed", **report.summary())
    return report


def _audit_import(
    session: Session,
    actor: Principal,
    clock: Clock,
    path: Path,
    result: str,
    detail: dict[str, object],
) -> None:
    audit.Actor.of(actor, clock).record(
        session,
        AuditAction.CUSTOMERS_IMPORT,
        path.name[-120:],
        result=result,
        detail={"file": str(path), **detail},
    )


def _header(path: Path, records: Generator[tuple[int, list[str] | None], None, None]) -> list[str]:
    """The header row of an import file, lower-cased; the file is refused when it has none or
    lacks a required column."""
    try:
        _, header = next(records)
    except StopIteration:
        raise ImportFileError(path=str(path), detail=N_("the file is empty")) from None
    if header is None:
        records.close()
        raise ImportFileError(
            path=str(path),
            detail=N_("its first line is longer than {max} characters, so it is no CSV file"),
            max=MAX_ROW_CHARS,
        )
    header = [h.strip().lower() for h in header]
    if _UNDECODABLE.search("".join(header)):
        raise ImportFileError(
            path=str(path), detail="the header is not UTF-8 text (save the file as CSV UTF-8)"
        )
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportFileError(path=str(path), detail="missing columns: " + ", ".join(missing))
    return header


def _checked_row(
    session: Session,
    record: list[str],
    index: dict[str, int],
    width: int,
    plans: dict[str, int],
    offices: set[str],
    lines: dict[str, tuple[int, str]],
    now: dt.datetime,
    report: ImportReport,
) -> dict[str, Any]:
    """One record of the file as a customer row, its office created when new (noted in
    ``offices`` and the report); a bad record raises :class:`_RowProblem` or
    :class:`ValidationError`."""
    if len(record) != width:
        raise _RowProblem(
            N_("the row has {got} fields, the header has {want}"),
            got=len(record),
            want=width,
        )
    if _UNDECODABLE.search("".join(record)):
        raise _RowProblem(N_("the row is not valid UTF-8 text (save the file as UTF-8)"))
    row = _parse_row(record, index, plans, now)
    office = row["office_code"]
    if office not in offices:
        OFFICE_CODE.check(office, N_("office"))
        session.add(Office(code=office, name=office))
        session.flush()
        offices.add(office)
        report.offices_created.append(office)
    if row["customer_no"] in lines:
        raise _RowProblem(
            N_("customer_no {value} appears twice in the file (first on line {first})"),
            value=row["customer_no"],
            first=lines[row["customer_no"]][0],
        )
    return row


def _import(
    db: Database,
    path: Path,
    clock: Clock,
    actor: Principal,
    all_or_nothing: bool,
    on_error: Callable[[RowError], None] | None,
    language: str,
) -> ImportReport:
    report = ImportReport()
    records = _records(path)
    header = _header(path, records)
    index = {name: header.index(name) for name in COLUMNS if name in header}
    width = len(header)
    now = clock.now()

    def bad(line: int, customer_no: str, problem: _RowProblem) -> None:
        report.bad += 1
        err = RowError(line, customer_no, problem.render("en"), problem.render(language))
        if len(report.errors) < report.MAX_KEPT:
            report.errors.append(err)
        if on_error:
            on_error(err)

    with db.write() as session, _large_sqlite_cache(session):
        plans = dict(session.execute(select(TariffPlan.code, TariffPlan.id)).all())
        offices = set(session.scalars(select(Office.code)))
        batch: list[dict[str, Any]] = []
        lines: dict[str, tuple[int, str]] = {}

        def flush() -> None:
            if not batch:
                return
            inserted = _insert_batch(session, batch)
            report.imported += len(inserted)
            for row in batch:
                if row["customer_no"] in inserted:
                    continue
                line, _ = lines[row["customer_no"]] if row["customer_no"] in lines else (0, "")
                bad(line, row["customer_no"], _duplicate_problem(session, row, inserted))
            batch.clear()
            lines.clear()

        for line, record in records:
            if record is not None and (not record or (len(record) == 1 and not record[0].strip())):
                continue  # a blank line
            report.rows += 1
            if record is None:
                bad(line, "", _RowProblem(_TOO_LONG, max=MAX_ROW_CHARS))
                continue
            cno = record[index["customer_no"]].strip() if len(record) > index["customer_no"] else ""
            try:
                row = _checked_row(
                    session, record, index, width, plans, offices, lines, now, report
                )
            except _RowProblem as problem:
                bad(line, cno, problem)
                continue
            except ValidationError as exc:
                bad(line, cno, _RowProblem(exc))
                continue
            lines[row["customer_no"]] = (line, row["meter_no"])
            batch.append(row)
            if len(batch) >= BATCH:
                flush()
        flush()
        if all_or_nothing and report.bad:
            session.rollback()
            report.imported = 0
            return report
        report.committed = True
        # in the import's own transaction: the row and the customers commit together
        _audit_import(session, actor, clock, path, "ok", report.summary())
    return report


@contextmanager
def _large_sqlite_cache(session: Session) -> Iterator[None]:
    """A bulk import keeps secondary indexes current in one transaction: give SQLite a page
    cache large enough not to re-read index pages (64 MiB), and restore the default after,
    since the pooled connection outlives the import."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    # the PRAGMA is a property of the DBAPI connection, outside any transaction
    raw = session.connection().connection.dbapi_connection
    assert raw is not None
    raw.execute(f"PRAGMA cache_size=-{IMPORT_CACHE_KIB}")
    try:
        yield
    finally:
        raw.execute("PRAGMA cache_size=-2000")


def new_account_values(now: dt.datetime) -> dict[str, Any]:
    """What every newly archived customer starts with: the default thresholds, no card yet, no
    purchase."""
    t = Thresholds()
    return {
        "alarm1": t.alarm1,
        "alarm2": t.alarm2,
        "overdraft_limit": t.overdraft_limit,
        "credit_ceiling": t.credit_ceiling,
        "card_serial": None,
        "purchase_count": 0,
        "updated_at": now,
    }


def _parse_row(
    record: Sequence[str], index: dict[str, int], plans: dict[str, int], now: dt.datetime
) -> dict[str, Any]:
    def col(name: str) -> str:
        return record[index[name]].strip() if name in index else ""

    plan_code = col("tariff_plan")
    if plan_code not in plans:
        raise _RowProblem(N_("tariff plan {plan!r} is unknown"), plan=plan_code)
    phone = check_phone(col("phone"))
    return {
        "customer_no": check_customer_no(col("customer_no")),
        "name": check_text(col("name"), "name", max_len=64),
        "address": check_text(col("address"), "address", max_len=200, required=False),
        "phone": phone,
        "phone_rev": phone_digits(phone)[::-1],
        "meter_no": check_meter_no(col("meter_no")),
        "meter_kind": parse_meter_kind(col("meter_kind")).value,
        "status": CustomerStatus.ACTIVE.value,
        "office_code": col("office"),
        "tariff_plan_id": plans[plan_code],
        "ct_ratio": parse_ratio(col("ct_ratio"), "ct_ratio"),
        "pt_ratio": parse_ratio(col("pt_ratio"), "pt_ratio"),
        **new_account_values(now),
    }


def _insert_batch(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert rows, skipping those whose customer_no or meter_no exists; returns those inserted."""
    dialect = session.get_bind().dialect.name
    table = Customer.__table__
    assert isinstance(table, Table)
    if dialect == "sqlite":
        stmt: Any = sqlite.insert(table).on_conflict_do_nothing()
    elif dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        stmt = insert(table)
    result = session.execute(stmt.returning(table.c.customer_no), rows)
    return set(result.scalars().all())


def _duplicate_problem(session: Session, row: dict[str, Any], inserted: set[str]) -> _RowProblem:
    cno, mno = row["customer_no"], row["meter_no"]
    holder = session.execute(
        select(Customer.customer_no, Customer.meter_no).where(
            or_(Customer.customer_no == cno, Customer.meter_no == mno)
        )
    ).first()
    if holder is not None and holder.customer_no == cno and cno not in inserted:
        return _RowProblem(N_("customer_no {value} already exists"), value=cno)
    other = holder.customer_no if holder is not None else "?"
    return _RowProblem(
        N_("meter_no {value} already belongs to customer {other}"), value=mno, other=other
    )
