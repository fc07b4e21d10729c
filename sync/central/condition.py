"""Condition release (seed 3.10): on a counter's request the station calls a customer's remote
meter through the terminals and publishes its operating data to the counter.

``GET /customers/{customer_no}/condition`` (:mod:`sync.central.api_control`): only a customer of the
counter's office with a remote meter (another office's customer is unknown, 404); the meter is
read through :class:`app.ports.RemoteMeters` (a link of its own to the terminal, made for the
call, so it never waits behind the control loop's link), with the configured meter timeout and
retries: a meter that does not answer is ``terminal_no_answer`` in a few seconds, not a hang.
What was read is kept in ``central_conditions`` (one row a customer: the last call).

The station reaches the terminals when ``central serve --terminals HOST:PORT`` runs with one
worker (the composition root hands the API a factory of remote meters); otherwise a call answers
``no_terminals``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select

from app.context import AppContext
from app.errors import CardVendError
from app.ports import RemoteMeters
from sync import contract as c
from sync.central import models as m
from sync.central.base import RequestRefused
from sync.central.base import StoreBase
from sync.central.store import Counter

log = logging.getLogger(__name__)

MetersFactory = Callable[[], RemoteMeters]


def meters_factory(ctx: AppContext, where: str | None) -> MetersFactory | None:
    """A new link to the terminals behind ``where`` for each call (None: none configured)."""
    factory = ctx.remote_meters_factory
    if not where or factory is None:
        return None
    return lambda: factory(where)


class ConditionError(RequestRefused):
    """Why a condition cannot be called: ``code`` (not_found, not_remote, no_terminals,
    terminal_no_answer) and the HTTP status the API answers with (see :class:`RequestRefused`)."""


def call_condition(
    store: StoreBase, counter: Counter, customer_no: str, meters: MetersFactory | None
) -> c.TerminalCondition:
    """Read the meter of ``customer_no`` (of ``counter``'s office) now, keep and answer it."""
    cu, co = m.customers.c, m.control.c
    with store.engine.connect() as conn:
        row = conn.execute(
            select(cu.meter_no, cu.meter_kind, co.read_at)
            .outerjoin(m.control, co.customer_no == cu.customer_no)
            .where(cu.customer_no == customer_no, cu.office_code == counter.office_code)
        ).first()
    if row is None:
        raise ConditionError(404, "not_found", f"no customer {customer_no}")
    meter_no, kind, last_read = row
    if kind != "remote":
        raise ConditionError(
            409, "not_remote", f"customer {customer_no} has no remote meter to call"
        )
    if meters is None:
        raise ConditionError(409, "no_terminals", "this station is not connected to terminals")
    try:
        link = meters()
    except (CardVendError, OSError) as exc:
        raise ConditionError(409, "terminal_no_answer", f"the terminal: {exc}"[:200]) from exc
    try:
        reading = link.read(meter_no)
    except (CardVendError, OSError) as exc:
        log.info("condition of %s: meter %s did not answer: %s", customer_no, meter_no, exc)
        raise ConditionError(
            409, "terminal_no_answer", f"meter {meter_no} did not answer: {exc}"[:200]
        ) from exc
    finally:
        link.close()
    now = store.now()
    words = [int(w) if w is not None else None for w in reading.status_words]
    answer = c.TerminalCondition(
        customer_no=customer_no,
        meter_no=meter_no,
        relay=reading.relay if reading.relay in ("closed", "open") else None,  # type: ignore[arg-type]
        status_words=words,
        meter_time=reading.meter_time,
        energy_wh=reading.energy_wh,
        last_reading_at=last_read,
        fetched_at=now,
    )
    cd = m.conditions.c
    with store.begin() as conn:
        conn.execute(delete(m.conditions).where(cd.customer_no == customer_no))
        conn.execute(
            insert(m.conditions).values(
                customer_no=customer_no,
                meter_no=meter_no,
                relay=answer.relay,
                status_words=words,
                meter_time=reading.meter_time,
                energy_wh=reading.energy_wh,
                fetched_at=now,
                counter_id=counter.counter_id,
            )
        )
    return answer


__all__ = ["ConditionError", "MetersFactory", "call_condition"]
