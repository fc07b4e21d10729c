"""One sync round, the background worker, registration and reconciliation.

A round: push the outbox (sales first, so the central side knows them before we pull the archive
that reflects them), pull tariffs, customers, remote statuses and jobs, push the write-backs
seen on cards (control reports, and low-balance SMS requests), then the audit head. A record
refused (by the contract check or the central side) is set aside and an audit history the central
side does not recognise is flagged: neither fails the round for the rest. The outcome is written
to the database for this counter (``sync.*@COUNTER`` settings, see app/services/sync_status.py)
so the UI, ``cardvend sync status`` and the offline limits see it; counters sharing a database
each send, count and report their own.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select

from app.clock import Clock
from app.clock import aware
from app.context import AppContext
from app.domain.audit import AuditAction
from app.domain.permissions import Action
from app.errors import CardVendError
from app.fileio import private_dir
from app.fileio import write_atomically
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.persistence.models import Customer
from app.persistence.models import OutboxEntry
from app.persistence.models import Sale
from app.services import audit
from app.services.auth import Principal
from app.services.sync_status import AUDIT_DIVERGED
from app.services.sync_status import LAST_ATTEMPT
from app.services.sync_status import LAST_ERROR
from app.services.sync_status import LAST_SUCCESS
from app.services.sync_status import ONLINE
from app.services.sync_status import counter_key
from app.services.sync_status import counter_setting
from app.services.sync_status import put_counter_setting
from app.settings import CENTRAL_CA_BUNDLE
from app.settings import CENTRAL_URL
from app.settings import SYNC_BATCH
from app.settings import SYNC_INTERVAL
from app.settings import SYNC_TIMEOUT
from sync import contract as c
from sync.client import CentralClient
from sync.errors import AuditDiverged
from sync.errors import NotRegistered
from sync.outbox import NAMESPACE
from sync.outbox import PushReport
from sync.outbox import SaleFacts
from sync.outbox import push
from sync.outbox import sale_body
from sync.pull import PullReport
from sync.pull import ensure_setting
from sync.pull import get_setting
from sync.pull import locked_setting
from sync.pull import pull_all
from sync.pull import put_setting

log = logging.getLogger(__name__)
TOKEN_FILE = "central.token"
TOKEN_ENV = "CARDVEND_CENTRAL_TOKEN"
CONTROL_CURSOR = "sync.cursor.control"
AUDIT_ACKED = "sync.audit_acked_seq"


# --------------------------------------------------------------------------- configuration


def token_path(ctx: AppContext) -> Path:
    return ctx.paths.data_dir / TOKEN_FILE


def load_token(ctx: AppContext) -> str | None:
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = token_path(ctx)
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def make_client(ctx: AppContext) -> CentralClient:
    url = ctx.settings.value(CENTRAL_URL)
    token = load_token(ctx)
    if not url or not token:
        raise NotRegistered()
    timeout = float(ctx.settings.value(SYNC_TIMEOUT))
    return CentralClient(
        url,
        token,
        ca_bundle=ctx.settings.value(CENTRAL_CA_BUNDLE) or None,
        timeout=(min(5.0, timeout), timeout),
    )


def register_counter(
    ctx: AppContext,
    url: str,
    enrolment_key: str | None,
    name: str = "",
    *,
    operator: Principal,
    enrolment_code: str | None = None,
) -> c.RegisterResponse:
    """Register this counter (an administrator's act, audited, refused ones too); keeps the URL
    in the settings, the token in a 0600 file and the receipt key the central system answered.

    Registering again with the same central system sends the counter's current token (the
    central system takes an existing counter id only from the holder of its token or of a
    one-time ``enrolment_code``); the token is never sent to another address."""
    url = url.strip().rstrip("/")

    def note(detail: dict[str, Any], result: str = "ok") -> None:
        with ctx.db.write() as session:
            audit.Actor(operator.operator_id, ctx.counter_id, ctx.clock).record(
                session, AuditAction.COUNTER_REGISTER, url, result=result, detail=detail
            )

    try:
        operator.authorize(Action.CHANGE_SETTINGS, ctx.clock)
    except CardVendError as exc:
        note({"error": exc.code}, "denied")
        raise
    known = ctx.settings.value(CENTRAL_URL).strip().rstrip("/")
    token = load_token(ctx) if known and known == url else None
    client = CentralClient(url, token, ca_bundle=ctx.settings.value(CENTRAL_CA_BUNDLE) or None)
    detail: dict[str, Any] = {
        "with_token": token is not None,
        "with_enrolment_code": bool(enrolment_code),
        "with_enrolment_key": bool(enrolment_key),
    }
    try:
        answer = client.register(
            c.RegisterRequest(counter_id=ctx.counter_id, office_code=ctx.office_code, name=name),
            enrolment_key,
            enrolment_code=enrolment_code,
        )
    except CardVendError as exc:
        note({**detail, "error": exc.code}, "failed")
        raise
    finally:
        client.close()
    path = token_path(ctx)
    private_dir(path.parent)
    write_atomically(path, (answer.token + "\n").encode("utf-8"), mode=0o600)
    # receipts printed from now on carry codes the central system can check
    write_atomically(ctx.receipt_key_file, (answer.receipt_key + "\n").encode("ascii"))
    os.chmod(ctx.receipt_key_file, 0o600)
    ctx.settings.set(CENTRAL_URL.key, url)
    if ctx.settings.path is not None:
        ctx.settings.save()
    note({**detail, "office": answer.office_code})
    return answer


# --------------------------------------------------------------------------- a round


@dataclass
class RoundReport:
    push: PushReport = field(default_factory=PushReport)
    pull: PullReport = field(default_factory=PullReport)
    control_reports: int = 0
    sms_requests: int = 0
    control_refused: int = 0  # card balance reports the contract or the central side refused
    audit_seq: int | None = None
    audit_diverged: str | None = None  # why the central side holds another audit history

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.push.sent,
            "duplicates": self.push.duplicates,
            "refused": self.push.failed,
            "refusals": [r.to_json() for r in self.push.refusals],
            "waiting": self.push.waiting,
            "flagged": self.push.flagged,
            "flagged_by_pull": self.pull.flagged,
            "requests": self.push.requests,
            "tariffs": self.pull.tariffs,
            "customers_new": self.pull.customers_new,
            "customers_changed": self.pull.customers_changed,
            "arrears_changed": self.pull.arrears_changed,
            "remote_updates": self.pull.remote_updates,
            "jobs": self.pull.jobs,
            "control_reports": self.control_reports,
            "sms_requests": self.sms_requests,
            "control_refused": self.control_refused,
            "audit_seq": self.audit_seq,
            "audit_diverged": self.audit_diverged,
        }


def _control_position(raw: str | None) -> tuple[dt.datetime, int] | None:
    """The control cursor ``SEEN_AT|CUSTOMER_ID`` (the last write-back reported), or None."""
    since, _, last_id = (raw or "").partition("|")
    return (aware(dt.datetime.fromisoformat(since)), int(last_id)) if since else None


def _advance_control_cursor(db: Database, seen: dt.datetime, customer_id: int) -> None:
    """Move the shared control cursor forward, never back: another counter of this database may
    have reported further meanwhile (taking its position back would send those reports again).
    The row is locked while it is compared and written."""
    ensure_setting(db, CONTROL_CURSOR, initial="")
    with db.write() as session:
        row = locked_setting(session, CONTROL_CURSOR)
        assert row is not None
        held = _control_position(row.value)
        if held is None or (seen, customer_id) > held:
            row.value = f"{seen.isoformat()}|{customer_id}"


class SyncService:
    def __init__(
        self,
        db: Database,
        client: CentralClient,
        clock: Clock,
        *,
        counter_id: str,
        office_code: str,
        batch_size: int = 500,
        # customers per pulled page: two pages are held at once (one applied, the next being
        # fetched), so this bounds the pull's memory; 2,000 costs no time against 5,000
        page_size: int = 2000,
    ) -> None:
        self.db = db
        self.client = client
        self.clock = clock
        self.counter_id = counter_id
        self.office_code = office_code
        self.batch_size = max(1, min(batch_size, c.MAX_BATCH))
        self.page_size = page_size
        self._lock = threading.Lock()  # one round at a time in this process

    @classmethod
    def from_context(cls, ctx: AppContext) -> SyncService:
        return cls(
            ctx.db,
            make_client(ctx),
            ctx.clock,
            counter_id=ctx.counter_id,
            office_code=ctx.office_code,
            batch_size=ctx.settings.value(SYNC_BATCH),
        )

    def run_round(self) -> RoundReport:
        with self._lock:
            report = RoundReport()
            try:
                report.push = push(
                    self.db,
                    self.client,
                    self.clock,
                    self.office_code,
                    self.counter_id,
                    batch_size=self.batch_size,
                )
                report.pull = pull_all(
                    self.db,
                    self.client,
                    self.clock,
                    counter_id=self.counter_id,
                    page_size=self.page_size,
                )
                report.control_reports, report.sms_requests, report.control_refused = (
                    self.push_control()
                )
                report.audit_seq, report.audit_diverged = self.report_audit_head()
            except CardVendError as exc:
                self._record(ok=False, error=f"{exc.code}: {exc}")
                raise
            except Exception as exc:  # a bug must not look like "online"
                self._record(ok=False, error=f"error: {exc!r}")
                raise
            self._record(ok=True, error="")
            return report

    def _record(self, *, ok: bool, error: str) -> None:
        """The round's outcome, kept for this counter (counters may share the database)."""
        now = self.clock.now().isoformat()
        me = self.counter_id
        with self.db.write() as session:
            put_counter_setting(session, LAST_ATTEMPT, me, now)
            put_counter_setting(session, ONLINE, me, "1" if ok else "0")
            put_counter_setting(session, LAST_ERROR, me, error[:1000])
            if ok:
                put_counter_setting(session, LAST_SUCCESS, me, now)

    # ------------------------------------------------------------------ control reports

    def push_control(self, page: int = 1000) -> tuple[int, int, int]:
        """Send the write-backs read off cards since the last round; a balance at or below the
        first alarm also asks the central system to send the low-balance SMS. (reports, SMS
        requests, refused): a report that fails the contract (a customer number edited in the
        database) or that the central side refuses is logged and left out, the rest go on.
        The write-backs are on the shared customer archive: one cursor for all counters."""
        reports = sms = refused = 0
        while True:
            with self.db.read() as session:
                position = _control_position(get_setting(session, CONTROL_CURSOR))
                query = select(
                    Customer.id,
                    Customer.customer_no,
                    Customer.meter_remaining,
                    Customer.meter_purchase_count,
                    Customer.write_back_seen_at,
                    Customer.alarm1,
                    Customer.meter_illegal_insert_count,
                ).where(Customer.write_back_seen_at.is_not(None))
                if position is not None:
                    when, last_id = position
                    query = query.where(
                        (Customer.write_back_seen_at > when)
                        | ((Customer.write_back_seen_at == when) & (Customer.id > last_id))
                    )
                rows = session.execute(
                    query.order_by(Customer.write_back_seen_at, Customer.id).limit(page)
                ).all()
            if not rows:
                return reports, sms, refused
            items: list[c.ControlReport] = []
            texts: list[c.SmsRequest] = []
            for _cid, cno, remaining, count, seen, alarm1, illegal in rows:
                if remaining is None or count is None or seen is None:
                    continue
                seen_at = aware(seen)
                key = f"{cno}:{count}:{remaining}:{seen_at.isoformat()}"
                try:
                    report = c.ControlReport(
                        id=str(uuid.uuid5(NAMESPACE, "control:" + key)),
                        customer_no=cno,
                        meter_remaining=remaining,
                        meter_purchase_count=count,
                        seen_at=seen_at,
                        counter_id=self.counter_id,
                        illegal_insert_count=illegal,
                    )
                    text = None
                    if remaining <= alarm1:
                        text = c.SmsRequest(
                            id=str(uuid.uuid5(NAMESPACE, f"sms-low:{cno}:{count}:{remaining}")),
                            customer_no=cno,
                            template="low_balance",
                            params={"remaining_fen": remaining},
                            counter_id=self.counter_id,
                            created_at=seen_at,
                        )
                except PydanticValidationError as exc:
                    log.warning("card balance of customer %r not reported: %s", cno, exc)
                    refused += 1
                    continue
                items.append(report)
                if text is not None:
                    texts.append(text)
            for resource, batch in (("control-reports", items), ("sms", texts)):
                for i in range(0, len(batch), self.batch_size):
                    result = self.client.post_batch(resource, batch[i : i + self.batch_size])
                    for r in result.results:
                        # a conflict: another counter of this database reported the same
                        # write-back at the same moment; the central side has it
                        if r.status == "rejected":
                            log.warning("%s %s refused: %s", resource, r.id, r.message)
                            refused += 1
            reports += len(items)
            sms += len(texts)
            last_id_now, last_seen = rows[-1][0], rows[-1][4]
            assert last_seen is not None
            _advance_control_cursor(self.db, aware(last_seen), last_id_now)
            if len(rows) < page:
                return reports, sms, refused

    # ------------------------------------------------------------------ audit head

    def push_audit_head(self) -> int:
        """Report this counter's audit head; :class:`AuditDiverged` when the central side holds
        another history for it. What was acknowledged is kept per counter."""
        seq, head_hash = audit.latest(self.db)
        with self.db.read() as session:
            acked = counter_setting(session, AUDIT_ACKED, self.counter_id)
            previous = int(acked) if acked else None
            at_previous = None
            if previous is not None:
                at_previous = session.scalar(
                    select(AuditEntry.hash).where(AuditEntry.seq == previous)
                )
        head = c.AuditHead(
            seq=seq,
            hash=head_hash,
            at=self.clock.now(),
            previous_seq=previous if at_previous else None,
            at_previous_seq=at_previous,
        )
        ack = self.client.put_audit_head(head)
        with self.db.write() as session:
            put_counter_setting(session, AUDIT_ACKED, self.counter_id, str(ack.seq))
            put_counter_setting(session, AUDIT_DIVERGED, self.counter_id, None)
        return ack.seq

    def report_audit_head(self) -> tuple[int | None, str | None]:
        """The audit head as a part of the round: (the acknowledged seq, None), or, when the
        central side holds another audit history, (None, why). A divergence is flagged for this
        counter (sync status, the central-link page) and audited once when it appears; it does
        not fail the round, whose sales already went up. It clears itself when the central side
        accepts a head again."""
        try:
            return self.push_audit_head(), None
        except AuditDiverged as exc:
            message = str(exc.params.get("detail", "")) or str(exc)
        seq, _hash = audit.latest(self.db)
        key = counter_key(AUDIT_DIVERGED, self.counter_id)
        with self.db.write() as session:
            held = get_setting(session, key)
            before = json.loads(held) if held else None
            if before is None or before.get("message") != message:
                flag = {"since": self.clock.now().isoformat(), "seq": seq, "message": message}
                put_setting(session, key, json.dumps(flag, ensure_ascii=False))
                audit.Actor(None, self.counter_id, self.clock).record(
                    session,
                    AuditAction.AUDIT_DIVERGED,
                    result="failed",
                    detail={"seq": seq, "message": message},
                )
        log.error("the central system holds another audit history: %s", message)
        return None, message


