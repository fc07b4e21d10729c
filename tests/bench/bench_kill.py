"""Kill campaign: SIGKILL the selling process at random moments of sales, rewrites,
replacements and reversals through pcscd + vpcd, restart, present the card, check the books.

    python -m tests.bench.bench_kill [--kills N] [--seed S]      # default 1,000 kills landed
    python -m tests.bench.bench_kill --quick                     # 100 kills landed

The rig (tests/rigs/kill.py): a SQLite database as a counter keeps it (demo data, one open shift), the customer's card
and a blank spare card as :class:`cardio.emulator.UserCardOS` images persisted atomically after
every change, each served by a :class:`cardio.vpcd.VpcdCard` thread of this process in its own
vpcd slot (the cards outlive every kill), and the meter simulator.

The selling processes are forked from a *seller* process (tests/rigs/kill_seller.py) that has imported
the counter's code and signed t01 in once, as a running counter would have; each operation runs in a
fresh child that opens the database, connects to the reader through pcscd and calls the service
(``selling.sell``, ``rewrite``, ``reverse_sale``, ``replace_card``).  A fork costs milliseconds
where an interpreter start costs most of a second, so a thousand kills take minutes, and the
kill moments spread over the operation itself rather than over Python's start-up.

Each round: prepare what the operation needs (the card into the meter, a sale to reverse or to
lose, a supervisor's approval), run the operation and SIGKILL its process after a delay drawn
uniformly from 0 to the operation's median duration (measured first, without kills); then play
the next start: wait until pcscd has dropped the dead connection, ``recover_at_start``, present
the card (``recover_with_card``), and finish what a teller would finish (a card still behind is
rewritten, a replacement card bound but not written is written, a card issued but never bound is
erased).  Then the invariants, after every round:

* nothing unresolved: no pending or in-doubt sale, no pending reversal;
* purchase counts consecutive: the completed card sales are purchases 1..N, N the ledger's count;
* no credit without a completed sale and no completed sale without its credit: the customer's
  card holds purchase N with sale N's tag and credit; the meter is at N or N-1 and holds exactly
  the credit of the completed sales up to its count;
* cash = completed sales - reversals (+ replacement fees): the shift's expected cash equals what
  this campaign saw happen on the cards (a purchase that landed, a purchase taken back, a card
  that became the customer's);
* the outcome agrees with where the process died (a sale killed before its purchase update was
  sent failed, one killed after the card answered it completed), the old card of a replacement is
  blacklisted, one fee per replacement.

Where the process died comes from a phase marker: the child appends one byte per step (card read,
a transaction committed, the pending sale committed, the purchase update sent and answered, the
card written, the sale completed, ...) to a shared memory page; the last step reached names the
phase.  The figures are JSON lines: one per operation (kills per phase, with the outcomes seen),
then a summary.  Needs pcscd and the vpcd driver (started here if not running).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter as Tally
from typing import Any

from tests.rigs.kill import Campaign
from tests.rigs.kill import campaign
from tests.rigs.kill_seller import FULL_KILLS
from tests.rigs.kill_seller import OPS
from tests.rigs.kill_seller import PHASES
from tests.rigs.kill_seller import QUICK_KILLS


def records(c: Campaign, seconds: float, kills_asked: int) -> list[dict[str, Any]]:
    """The figures of a finished campaign: one record per operation, then a summary."""
    out: list[dict[str, Any]] = []
    killed = [r for r in c.rounds if r.killed]
    for op in OPS:
        mine = [r for r in c.rounds if r.op == op and r.delay_s is not None]
        phases: dict[str, dict[str, Any]] = {}
        for name in PHASES[op]:
            here = [r for r in mine if r.phase == name]
            if here:
                phases[name] = {
                    "kills": sum(r.killed for r in here),
                    "outcomes": dict(Tally(r.outcome for r in here)),
                }
        durations = sorted(c.durations[op])
        out.append(
            {
                "bench": "kill_campaign",
                "kind": op,
                "rounds": len(mine),
                "kills_landed": sum(r.killed for r in mine),
                "missed": sum(not r.killed for r in mine),
                "median_duration_ms": round(durations[len(durations) // 2] * 1000, 1)
                if durations
                else None,
                "round_wall_ms": round(1000 * sum(r.wall_s for r in mine) / len(mine), 1)
                if mine
                else None,
                "phases": phases,
                "target": "reference only",
                "ok": True,
            }
        )
    by_phase = Tally(f"{r.op}: {r.phase}" for r in killed)
    out.append(
        {
            "bench": "kill_campaign",
            "rounds": len(c.rounds),
            "kills_landed": len(killed),
            "phases_hit": len(by_phase),
            "setup_sales": c.setup_sales,
            "parameter_changes": c.parameter_changes,
            "replacements": c.rebinds,
            "cards_erased": c.erased,
            "replacements_resumed": c.resumed,
            "rewritten_in_recovery": c.rewritten_in_recovery,
            "violations": c.violations,
            "seed": c.seed,
            "seconds": round(seconds, 1),
            "target": f">= {kills_asked} SIGKILLs landed and no invariant violated",
            "ok": len(killed) >= kills_asked and not c.violations,
        }
    )
    return out


def run(kills: int = FULL_KILLS, seed: int | None = None) -> list[dict[str, Any]]:
    from tests.bench.bench_card import running_pcscd
    from tests.bench.common import emit
    from tests.bench.common import progress
    from tests.pcsc_fixtures import exclusive_virtual_readers

    with exclusive_virtual_readers(), running_pcscd():
        c, seconds = campaign(kills, seed=seed, log=progress)
    return [emit(r) for r in records(c, seconds, kills)]


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, help=f"kills to land (default {FULL_KILLS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_KILLS} kills")
    parser.add_argument("--seed", type=int, help="random seed (printed in the summary)")
    args = parser.parse_args(args_list)
    kills = args.kills if args.kills is not None else QUICK_KILLS if args.quick else FULL_KILLS
    run(kills, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
