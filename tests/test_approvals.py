"""Approvals: rules, the queue, signatures in order, distinct people, expiry, one use, audit."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from app.clock import FixedClock
from app.domain.operators import Role
from app.domain.permissions import Action
from app.domain.permissions import PermissionDenied
from app.errors import ValidationError
from app.persistence.db import Database
from app.persistence.models import ApprovalRequest
from app.persistence.models import AuditEntry
from app.persistence.models import Operator
from app.services import approvals as ap
from app.services.approvals import ApprovalDenied
from app.services.approvals import ApprovalExpired
from app.services.approvals import ApprovalNotFound
from app.services.approvals import ApprovalRequired
from app.services.approvals import ApprovalStateError
from app.services.approvals import ApprovalStep

SALE = "sale-0001"
PEOPLE = {
    "t01": Role.TELLER,
    "t02": Role.TELLER,
    "s01": Role.SUPERVISOR,
    "s02": Role.SUPERVISOR,
    "f01": Role.TECHNICIAN,
    "a01": Role.ADMIN,
}


@pytest.fixture
def adb(db: Database, clock: FixedClock) -> Database:
    """A migrated database with operators (no demo customers: the tests stay fast)."""
    with db.write() as s:
        for oid, role in PEOPLE.items():
            s.add(Operator(id=oid, name=oid, role=role.value, created_at=clock.now()))
    return db


def ask(
    db: Database,
    clock: FixedClock,
    *,
    action: Action = Action.REVERSE,
    target: str = SALE,
    who: str = "t01",
    distinct_from: list[str] | tuple[str, ...] = (),
) -> ap.ApprovalView:
    return ap.request(
        db,
        action=action,
        target=target,
        payload={"amount_fen": 10000},
        operator_id=who,
        counter_id="C01",
        clock=clock,
        distinct_from=distinct_from,
    )


def sign(db: Database, clock: FixedClock, rid: str, who: str) -> ap.ApprovalView:
    return ap.approve(
        db, rid, approver_id=who, approver_role=PEOPLE[who], counter_id="C02", clock=clock
    )


def on_spot(
    db: Database,
    clock: FixedClock,
    who: str,
    *,
    action: Action = Action.REVERSE,
    target: str = SALE,
    payload: dict[str, int] | None = None,
    distinct_from: list[str] | tuple[str, ...] = (),
) -> ap.ApprovalView:
    """t01's ``action`` at counter C01, approved on the spot by ``who`` in their own role."""
    return ap.approve_on_spot(
        db,
        action=action,
        target=target,
        payload=payload or {},
        operator_id="t01",
        counter_id="C01",
        approver_id=who,
        approver_role=PEOPLE[who],
        clock=clock,
        distinct_from=distinct_from,
    )


def reject(db: Database, clock: FixedClock, rid: str, who: str, reason: str) -> ap.ApprovalView:
    return ap.reject(
        db,
        rid,
        approver_id=who,
        approver_role=PEOPLE[who],
        counter_id="C02",
        clock=clock,
        reason=reason,
    )


def use(
    db: Database,
    clock: FixedClock,
    rid: str,
    *,
    action: Action = Action.REVERSE,
    target: str = SALE,
    who: str = "t01",
) -> ap.ApprovalView:
    return ap.use(db, rid, action=action, target=target, operator_id=who, clock=clock)


def trail(db: Database) -> list[tuple[str, str, str | None]]:
    """The approval rows of the audit log: (action, result, operator)."""
    with db.read() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.seq))
        return [
            (r.action, r.result, r.operator_id) for r in rows if r.action.startswith("approval.")
        ]


def state(db: Database, rid: str) -> str:
    return ap.get_request(db, rid).state


# the actions a rule covers by default (one supervisor, 60 minutes)
RULED = (
    "reverse",
    "replace_card",
    "override_offline_limit",
    "reprint",
    "erase_card",
    "close_account",
    "change_meter",
    "lift_control",
)


def test_default_rules(adb: Database) -> None:
    supervisor = (ApprovalStep("supervisor", True),)
    with adb.read() as s:
        for action in RULED:
            rule = ap.get_rule(s, action)
            assert (rule.steps, rule.ttl_minutes) == (supervisor, 60)
            assert ap.needs_approval(s, action)
        assert not ap.needs_approval(s, Action.SELL)
        with pytest.raises(ValidationError):
            ap.needs_approval(s, "bogus")
    assert [r.action for r in ap.list_rules(adb)] == sorted(RULED)


