"""Pulling from the central system: tariff versions, customer archive deltas (with arrears),
remote-purchase statuses and management-card jobs.

Pages are applied in write transactions together with the cursor (a transaction takes the
pages that have already arrived, up to a few thousand records), so a crash or a bad page leaves
the counter at the end of the last whole page committed and the next pull goes on from there. A
page that fails the contract (validated by the client) or the counter's own rules changes
nothing.

Rules (the central archive is the authority, the counter keeps what only it knows yet):
- tariff versions are append-only: a version the counter has is never changed (a different spec
  under the same number is refused); sales keep the version they were valued at;
- a customer's ``purchase_count`` only goes up (the higher of the two);
- a card binding made here and not yet sent is kept until the central side knows it;
- arrears items are matched by the central ``ref``; an item this counter settled with a sale
  stays settled; an open item the central side no longer lists is gone (paid elsewhere);
- a customer closed centrally: this counter's unsent sales of that customer are flagged for a
  supervisor's review (``sales.review = customer_closed``), never dropped — they are still sent;
- a change of thresholds, ratios or tariff plan raises ``param_version``, so the next sale writes
  the new parameters onto the card (that is how a price adjustment reaches a card meter).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from typing import TypeVar
from typing import cast

from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.pricing import TariffSpec
from app.domain.pricing import TariffSpecError
from app.persistence.db import Database
from app.persistence.models import ArrearsItem
from app.persistence.models import Customer
from app.persistence.models import MgmtJob
from app.persistence.models import Office
from app.persistence.models import OutboxEntry
from app.persistence.models import Sale
from app.persistence.models import Setting
from app.persistence.models import TariffPlan
from app.persistence.models import TariffVersion
from app.services import audit
from app.services.sync_status import counter_key
from app.services.tariffs import SPEC_DEFAULTS
from app.services.tariffs import ensure_plan
from sync import contract as c
from sync.client import CentralClient
from sync.errors import SyncError

log = logging.getLogger(__name__)
P = TypeVar("P", c.TariffPage, c.CustomerPage, c.RemoteStatusPage, c.JobPage)

CURSOR_KEYS = {
    "tariffs": "sync.cursor.tariffs",
    "customers": "sync.cursor.customers",
    "remote": "sync.cursor.remote",
    "jobs": "sync.cursor.jobs",
}
APPLY_CHUNK = 500  # customers turned into database rows at a time
TX_RECORDS = 5000  # records applied in one write transaction at most (pages already arrived)
PARAM_FIELDS = (
    "ct_ratio",
    "pt_ratio",
    "alarm1",
    "alarm2",
    "overdraft_limit",
    "credit_ceiling",
    "tariff_plan_id",
)
ARCHIVE_FIELDS = ("name", "address", "phone", "meter_no", "meter_kind", "status", "office_code")


def get_setting(session: Session, key: str) -> str | None:
    row = session.get(Setting, key)
    return row.value if row else None


def put_setting(session: Session, key: str, value: str) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


# streams the central side answers per counter (its remote payments): one cursor per counter;
# the others (tariffs, the office's customers and arrears, jobs) are shared by the counters of
# a database, pulled once and applied idempotently
PER_COUNTER = frozenset({"remote"})


def cursor_key(stream: str, counter_id: str) -> str:
    key = CURSOR_KEYS[stream]
    return counter_key(key, counter_id) if stream in PER_COUNTER else key


def cursor(session: Session, stream: str, counter_id: str = "") -> int:
    return int(get_setting(session, cursor_key(stream, counter_id)) or 0)


@dataclass
class PullReport:
    tariffs: int = 0
    customers_new: int = 0
    customers_changed: int = 0
    arrears_changed: int = 0
    flagged: int = 0
    remote_updates: int = 0
    jobs: int = 0
    pages: int = 0


def _pull(
    db: Database,
    stream: str,
    fetch: Callable[[int], P],
    apply: Callable[[Session, P], None],
    report: PullReport,
    counter_id: str = "",
) -> None:
    """Fetch pages after the stream's cursor and apply them with the cursor in write
    transactions. The next page is fetched while one is applied (the central side and the
    counter work at the same time); it is only used if this one was applied. A transaction
    takes the next page too when it has already arrived, up to :data:`TX_RECORDS` records:
    pages stay small (memory: the page applied and the one being fetched), commits few, and
    the write lock is never held while waiting for the central side."""
    key = cursor_key(stream, counter_id)
    ensure_setting(db, key)
    with db.read() as session:
        after = int(get_setting(session, key) or 0)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pull-{stream}") as pool:
        pending: Future[P] = pool.submit(fetch, after)
        more = True
        while more:
            page: P | None = pending.result()
            with db.write() as session:
                if _locked_cursor(session, key) != after:  # another sync ran meanwhile
                    return
                records = 0
                while page is not None:
                    next_cursor = page.next_cursor
                    more = page.has_more and next_cursor != after
                    if more:
                        pending = pool.submit(fetch, next_cursor)
                    apply(session, page)
                    records += len(page.items)
                    page = None  # memory: at most the page applied and the one being fetched
                    report.pages += 1
                    after = next_cursor
                    # a page that appended to the audit log (a sale flagged for review) holds
                    # the head: the next page's customers go in a transaction of their own
                    if (
                        more
                        and records < TX_RECORDS
                        and pending.done()
                        and not audit.holds_head(session)
                    ):
                        page = pending.result()
                put_setting(session, key, str(after))


def ensure_setting(db: Database, key: str, initial: str = "0") -> None:
    """The setting's row (a cursor) exists, so that a transaction can lock it (two counters that
    share a database may pull the same stream at the same time)."""
    with db.read() as session:
        if session.get(Setting, key) is not None:
            return
    try:
        with db.write() as session:
            if session.get(Setting, key) is None:
                session.add(Setting(key=key, value=initial))
    except IntegrityError:  # the other counter made it meanwhile
        pass


def locked_setting(session: Session, key: str) -> Setting | None:
    """The setting's row as committed now, locked until this transaction ends (PostgreSQL; on
    SQLite the write transaction holds the database)."""
    return session.scalar(
        select(Setting)
        .where(Setting.key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _locked_cursor(session: Session, key: str) -> int:
    """The cursor as committed now, its row locked (:func:`locked_setting`): of two counters
    pulling the same shared stream at once, the second sees that the first moved it and stops,
    instead of applying the same page again."""
    row = locked_setting(session, key)
    return int(row.value or 0) if row is not None else 0


# --------------------------------------------------------------------------- tariffs


def _apply_tariffs(session: Session, page: c.TariffPage, clock: Clock, report: PullReport) -> None:
    for rec in page.items:
        try:
            spec = TariffSpec.from_dict({**SPEC_DEFAULTS, **rec.spec}).to_dict()
        except (TariffSpecError, ValueError, TypeError, KeyError) as exc:
            raise SyncError(
                detail=f"tariff {rec.plan_code} v{rec.version_no} is not valid: {exc}"
            ) from exc
        plan = ensure_plan(session, rec.plan_code, rec.plan_name)
        have = session.scalar(
            select(TariffVersion).where(
                TariffVersion.plan_id == plan.id, TariffVersion.version_no == rec.version_no
            )
        )
        if have is not None:
            if have.spec != spec or have.kind != rec.kind:
                raise SyncError(
                    detail=f"tariff {rec.plan_code} v{rec.version_no} differs from the one "
                    "this counter holds; versions are never rewritten"
                )
            continue
        session.add(
            TariffVersion(
                plan_id=plan.id,
                version_no=rec.version_no,
                kind=rec.kind,
                effective_from=rec.effective_from.astimezone(dt.UTC),
                spec=spec,
                created_at=clock.now(),
            )
        )
        session.flush()
        report.tariffs += 1


# --------------------------------------------------------------------------- customers

_CUSTOMER_COLS = (
    Customer.id,
    Customer.customer_no,
    Customer.card_serial,
    Customer.purchase_count,
    Customer.param_version,
    Customer.status_reason,
    *(getattr(Customer, f) for f in ARCHIVE_FIELDS),
    *(getattr(Customer, f) for f in PARAM_FIELDS),
)


class CustomerApplier:
    """Applies customer pages; caches plan ids and offices across pages."""

    def __init__(self, clock: Clock, report: PullReport) -> None:
        self.clock = clock
        self.report = report
        self.plans: dict[str, int] = {}
        self.offices: set[str] = set()
        self._status_held: set[str] = set()  # customers whose status here is not sent yet

    def _plan_id(self, session: Session, code: str) -> int:
        if code not in self.plans:
            plan_id = session.scalar(select(TariffPlan.id).where(TariffPlan.code == code))
            if plan_id is None:
                raise SyncError(
                    detail=f"a customer is on tariff plan {code}, which the central system "
                    "has not sent"
                )
            self.plans[code] = plan_id
        return self.plans[code]

    def _office(self, session: Session, code: str) -> None:
        if code in self.offices:
            return
        if session.get(Office, code) is None:
            session.add(Office(code=code, name=code))
            session.flush()
        self.offices.add(code)

    def __call__(self, session: Session, page: c.CustomerPage) -> None:
        """Apply one page in the caller's transaction, in slices of :data:`APPLY_CHUNK`
        customers (the rows built for the database are a slice's, not the page's: memory)."""
        if not page.items:
            return
        now = self.clock.now()
        unsent_binding = self._unsent_bindings(session)
        self._status_held = self._unsent_account_events(session)
        page_refs = {a.ref for rec in page.items for a in rec.arrears}
        closed_now: list[int] = []
        for i in range(0, len(page.items), APPLY_CHUNK):
            part = page.items[i : i + APPLY_CHUNK]
            closed_now += self._apply(session, part, now, unsent_binding, page_refs)
        if closed_now:
            self._flag_closed(session, closed_now)

    def _apply(
        self,
        session: Session,
        items: Sequence[c.CustomerRecord],
        now: dt.datetime,
        unsent_binding: set[str],
        page_refs: set[str],
    ) -> list[int]:
        """Customers (and their arrears) of one slice of a page; the ids of those closed now."""
        nos = [r.customer_no for r in items]
        existing = {
            row.customer_no: row
            for row in session.execute(select(*_CUSTOMER_COLS).where(Customer.customer_no.in_(nos)))
        }
        new_rows: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        closed_now: list[int] = []
        for rec in items:
            self._office(session, rec.office_code)
            values = self._values(session, rec)
            old = existing.get(rec.customer_no)
            if old is None:
                new_rows.append(_new_row(rec, values, now))
                continue
            if rec.customer_no in self._status_held:
                values["status"] = old.status  # this counter's close, pause or resume is unsent
            change = _change(old, rec, values, keep_card=rec.customer_no in unsent_binding)
            if change.get("status") == "closed":
                closed_now.append(old.id)
            if change:
                updates.append(_update_row(old, rec, change, now))
        ids: dict[str, int] = {no: row.id for no, row in existing.items()}
        ids.update(
            _insert_new(session, new_rows, {rec.customer_no for rec in items if rec.arrears})
        )
        _update_changed(session, updates)
        self.report.customers_new += len(new_rows)
        self.report.customers_changed += len(updates)
        self._arrears(session, items, ids, [row.id for row in existing.values()], now, page_refs)
        return closed_now

    def _values(self, session: Session, rec: c.CustomerRecord) -> dict[str, Any]:
        """The archive values of a record as the customer row holds them."""
        return {
            "name": rec.name,
            "address": rec.address,
            "phone": rec.phone,
            "meter_no": rec.meter_no,
            "meter_kind": rec.meter_kind,
            "status": rec.status,
            "office_code": rec.office_code,
            "ct_ratio": rec.ct_ratio,
            "pt_ratio": rec.pt_ratio,
            "alarm1": rec.alarm1,
            "alarm2": rec.alarm2,
            "overdraft_limit": rec.overdraft_limit,
            "credit_ceiling": rec.credit_ceiling,
            "tariff_plan_id": self._plan_id(session, rec.tariff_plan),
        }

    @staticmethod
    def _unsent_bindings(session: Session) -> set[str]:
        payloads = session.scalars(
            select(OutboxEntry.payload).where(
                OutboxEntry.sent_at.is_(None),
                OutboxEntry.kind.in_(("card_bound", "replacement")),
            )
        ).all()
        return {str(p.get("customer_no")) for p in payloads if isinstance(p, dict)}

    @staticmethod
    def _unsent_account_events(session: Session) -> set[str]:
        """Customers whose lifecycle step made here is not sent yet: the central status is
        older than theirs here (a pull must not reopen an account closed offline)."""
        payloads = session.scalars(
            select(OutboxEntry.payload).where(
                OutboxEntry.sent_at.is_(None), OutboxEntry.kind == "account_event"
            )
        ).all()
        return {str(p.get("customer_no")) for p in payloads if isinstance(p, dict)}

    def _arrears(
        self,
        session: Session,
        items: Sequence[c.CustomerRecord],
        ids: dict[str, int],
        known: list[int],
        now: dt.datetime,
        page_refs: set[str],
    ) -> None:
        """The arrears of one slice; an open item is gone when the whole page no longer lists
        it (an item that moved to a customer in another slice is updated there). ``known``: the
        slice's customers this counter had before (a new one has no items here but by ref)."""
        remote = {a.ref: (rec.customer_no, a) for rec in items for a in rec.arrears}
        which = []
        if known:
            which.append(ArrearsItem.customer_id.in_(known))
        if remote:
            which.append(ArrearsItem.ref.in_(list(remote)))
        if not which:
            return
        local = {
            item.ref: item
            for item in session.scalars(
                select(ArrearsItem).where(ArrearsItem.ref.is_not(None), or_(*which))
            )
        }
        changed = 0
        gone = [
            item.id
            for ref, item in local.items()
            if ref not in page_refs and item.settled_by_sale_id is None
        ]
        if gone:
            session.execute(delete(ArrearsItem).where(ArrearsItem.id.in_(gone)))
            changed += len(gone)
        for ref, (cno, a) in remote.items():
            item = local.get(ref)
            if item is None:
                session.add(
                    ArrearsItem(
                        customer_id=ids[cno],
                        kind=a.kind,
                        description=a.description,
                        amount=a.amount,
                        must_collect=a.must_collect,
                        ref=ref,
                        created_at=now,
                    )
                )
                changed += 1
            elif item.settled_by_sale_id is None and (
                item.amount,
                item.kind,
                item.description,
                item.must_collect,
                item.customer_id,
            ) != (a.amount, a.kind, a.description, a.must_collect, ids[cno]):
                item.amount, item.kind = a.amount, a.kind
                item.description, item.must_collect = a.description, a.must_collect
                item.customer_id = ids[cno]
                changed += 1
        session.flush()
        self.report.arrears_changed += changed

    def _flag_closed(self, session: Session, customer_ids: list[int]) -> None:
        unsent = select(OutboxEntry.ref_id).where(
            OutboxEntry.sent_at.is_(None), OutboxEntry.kind.in_(("sale", "remote"))
        )
        for sale in session.scalars(
            select(Sale).where(
                Sale.customer_id.in_(customer_ids),
                Sale.id.in_(unsent),
                Sale.review.is_(None),
            )
        ):
            sale.review = "customer_closed"
            self.report.flagged += 1
            audit.Actor(None, sale.counter_id, self.clock).record(
                session,
                AuditAction.SALE_REVIEW,
                sale.id,
                result="ok",
                detail={"reason": "customer_closed"},
            )


