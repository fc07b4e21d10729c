"""The selling side of the kill campaign (tests/bench/bench_kill.py,
tests/test_kill_campaign.py): the campaign's settings, the phase markers a selling process
appends to a shared memory page as it passes the steps of an operation, :func:`phase_of` (where a killed process was, and the outcomes
the next start may find there), and the *seller* process:

    python -m tests.rigs.kill_seller DB KEYS MARKER

which imports the counter's code, signs t01 in once and forks one child per operation asked."""

from __future__ import annotations

import datetime as dt
import json
import mmap
import os
import sys
import traceback
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER = "100000000002"  # a card-meter demo customer without arrears or fees
COUNTER = "C01"
UTILITY = "100001"
AMOUNT = 1000  # fen per sale
NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
WAIT = 15.0  # seconds to wait for a card or for pcscd
OPS = ("sale", "rewrite", "reversal", "replacement")
WEIGHTS = (0.4, 0.2, 0.2, 0.2)
CALIBRATION = 3  # runs of each operation without a kill, to measure its duration
PARAMETER_CHANGE = 0.25  # share of sales that also write new parameters onto the card
FULL_KILLS = 1000
QUICK_KILLS = 100
MARKER_SIZE = 256

# --------------------------------------------------------------------------- phase markers

# the steps a selling process appends to the marker page as it passes them
E_START, E_READY, E_READ, E_COMMIT, E_PENDING = 1, 2, 3, 4, 5
E_WRITE_BEGIN, E_PURCHASE_SENT, E_PURCHASE_DONE, E_WRITTEN, E_COMPLETED = 6, 7, 8, 9, 10
E_ISSUE_BEGIN, E_ISSUED, E_CONSUMED, E_END = 11, 12, 13, 14

# where a process died, per operation: (phase, outcomes the next start may find)
SALE_PHASES = {
    "starting": {"none"},
    "before the pending commit": {"none", "failed"},
    "pending, before the card write": {"failed"},
    "card write, before the purchase update": {"failed"},
    "card write, purchase update in flight": {"failed", "completed"},
    "card write, read-back": {"completed"},
    "written, before completion": {"completed"},
    "completed, before return": {"completed"},
    "finished": {"completed"},
}
REWRITE_PHASES = {
    "starting": {"not written"},
    "before the card write": {"not written"},
    "card write, before the purchase update": {"not written"},
    "card write, purchase update in flight": {"not written", "written"},
    "card write, read-back": {"written"},
    "written, before the rewrite is recorded": {"written", "written and recorded"},
    "recorded, before return": {"written and recorded"},
    "finished": {"written and recorded"},
}
REVERSAL_PHASES = SALE_PHASES  # a reversal passes the same steps, to the same outcomes
REPLACEMENT_PHASES = {
    "starting": {"none"},
    "before the approval is used": {"none"},
    "approval used, before the issue": {"none"},
    "issuing the card": {"none", "issued, not bound"},
    "issued, before the binding commit": {"issued, not bound", "bound, not written"},
    "bound, before the card write": {"bound, not written"},
    "card write, before the purchase update": {"bound, not written"},
    "card write, purchase update in flight": {"bound, not written", "complete"},
    "card write, read-back": {"complete"},
    "written, before return": {"complete"},
    "finished": {"complete"},
}
PHASES = {
    "sale": SALE_PHASES,
    "rewrite": REWRITE_PHASES,
    "reversal": REVERSAL_PHASES,
    "replacement": REPLACEMENT_PHASES,
}