def test_queue_and_supervisor_approves(adb: Database, clock: FixedClock) -> None:
    req = ask(adb, clock, distinct_from=["t02"])
    assert (req.state, req.requested_by, req.next_step) == (
        "pending",
        "t01",
        ApprovalStep("supervisor"),
    )
    assert req.payload == {"amount_fen": 10000}  # the rule copy is not shown
    assert req.distinct_from == ("t02",)
    clock.advance(minutes=1)
    other = ask(adb, clock, action=Action.REPRINT, target="receipt-7")
    assert [v.id for v in ap.pending(adb, clock=clock)] == [req.id, other.id]
    assert [v.id for v in ap.pending(adb, clock=clock, role=Role.SUPERVISOR)] == [req.id, other.id]
    assert ap.pending(adb, clock=clock, role="admin") == []

    done = sign(adb, clock, req.id, "s01")
    assert done.state == "approved" and done.decided_at == clock.now().isoformat()
    assert [(a.operator, a.role, a.step) for a in done.approvals] == [("s01", "supervisor", 1)]
    assert [v.id for v in ap.pending(adb, clock=clock)] == [other.id]
    js = done.to_json()
    assert json.loads(json.dumps(js))["approvals"][0]["operator"] == "s01"
    assert js["next_role"] is None and "_approval" not in js["payload"]
    assert trail(adb) == [
        ("approval.request", "ok", "t01"),
        ("approval.request", "ok", "t01"),
        ("approval.approve", "ok", "s01"),
    ]


def test_teller_and_others_cannot_approve(adb: Database, clock: FixedClock) -> None:
    req = ask(adb, clock)
    for who in ("t02", "f01", "a01"):  # an admin does not stand in for a supervisor
        with pytest.raises(ApprovalDenied) as e:
            sign(adb, clock, req.id, who)
        assert isinstance(e.value, PermissionDenied) and "supervisor" in str(e.value)
    # a teller claiming to be a supervisor: the stored role decides
    with pytest.raises(ApprovalDenied, match="no longer a supervisor"):
        ap.approve(
            adb,
            req.id,
            approver_id="t02",
            approver_role="supervisor",
            counter_id="C01",
            clock=clock,
        )
    with pytest.raises(ApprovalNotFound):
        sign(adb, clock, "no-such-request", "s01")
    assert state(adb, req.id) == "pending"
    assert [a for a in trail(adb) if a[1] == "denied"] == [
        ("approval.approve", "denied", w) for w in ("t02", "f01", "a01", "t02")
    ]


def test_requesting_supervisor_cannot_approve_own(adb: Database, clock: FixedClock) -> None:
    req = ask(adb, clock, who="s01")
    with pytest.raises(ApprovalDenied, match="someone other"):
        sign(adb, clock, req.id, "s01")
    assert state(adb, req.id) == "pending"
    assert sign(adb, clock, req.id, "s02").state == "approved"


def test_distinct_from_the_seller(adb: Database, clock: FixedClock) -> None:
    # s01 made the sale; t01 asks for its reversal: s01 may not approve, on the queue or on the spot
    req = ask(adb, clock, distinct_from=["s01"])
    with pytest.raises(ApprovalDenied):
        sign(adb, clock, req.id, "s01")
    with pytest.raises(ApprovalDenied):
        on_spot(adb, clock, "s01", target="sale-2", distinct_from=["s01"])
    assert sign(adb, clock, req.id, "s02").state == "approved"
    with adb.read() as s:
        assert s.scalar(select(ApprovalRequest).where(ApprovalRequest.target == "sale-2")) is None


def test_reject(adb: Database, clock: FixedClock) -> None:
    req = ask(adb, clock)
    with pytest.raises(ValidationError):
        reject(adb, clock, req.id, "s01", "  ")
    with pytest.raises(ApprovalDenied):
        reject(adb, clock, req.id, "t02", "no")
    out = reject(adb, clock, req.id, "s01", "customer has no receipt")
    assert (out.state, out.reason) == ("rejected", "customer has no receipt")
    assert ap.pending(adb, clock=clock) == []
    with pytest.raises(ApprovalStateError):
        sign(adb, clock, req.id, "s02")
    with pytest.raises(ApprovalStateError):
        use(adb, clock, req.id)
    assert trail(adb) == [
        ("approval.request", "ok", "t01"),
        ("approval.reject", "denied", "t02"),
        ("approval.reject", "ok", "s01"),
    ]


