"""Control input and commissioning of remote fee-control customers (seed 3.6, 3.7).

* **Control parameters.** A customer who comes under control (or back under it after a lift)
  has its control parameters written into the meter (:meth:`app.ports.RemoteMeters.set_parameters`:
  alarm thresholds 1 and 2 and the overdraft allowance from the archive, read back to be sure);
  ``central_control.params_at`` says when the meter took them.  A meter that does not take them
  is tried again at the next run.
* **Commissioning.** A customer enrolled from now on is ``commission = pending`` until the first
  remote purchase reaches the station; that run tests the control function: the parameters are
  issued again and must read back as sent, and the relay must answer: after a close permit it
  must read closed (when the balance is above the trip threshold), else a status read must say
  where the relay is.  ``passed`` or ``failed`` with the time; a failure opens an on-site job
  (:mod:`sync.central.control_jobs`, purpose ``commission_failed``).
"""

from __future__ import annotations

import logging
from typing import Any
from typing import Final
from typing import Protocol

from sqlalchemy import select
from sqlalchemy import update

from app.errors import CardVendError
from app.ports import ControlParameters
from app.ports import RemoteMeters
from sync.central import control_jobs
from sync.central import models as m
from sync.central.base import StoreBase

log = logging.getLogger(__name__)

OPERATOR: Final = "station"
PENDING, PASSED, FAILED = "pending", "passed", "failed"


class _Report(Protocol):
    params_issued: int
    commissioned: int
    commission_failed: int


def _wanted(row: Any) -> ControlParameters:
    return ControlParameters(int(row.alarm1), int(row.alarm2), int(row.overdraft_limit))


def _candidates(store: StoreBase, *where: Any) -> list[Any]:
    co, cu = m.control.c, m.customers.c
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                select(
                    co.customer_no, co.meter_no, co.remaining_fen,
                    cu.alarm1, cu.alarm2, cu.overdraft_limit,
                )
                .join(m.customers, cu.customer_no == co.customer_no)
                .where(cu.status == "active", co.lifted_at.is_(None), *where)
                .order_by(co.customer_no)
            ).all()
        )  # fmt: skip


def _set(store: StoreBase, customer_no: str, **values: Any) -> None:
    with store.begin() as conn:
        conn.execute(
            update(m.control)
            .where(m.control.c.customer_no == customer_no)
            .values(**values, updated_at=store.now())
        )


def issue_parameters(store: StoreBase, meters: RemoteMeters, report: _Report) -> None:
    """Write the control parameters into every controlled meter that has not taken them."""
    for row in _candidates(store, m.control.c.params_at.is_(None)):
        wanted = _wanted(row)
        try:
            held = meters.set_parameters(row.meter_no, wanted, OPERATOR)
        except (CardVendError, OSError) as exc:
            log.info("control parameters not taken by meter %s: %s", row.meter_no, exc)
            continue
        if held != wanted:
            log.warning("meter %s holds %s, not %s", row.meter_no, held, wanted)
            continue
        _set(store, row.customer_no, params_at=store.now())
        report.params_issued += 1


def commission(store: StoreBase, meters: RemoteMeters, report: _Report) -> None:
    """Test the control function of every pending customer whose first purchase is in."""
    co = m.control.c
    for row in _candidates(store, co.commission == PENDING, co.paid_fen > 0):
        problem, relay = _test(meters, row)
        now = store.now()
        if problem is None:
            _set(store, row.customer_no, commission=PASSED, commission_at=now, params_at=now,
                 relay=relay)  # fmt: skip
            report.commissioned += 1
            continue
        log.warning("commissioning of %s failed: %s", row.customer_no, problem)
        _set(store, row.customer_no, commission=FAILED, commission_at=now)
        report.commission_failed += 1
        control_jobs.open_job(
            store, row.customer_no, control_jobs.COMMISSION_FAILED, {"problem": problem[:120]}
        )


def _test(meters: RemoteMeters, row: Any) -> tuple[str | None, str | None]:
    """(what failed or None, the relay as read) of the commissioning test of one meter."""
    wanted = _wanted(row)
    try:
        held = meters.set_parameters(row.meter_no, wanted, OPERATOR)
        if held != wanted:
            return f"parameters read back as {held}, sent {wanted}", None
        may_close = row.remaining_fen > -row.overdraft_limit
        if may_close:
            meters.command(row.meter_no, "close", OPERATOR)
        relay = meters.read(row.meter_no).relay
    except (CardVendError, OSError) as exc:
        return str(exc), None
    if relay is None:
        return "the meter did not say where its relay is", None
    if may_close and relay != "closed":
        return f"the relay reads {relay} after a close permit", relay
    return None, relay


__all__ = ["FAILED", "PASSED", "PENDING", "commission", "issue_parameters"]