def phase_of(op: str, events: list[int]) -> str:
    """Name where a process of ``op`` was, from the steps it had passed."""
    seen = set(events)
    if E_END in seen:
        return "finished"
    if E_READY not in seen:
        return "starting"

    def after(first: int) -> list[int]:
        return events[events.index(first) + 1 :] if first in seen else []

    def write_phase() -> str | None:
        if E_WRITTEN in seen:
            return None
        if E_PURCHASE_DONE in seen:
            return "card write, read-back"
        if E_PURCHASE_SENT in seen:
            return "card write, purchase update in flight"
        if E_WRITE_BEGIN in seen:
            return "card write, before the purchase update"
        return None

    if op in ("sale", "reversal"):  # the same steps; a reversal marks no E_COMPLETED
        completed = E_COMPLETED in seen if op == "sale" else E_COMMIT in after(E_WRITTEN)
        if completed:
            return "completed, before return"
        if E_WRITTEN in seen:
            return "written, before completion"
        if (w := write_phase()) is not None:
            return w
        return (
            "pending, before the card write" if E_PENDING in seen else "before the pending commit"
        )
    if op == "rewrite":
        if E_COMMIT in after(E_WRITTEN):
            return "recorded, before return"
        if E_WRITTEN in seen:
            return "written, before the rewrite is recorded"
        return write_phase() or "before the card write"
    # replacement
    if E_WRITTEN in seen:
        return "written, before return"
    if (w := write_phase()) is not None:
        return w
    if E_COMMIT in after(E_ISSUED):
        return "bound, before the card write"
    if E_ISSUED in seen:
        return "issued, before the binding commit"
    if E_ISSUE_BEGIN in seen:
        return "issuing the card"
    if E_COMMIT in after(E_CONSUMED):
        return "approval used, before the issue"
    return "before the approval is used"


# --------------------------------------------------------------------------- the seller


def seller_main(db_path: str, keys_path: str, marker_path: str) -> int:
    """The seller process: import, sign in, then fork one child per operation asked on stdin.

    Requests are JSON lines: ``{"cmd": "run", ...}`` answers ``{"pid": N}`` at once (the child
    runs on); ``{"cmd": "reap", "pid": N}`` waits for that child and answers its exit status.
    The child is reaped only when asked, so its pid cannot be reused before the campaign has
    killed it (the campaign signals it through a pidfd)."""
    mark = _marker(marker_path)
    _hook_markers(mark)  # before signing in: every child inherits the hooked code
    seller = _Seller(db_path, keys_path, mark)
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "run":
            pid = os.fork()
            if pid == 0:
                seller.child(req)
            answer: dict[str, Any] = {"pid": pid}
        elif req["cmd"] == "reap":
            _pid, status = os.waitpid(req["pid"], 0)
            answer = {"status": os.waitstatus_to_exitcode(status)}
        else:
            break
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


def _marker(marker_path: str) -> Callable[[int], None]:
    """``mark(event)``: append ``event`` to the shared marker page."""
    fd = os.open(marker_path, os.O_RDWR)
    page = mmap.mmap(fd, MARKER_SIZE)
    os.close(fd)

    def mark(event: int) -> None:
        n = page[0]
        if n < MARKER_SIZE - 1:
            page[1 + n] = event
            page[0] = n + 1  # one byte: the step counts once this store is done

    return mark


def _hook_markers(mark: Callable[[int], None]) -> None:
    """The markers, hooked into the real code: the card commands, the ledger's steps, the
    approval's use, the reversal's named point and every committed write."""
    import contextlib as cl

    import app.faults as faults_mod
    import app.services.approvals as approvals_mod
    import app.services.ledger as ledger_mod
    from app.persistence.db import Database
    from cardio import profile as P
    from cardio.terminal import ApduTerminal

    def hook(owner: Any, name: str, before: int | None, after: int | None) -> None:
        original = getattr(owner, name)

        def hooked(*args: Any, **kwargs: Any) -> Any:
            if before is not None:
                mark(before)
            result = original(*args, **kwargs)
            if after is not None:
                mark(after)
            return result

        setattr(owner, name, hooked)

    hook(ApduTerminal, "read", None, E_READ)
    hook(ApduTerminal, "write", E_WRITE_BEGIN, E_WRITTEN)
    hook(ApduTerminal, "issue", E_ISSUE_BEGIN, E_ISSUED)
    hook(ledger_mod, "begin_card_sale", None, E_PENDING)
    hook(ledger_mod, "complete_sale", None, E_COMPLETED)
    hook(approvals_mod, "consume", None, E_CONSUMED)
    secure_update = ApduTerminal.secure_update

    def marked_update(self: ApduTerminal, serial: bytes, sfi: int, *rest: Any) -> bytes:
        purchase = sfi == P.SFI_PURCHASE
        if purchase:
            mark(E_PURCHASE_SENT)
        answer = secure_update(self, serial, sfi, *rest)
        if purchase:
            mark(E_PURCHASE_DONE)
        return answer

    ApduTerminal.secure_update = marked_update  # type: ignore[method-assign]

    def checkpoint(name: str) -> None:
        if name == "reversal_pending":
            mark(E_PENDING)

    faults_mod.checkpoint = checkpoint  # the reversal's named point
    database_write = Database.write

    @cl.contextmanager
    def marked_write(self: Database) -> Iterator[Any]:
        with database_write(self) as session:
            yield session
        mark(E_COMMIT)

    Database.write = marked_write  # type: ignore[method-assign]


