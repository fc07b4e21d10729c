"""Who is acting: login with lockout, the idle timeout, passwords, and operator management.

A :class:`Principal` is an authenticated operator at a counter.  Services take one and call
:meth:`Principal.authorize` (permission from the one matrix in app/domain/permissions.py, and
re-authentication after the idle time); every login, failed login and operator change is
audited.  Passwords are stored only as scrypt hashes (app/security.py).
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from dataclasses import field

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import security
from app.clock import Clock
from app.domain.audit import AuditAction
from app.domain.operators import Role
from app.domain.operators import check_operator_id
from app.domain.permissions import Action
from app.domain.permissions import require
from app.errors import CardVendError
from app.errors import Conflict
from app.errors import ValidationError
from app.i18n import N_
from app.localtime import local_time
from app.persistence.db import Database
from app.persistence.models import Operator
from app.security import hash_password
from app.security import verify_password
from app.services import audit
from app.services import operators
from app.services.operators import AuthenticationFailed
from app.services.operators import OperatorView
from app.settings import IDLE_MINUTES
from app.settings import LOCKOUT_ATTEMPTS
from app.settings import LOCKOUT_MINUTES
from app.settings import MIN_PASSWORD_LENGTH
from app.settings import Settings


class LoginFailed(AuthenticationFailed):
    """The one answer to a sign-in that did not succeed, whatever the reason (unknown id, wrong
    password, locked, disabled): the reason is audited, never said to the person at the keyboard.
    It says what a legitimate operator needs to know about the lockout without telling whether it
    happened to this id."""

    code = "auth"
    template = N_(
        "Operator id or password is wrong, or this operator may not sign in now. Check both and "
        "try again; {attempts} wrong passwords in a row lock an operator for {minutes} minutes, "
        "and an administrator can unlock it."
    )


class ReauthRequired(CardVendError):
    code = "reauth"
    template = N_(
        "The counter was idle for more than {minutes} minutes. Enter your password again."
    )


@dataclass(frozen=True)
class SecurityPolicy:
    lockout_attempts: int = 5
    lockout_minutes: int = 30
    idle_minutes: int = 15
    min_password_length: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> SecurityPolicy:
        return cls(
            settings.value(LOCKOUT_ATTEMPTS),
            settings.value(LOCKOUT_MINUTES),
            settings.value(IDLE_MINUTES),
            settings.value(MIN_PASSWORD_LENGTH),
        )


@dataclass
class Principal:
    """An operator signed in at a counter."""

    operator_id: str
    name: str
    role: Role
    counter_id: str
    authenticated_at: dt.datetime
    last_activity: dt.datetime
    policy: SecurityPolicy = field(default_factory=SecurityPolicy)

    def can(self, action: Action) -> bool:
        from app.domain.permissions import allowed

        return allowed(self.role, action)

    def check_active(self, clock: Clock) -> None:
        idle = clock.now() - self.last_activity
        if idle > dt.timedelta(minutes=self.policy.idle_minutes):
            raise ReauthRequired(minutes=self.policy.idle_minutes)

    def authorize(self, action: Action, clock: Clock) -> None:
        """Permission for ``action``, and activity within the idle time; marks activity."""
        self.check_active(clock)
        require(self.operator_id, self.role, action)
        self.last_activity = clock.now()


def _check_password(password: str, policy: SecurityPolicy) -> str:
    if not isinstance(password, str) or len(password) < policy.min_password_length:
        raise ValidationError(
            N_("A password needs at least {length} characters."),
            length=policy.min_password_length,
        )
    return password


# verifying against this costs what verifying a real hash costs (the same scrypt parameters) and
# no password matches it: an unknown operator id takes as long as a known one
_NO_OPERATOR_HASH = "$".join(
    (
        "scrypt",
        str(security.LOG2_N),
        str(security.R),
        str(security.P),
        base64.b64encode(bytes(16)).decode(),
        base64.b64encode(bytes(security.DKLEN)).decode(),
    )
)


def login(
    db: Database,
    operator_id: str,
    password: str,
    *,
    counter_id: str,
    clock: Clock,
    policy: SecurityPolicy | None = None,
) -> Principal:
    """Check the password; 5 (setting) wrong ones in a row lock the operator for 30 minutes
    (setting).  The outcome is audited and committed before any error is raised.

    Whatever went wrong (an unknown id, a wrong password, a locked or a disabled operator) the
    person signing in gets the same :class:`LoginFailed` after the same work (one password hash
    check, a dummy one for an unknown id), so nobody learns which operator ids exist.  The reason
    is in the audit log ("failed", "locked", "denied"), and a lockout shows in the operator list
    of an administrator, who can lift it."""
    policy = policy or SecurityPolicy()
    now = clock.now()
    principal: Principal | None = None
    with db.write() as session:
        op = session.get(Operator, operator_id, with_for_update=True)
        stored = op.password_hash if op is not None and op.password_hash else _NO_OPERATOR_HASH
        password_ok = verify_password(password, stored) and stored != _NO_OPERATOR_HASH

        def attempt(result: str, detail: dict[str, object] | None = None) -> None:
            audit.Actor(op.id if op is not None else None, counter_id, clock).record(
                session,
                AuditAction.LOGIN,
                op.id if op is not None else operator_id[:32],
                result=result,
                detail=detail,
            )

        if op is None:
            attempt("failed", {"reason": "unknown operator"})
        elif op.locked_until is not None and op.locked_until > now:
            attempt("locked", {"locked_until": op.locked_until.isoformat()})
        elif not password_ok:
            op.failed_logins += 1
            detail: dict[str, object] = {"failed_logins": op.failed_logins}
            if op.failed_logins >= policy.lockout_attempts:
                op.locked_until = now + dt.timedelta(minutes=policy.lockout_minutes)
                op.failed_logins = 0
                detail["locked_until"] = op.locked_until.isoformat()
            attempt("failed", detail)
        elif op.disabled:
            attempt("denied", {"reason": "disabled"})
        else:
            op.failed_logins = 0
            op.locked_until = None
            attempt("ok")
            principal = Principal(op.id, op.name, Role(op.role), counter_id, now, now, policy)
    if principal is None:
        raise LoginFailed(attempts=policy.lockout_attempts, minutes=policy.lockout_minutes)
    return principal


def _sign_in_again(db: Database, principal: Principal, password: str, clock: Clock) -> Principal:
    """The signed-in operator's password checked again, as a sign-in (lockout and audit)."""
    return login(
        db,
        principal.operator_id,
        password,
        counter_id=principal.counter_id,
        clock=clock,
        policy=principal.policy,
    )


