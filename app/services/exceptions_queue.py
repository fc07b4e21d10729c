"""A supervisor's steps on the station's exceptions queue, audited at the counter the same way
from ``cardvend exceptions`` and from the window's exceptions page.

The station is reached through ``send`` (the composition root's client call; app/ speaks no
HTTP).  A step is audited as ``exception_<step>``: ``ok`` with the exception's new state, or
``failed`` with the station's code when it refuses (unknown id, illegal step); a person without
``handle_exceptions`` is refused and audited ``denied`` before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from app.clock import Clock
from app.domain import ids
from app.domain.customers import check_text
from app.domain.permissions import Action
from app.errors import CardVendError
from app.i18n import N_
from app.persistence.db import Database
from app.presenters.exceptions import STEPS
from app.services import audit
from app.services.auth import Principal

# the station's refusals of a step, audited as failed (other errors: nothing was decided)
REFUSALS = ("exception_not_found", "illegal_transition")
NOTE_MAX = 300

# send(step) -> the exception after the step, as the contract's JSON values
Send = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def authorize(db: Database, me: Principal, clock: Clock, what: str, target: str) -> None:
    """``me`` may work the exceptions queue; a refusal is audited (``denied``) and raised."""
    audit.authorize_or_record(db, me, clock, Action.HANDLE_EXCEPTIONS, what, target)


def step_request(
    me: Principal, step: str, *, assignee: str | None = None, note: str = ""
) -> dict[str, Any]:
    """The step as the contract's ``ExceptionAction`` (checked: an operator id to assign to, a
    note to explain)."""
    if step not in STEPS:
        raise ValueError(step)
    if step == "assign":
        assignee = ids.OPERATOR_ID.check((assignee or "").strip())
    else:
        assignee = None
    note = check_text(note, N_("Note"), max_len=NOTE_MAX, required=step == "explain")
    return {"action": step, "operator_id": me.operator_id, "assignee": assignee, "note": note}


def take_step(
    db: Database,
    me: Principal,
    clock: Clock,
    exception_id: str,
    request: Mapping[str, Any],
    send: Send,
) -> Mapping[str, Any]:
    """Send ``request`` (:func:`step_request`) for ``exception_id`` and audit it."""
    what = f"exception_{request['action']}"
    authorize(db, me, clock, what, exception_id)
    detail_of: dict[str, Any] = {"note": request.get("note", "")}
    try:
        done = send(request)
    except CardVendError as err:
        if err.code in REFUSALS:
            audit.Actor.of(me, clock).record_alone(
                db, what, exception_id, result="failed", detail={**detail_of, "code": err.code}
            )
        raise
    audit.Actor.of(me, clock).record_alone(
        db,
        what,
        str(done["id"]),
        detail={
            **detail_of,
            "customer_no": done["customer_no"],
            "state": done["state"],
            "assignee": done.get("assignee"),
        },
    )
    return done
