"""Operators: the people who use a counter. Each has a unique id and a role; no shared accounts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.domain.operators import Role
from app.domain.operators import check_operator_id
from app.errors import CardVendError
from app.errors import Conflict
from app.errors import NotFound
from app.i18n import N_
from app.persistence.models import Operator
from app.security import hash_password


class AuthenticationFailed(CardVendError):
    code = "auth"
    template = N_("Operator id or password is wrong.")


class OperatorDisabled(CardVendError):
    code = "operator_disabled"
    template = N_("Operator {operator} is disabled. Ask an administrator.")


@dataclass(frozen=True)
class OperatorView:
    id: str
    name: str
    role: str
    disabled: bool
    # until when wrong passwords keep this operator from signing in (shown to administrators
    # only: the person signing in is told the same as for a wrong password)
    locked_until: dt.datetime | None = None


def add_operator(
    session: Session,
    operator_id: str,
    name: str,
    role: Role,
    password: str | None,
    clock: Clock,
    *,
    office: str | None = None,
) -> Operator:
    check_operator_id(operator_id)
    if session.get(Operator, operator_id) is not None:
        raise Conflict(N_("Operator {operator} already exists."), operator=operator_id)
    op = Operator(
        id=operator_id,
        name=name,
        role=Role(role).value,
        office_code=office,
        password_hash=hash_password(password) if password else None,
        disabled=False,
        created_at=clock.now(),
    )
    session.add(op)
    session.flush()
    return op


def get_operator(session: Session, operator_id: str, *, for_update: bool = False) -> Operator:
    """The operator ``operator_id``, disabled or not (row-locked with ``for_update``)."""
    op = session.get(Operator, operator_id, with_for_update=for_update)
    if op is None:
        raise NotFound(what=N_("Operator"), key=operator_id)
    return op


def require_operator(session: Session, operator_id: str) -> Operator:
    """The operator ``operator_id``, who must not be disabled."""
    op = get_operator(session, operator_id)
    if op.disabled:
        raise OperatorDisabled(operator=operator_id)
    return op


def list_operators(session: Session) -> list[OperatorView]:
    return [
        OperatorView(o.id, o.name, o.role, o.disabled)
        for o in session.scalars(select(Operator).order_by(Operator.id))
    ]
