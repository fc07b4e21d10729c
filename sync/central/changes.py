"""The central administrator's side of the store: issuing tariff versions, adding customers,
arrears and jobs, changing customers and remote-purchase statuses (the demo seed, tests and
tools use these), and looking at what the central system holds.  No rule of the counters' lane
applies here: these are the central system's own changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from sync import contract as c
from sync.central import enrol
from sync.central import models as m
from sync.central import sms_admin
from sync.central.base import StoreBase
from sync.central.base import Tx
from sync.central.base import customer_values

CUSTOMER_COLUMNS = (
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
ARREARS_COLUMNS = ("ref", "kind", "description", "amount", "must_collect")


class CentralChanges(StoreBase):
    """Central-side changes and inspection on top of :class:`StoreBase`."""

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

        def work(tx: Tx) -> c.TariffVersionRecord:
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
                    "seq": tx.next_seq("tariffs"),
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
        be left out), optionally ``arrears``: a list of ``ref``/``kind``/``amount``/...
        dicts (``due_at``, when given, is when the item falls due), and optionally
        ``sms_language`` (zh_CN | en) and ``sms_opted_out``: the customer's SMS preferences.
        A customer already there is skipped with its arrears and preferences.  Answers how many were
        added.  One transaction, Core executemany in chunks (for archives of a million)."""
        cu = m.customers.c

        def insert_fresh(tx: Tx, batch: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> int:
            numbers = [b[0]["customer_no"] for b in batch]
            present = set(
                tx.conn.scalars(select(cu.customer_no).where(cu.customer_no.in_(numbers)))
            )
            fresh = [b for b in batch if b[0]["customer_no"] not in present]
            if not fresh:
                return 0
            rows = [values for values, _owed in fresh]
            tx.number_rows("customers", rows)
            tx.conn.execute(insert(m.customers), rows)
            sms_admin.prefs_from_archive(
                tx.conn, [wishes[v["customer_no"]] for v, _o in fresh if v["customer_no"] in wishes]
            )
            owed = [item for _values, items in fresh for item in items]
            if owed:
                self._insert_arrears(tx, owed, chunk=chunk, touch=False)
            return len(fresh)

        wishes: dict[str, Mapping[str, Any]] = {}  # the SMS preferences the archive gives

        def work(tx: Tx) -> int:
            added = 0
            batch: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
            for row in rows:
                if row.get("sms_language") is not None or row.get("sms_opted_out") is not None:
                    wishes[row["customer_no"]] = row
                owed = [{**a, "customer_no": row["customer_no"]} for a in row.get("arrears", ())]
                batch.append((customer_values(row), owed))
                if len(batch) >= chunk:
                    added += insert_fresh(tx, batch)
                    batch = []
            if batch:
                added += insert_fresh(tx, batch)
            return added

        return self.write(work, ("customers",))

    @staticmethod
    def _insert_arrears(
        tx: Tx, items: Sequence[Mapping[str, Any]], *, chunk: int, touch: bool = True
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
                    "due_at": i.get("due_at"),
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
        due_at: dt.datetime | None = None,
    ) -> bool:
        """Add an open arrears item (falling due at ``due_at``; None: no due date, never judged
        overdue); the customer reappears in the next delta pull.  False when the ref exists
        already."""
        if due_at is not None and due_at.tzinfo is None:
            raise ValueError("due_at must be timezone-aware")
        item = c.ArrearsRecord.model_validate(
            {
                "ref": ref,
                "kind": kind,
                "description": description,
                "amount": amount,
                "must_collect": must_collect,
            }
        )

        def work(tx: Tx) -> bool:
            return bool(
                self._insert_arrears(
                    tx,
                    [{"customer_no": customer_no, "due_at": due_at, **item.model_dump()}],
                    chunk=1,
                )
            )

        return self.write(work, ("customers",))

    def update_customer(self, customer_no: str, **changes: Any) -> c.CustomerRecord:
        """Change archive fields of a customer (status, thresholds, tariff_plan, ...); it gets a
        new seq."""
        bad = set(changes) - (set(CUSTOMER_COLUMNS) - {"customer_no", "seq"})
        if bad:
            raise ValueError(f"not customer fields: {sorted(bad)}")

        def work(tx: Tx) -> None:
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

        def work(tx: Tx) -> None:
            nonlocal office_code, meter_no
            old = tx.conn.execute(select(j.status).where(j.id == job_id)).first()
            if old is not None:
                if old.status != status:
                    tx.conn.execute(
                        update(m.jobs)
                        .where(j.id == job_id)
                        .values(status=status, seq=tx.next_seq("jobs"))
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
                "seq": tx.next_seq("jobs"),
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

        def work(tx: Tx) -> None:
            seq = tx.next_seq("remote")
            done = tx.conn.execute(
                update(m.remote_status)
                .where(rs.sale_id == sale_id)
                .values(status=status, reason=reason, seq=seq)
            )
            if not done.rowcount:
                counter_id = tx.conn.scalar(
                    select(m.sales.c.counter_id).where(m.sales.c.id == sale_id)
                )
                if counter_id is None:
                    raise KeyError(sale_id)
                tx.conn.execute(
                    insert(m.remote_status).values(
                        sale_id=sale_id,
                        status=status,
                        reason=reason,
                        seq=seq,
                        counter_id=counter_id,
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
                    select(*(cu[n] for n in CUSTOMER_COLUMNS)).where(cu.customer_no == customer_no)
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            owed = conn.execute(
                select(*(ar[n] for n in ARREARS_COLUMNS))
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
        """The last seq handed out in ``stream`` (0 for none): pulls from it start here."""
        with self._reading() as conn:
            if conn.dialect.name == "postgresql":
                # its own name, checked against the streams: never text from a caller
                name = m.stream_sequence(stream)
                row = conn.execute(text(f"SELECT last_value, is_called FROM {name}")).one()
                return int(row.last_value) if row.is_called else int(row.last_value) - 1
            return int(
                conn.execute(
                    select(m.streams.c.last_seq).where(m.streams.c.name == stream)
                ).scalar_one()
            )

    def refusals(self, counter_id: str | None = None) -> list[dict[str, Any]]:
        """The records (and registrations) refused, oldest first: counter, resource, record id,
        code, message, time."""
        r = m.refusals.c
        query = select(r.counter_id, r.resource, r.record_id, r.code, r.message, r.at)
        if counter_id is not None:
            query = query.where(r.counter_id == counter_id)
        with self._reading() as conn:
            return [dict(row) for row in conn.execute(query.order_by(r.id)).mappings()]

    def enrolments(self, counter_id: str) -> list[tuple[str, str]]:
        """How each registration of a counter was allowed, oldest first: (how, office)."""
        e = m.enrolments.c
        with self._reading() as conn:
            return [
                (row.how, row.office_code)
                for row in conn.execute(
                    select(e.how, e.office_code).where(e.counter_id == counter_id).order_by(e.id)
                )
            ]

    # ------------------------------------------------------------------ offices, counters

    def add_office(self, code: str, name: str = "", province: str = "", city: str = "") -> bool:
        """Add an office with its region, or change the name and region of one that exists;
        answers whether it is new."""
        c.RegisterRequest(counter_id="X", office_code=code)  # an office code's format
        values = {"name": name, "province": province, "city": city}
        for field, value in values.items():
            most = 64 if field == "name" else 32
            if len(value) > most or not value.isprintable():
                raise ValueError(f"{field} must be printable text of at most {most} characters")

        def work(tx: Tx) -> bool:
            o = m.offices.c
            if tx.conn.execute(select(o.code).where(o.code == code)).first() is None:
                tx.conn.execute(insert(m.offices).values(code=code, created_at=tx.now, **values))
                return True
            tx.conn.execute(update(m.offices).where(o.code == code).values(**values))
            return False

        return self.write(work)

    def offices(self) -> list[dict[str, Any]]:
        o = m.offices.c
        with self._reading() as conn:
            rows = conn.execute(select(o.code, o.name, o.province, o.city).order_by(o.code))
            return [dict(row._mapping) for row in rows]

    def counters(self, office_code: str | None = None) -> list[dict[str, Any]]:
        """The registered counters: id, office, name, registered, last seen, revoked."""
        co = m.counters.c
        query = select(
            co.id, co.office_code, co.name, co.registered_at, co.last_seen_at, co.revoked_at
        ).order_by(co.office_code, co.id)
        if office_code is not None:
            query = query.where(co.office_code == office_code)
        with self._reading() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def revoke_counter(self, counter_id: str) -> bool:
        """Its token opens nothing any more; answers False for an unknown counter id."""

        def work(tx: Tx) -> bool:
            done = tx.conn.execute(
                update(m.counters)
                .where(m.counters.c.id == counter_id)
                .values(revoked_at=func.coalesce(m.counters.c.revoked_at, tx.now))
            )
            return bool(done.rowcount)

        return self.write(work)

    # ------------------------------------------------------------------ enrolment codes

    def issue_enrolment_code(
        self, counter_id: str, office_code: str, *, hours: float = 24
    ) -> tuple[str, dt.datetime]:
        """A one-time code with which the counter ``counter_id`` registers (again) in
        ``office_code`` within ``hours``; only its hash is kept.  Answers (code, expiry)."""
        return self.write(lambda tx: enrol.issue_code(tx, counter_id, office_code, hours))