def test_expiry(adb: Database, clock: FixedClock) -> None:
    req = ask(adb, clock)
    clock.advance(minutes=59, seconds=59)
    assert [v.id for v in ap.pending(adb, clock=clock)] == [req.id]
    clock.advance(seconds=1)  # exactly at expires_at
    with pytest.raises(ApprovalExpired):
        sign(adb, clock, req.id, "s01")
    assert state(adb, req.id) == "expired"  # committed although the call failed
    with pytest.raises(ApprovalExpired):
        sign(adb, clock, req.id, "s01")
    assert trail(adb) == [("approval.request", "ok", "t01"), ("approval.expire", "ok", None)]


def test_queue_and_sweep_expire_pending_and_unused(adb: Database, clock: FixedClock) -> None:
    waiting = ask(adb, clock)
    unused = ask(adb, clock, target="sale-2")
    sign(adb, clock, unused.id, "s01")
    clock.advance(minutes=30)
    fresh = ask(adb, clock, target="sale-3")
    clock.advance(minutes=31)
    assert [v.id for v in ap.pending(adb, clock=clock)] == [fresh.id]
    assert (state(adb, waiting.id), state(adb, unused.id)) == ("expired", "expired")
    assert ap.expire_due(adb, clock) == []
    clock.advance(minutes=30)
    assert [v.id for v in ap.expire_due(adb, clock)] == [fresh.id]
    assert [a[0] for a in trail(adb)].count("approval.expire") == 3


def test_use_once(adb: Database, clock: FixedClock) -> None:
    req = ask(adb, clock)
    with pytest.raises(ApprovalStateError, match="not approved yet"):
        use(adb, clock, req.id)
    sign(adb, clock, req.id, "s01")
    used = use(adb, clock, req.id)
    assert (used.state, used.used_at) == ("used", clock.now().isoformat())
    with pytest.raises(ApprovalStateError, match="used"):
        use(adb, clock, req.id)
    assert [a[0] for a in trail(adb)] == ["approval.request", "approval.approve", "approval.use"]


def test_use_only_for_its_action_target_and_requester(adb: Database, clock: FixedClock) -> None:
    req = ask(adb, clock)
    sign(adb, clock, req.id, "s01")
    with pytest.raises(ApprovalStateError, match="another action or target"):
        use(adb, clock, req.id, target="sale-9")
    with pytest.raises(ApprovalStateError):
        use(adb, clock, req.id, action=Action.REPRINT)
    with pytest.raises(ApprovalDenied):
        use(adb, clock, req.id, who="t02")
    with pytest.raises(ApprovalNotFound):
        use(adb, clock, "nope")
    assert state(adb, req.id) == "approved"  # the mistakes did not use it up
    clock.advance(minutes=60)
    with pytest.raises(ApprovalExpired):
        use(adb, clock, req.id)
    assert state(adb, req.id) == "expired"
    assert trail(adb)[-1] == ("approval.expire", "ok", None)


