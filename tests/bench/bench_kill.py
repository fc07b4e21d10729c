"""Kill campaign: SIGKILL the selling process at random moments of sales, rewrites,
replacements and reversals through pcscd + vpcd, restart, present the card, check the books.

    python -m tests.bench.bench_kill [--kills N] [--seed S]      # default 1,000 kills landed
    python -m tests.bench.bench_kill --quick                     # 100 kills landed

The rig: a SQLite database as a counter keeps it (demo data, one open shift), the customer's card
and a blank spare card as :class:`cardio.emulator.UserCardOS` images persisted atomically after
every change, each served by a :class:`cardio.vpcd.VpcdCard` thread of this process in its own
vpcd slot (the cards outlive every kill), and the meter simulator.

The selling processes are forked from a *seller* process (``--seller``) that has imported the
counter's code and signed t01 in once, as a running counter would have; each operation runs in a
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
import contextlib
import datetime as dt
import json
import mmap
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    import contextlib as cl

    import app.faults as faults_mod
    import app.services.approvals as approvals_mod
    import app.services.ledger as ledger_mod
    from app.clock import FixedClock
    from app.errors import CardVendError
    from app.persistence.db import Database
    from app.ports import KeyRole
    from app.services import auth, selling
    from app.settings import OFFLINE_MAX_AMOUNT, OFFLINE_MAX_SALES, Settings
    from cardio import profile as P
    from cardio.keys import MasterKeys, SoftwareKeyProvider
    from cardio.pcsc import PcscReaderPort
    from cardio.terminal import ApduTerminal

    fd = os.open(marker_path, os.O_RDWR)
    page = mmap.mmap(fd, MARKER_SIZE)
    os.close(fd)

    def mark(event: int) -> None:
        n = page[0]
        if n < MARKER_SIZE - 1:
            page[1 + n] = event
            page[0] = n + 1  # one byte: the step counts once this store is done

    # ---- the markers, hooked into the real code (inherited by every child)
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

    saved = json.loads(Path(keys_path).read_text(encoding="ascii"))
    keys = SoftwareKeyProvider(
        MasterKeys.from_roles({KeyRole[k]: bytes.fromhex(v) for k, v in saved.items()})
    )
    clock = FixedClock(NOW)
    settings = Settings()
    settings.set(OFFLINE_MAX_AMOUNT.key, 10**12)
    settings.set(OFFLINE_MAX_SALES.key, 10**9)
    db = Database(db_path)
    actor = auth.login(db, "t01", "demo-t01", counter_id=COUNTER, clock=clock)
    db.dispose()  # no connection crosses a fork

    def operate(req: dict[str, Any]) -> dict[str, Any]:
        mark(E_START)
        cdb = Database(db_path)
        port = PcscReaderPort()
        channel = port.connect(req["reader"], timeout=WAIT)
        terminal = ApduTerminal(channel, keys, utility_code=UTILITY)
        mark(E_READY)
        out: dict[str, Any]
        common = {"actor": actor, "clock": clock, "settings": settings}
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
        mark(E_END)
        channel.close()
        port.close()
        cdb.dispose()
        return out

    def child(req: dict[str, Any]) -> None:
        code = 4
        try:
            log_fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            try:
                result = {"ok": True, **operate(req)}
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

    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "run":
            pid = os.fork()
            if pid == 0:
                child(req)
            answer: dict[str, Any] = {"pid": pid}
        elif req["cmd"] == "reap":
            _pid, status = os.waitpid(req["pid"], 0)
            answer = {"status": os.waitstatus_to_exitcode(status)}
        else:
            break
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------- the campaign


class Violation(AssertionError):
    """An invariant of the books did not hold after a round."""


@dataclass
class Card:
    """An emulated card in one vpcd slot."""

    slot: int
    serial: bytes
    path: Path
    os: Any  # UserCardOS
    server: Any  # VpcdCard

    @property
    def reader(self) -> str:
        return READERS[self.slot]

    @property
    def serial_hex(self) -> str:
        return self.serial.hex().upper()


@dataclass
class Round:
    number: int
    op: str
    killed: bool = False
    delay_s: float | None = None
    duration_s: float = 0.0
    wall_s: float = 0.0  # the whole round: preparing, the operation, the next start, the checks
    phase: str = ""
    outcome: str = ""
    exit: int | None = None
    result: dict[str, Any] = field(default_factory=dict)


def wait_reader_ready(reader: str, timeout: float = WAIT) -> float:
    """Wait until a card is present in ``reader`` and no program holds it; returns the seconds.

    A killed client's connection stays in pcscd until pcscd reads the end of its socket; pcscd
    then ends its transaction and disconnects it with a card reset.  A connection made before
    that would be reset under it."""
    from smartcard import scard

    hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != scard.SCARD_S_SUCCESS:
        raise RuntimeError(f"no PC/SC context: {hr:#x}")
    started = time.monotonic()
    try:
        while True:
            hr, states = scard.SCardGetStatusChange(
                context, 0, [(reader, scard.SCARD_STATE_UNAWARE)]
            )
            state = int(states[0][1]) if hr == scard.SCARD_S_SUCCESS else 0
            if state & scard.SCARD_STATE_PRESENT and not state & (
                scard.SCARD_STATE_INUSE | scard.SCARD_STATE_EXCLUSIVE | scard.SCARD_STATE_MUTE
            ):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{reader!r} not ready after {timeout} s (state {state:#x})")
            time.sleep(0.002)
    finally:
        scard.SCardReleaseContext(context)


class Campaign:
    """The rig and the rounds; see the module docstring."""

    def __init__(
        self, folder: Path, *, seed: int, log: Callable[[str], None] | None = None
    ) -> None:
        self.folder = folder
        self.rng = random.Random(seed)
        self.seed = seed
        self.log = log or (lambda _m: None)
        self.rounds: list[Round] = []
        self.violations: list[dict[str, Any]] = []
        self.durations: dict[str, list[float]] = {op: [] for op in OPS}
        self.cash = 0  # what the cards say the drawer holds beyond the float
        self.rebinds = 0
        self.setup_sales = 0
        self.parameter_changes = 0
        self.erased = 0
        self.resumed = 0
        self.rewritten_in_recovery = 0
        self.seller: subprocess.Popen[str] | None = None
        self._stack = contextlib.ExitStack()

    # ---- set-up

    def __enter__(self) -> Campaign:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        from app.clock import FixedClock
        from app.persistence.db import Database
        from app.ports import KeyRole
        from app.services import auth, shifts
        from app.services.demo import load_demo
        from app.settings import OFFLINE_MAX_AMOUNT, OFFLINE_MAX_SALES, Settings
        from cardio.keys import MasterKeys, SoftwareKeyProvider
        from cardio.meter_sim import MeterSimulator
        from cardio.pcsc import PcscReaderPort

        self.folder.mkdir(parents=True, exist_ok=True)
        self.clock = FixedClock(NOW)
        self.settings = Settings()
        self.settings.set(OFFLINE_MAX_AMOUNT.key, 10**12)
        self.settings.set(OFFLINE_MAX_SALES.key, 10**9)
        self.db_path = self.folder / "cardvend.db"
        self.db = Database(str(self.db_path))
        self._stack.callback(self.db.dispose)
        self.db.migrate()
        load_demo(self.db, self.clock)
        self.teller = auth.login(self.db, "t01", "demo-t01", counter_id=COUNTER, clock=self.clock)
        shift = shifts.open_shift(self.db, actor=self.teller, float_fen=0, clock=self.clock)
        self.shift_id = shift.shift_id
        self.master = MasterKeys.generate()
        self.keys = SoftwareKeyProvider(self.master)
        self.keys_path = self.folder / "master-keys.json"
        self.keys_path.write_text(
            json.dumps({r.name: self.master.key(r).hex() for r in KeyRole}), encoding="ascii"
        )
        self.keys_path.chmod(0o600)
        self.marker_path = self.folder / "marker"
        self.marker_path.write_bytes(bytes(MARKER_SIZE))
        fd = os.open(self.marker_path, os.O_RDWR)
        self.marker = mmap.mmap(fd, MARKER_SIZE)
        os.close(fd)
        self._stack.callback(self.marker.close)
        self.port = PcscReaderPort()
        self._stack.callback(self.port.close)
        self.cards: dict[int, Card] = {}
        self._stack.callback(self._stop_cards)
        self.card = self._new_blank(0)
        self.spare = self._new_blank(1)
        self.meter = MeterSimulator(self.folder / "meter.json", self.keys, clock=self.clock)
        from app.services import selling

        wait_reader_ready(self.card.reader)
        with self.terminal(self.card) as t:
            selling.open_account(
                self.db,
                t,
                actor=self.teller,
                customer_no=CUSTOMER,
                clock=self.clock,
                settings=self.settings,
            )
        with self.terminal(self.card) as t:
            assert self.meter.insert(t).accepted  # the meter binds the card
        self.meter_base = self.meter.state.remaining
        self._start_seller()

    def _start_seller(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARDVEND_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["CARDVEND_LANG"] = "en"
        errors = (self.folder / "seller.log").open("w")
        self._stack.callback(errors.close)
        self.seller = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.bench_kill",
                "--seller",
                str(self.db_path),
                str(self.keys_path),
                str(self.marker_path),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        self._stack.callback(self._stop_seller)

    def _stop_seller(self) -> None:
        seller = self.seller
        if seller is None:
            return
        with contextlib.suppress(OSError):
            assert seller.stdin is not None
            seller.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            seller.stdin.close()
        try:
            seller.wait(10)
        except subprocess.TimeoutExpired:
            seller.kill()
            seller.wait(5)

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.seller is not None and self.seller.stdin and self.seller.stdout
        self.seller.stdin.write(json.dumps(request) + "\n")
        self.seller.stdin.flush()
        line = self.seller.stdout.readline()
        if not line:
            log = (self.folder / "seller.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the seller process ended: {log}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _new_blank(self, slot: int) -> Card:
        from cardio.emulator import CardImage, UserCardOS
        from cardio.vpcd import VpcdCard

        serial = os.urandom(8)
        card_keys = {int(r): k for r, k in self.master.diversified_card_keys(serial).items()}
        path = self.folder / f"card-{serial.hex()}.json"
        CardImage.blank(serial, card_keys).save(path)
        card_os = UserCardOS(CardImage.load(path), persist_path=path)
        # a card put into a slot just after another was pulled waits there (VpcdCard)
        server = VpcdCard(card_os, slot=slot).start()
        card = Card(slot, serial, path, card_os, server)
        self.cards[slot] = card
        return card

    def _retire(self, card: Card) -> None:
        card.server.remove()
        card.server.stop()

    def _stop_cards(self) -> None:
        for card in self.cards.values():
            card.server.stop()

    @contextlib.contextmanager
    def terminal(self, card: Card) -> Iterator[Any]:
        from cardio.terminal import ApduTerminal

        channel = self.port.connect(card.reader, timeout=WAIT)
        try:
            yield ApduTerminal(channel, self.keys, utility_code=UTILITY)
        finally:
            channel.close()

    # ---- the books

    def ledger(self) -> dict[str, Any]:
        from sqlalchemy import func, select

        from app.persistence.models import (
            CardBlacklist,
            Customer,
            FeePayment,
            Reversal,
            Sale,
            Shift,
        )
        from app.services import shifts

        with self.db.read() as session:
            customer = session.scalar(select(Customer).where(Customer.customer_no == CUSTOMER))
            assert customer is not None
            sales = session.scalars(select(Sale).where(Sale.customer_id == customer.id)).all()
            reversals = session.scalars(select(Reversal)).all()
            shift = session.get(Shift, self.shift_id)
            assert shift is not None
            return {
                "count": customer.purchase_count,
                "serial": customer.card_serial,
                "sales": {
                    s.id: (s.state, s.purchase_count, s.credit, s.amount, s.rewrites) for s in sales
                },
                "reversals": {r.id: (r.sale_id, r.state, r.amount) for r in reversals},
                "fees": int(
                    session.scalar(
                        select(func.count())
                        .select_from(FeePayment)
                        .where(FeePayment.kind == "replacement")
                    )
                    or 0
                ),
                "blacklist": set(session.scalars(select(CardBlacklist.serial))),
                "expected_cash": shifts.expected_cash(session, shift) - shift.float_amount,
            }

    def last_completed(self, books: dict[str, Any]) -> str | None:
        for sid, (state, count, *_rest) in books["sales"].items():
            if state == "completed" and count == books["count"]:
                return str(sid)
        return None

    def read_card(self, card: Card) -> Any:
        with self.terminal(card) as t:
            return t.read()

    def check(self, rnd: Round) -> None:
        """The invariants after a round (see the module docstring)."""
        from app.services import selling

        books = self.ledger()
        problems: list[str] = []
        if selling.unresolved(self.db):
            problems.append("a sale is left pending or in doubt")
        if any(state == "pending" for _s, state, _a in books["reversals"].values()):
            problems.append("a reversal is left pending")
        completed = {
            count: (sid, credit)
            for sid, (state, count, credit, _amount, _rw) in books["sales"].items()
            if state == "completed"
        }
        n = books["count"]
        counts = sorted(
            count for state, count, *_r in books["sales"].values() if state == "completed"
        )
        if counts != list(range(1, n + 1)):
            problems.append(f"completed purchases {counts} are not 1..{n}")
        if books["serial"] != self.card.serial_hex:
            problems.append(f"the customer's card is {books['serial']}, not {self.card.serial_hex}")
        card = self.read_card(self.card)
        purchase = card.purchase or selling.EMPTY_PURCHASE
        if n == 0:
            if purchase.purchase_count != 0:
                problems.append(f"the card holds purchase {purchase.purchase_count}, none was sold")
        elif n in completed:
            sid, credit = completed[n]
            held = (purchase.purchase_count, purchase.sale_tag, purchase.amount)
            if held != (n, uuid.UUID(sid).bytes[:8], credit):
                problems.append(f"the card holds {held[0]}/{held[2]} fen, sale {n} is {credit} fen")
        meter = self.meter.state
        if meter.purchase_count not in (n, n - 1) and n > 0:
            problems.append(f"the meter is at purchase {meter.purchase_count}, the ledger at {n}")
        loaded = sum(
            credit for count, (_sid, credit) in completed.items() if count <= meter.purchase_count
        )
        if meter.remaining != self.meter_base + loaded:
            problems.append(
                f"the meter holds {meter.remaining - self.meter_base} fen of credit, the "
                f"completed sales up to its purchase {meter.purchase_count} {loaded}"
            )
        if books["expected_cash"] != self.cash:
            problems.append(
                f"the shift expects {books['expected_cash']} fen, the cards say {self.cash}"
            )
        reversed_sales = sum(1 for state, *_r in books["sales"].values() if state == "reversed")
        done_reversals = sum(
            1 for _s, state, _a in books["reversals"].values() if state == "completed"
        )
        if reversed_sales != done_reversals:
            problems.append(f"{reversed_sales} sales reversed, {done_reversals} reversals done")
        if books["fees"] != self.rebinds or len(books["blacklist"]) != self.rebinds:
            problems.append(
                f"{self.rebinds} replacements, {books['fees']} fees, "
                f"{len(books['blacklist'])} blacklisted cards"
            )
        allowed = PHASES[rnd.op].get(rnd.phase, set())
        if rnd.outcome not in allowed:
            problems.append(f"outcome {rnd.outcome!r} after dying at {rnd.phase!r}")
        if problems:
            raise Violation("; ".join(problems))

    # ---- preparing an operation

    def sell_here(self) -> None:
        """A sale without a kill (to have something to reverse or lose)."""
        from app.services import selling

        with self.terminal(self.card) as t:
            out = selling.sell(
                self.db,
                t,
                actor=self.teller,
                amount=AMOUNT,
                clock=self.clock,
                settings=self.settings,
            )
        if out.sale.state != "completed":
            raise Violation(f"a sale without a kill ended {out.sale.state}")
        self.cash += AMOUNT
        self.setup_sales += 1

    def to_meter(self) -> None:
        with self.terminal(self.card) as t:
            result = self.meter.insert(t)
        if not result.accepted or result.reason is not None:
            raise Violation(f"the meter refused the card: {result.reason}")

    def change_parameters(self) -> None:
        """New alarm thresholds from the central archive: the sale writes the parameter file
        before the purchase file."""
        from sqlalchemy import update

        from app.persistence.models import Customer

        self.parameter_changes += 1
        with self.db.write() as session:
            session.execute(
                update(Customer)
                .where(Customer.customer_no == CUSTOMER)
                .values(
                    alarm1=2000 + 100 * (self.parameter_changes % 10),
                    param_version=Customer.param_version + 1,
                )
            )

    def unloaded(self) -> bool:
        from sqlalchemy import select

        from app.persistence.models import Customer

        with self.db.read() as session:
            count = session.scalar(
                select(Customer.purchase_count).where(Customer.customer_no == CUSTOMER)
            )
        return self.meter.state.purchase_count < (count or 0)

    def approval(self, action: str, target: str) -> str:
        from app.services import approvals

        return approvals.approve_on_spot(
            self.db,
            action=action,
            target=target,
            payload={},
            operator_id="t01",
            counter_id=COUNTER,
            approver_id="s01",
            approver_role="supervisor",
            clock=self.clock,
            distinct_from=["t01"],
        ).id

    def prepare(self, op: str) -> dict[str, Any]:
        """Bring the books and cards where ``op`` can run; returns the request for the seller."""
        from app.domain.card import CardWrite
        from app.services import selling

        if op == "sale":
            if self.unloaded():
                self.to_meter()
            if self.rng.random() < PARAMETER_CHANGE:
                self.change_parameters()
            return {"op": op, "reader": self.card.reader}
        if op == "replacement":
            # a spare put in after the last replacement connects once the slot was empty for
            # pcscd; only then does the reader's state speak of the new card
            if not self.spare.server.wait_connected(WAIT):
                raise RuntimeError(f"the spare card never reached {self.spare.reader!r}")
            wait_reader_ready(self.spare.reader)
            return {
                "op": op,
                "reader": self.spare.reader,
                "approval": self.approval("replace_card", CUSTOMER),
            }
        # rewrite and reversal: the last purchase sold on this card, not loaded yet
        books = self.ledger()
        last = self.last_completed(books)
        on_this_card = False
        if last is not None and self.unloaded():
            with self.db.read() as session:
                from app.persistence.models import Sale

                row = session.get(Sale, last)
                on_this_card = row is not None and row.card_serial == self.card.serial_hex
        if not on_this_card:
            if self.unloaded():
                self.to_meter()
            self.sell_here()
            books = self.ledger()
            last = self.last_completed(books)
        assert last is not None
        if op == "reversal":
            return {
                "op": op,
                "reader": self.card.reader,
                "sale_id": last,
                "approval": self.approval("reverse", last),
            }
        # rewrite: the card loses its last purchase (the one before comes back)
        with self.db.read() as session:
            from sqlalchemy import select

            from app.persistence.models import Sale

            previous = session.scalar(
                select(Sale).where(
                    Sale.state == "completed",
                    Sale.kind == "card",
                    Sale.purchase_count == books["count"] - 1,
                )
            )
            record = selling.purchase_record(previous) if previous else selling.EMPTY_PURCHASE
        with self.terminal(self.card) as t:
            t.write(CardWrite(purchase=record))
        return {"op": op, "reader": self.card.reader}

    # ---- one round

    def round(self, op: str, kill: bool) -> Round:
        rnd = Round(len(self.rounds) + 1, op)  # numbered from 1
        began = time.monotonic()
        try:
            self._round(rnd, kill)
        finally:
            rnd.wall_s = time.monotonic() - began
            self.rounds.append(rnd)
        return rnd

    def _round(self, rnd: Round, kill: bool) -> None:
        op = rnd.op
        try:
            request = self.prepare(op)
        except Violation as exc:
            rnd.phase = "preparing"
            self._violation(rnd, str(exc))
            return
        before = self.ledger()
        out_path = self.folder / "result.json"
        log_path = self.folder / "child.log"
        out_path.unlink(missing_ok=True)
        self.marker[0] = 0
        median = sorted(self.durations[op])[len(self.durations[op]) // 2] if kill else 0.0
        rnd.delay_s = self.rng.uniform(0, median) if kill else None
        started = time.monotonic()
        pid = int(
            self._ask({"cmd": "run", **request, "out": str(out_path), "log": str(log_path)})["pid"]
        )
        pidfd = os.pidfd_open(pid)
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if rnd.delay_s is not None:
                left = rnd.delay_s - (time.monotonic() - started)
                if not poller.poll(max(0, int(left * 1000))):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            if not poller.poll(60 * 1000):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                poller.poll()
            rnd.duration_s = time.monotonic() - started
        finally:
            os.close(pidfd)
        rnd.exit = int(self._ask({"cmd": "reap", "pid": pid})["status"])
        rnd.killed = rnd.exit == -signal.SIGKILL
        events = list(self.marker[1 : 1 + self.marker[0]])
        rnd.phase = phase_of(op, events)
        if not rnd.killed:
            try:
                rnd.result = json.loads(out_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                rnd.result = {}
            if rnd.exit != 0 or not rnd.result.get("ok"):
                log = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
                self._violation(rnd, f"the {op} ended with exit {rnd.exit}: {rnd.result} {log}")
                return
            self.durations[op].append(rnd.duration_s)
        try:
            self.recover(rnd, before, request)
            self.check(rnd)
        except Violation as exc:
            self._violation(rnd, str(exc))

    def _violation(self, rnd: Round, detail: str) -> None:
        self.violations.append(
            {
                "round": rnd.number,
                "op": rnd.op,
                "phase": rnd.phase,
                "exit": rnd.exit,
                "detail": detail,
            }
        )

    # ---- the next start

    def recover(self, rnd: Round, before: dict[str, Any], request: dict[str, Any]) -> None:
        from app.errors import CardVendError
        from app.services import selling

        wait_reader_ready(request["reader"])
        selling.recover_at_start(self.db, COUNTER, self.clock)
        if rnd.op == "replacement":
            self.recover_replacement(rnd, before, request)
        try:
            with self.terminal(self.card) as t:
                seen = selling.recover_with_card(
                    self.db, t, clock=self.clock, settings=self.settings, actor=self.teller
                )
        except CardVendError as exc:
            raise Violation(f"presenting the card: {exc.localized('en')}") from exc
        after = self.ledger()
        if rnd.op == "sale":
            new = [sid for sid in after["sales"] if sid not in before["sales"]]
            if len(new) > 1:
                raise Violation(f"{len(new)} sales from one attempt")
            rnd.outcome = after["sales"][new[0]][0] if new else "none"
            if rnd.outcome == "completed":
                self.cash += after["sales"][new[0]][3]
        elif rnd.op == "reversal":
            new = [rid for rid in after["reversals"] if rid not in before["reversals"]]
            if len(new) > 1:
                raise Violation(f"{len(new)} reversals from one attempt")
            rnd.outcome = after["reversals"][new[0]][1] if new else "none"
            if rnd.outcome == "completed":
                self.cash -= after["reversals"][new[0]][2]
        elif rnd.op == "rewrite":
            sid = request_sale = self.last_completed(before)
            assert request_sale is not None
            recorded = after["sales"][sid][4] > before["sales"][sid][4]
            if seen.situation == "behind":
                rnd.outcome = "not written"
            else:
                rnd.outcome = "written and recorded" if recorded else "written"
        if seen.situation == "behind" and rnd.op != "rewrite":
            raise Violation(
                f"the ledger holds purchase {seen.ledger_count}, the card only "
                f"{seen.card_count}: a completed sale without its credit on the card"
            )
        if seen.situation == "behind":  # the teller rewrites it
            with self.terminal(self.card) as t:
                selling.rewrite(
                    self.db, t, actor=self.teller, clock=self.clock, settings=self.settings
                )
            self.rewritten_in_recovery += 1

    def recover_replacement(
        self, rnd: Round, before: dict[str, Any], request: dict[str, Any]
    ) -> None:
        from app.domain.card import UnissuedCard
        from app.services import selling

        spare = self.spare
        try:
            contents = self.read_card(spare)
        except UnissuedCard:
            contents = None
        after = self.ledger()
        bound = after["serial"] == spare.serial_hex
        if contents is None:
            rnd.outcome = "none"
        elif not bound:
            rnd.outcome = "issued, not bound"
            with self.terminal(spare) as t:  # a technician erases it: blank again
                t.erase()
            self.erased += 1
        else:
            held = contents.purchase.purchase_count if contents.purchase else 0
            complete = contents.parameters is not None and held == after["count"]
            rnd.outcome = "complete" if complete else "bound, not written"
            if not complete:  # the teller presents it again: the replacement resumes
                with self.terminal(spare) as t:
                    _view, fee = selling.replace_card(
                        self.db,
                        t,
                        actor=self.teller,
                        customer_no=CUSTOMER,
                        clock=self.clock,
                        settings=self.settings,
                        approval_request=request["approval"],
                    )
                if fee:
                    raise Violation(f"resuming a replacement took another fee of {fee} fen")
                self.resumed += 1
        if bound:
            self.rebinds += 1
            self.cash += self._fee()
            old, self.card = self.card, spare
            self._retire(old)
            self.spare = self._new_blank(old.slot)

    def _fee(self) -> int:
        from app.settings import REPLACEMENT_FEE

        return int(self.settings.get(REPLACEMENT_FEE.key))

    # ---- the campaign

    def choose(self) -> str:
        return self.rng.choices(OPS, WEIGHTS)[0]

    def run(
        self, kills: int, *, calibration: int = CALIBRATION, max_rounds: int | None = None
    ) -> None:
        started = time.monotonic()
        for op in OPS:  # the durations the kill moments are drawn from
            for _ in range(calibration):
                self.round(op, kill=False)
                if self.violations:
                    return
        landed = 0
        limit = max_rounds or kills * 3
        while landed < kills and len(self.rounds) < limit:
            rnd = self.round(self.choose(), kill=True)
            landed += rnd.killed
            if self.violations:
                return
            if rnd.number % 50 == 0:
                self.log(
                    f"round {rnd.number}: {landed} kills landed, {time.monotonic() - started:.0f} s"
                )

    # ---- figures

    def records(self, seconds: float, kills_asked: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        killed = [r for r in self.rounds if r.killed]
        for op in OPS:
            mine = [r for r in self.rounds if r.op == op and r.delay_s is not None]
            phases: dict[str, dict[str, Any]] = {}
            for name in PHASES[op]:
                here = [r for r in mine if r.phase == name]
                if here:
                    phases[name] = {
                        "kills": sum(r.killed for r in here),
                        "outcomes": dict(Tally(r.outcome for r in here)),
                    }
            durations = sorted(self.durations[op])
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
                "rounds": len(self.rounds),
                "kills_landed": len(killed),
                "phases_hit": len(by_phase),
                "setup_sales": self.setup_sales,
                "parameter_changes": self.parameter_changes,
                "replacements": self.rebinds,
                "cards_erased": self.erased,
                "replacements_resumed": self.resumed,
                "rewritten_in_recovery": self.rewritten_in_recovery,
                "violations": self.violations,
                "seed": self.seed,
                "seconds": round(seconds, 1),
                "target": f">= {kills_asked} SIGKILLs landed and no invariant violated",
                "ok": len(killed) >= kills_asked and not self.violations,
            }
        )
        return out


def campaign(
    kills: int,
    *,
    seed: int | None = None,
    folder: Path | None = None,
    log: Callable[[str], None] | None = None,
    calibration: int = CALIBRATION,
) -> tuple[Campaign, float]:
    """Run a campaign of ``kills`` landed kills (pcscd must be running with the vpcd readers)."""
    seed = seed if seed is not None else random.randrange(2**32)
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cardvend-kill-")))
        t0 = time.perf_counter()
        with Campaign(folder, seed=seed, log=log) as c:
            c.run(kills, calibration=calibration)
        return c, time.perf_counter() - t0


def run(kills: int = FULL_KILLS, seed: int | None = None) -> list[dict[str, Any]]:
    from tests.bench.bench_card import running_pcscd
    from tests.bench.common import emit, progress
    from tests.pcsc_fixtures import exclusive_virtual_readers

    with exclusive_virtual_readers(), running_pcscd():
        c, seconds = campaign(kills, seed=seed, log=progress)
    return [emit(r) for r in c.records(seconds, kills)]


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["--seller"]:
        return seller_main(*args_list[1:4])
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