_UPDATABLE = (*ARCHIVE_FIELDS, *PARAM_FIELDS, "purchase_count", "card_serial", "param_version")


def _new_row(rec: c.CustomerRecord, values: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The row of a customer this counter does not hold yet."""
    return {
        **values,
        "customer_no": rec.customer_no,
        "phone_rev": rec.phone[::-1],
        "card_serial": rec.card_serial,
        "purchase_count": rec.purchase_count,
        "updated_at": now,
    }


def _change(
    old: Any, rec: c.CustomerRecord, values: dict[str, Any], keep_card: bool
) -> dict[str, Any]:
    """What a record changes of a customer this counter holds (``old``): the archive values
    that differ, a higher purchase count, a card binding unless one made here is unsent
    (``keep_card``), and what follows from them (``param_version``, ``phone_rev``)."""
    change = {k: v for k, v in values.items() if getattr(old, k) != v}
    if rec.purchase_count > old.purchase_count:
        change["purchase_count"] = rec.purchase_count
    if rec.card_serial and rec.card_serial != old.card_serial and not keep_card:
        change["card_serial"] = rec.card_serial
    if any(f in change for f in PARAM_FIELDS):
        change["param_version"] = old.param_version + 1
    if "phone" in change:
        change["phone_rev"] = rec.phone[::-1]
    return change


def _update_row(
    old: Any, rec: c.CustomerRecord, change: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    """The parameters of one customer's UPDATE (every updatable column, changed or kept)."""
    return {
        **{k: change.get(k, getattr(old, k)) for k in _UPDATABLE},
        "phone_rev": (rec.phone if "phone" in change else old.phone)[::-1],
        # a status changed elsewhere: this counter's reason no longer holds
        "status_reason": "" if "status" in change else old.status_reason,
        "updated_at": now,
        "b_id": old.id,
    }


def _insert_new(
    session: Session, new_rows: list[dict[str, Any]], owing: set[str]
) -> dict[str, int]:
    """Insert new customers; the ids of those ``owing`` arrears (only they need their id back,
    for their items: the others go in one plain executemany, without rendering a statement per
    batch)."""
    table = cast(Table, Customer.__table__)
    plain = [r for r in new_rows if r["customer_no"] not in owing]
    if plain:
        session.connection().execute(insert(table), plain)
    returning = [r for r in new_rows if r["customer_no"] in owing]
    if not returning:
        return {}
    result = session.execute(insert(table).returning(table.c.id, table.c.customer_no), returning)
    return {no: cid for cid, no in result.all()}


def _update_changed(session: Session, updates: list[dict[str, Any]]) -> None:
    if not updates:
        return
    table = cast(Table, Customer.__table__)
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            {k: bindparam(k) for k in (*_UPDATABLE, "phone_rev", "status_reason", "updated_at")}
        )
    )
    session.connection().execute(stmt, updates)