# --------------------------------------------------------------------------- worker


class SyncWorker:
    """Runs rounds in a background thread every ``interval`` seconds until stopped; survives
    errors (they are recorded in the sync status) and restarts (the outbox is in the database).
    """

    def __init__(
        self,
        service_factory: Callable[[], SyncService],
        interval: float,
        *,
        on_round: Callable[[RoundReport | None, Exception | None], None] | None = None,
    ) -> None:
        self.service_factory = service_factory
        self.interval = interval
        self.on_round = on_round
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SyncWorker:
        self._thread = threading.Thread(target=self._loop, name="sync", daemon=True)
        self._thread.start()
        return self

    def sync_now(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        service: SyncService | None = None
        while not self._stop.is_set():
            report: RoundReport | None = None
            error: Exception | None = None
            try:
                service = service or self.service_factory()
                report = service.run_round()
            except Exception as exc:
                error = exc
                log.warning("sync round failed: %s", exc)
            if self.on_round is not None:
                self.on_round(report, error)
            self._wake.wait(self.interval)
            self._wake.clear()


def background_worker(ctx: AppContext) -> SyncWorker | None:
    """The window's sync worker, or None when this counter is not registered."""
    if not ctx.settings.value(CENTRAL_URL) or not load_token(ctx):
        return None
    return SyncWorker(
        lambda: SyncService.from_context(ctx), float(ctx.settings.value(SYNC_INTERVAL))
    )


# --------------------------------------------------------------------------- reconcile


@dataclass
class Difference:
    sale_id: str
    # missing_central | missing_local | different | reversal | refused | invalid (serious);
    # not_sent | flagged (listed, not errors)
    kind: str
    detail: str = ""


@dataclass
class ReconcileReport:
    local: int = 0
    central: int = 0
    matched: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def serious(self) -> list[Difference]:
        return [d for d in self.differences if d.kind not in ("not_sent", "flagged")]

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for d in self.differences:
            counts[d.kind] = counts.get(d.kind, 0) + 1
        return {
            "local": self.local,
            "central": self.central,
            "matched": self.matched,
            "counts": counts,
            "differences": [d.__dict__ for d in self.differences],
        }


def _live_differences(body: dict[str, Any], held: c.SaleRecord, reversed_: bool) -> list[str]:
    """The fields in which the sale as the ledger holds it now differs from what the central
    system holds; a body that fails the contract names the fields that fail."""
    invalid: set[str] = set()
    try:
        mine = c.SaleRecord.model_validate(body)
    except PydanticValidationError as exc:
        invalid = {str(e["loc"][0]) for e in exc.errors() if e.get("loc")}
        held_json = held.model_dump(mode="json")
        try:  # the fields that fail differ for sure; compare the others as usual
            mine = c.SaleRecord.model_validate({**body, **{k: held_json[k] for k in invalid}})
        except (PydanticValidationError, KeyError):
            return sorted(invalid) or ["record"]
    fields = [
        k for k in c.SaleRecord.model_fields if k in invalid or getattr(mine, k) != getattr(held, k)
    ]
    if reversed_ and fields == ["settled_refs"] and not mine.settled_refs:
        return []  # a reversal gives the settled arrears back: the sale itself is unchanged
    return fields


def reconcile(
    db: Database, client: CentralClient, *, counter_id: str, office_code: str
) -> ReconcileReport:
    """Compare this counter's settled sales, as the ledger holds them now (amount, credit,
    state, customer, ...: not the body frozen for sending), with what the central system holds
    for it: a sale edited in the database after it was sent shows as ``different``."""
    central: dict[str, c.CounterSale] = {}
    after = 0
    while True:
        page = client.counter_sales(after, 1000)
        for item in page.items:
            central[item.sale.id] = item
        if not page.has_more or page.next_cursor == after:
            break
        after = page.next_cursor
    report = ReconcileReport(central=len(central))
    mine = OutboxEntry.counter_id == counter_id
    with db.read() as session:
        unsent = dict(
            session.execute(
                select(OutboxEntry.ref_id, OutboxEntry.refused_at).where(
                    mine, OutboxEntry.sent_at.is_(None), OutboxEntry.kind.in_(("sale", "remote"))
                )
            ).all()
        )
        unsent_reversals = set(
            session.scalars(
                select(OutboxEntry.payload).where(
                    mine, OutboxEntry.sent_at.is_(None), OutboxEntry.kind == "reversal"
                )
            )
        )
        waiting_reversal = {p.get("sale_id") for p in unsent_reversals if isinstance(p, dict)}
        local_ids: set[str] = set()
        sale_ids = list(
            session.scalars(
                select(Sale.id)
                .where(Sale.counter_id == counter_id, Sale.training.is_(False))
                .order_by(Sale.id)
            )
        )
        for i in range(0, len(sale_ids), 500):
            facts = SaleFacts(session, sale_ids[i : i + 500])
            for sale_id in sale_ids[i : i + 500]:
                sale = facts.sales[sale_id]
                try:
                    body = sale_body(session, sale, office_code, facts)
                except (KeyError, ValueError, TypeError) as exc:
                    body = None
                    if sale.state in ("completed", "failed", "reversed"):
                        local_ids.add(sale.id)
                        report.local += 1
                        report.differences.append(Difference(sale.id, "invalid", repr(exc)))
                    continue
                if body is None:
                    continue  # pending or in doubt: not settled yet, nothing to compare
                local_ids.add(sale.id)
                report.local += 1
                held = central.get(sale.id)
                if held is None:
                    if sale.id in unsent:
                        kind = "refused" if unsent[sale.id] is not None else "not_sent"
                    else:
                        kind = "missing_central"
                    report.differences.append(Difference(sale.id, kind))
                    continue
                fields = _live_differences(body, held.sale, sale.state == "reversed")
                if fields:
                    report.differences.append(Difference(sale.id, "different", ", ".join(fields)))
                    continue
                if (sale.state == "reversed") != held.reversed and sale.id not in waiting_reversal:
                    report.differences.append(
                        Difference(
                            sale.id,
                            "reversal",
                            f"local {sale.state}, central {'reversed' if held.reversed else 'not'}",
                        )
                    )
                    continue
                if held.review or sale.review:
                    report.differences.append(
                        Difference(sale.id, "flagged", held.review or sale.review or "")
                    )
                report.matched += 1
            session.expunge_all()  # keep memory flat over a long ledger
    for sale_id in central.keys() - local_ids:
        report.differences.append(Difference(sale_id, "missing_local"))
    return report