def reauthenticate(db: Database, principal: Principal, password: str, clock: Clock) -> None:
    """After the idle time: the same operator types the password again."""
    fresh = _sign_in_again(db, principal, password, clock)
    principal.authenticated_at = principal.last_activity = fresh.authenticated_at


def logout(db: Database, principal: Principal, clock: Clock) -> None:
    audit.Actor.of(principal, clock).record_alone(db, AuditAction.LOGOUT, principal.operator_id)


# --------------------------------------------------------------------------- operators


def _add_operator(
    session: Session,
    operator_id: str,
    name: str,
    role: Role,
    password: str,
    clock: Clock,
    office: str | None = None,
) -> None:
    """A new operator row with a fresh password; an id that exists already is a conflict."""
    op = operators.add_operator(session, operator_id, name, role, password, clock, office=office)
    op.password_changed_at = op.created_at


def add_operator(
    db: Database,
    admin: Principal,
    operator_id: str,
    name: str,
    role: Role,
    password: str,
    clock: Clock,
    *,
    office: str | None = None,
) -> OperatorView:
    admin.authorize(Action.MANAGE_OPERATORS, clock)
    check_operator_id(operator_id)
    _check_password(password, admin.policy)
    with db.write() as session:
        _add_operator(
            session, operator_id, name.strip() or operator_id, Role(role), password, clock, office
        )
        audit.Actor.of(admin, clock).record(
            session,
            AuditAction.OPERATOR_ADD,
            operator_id,
            detail={"role": Role(role).value, "name": name},
        )
    return OperatorView(operator_id, name, Role(role).value, False)