class _Seller:
    """t01 signed in once, with the campaign's keys, clock and settings; runs one operation in
    a forked child."""

    def __init__(self, db_path: str, keys_path: str, mark: Callable[[int], None]) -> None:
        from app.clock import FixedClock
        from app.persistence.db import Database
        from app.ports import KeyRole
        from app.services import auth
        from app.settings import OFFLINE_MAX_AMOUNT
        from app.settings import OFFLINE_MAX_SALES
        from app.settings import Settings
        from cardio.keys import MasterKeys
        from cardio.keys import SoftwareKeyProvider

        self.db_path, self.mark = db_path, mark
        saved = json.loads(Path(keys_path).read_text(encoding="ascii"))
        self.keys = SoftwareKeyProvider(
            MasterKeys.from_roles({KeyRole[k]: bytes.fromhex(v) for k, v in saved.items()})
        )
        self.clock = FixedClock(NOW)
        self.settings = Settings()
        self.settings.set(OFFLINE_MAX_AMOUNT.key, 10**12)
        self.settings.set(OFFLINE_MAX_SALES.key, 10**9)
        db = Database(db_path)
        self.actor = auth.login(db, "t01", "demo-t01", counter_id=COUNTER, clock=self.clock)
        db.dispose()  # no connection crosses a fork

    def operate(self, req: dict[str, Any]) -> dict[str, Any]:
        from app.persistence.db import Database
        from app.services import selling
        from cardio.pcsc import PcscReaderPort
        from cardio.terminal import ApduTerminal

        self.mark(E_START)
        cdb = Database(self.db_path)
        port = PcscReaderPort()
        channel = port.connect(req["reader"], timeout=WAIT)
        terminal = ApduTerminal(channel, self.keys, utility_code=UTILITY)
        self.mark(E_READY)
        out: dict[str, Any]
        common = {"actor": self.actor, "clock": self.clock, "settings": self.settings}
        if req["op"] == "sale":
            sold = selling.sell(cdb, terminal, amount=AMOUNT, **common)  # type: ignore[arg-type]
            out = {"sale_id": sold.sale.sale_id, "state": sold.sale.state}
        elif req["op"] == "rewrite":
            done = selling.rewrite(cdb, terminal, expect_customer=CUSTOMER, **common)  # type: ignore[arg-type]
            out = {"sale_id": done.sale.sale_id, "state": done.sale.state}
        elif req["op"] == "reversal":
            view = selling.reverse_sale(
                cdb,
                terminal,
                sale_id=req["sale_id"],
                approval_request=req["approval"],
                **common,  # type: ignore[arg-type]
            )
            out = {"sale_id": view.sale_id, "state": view.state}
        else:
            customer, fee = selling.replace_card(
                cdb,
                terminal,
                customer_no=CUSTOMER,
                approval_request=req["approval"],
                **common,  # type: ignore[arg-type]
            )
            out = {"card_serial": customer.card_serial, "fee": fee}
        self.mark(E_END)
        channel.close()
        port.close()
        cdb.dispose()
        return out

    def child(self, req: dict[str, Any]) -> NoReturn:
        """The forked child: the operation, its answer in ``req["out"]``, its output in
        ``req["log"]``; exits 0 (done), 3 (a refusal) or 4 (anything else)."""
        import contextlib as cl

        from app.errors import CardVendError

        code = 4
        try:
            log_fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            try:
                result = {"ok": True, **self.operate(req)}
                code = 0
            except CardVendError as exc:
                result = {"ok": False, "error": exc.code, "message": exc.localized("en")}
                code = 3
            Path(req["out"]).write_text(json.dumps(result), encoding="utf-8")
        except BaseException:
            traceback.print_exc()
        finally:
            with cl.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


if __name__ == "__main__":
    sys.exit(seller_main(*sys.argv[1:4]))
