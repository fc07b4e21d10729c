"""A small kill campaign in the suite: 20 SIGKILLs at random moments of sales, rewrites,
replacements and reversals through pcscd + vpcd, each followed by the next start and the card
presented again, the books checked after every round (tests/rigs/kill.py; the bench
tests/bench/bench_kill.py runs 1,000 kills).  The random seed is printed on failure, so a
failing campaign can be run again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pcsc_fixtures import wait_card_absent
from tests.rigs import kill
from tests.rigs import kill_seller

pytestmark = pytest.mark.usefixtures("pcscd")  # skipped cleanly without pcscd and vpcd

KILLS = 20


def test_kills_at_random_moments_lose_nothing(tmp_path: Path) -> None:
    try:
        campaign, _seconds = kill.campaign(KILLS, folder=tmp_path / "kill", calibration=1)
    finally:
        for reader in kill_seller.READERS:
            wait_card_absent(reader)
    rounds = campaign.rounds
    assert campaign.violations == [], f"seed {campaign.seed}: {campaign.violations}"
    assert sum(r.killed for r in rounds) >= KILLS, f"seed {campaign.seed}"
    assert {r.op for r in rounds} == set(kill_seller.OPS)
    # the kills spread over where the processes were, not all at their start
    phases = {(r.op, r.phase) for r in rounds if r.killed}
    assert len(phases) >= 3, phases


def test_the_phase_of_a_dead_process_is_the_last_step_it_passed() -> None:
    p = kill_seller.phase_of
    E = kill_seller
    assert p("sale", []) == "starting"
    assert p("sale", [E.E_START, E.E_READY, E.E_READ, E.E_COMMIT]) == "before the pending commit"
    sale = [E.E_START, E.E_READY, E.E_READ, E.E_PENDING, E.E_WRITE_BEGIN, E.E_PURCHASE_SENT]
    assert p("sale", sale) == "card write, purchase update in flight"
    assert p("sale", [*sale, E.E_PURCHASE_DONE]) == "card write, read-back"
    assert p("sale", [*sale, E.E_PURCHASE_DONE, E.E_WRITTEN]) == "written, before completion"
    assert p("sale", [*sale, E.E_PURCHASE_DONE, E.E_WRITTEN, E.E_COMPLETED, E.E_END]) == "finished"
    written = [E.E_START, E.E_READY, E.E_READ, E.E_WRITE_BEGIN, E.E_WRITTEN]
    assert p("rewrite", written) == "written, before the rewrite is recorded"
    assert p("rewrite", [*written, E.E_COMMIT]) == "recorded, before return"
    assert p("reversal", [*written[:3], E.E_COMMIT]) == "before the pending commit"
    assert p("reversal", [*written, E.E_COMMIT]) == "completed, before return"
    used = [E.E_START, E.E_READY, E.E_CONSUMED, E.E_COMMIT]
    assert p("replacement", used[:3]) == "before the approval is used"
    assert p("replacement", used) == "approval used, before the issue"
    assert p("replacement", [*used, E.E_ISSUE_BEGIN, E.E_ISSUED]) == (
        "issued, before the binding commit"
    )
    assert p("replacement", [*used, E.E_ISSUE_BEGIN, E.E_ISSUED, E.E_COMMIT]) == (
        "bound, before the card write"
    )
    for op, table in kill_seller.PHASES.items():  # every phase named has its outcomes
        assert "starting" in table and "finished" in table, op
