"""The kill campaign's rig (the campaign is described in tests/bench/bench_kill.py;
tests/test_kill_campaign.py runs a small one): the database, the emulated cards in their vpcd
slots and the meter, the seller process (tests/rigs/kill_seller.py), the rounds (prepare, run
and SIGKILL, the next start) and the books checked after every round."""

from __future__ import annotations

import contextlib
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
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from tests.rigs.env import child_env
from tests.rigs.kill_seller import AMOUNT
from tests.rigs.kill_seller import CALIBRATION
from tests.rigs.kill_seller import COUNTER
from tests.rigs.kill_seller import CUSTOMER
from tests.rigs.kill_seller import MARKER_SIZE
from tests.rigs.kill_seller import NOW
from tests.rigs.kill_seller import OPS
from tests.rigs.kill_seller import PARAMETER_CHANGE
from tests.rigs.kill_seller import PHASES
from tests.rigs.kill_seller import READERS
from tests.rigs.kill_seller import ROOT
from tests.rigs.kill_seller import UTILITY
from tests.rigs.kill_seller import WAIT
from tests.rigs.kill_seller import WEIGHTS
from tests.rigs.kill_seller import phase_of

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


def new_row(before: dict[str, Any], after: dict[str, Any], table: str) -> Any:
    """The row of ``table`` ("sales" or "reversals") in the ledger ``after`` that was not in the
    ledger ``before`` (None if there is none); more than one from one attempt is a violation."""
    new = [row_id for row_id in after[table] if row_id not in before[table]]
    if len(new) > 1:
        raise Violation(f"{len(new)} {table} from one attempt")
    return after[table][new[0]] if new else None


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
                from tests.pcsc_fixtures import card_connections_here
                from tests.pcsc_fixtures import pcscd_clients

                raise RuntimeError(
                    f"{reader!r} not ready after {timeout} s (state {state:#x}); "
                    f"connected to pcscd: {pcscd_clients()}; "
                    f"card connections of this process: {card_connections_here()}"
                )
            time.sleep(0.002)
    finally:
        scard.SCardReleaseContext(context)


class Campaign:
    """The rig and the rounds; see tests/bench/bench_kill.py."""

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
        from app.services import auth
        from app.services import shifts
        from app.services.demo import load_demo
        from app.settings import OFFLINE_MAX_AMOUNT
        from app.settings import OFFLINE_MAX_SALES
        from app.settings import Settings
        from cardio.keys import MasterKeys
        from cardio.keys import SoftwareKeyProvider
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
        env = child_env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["CARDVEND_LANG"] = "en"
        errors = (self.folder / "seller.log").open("w")
        self._stack.callback(errors.close)
        self.seller = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.rigs.kill_seller",
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
        from cardio.emulator import CardImage
        from cardio.emulator import UserCardOS
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
        from sqlalchemy import func
        from sqlalchemy import select

        from app.persistence.models import CardBlacklist
        from app.persistence.models import Customer
        from app.persistence.models import FeePayment
        from app.persistence.models import Reversal
        from app.persistence.models import Sale
        from app.persistence.models import Shift
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
        """The invariants after a round (see tests/bench/bench_kill.py)."""
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
        from tests.rigs.counter import approved_on_spot

        return approved_on_spot(
            self.db, self.clock, action, target, counter_id=COUNTER, distinct=["t01"]
        )

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
            sale = new_row(before, after, "sales")
            rnd.outcome = sale[0] if sale else "none"
            if rnd.outcome == "completed":
                self.cash += sale[3]
        elif rnd.op == "reversal":
            reversal = new_row(before, after, "reversals")
            rnd.outcome = reversal[1] if reversal else "none"
            if rnd.outcome == "completed":
                self.cash -= reversal[2]
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