def set_disabled(
    db: Database, admin: Principal, operator_id: str, disabled: bool, clock: Clock
) -> None:
    admin.authorize(Action.MANAGE_OPERATORS, clock)
    if disabled and operator_id == admin.operator_id:
        raise Conflict(N_("You cannot disable yourself."))
    with db.write() as session:
        op = operators.get_operator(session, operator_id, for_update=True)
        if disabled and op.role == Role.ADMIN and _active_admins(session) <= 1 and not op.disabled:
            raise Conflict(N_("{operator} is the last active administrator."), operator=op.id)
        op.disabled = disabled
        if not disabled:
            op.failed_logins, op.locked_until = 0, None
        audit.Actor.of(admin, clock).record(
            session, AuditAction.OPERATOR_DISABLE if disabled else "operator_enable", operator_id
        )


def _active_admins(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Operator)
            .where(Operator.role == Role.ADMIN.value, Operator.disabled.is_(False))
        )
        or 0
    )


def change_password(db: Database, principal: Principal, old: str, new: str, clock: Clock) -> None:
    """An operator changes their own password (the old one is checked again)."""
    _check_password(new, principal.policy)
    _sign_in_again(db, principal, old, clock)
    with db.write() as session:
        op = operators.get_operator(session, principal.operator_id, for_update=True)
        op.password_hash = hash_password(new)
        op.password_changed_at = clock.now()
        audit.Actor.of(principal, clock).record(session, AuditAction.PASSWORD_CHANGE, op.id)


def reset_password(
    db: Database, admin: Principal, operator_id: str, new: str, clock: Clock
) -> None:
    """An administrator sets another operator's password (and lifts a lockout)."""
    admin.authorize(Action.MANAGE_OPERATORS, clock)
    _check_password(new, admin.policy)
    with db.write() as session:
        op = operators.get_operator(session, operator_id, for_update=True)
        op.password_hash = hash_password(new)
        op.password_changed_at = clock.now()
        op.failed_logins, op.locked_until = 0, None
        audit.Actor.of(admin, clock).record(session, AuditAction.PASSWORD_RESET, op.id)


def list_operators(db: Database, principal: Principal, clock: Clock) -> list[OperatorView]:
    principal.authorize(Action.MANAGE_OPERATORS, clock)
    now = clock.now()
    with db.read() as session:
        return [
            OperatorView(
                o.id,
                o.name,
                o.role,
                o.disabled,
                o.locked_until if o.locked_until is not None and o.locked_until > now else None,
            )
            for o in session.scalars(select(Operator).order_by(Operator.id))
        ]


def locked_text(view: OperatorView, time_zone: str) -> str:
    """ "locked until 2026-04-01 08:30" in the office's time zone, or "" (for administrators)."""
    from app.i18n import _

    if view.locked_until is None:
        return ""
    return _("locked until {time}", time=local_time(view.locked_until, time_zone))


def admin_exists(db: Database) -> bool:
    with db.read() as session:
        return _active_admins(session) > 0


def create_first_admin(
    db: Database,
    operator_id: str,
    name: str,
    password: str,
    *,
    counter_id: str,
    clock: Clock,
    policy: SecurityPolicy | None = None,
) -> OperatorView:
    """The first administrator, at the first start or by ``cardvend init``; refused once any
    administrator exists."""
    check_operator_id(operator_id)
    _check_password(password, policy or SecurityPolicy())
    with db.write() as session:
        audit.lock_head(session)  # another counter's first start or init may be at this step
        if _active_admins(session):
            raise Conflict(N_("An administrator exists already; ask them to add operators."))
        _add_operator(session, operator_id, name or operator_id, Role.ADMIN, password, clock)
        audit.Actor(None, counter_id, clock).record(
            session, AuditAction.OPERATOR_ADD, operator_id, detail={"role": "admin", "first": True}
        )
    return OperatorView(operator_id, name, Role.ADMIN.value, False)


# --------------------------------------------------------------------------- language
# (added for the counter window, issue 8: each operator's language is remembered)


def operator_language(db: Database, operator_id: str) -> str | None:
    """The language this operator chose last (``zh_CN`` or ``en``), or None."""
    with db.read() as session:
        op = session.get(Operator, operator_id)
        return op.language if op is not None else None


def remember_language(db: Database, principal: Principal, language: str) -> None:
    """Remember the signed-in operator's choice of language for their next login."""
    from app.i18n import LANGUAGES

    if language not in LANGUAGES:
        raise ValidationError(
            N_("The language {value!r} is not offered; choose one of {choices}."),
            value=language,
            choices=", ".join(LANGUAGES),
        )
    with db.write() as session:
        operators.get_operator(session, principal.operator_id, for_update=True).language = language