def test_two_steps_in_order(adb: Database, clock: FixedClock) -> None:
    rule = ap.set_rule(
        adb,
        admin_id="a01",
        admin_role=Role.ADMIN,
        action=Action.REPLACE_CARD,
        steps=[{"role": "supervisor", "distinct": True}, {"role": "admin", "distinct": True}],
        ttl_minutes=120,
        counter_id="C09",
        clock=clock,
    )
    assert rule.steps == (ApprovalStep("supervisor"), ApprovalStep("admin"))
    req = ask(adb, clock, action=Action.REPLACE_CARD, target="100000000002")
    assert req.expires_at == (clock.now() + dt.timedelta(minutes=120)).isoformat()
    with pytest.raises(ApprovalDenied):  # the admin step comes second
        sign(adb, clock, req.id, "a01")
    half = sign(adb, clock, req.id, "s01")
    assert (half.state, half.next_step) == ("pending", ApprovalStep("admin"))
    assert ap.pending(adb, clock=clock, role="supervisor") == []
    assert [v.id for v in ap.pending(adb, clock=clock, role="admin")] == [req.id]
    with pytest.raises(ApprovalDenied):
        sign(adb, clock, req.id, "s02")
    with pytest.raises(ApprovalStateError):  # not approved yet
        use(adb, clock, req.id, action=Action.REPLACE_CARD, target="100000000002")
    done = sign(adb, clock, req.id, "a01")
    assert done.state == "approved"
    assert [(a.operator, a.step) for a in done.approvals] == [("s01", 1), ("a01", 2)]
    with pytest.raises(ApprovalStateError, match="one after the other"):
        on_spot(adb, clock, "s01", action=Action.REPLACE_CARD, target="x")
    # two supervisor steps: the first signer may not sign the second (distinct)
    ap.set_rule(
        adb,
        admin_id="a01",
        admin_role="admin",
        action="reprint",
        steps=[ApprovalStep("supervisor"), ApprovalStep("supervisor")],
        ttl_minutes=60,
        counter_id="C09",
        clock=clock,
    )
    two = ask(adb, clock, action=Action.REPRINT, target="receipt-1")
    sign(adb, clock, two.id, "s01")
    with pytest.raises(ApprovalDenied):
        sign(adb, clock, two.id, "s01")
    assert sign(adb, clock, two.id, "s02").state == "approved"


def test_approve_on_spot(adb: Database, clock: FixedClock) -> None:
    with pytest.raises(ApprovalDenied):
        on_spot(adb, clock, "t02", payload={"a": 1})
    assert trail(adb) == [("approval.approve", "denied", "t02")]  # and no request left behind
    v = on_spot(adb, clock, "s01", payload={"a": 1})
    assert (v.state, v.payload, [a.operator for a in v.approvals]) == (
        "approved",
        {"a": 1},
        ["s01"],
    )
    assert ap.pending(adb, clock=clock) == []
    assert (
        ap.use(adb, v.id, action="reverse", target=SALE, operator_id="t01", clock=clock).state
        == "used"
    )
    assert [a[0] for a in trail(adb)][1:] == [
        "approval.request",
        "approval.approve",
        "approval.use",
    ]
    with adb.read() as s:
        assert s.scalar(select(ApprovalRequest.id)) == v.id  # exactly one request


def test_set_rule_rules(adb: Database, clock: FixedClock) -> None:
    def put(**kw: object) -> ap.ApprovalRuleView:
        args: dict = {
            "admin_id": "a01",
            "admin_role": "admin",
            "action": "reprint",
            "steps": [],
            "ttl_minutes": 60,
            "counter_id": "C09",
            "clock": clock,
        }
        args.update(kw)
        return ap.set_rule(adb, **args)

    with pytest.raises(PermissionDenied):
        put(admin_id="s01", admin_role="supervisor")
    for steps in (
        [{"role": "teller"}],
        [{"role": "auditor"}],
        [{"role": "boss"}],
        [{"role": "supervisor", "distinct": "yes"}],
        [{"rol": "supervisor"}],
        "x",
    ):
        with pytest.raises(ValidationError):
            put(steps=steps)
    for ttl in (0, -5, 100_000, True, 1.5):
        with pytest.raises(ValidationError):
            put(steps=[{"role": "supervisor"}], ttl_minutes=ttl)
    with pytest.raises(ValidationError):
        put(action="approve", steps=[{"role": "supervisor"}])
    assert [a[0] for a in trail(adb)] == []  # nothing changed, nothing audited
    # an empty list: no approval needed any more
    assert not put(steps=[]).needs_approval
    with adb.read() as s:
        assert not ap.needs_approval(s, Action.REPRINT)
    with pytest.raises(ApprovalStateError, match="No approval is needed"):
        ask(adb, clock, action=Action.REPRINT)
    put(action="open_account", steps=[{"role": "admin", "distinct": False}], ttl_minutes=5)
    with adb.read() as s:
        assert ap.get_rule(s, "open_account").steps == (ApprovalStep("admin", False),)
    assert trail(adb) == [("approval.rule", "ok", "a01"), ("approval.rule", "ok", "a01")]


