"""``cardvend approvals``: the rules an administrator sets (list, set, none), what is refused and
audited, and the queue a supervisor works through at a terminal, where a request keeps the rule
it was filed under."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.clock import SystemClock
from app.domain.permissions import Action
from app.persistence.db import Database
from app.services import approvals
from tests.rigs.cli import run
from tests.rigs.commands import audit_rows

NEW_ACTIONS = {"change_meter", "close_account", "pause_account", "exchange_card"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("approvals")
    assert run(home, "demo").returncode == 0
    return home


def cv(home: Path, *args: str, operator: str | None = "a01") -> subprocess.CompletedProcess[str]:
    extra = ("--operator", operator) if operator else ()
    return run(home, "approvals", *args, *extra, env={"CARDVEND_PASSWORD": f"demo-{operator}"})


def ok_json(r: subprocess.CompletedProcess[str]) -> Any:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def refused(r: subprocess.CompletedProcess[str], text: str) -> None:
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cardvend: "), r.stderr
    assert text in lines[0], r.stderr


def rules(home: Path) -> dict[str, Any]:
    return {r["action"]: r for r in ok_json(cv(home, "rules", "list", "--json", operator=None))}


def test_list_every_approvable_action(home: Path) -> None:
    listed = rules(home)
    assert list(listed) == [a.value for a in Action if a is not Action.APPROVE]
    assert NEW_ACTIONS <= set(listed)
    close = listed["close_account"]  # a default rule of the lifecycle groundwork
    assert close["label"] == "close an account" and close["ttl_minutes"] == 60
    assert close["steps"] == [
        {"role": "supervisor", "distinct": True, "role_label": "supervisor", "number": 1}
    ]
    assert listed["pause_account"]["needs_approval"] is False
    assert listed["pause_account"]["summary"] == "no approval needed"
    text = cv(home, "rules", "list", operator=None)
    assert text.returncode == 0, text.stderr
    lines = {line.split()[0]: line for line in text.stdout.splitlines()}
    assert "approve" not in lines
    assert "1. supervisor (another person)" in lines["reverse"]
    assert "time limit 60 minutes" in lines["reverse"]
    assert lines["exchange_card"].endswith("no approval needed")
    zh = run(home, "approvals", "rules", "list", lang="zh_CN")
    assert zh.returncode == 0 and "无需审批" in zh.stdout, zh.stdout


def test_set_and_none_are_audited_and_apply_at_once(home: Path) -> None:
    before = len(audit_rows(home, "approval.rule"))
    out = ok_json(
        cv(
            home,
            "rules",
            "set",
            "exchange_card",
            "--step",
            "supervisor",
            "--step",
            "admin:same",
            "--ttl",
            "30",
            "--json",
        )
    )
    assert out["steps"] == [
        {"role": "supervisor", "distinct": True, "role_label": "supervisor", "number": 1},
        {"role": "admin", "distinct": False, "role_label": "administrator", "number": 2},
    ]
    assert rules(home)["exchange_card"]["ttl_minutes"] == 30
    # without --ttl the time limit stays; --none: no approval needed (the row stays on record)
    r = cv(home, "rules", "set", "exchange_card", "--step", "supervisor:distinct")
    assert r.returncode == 0 and "applies to the next request" in r.stdout, r.stderr
    assert rules(home)["exchange_card"]["ttl_minutes"] == 30
    assert ok_json(cv(home, "rules", "set", "exchange_card", "--none", "--json"))["steps"] == []
    assert rules(home)["exchange_card"]["summary"] == "no approval needed"
    trail = audit_rows(home, "approval.rule")[before:]
    assert [(t["operator"], t["target"], t["result"]) for t in trail] == [
        ("a01", "exchange_card", "ok")
    ] * 3
    assert trail[0]["detail"]["before"] is None
    assert trail[-1]["detail"]["after"] == {"steps": [], "ttl_minutes": 30}
    db = Database(str(home / "data" / "cardvend.db"))
    with db.read() as session:
        assert not approvals.needs_approval(session, Action.EXCHANGE_CARD)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("sell", "--step", "teller"), "a teller may not approve"),
        (("sell", "--step", "boss"), "there is no role boss"),
        (("sell", "--step", "supervisor:maybe"), "write :distinct"),
        (("sell", "--step", "supervisor", "--ttl", "0"), "1 to 10080 minutes"),
        (("approve", "--none"), "not an action that approvals can be set for"),
        (("selling", "--none"), "not an action that approvals can be set for"),
        (("sell", "--none", "--step", "supervisor"), "either --step or --none"),
        (("sell",), "Give the approval steps"),
        (("reverse", "--none"), "an approval is always needed"),
        (("sell", *["--step", "supervisor"] * 6), "at most 5 steps"),
    ],
)
def test_bad_rules_are_refused(home: Path, args: tuple[str, ...], text: str) -> None:
    before = rules(home)
    refused(cv(home, "rules", "set", *args), text)
    assert rules(home) == before


def test_only_an_administrator_sets_rules(home: Path) -> None:
    before = rules(home)
    for operator, role in (("s01", "supervisor"), ("t01", "teller")):
        r = cv(home, "rules", "set", "reprint", "--none", operator=operator)
        refused(r, f"Operator {operator} ({role}) may not change settings")
    assert rules(home) == before
    zh = run(
        home,
        *("approvals", "rules", "set", "reprint", "--none", "--operator", "s01"),
        lang="zh_CN",
        env={"CARDVEND_PASSWORD": "demo-s01"},
    )
    assert zh.returncode == 1 and "Operator" not in zh.stderr, zh.stderr


def test_a_request_finishes_under_the_rule_it_was_filed_under(home: Path) -> None:
    db = Database(str(home / "data" / "cardvend.db"))

    def ask(target: str) -> str:
        view = approvals.request(
            db,
            action=Action.REPRINT,
            target=target,
            payload={},
            operator_id="t01",
            counter_id="C01",
            clock=SystemClock(),
        )
        return view.id

    assert ok_json(cv(home, "rules", "set", "reprint", "--step", "supervisor", "--json"))
    old = ask("sale-old")
    ok_json(
        cv(home, "rules", "set", "reprint", "--step", "supervisor", "--step", "admin", "--json")
    )
    new = ask("sale-new")

    queue = {v["id"]: v for v in ok_json(cv(home, "pending", "--all", "--json", operator="s01"))}
    assert len(queue[old]["steps"]) == 1 and len(queue[new]["steps"]) == 2
    mine = cv(home, "pending", operator="a01")  # an admin sees what waits for an admin only
    assert mine.returncode == 0 and old not in mine.stdout and new not in mine.stdout

    done = cv(home, "approve", old, operator="s01")
    assert done.returncode == 0 and "is approved" in done.stdout, done.stderr
    half = ok_json(cv(home, "approve", new, "--json", operator="s01"))
    assert (half["state"], half["next_role"]) == ("pending", "admin")
    assert new in cv(home, "pending", operator="a01").stdout
    refused(cv(home, "approve", new, operator="t01"), "cannot sign step 2")
    refused(cv(home, "reject", new, "--reason", " ", operator="a01"), "Give a reason")
    out = ok_json(cv(home, "reject", new, "--reason", "not needed", "--json", operator="a01"))
    assert (out["state"], out["reason"]) == ("rejected", "not needed")
    assert approvals.get_request(db, old).state == "approved"
    bad = cv(home, "approve", "not-an-id", operator="s01")  # a usage error, said before sign-in
    assert bad.returncode == 2 and "approval request id 'not-an-id'" in bad.stderr
