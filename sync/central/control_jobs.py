"""On-site jobs the control loop opens for a technician (``central_jobs``, kind
``onsite_control``): when a command to a remote meter keeps failing, or commissioning fails.

One open job per customer and purpose (``params["purpose"]``): a second failure while the job is
open adds nothing.  The job enters the office's ``jobs`` stream like any station job (its seq
allocated in the writing transaction), so the counters of the customer's office pull it and a
technician takes it (``cardvend jobs list``); its kind maps to a parameters card
(:data:`app.services.jobs.CARD_OF_JOB`), which re-issues the customer's control parameters on
site."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any
from typing import Final

from sqlalchemy import insert
from sqlalchemy import select

from sync import contract as c
from sync.central import models as m
from sync.central.base import StoreBase
from sync.central.base import Tx

log = logging.getLogger(__name__)

KIND: Final = "onsite_control"
COMMAND_FAILED: Final = "command_failed"
COMMISSION_FAILED: Final = "commission_failed"


def open_job(
    store: StoreBase, customer_no: str, purpose: str, params: Mapping[str, Any]
) -> str | None:
    """Open the on-site job of ``purpose`` for ``customer_no`` unless one is open; its id, or
    None when one was open already (or the archive does not hold the customer)."""

    def work(tx: Tx) -> str | None:
        j, cu = m.jobs.c, m.customers.c
        open_ones = tx.conn.execute(
            select(j.params).where(j.customer_no == customer_no, j.kind == KIND, j.status == "open")
        ).scalars()
        if any((p or {}).get("purpose") == purpose for p in open_ones):
            return None
        cust = tx.conn.execute(
            select(cu.office_code, cu.meter_no).where(cu.customer_no == customer_no)
        ).first()
        if cust is None:
            log.warning("no job for %s: the archive does not hold the customer", customer_no)
            return None
        values = {
            "id": str(uuid.uuid4()),
            "kind": KIND,
            "customer_no": customer_no,
            "meter_no": cust.meter_no,
            "office_code": cust.office_code,
            "params": {"purpose": purpose, **params},
            "status": "open",
            "created_at": tx.now,
            "seq": tx.next_seq("jobs"),
        }
        c.Job.model_validate(values)
        tx.conn.execute(insert(m.jobs).values(**values))
        return str(values["id"])

    job_id = store.write(work, ("jobs",))
    if job_id is not None:
        log.info("on-site job %s opened for %s (%s)", job_id, customer_no, purpose)
    return job_id


__all__ = ["COMMAND_FAILED", "COMMISSION_FAILED", "KIND", "open_job"]