def test_require_approval_in_the_callers_unit_of_work(adb: Database, clock: FixedClock) -> None:
    with adb.write() as s:
        assert (
            ap.require_approval(
                s, action=Action.SELL, target="c", operator_id="t01", clock=clock, request_id=None
            )
            is None
        )
        with pytest.raises(ApprovalRequired, match="approval of a supervisor"):
            ap.require_approval(
                s,
                action=Action.REVERSE,
                target=SALE,
                operator_id="t01",
                clock=clock,
                request_id=None,
            )
    v = on_spot(adb, clock, "s01")
    with pytest.raises(RuntimeError), adb.write() as s:  # the action fails: approval kept
        ap.require_approval(
            s, action=Action.REVERSE, target=SALE, operator_id="t01", clock=clock, request_id=v.id
        )
        raise RuntimeError("card write failed")
    assert state(adb, v.id) == "approved"
    with adb.write() as s:
        used = ap.require_approval(
            s, action=Action.REVERSE, target=SALE, operator_id="t01", clock=clock, request_id=v.id
        )
        assert used is not None and used.state == "used"
    assert state(adb, v.id) == "used"


def test_every_state_change_is_audited(adb: Database, clock: FixedClock) -> None:
    a = ask(adb, clock)
    sign(adb, clock, a.id, "s01")
    use(adb, clock, a.id)
    b = ask(adb, clock, target="sale-2")
    reject(adb, clock, b.id, "s01", "wrong sale")
    c = ask(adb, clock, target="sale-3")
    clock.advance(hours=2)
    ap.expire_due(adb, clock)
    with adb.read() as s:
        rows = list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    assert [(r.action, r.target) for r in rows] == [
        ("approval.request", a.id),
        ("approval.approve", a.id),
        ("approval.use", a.id),
        ("approval.request", b.id),
        ("approval.reject", b.id),
        ("approval.request", c.id),
        ("approval.expire", c.id),
    ]
    assert json.loads(rows[1].detail) == {
        "action": "reverse",
        "target": SALE,
        "step": 1,
        "of": 1,
        "role": "supervisor",
        "state": "approved",
    }
    assert rows[1].counter_id == "C02" and rows[6].operator_id is None


def test_messages_in_chinese(adb: Database, clock: FixedClock) -> None:
    req = ask(adb, clock)
    with pytest.raises(ApprovalDenied) as e:
        sign(adb, clock, req.id, "t02")
    zh = e.value.localized("zh_CN")
    assert "主管" in zh and "柜员" in zh
    err = ApprovalRequired(action=Action.REVERSE.label, role=Role.SUPERVISOR.label)
    assert "主管" in err.localized("zh_CN") and "审批" in err.localized("zh_CN")


def test_sign_in_and_approve_uses_the_configured_lockout(adb: Database, clock: FixedClock) -> None:
    """The one on-the-spot sign-in: a wrong password counts towards the configured lockout (two
    attempts here), and a right one signs the approval for the actor at once."""
    from app.security import hash_password
    from app.services import auth
    from app.settings import LOCKOUT_ATTEMPTS
    from app.settings import Settings

    with adb.write() as s:
        op = s.get(Operator, "s01")
        assert op is not None
        op.password_hash = hash_password("right-password", log2_n=4)
    settings = Settings()
    settings.set(LOCKOUT_ATTEMPTS.key, 2)
    actor = auth.Principal("t01", "t01", Role.TELLER, "C01", clock.now(), clock.now())

    def attempt(password: str) -> ap.ApprovalView:
        return ap.sign_in_and_approve(
            adb,
            approver_id="s01",
            password=password,
            actor=actor,
            action=Action.REVERSE,
            target=SALE,
            clock=clock,
            settings=settings,
            distinct_from=("t02",),
        )

    view = attempt("right-password")
    assert view.state == ap.APPROVED and view.requested_by == "t01"
    assert [a.operator for a in view.approvals] == ["s01"]
    for _ in range(2):
        with pytest.raises(auth.LoginFailed):
            attempt("wrong")
    with pytest.raises(auth.LoginFailed):  # locked by the configured policy, right password or not
        attempt("right-password")
    with adb.read() as s:
        op = s.get(Operator, "s01")
        assert op is not None and op.locked_until is not None