# --------------------------------------------------------------------------- remote, jobs


def _apply_remote(session: Session, page: c.RemoteStatusPage, report: PullReport) -> None:
    for st in page.items:
        sale = session.get(Sale, st.sale_id)
        if sale is None or sale.kind != "remote" or sale.remote_status == st.status:
            continue
        sale.remote_status = st.status
        if st.reason:
            sale.note = (sale.note + f"\n{st.status}: {st.reason}").strip()
        report.remote_updates += 1


def _apply_jobs(session: Session, page: c.JobPage, clock: Clock, report: PullReport) -> None:
    now = clock.now()
    for job in page.items:
        row = session.get(MgmtJob, job.id)
        if row is None:
            session.add(
                MgmtJob(
                    id=job.id,
                    kind=job.kind,
                    customer_no=job.customer_no,
                    meter_no=job.meter_no,
                    office_code=job.office_code,
                    params=job.params,
                    status=job.status,
                    created_at=job.created_at,
                    updated_at=now,
                )
            )
        else:
            row.status, row.params, row.updated_at = job.status, job.params, now
        report.jobs += 1


# --------------------------------------------------------------------------- all


def pull_all(
    db: Database,
    client: CentralClient,
    clock: Clock,
    *,
    counter_id: str,
    page_size: int = 2000,
) -> PullReport:
    report = PullReport()
    _pull(
        db,
        "tariffs",
        lambda after: client.tariffs(after, min(page_size, 1000)),
        lambda s, p: _apply_tariffs(s, p, clock, report),
        report,
    )
    _pull(
        db,
        "customers",
        lambda after: client.customers(after, page_size),
        CustomerApplier(clock, report),
        report,
    )
    _pull(
        db,
        "remote",
        lambda after: client.remote_statuses(after),
        lambda s, p: _apply_remote(s, p, report),
        report,
        counter_id,
    )
    _pull(
        db,
        "jobs",
        lambda after: client.jobs(after),
        lambda s, p: _apply_jobs(s, p, clock, report),
        report,
    )
    return report
