"""The stateful sale machine's rig (tests/test_selling_stateful.py): one customer's account
on an emulated card, its meter and one counter, built from the session template; the helpers
its rules share (the card at the counter and in the meter, approvals, a restart after a kill),
what it observes and how it follows the cash, and the account closed at the end of a run."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis.stateful import RuleBasedStateMachine
from sqlalchemy import select

from app.clock import FixedClock
from app.domain.card import CardRemoved
from app.domain.ledger import SaleKind
from app.domain.ledger import SaleState
from app.domain.settlement import Settlement
from app.errors import Conflict
from app.persistence.db import Database
from app.persistence.models import CardBlacklist
from app.persistence.models import Customer
from app.persistence.models import FeePayment
from app.persistence.models import Reversal
from app.persistence.models import Sale
from app.persistence.models import Shift
from app.services import approvals
from app.services import selling
from app.services import shifts
from app.services.customers import customer_view
from app.services.lifecycle import account
from app.settings import UTILITY_CODE
from app.settings import Settings
from cardio.channel import EmulatedChannel
from cardio.emulator import CardImage
from cardio.emulator import UserCardOS
from cardio.meter_sim import MeterSimulator
from cardio.meter_sim import MeterState
from cardio.meter_sim import load_state
from cardio.terminal import ApduTerminal
from tests.rigs.selling_model import COMPLETED
from tests.rigs.selling_model import COUNTER
from tests.rigs.selling_model import CUSTOMER
from tests.rigs.selling_model import FLOAT
from tests.rigs.selling_model import METER_NO
from tests.rigs.selling_model import T0
from tests.rigs.selling_model import RevRow
from tests.rigs.selling_model import SaleRow
from tests.rigs.selling_model import Snapshot
from tests.rigs.selling_model import Transfer
from tests.rigs.selling_model import copy_database
from tests.rigs.selling_model import event
from tests.rigs.selling_model import read_card
from tests.rigs.selling_model import template


class SellingRig(RuleBasedStateMachine):
    """The state and helpers of :class:`tests.test_selling_stateful.SellingMachine` (no rules)."""

    def __init__(self) -> None:
        super().__init__()
        t = template()
        self.keys = t.keys
        self.master = t.master
        self.tmp = Path(tempfile.mkdtemp(prefix="cv-run-", dir=t.directory))
        self.db_file = self.tmp / "db.sqlite"
        copy_database(t.db_file, self.db_file)
        self.clock = FixedClock(T0)
        self.settings = Settings()
        self.utility = str(self.settings.get(UTILITY_CODE.key))
        self.db = Database(str(self.db_file))
        self._sign_in()
        shifts.open_shift(self.db, actor=self.teller, float_fen=FLOAT, clock=self.clock)
        self.seen_tags: set[bytes] = set()  # every sale tag ever seen on one of our cards
        # purchase file contents seen, per (card serial, purchase count)
        self.purchase_files: dict[tuple[str, int], bytes] = {}
        self.cards = 0
        self.spare: list[Path] = []  # exchanged cards erased back to blank cards
        self.card_path = self.blank_card()
        self.old_cards: list[Path] = []
        self.service(selling.open_account, self.terminal(self.card_path), customer_no=CUSTOMER)
        self.meters = 1
        self.meter_no = METER_NO
        self.meter_path = self.tmp / "meter.json"
        # the customer's meter as installed: its number set, no credit, bound to no card yet
        MeterSimulator(self.meter_path, self.keys, meter_no=METER_NO, clock=self.clock)
        # the model: what the current meter was seen to load and to use up; ``base``: the
        # purchase count it starts from (a meter fitted by a meter change continues the count)
        self.charged = 0
        self.loaded: list[tuple[int, bytes, int]] = []  # (purchase count, tag, credit)
        self.base = 0
        # what retired meters loaded (they are out of the model's reach, but no purchase may
        # be loaded twice across meters), and the transfers of the meter changes by tag
        self.retired_loads: list[tuple[int, bytes, int]] = []
        self.transfers: dict[bytes, Transfer] = {}
        # sale credit delivered to a meter: loaded as a purchase, or carried by a transfer
        # (the part of it that no meter had loaded: ``Transfer.unloaded``) the new meter loaded
        self.credited = 0
        # the cash drawer of the open shift, moved by what happened at the counter
        self.drawer = FLOAT
        self.seen_sales: dict[str, str] = {}
        self.seen_reversals: dict[str, str] = {}
        self.seen_fees: set[str] = set()
        self.last_transfer: bytes | None = None
        self.sales_at_change = 0  # the sales made before the last meter change
        self.steps = self.shift_opened_at = 0
        self.snap = self.observe()

    def teardown(self) -> None:
        try:
            self.close_at_the_end()
        finally:
            self.db.dispose()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def close_at_the_end(self) -> None:
        """Every run ends with the account closed (issue 15): after a last visit to the meter,
        what is left (the meter's remaining and the credit of completed sales the meter never
        loaded) is handed back in cash, exactly, and leaves the drawer; nothing is left over."""
        s = self.observe()
        if s.unresolved or s.pending_reversals or s.shift_id is None:
            event("close: skipped, unfinished work")
            return
        self.insert_into_meter(0, 0)  # a fresh write-back: the meter's remaining as it is now
        s = self.snap = self.observe()
        self._follow_cash(s)
        unloaded = sum(x.credit for x in s.by_state(COMPLETED) if x.count > s.meter_count)
        left = s.meter_remaining + unloaded
        request = self.approval("close_account", CUSTOMER)

        def close() -> Settlement:
            return account.close_account(
                self.db,
                self.terminal(self.card_path),
                actor=self.teller,
                customer_no=CUSTOMER,
                clock=self.clock,
                settings=self.settings,
                approval_request=request,
            )

        if left < 0:  # an overdraft is paid as a purchase before a close
            with pytest.raises(Conflict):
                close()
            event("close: refused, overdraft")
            return
        done = close()
        event("close: closed")
        assert (done.meter_remaining, done.unloaded, done.refund) == (
            s.meter_remaining,
            unloaded,
            left,
        ), done
        with self.db.read() as session:
            shift = session.get(Shift, s.shift_id)
            assert shift is not None
            assert shifts.expected_cash(session, shift) == self.drawer - left
        assert customer_view(self.db, CUSTOMER).status == "closed"

    # ------------------------------------------------------------------ helpers

    def _sign_in(self) -> None:
        """The operators at the counter.  A real login costs ~50 ms (scrypt): the session's
        principals stand in for a fresh login, stamped with this run's clock."""
        now = self.clock.now()
        t = template()
        self.teller = dataclasses.replace(t.teller, authenticated_at=now, last_activity=now)
        self.supervisor = dataclasses.replace(t.supervisor, authenticated_at=now, last_activity=now)

    def tick(self, minutes: int = 1) -> None:
        """Time passes at the counter; the operators keep working (no idle re-login)."""
        now = self.clock.advance(minutes=minutes)
        self.teller.last_activity = self.supervisor.last_activity = now

    def blank_card(self) -> Path:
        if self.spare:
            return self.spare.pop()
        self.cards += 1
        serial = uuid.uuid4().bytes[:8]
        path = self.tmp / f"card{self.cards}.json"
        keys = {int(r): k for r, k in self.master.diversified_card_keys(serial).items()}
        CardImage.blank(serial, keys).save(path)
        return path

    def service(self, use_case: Callable[..., Any], *args: object, **kw: object) -> Any:
        """``use_case(db, *args, **kw)`` by the teller, with the counter's clock and settings."""
        return use_case(
            self.db, *args, actor=self.teller, clock=self.clock, settings=self.settings, **kw
        )

    def present_card(self, path: Path) -> selling.Assessment:
        """The card at ``path`` presented at the counter: whatever it can decide is decided."""
        return selling.recover_with_card(
            self.db, self.terminal(path), clock=self.clock, settings=self.settings
        )

    def replace_card(self, terminal: ApduTerminal) -> tuple[Any, int]:
        """The blank card in ``terminal`` becomes the customer's card, approved on the spot."""
        return self.service(
            selling.replace_card,
            terminal,
            customer_no=CUSTOMER,
            approval_request=self.approval("replace_card", CUSTOMER),
        )

    def terminal(self, path: Path, pull: tuple[int, bool] | None = None) -> ApduTerminal:
        """The card (re)inserted into the counter's reader; ``pull``: it vanishes at the n-th
        APDU, before or after applying it (the channel then stays dead)."""
        card_os = UserCardOS(CardImage.load(path), persist_path=path)
        if pull is not None:
            card_os.pull_after(pull[0], applied=pull[1])
        return ApduTerminal(EmulatedChannel(card_os), self.keys, utility_code=self.utility)

    def restart(self) -> None:
        """The counter process died: drop every in-memory object and start again."""
        self.db.dispose()
        self.db = Database(str(self.db_file))
        self._sign_in()
        left = selling.recover_at_start(self.db, COUNTER, self.clock)
        with self.db.read() as session:
            pending = session.scalars(
                select(Sale.id).where(
                    Sale.counter_id == COUNTER, Sale.state == SaleState.PENDING.value
                )
            ).all()
        assert not pending, f"pending sales after recover_at_start: {pending}"
        assert all(s.state == SaleState.IN_DOUBT.value for s in left)

    def approval(self, action: str, target: str) -> str:
        view = approvals.approve_on_spot(
            self.db,
            action=action,
            target=target,
            payload={},
            operator_id=self.teller.operator_id,
            counter_id=COUNTER,
            approver_id=self.supervisor.operator_id,
            approver_role=self.supervisor.role,
            clock=self.clock,
        )
        return view.id

    def observe(self) -> Snapshot:
        """Everything the invariants look at, read fresh from the database and the files."""
        with self.db.read() as session:
            customer = session.scalar(select(Customer).where(Customer.customer_no == CUSTOMER))
            assert customer is not None
            sales = tuple(
                SaleRow(
                    s.id,
                    s.state,
                    s.purchase_count or 0,
                    s.amount,
                    s.credit,
                    s.shift_id,
                    s.card_serial,
                )
                for s in session.scalars(
                    select(Sale)
                    .where(Sale.customer_id == customer.id, Sale.kind == SaleKind.CARD.value)
                    .order_by(Sale.created_at, Sale.purchase_count)
                )
            )
            reversals = tuple(
                RevRow(r.id, r.sale_id, r.state, r.amount, r.shift_id)
                for r in session.scalars(
                    select(Reversal).where(Reversal.sale_id.in_([s.id for s in sales]))
                )
            )
            fees = tuple(
                (f.id, f.amount)
                for f in session.scalars(
                    select(FeePayment).where(FeePayment.customer_id == customer.id)
                )
            )
            blacklist = frozenset(session.scalars(select(CardBlacklist.serial)).all())
            shift_id = session.scalar(
                select(Shift.id).where(Shift.counter_id == COUNTER, Shift.closed_at.is_(None))
            )
            ledger_count = customer.purchase_count
            card_serial = customer.card_serial
            known_meter_count = customer.meter_purchase_count
        meter_state = load_state(self.meter_path)
        meter_count, meter_remaining, _ = self.meter_view(meter_state)
        card = read_card(self.card_path)
        if card.issued:  # what the card held, for the invariants and card_loses_purchase
            self.purchase_files[(card.serial, card.count)] = card.purchase_raw
            if card.tag is not None and card.count:
                self.seen_tags.add(card.tag)
        return Snapshot(
            ledger_count,
            card_serial,
            known_meter_count,
            sales,
            reversals,
            fees,
            blacklist,
            shift_id,
            card,
            meter_count,
            meter_remaining,
            self.credited_count(meter_state),
        )

    def meter_view(self, state: MeterState) -> tuple[int, int, int]:
        """The meter as the model sees it: (purchase count, remaining, pending amount counted).

        A purchase the meter holds *pending* (its write-back was not confirmed) counts as
        loaded when the model saw its write-back reach the card (it is then the last purchase
        in ``self.loaded``): the meter credits it at the next insert of the account's card.
        Otherwise it is not loaded yet: the meter forgets it at the next insert."""
        pending = state.pending_purchase
        if pending is not None and self.loaded:
            count, tag, credit = self.loaded[-1]
            if (count, tag) == (pending["count"], bytes.fromhex(pending["tag"])):
                assert credit == pending["amount"]
                return count, state.remaining + credit, credit
        return self.credited_count(state), state.remaining, 0

    def credited_count(self, state: MeterState) -> int:
        """The purchase count the meter has credited; a meter fitted by a meter change and
        not yet bound to a card continues the account's count (``self.base``)."""
        fresh = state.card_serial is None and state.purchase_count == 0
        if fresh and state.pending_purchase is None:
            return self.base
        return state.purchase_count

    def insert_into_meter(
        self, minutes: int, load_w: int, pull: tuple[int, bool] | None = None
    ) -> None:
        """The customer uses energy for ``minutes``, then puts the card into the meter (and
        maybe pulls it out at the ``pull`` APDU)."""
        card = read_card(self.card_path)
        m = MeterSimulator(self.meter_path, self.keys, clock=self.clock)
        if minutes:
            self.charged += m.consume(minutes, load_w).charged
        before, _, settles = self.meter_view(m.state)
        try:
            result = m.insert(self.terminal(self.card_path, pull))
        except CardRemoved:
            assert pull is not None
            event("meter: card pulled")
            result = None
        else:
            assert result.accepted and result.reason is None, result
            assert result.write_back is not None
            assert m.state.pending_purchase is None, "a purchase left pending by a clean insert"
        state = load_state(self.meter_path)
        after, _, _ = self.meter_view(state)
        pending = state.pending_purchase
        if pending is not None and after == state.purchase_count:
            # pending and not counted yet: counted once the write-back announcing it is on the
            # card (then the meter credits it at the next insert, whatever happens meanwhile)
            assert result is None and pending["count"] == state.purchase_count + 1
            announced = read_card(self.card_path).wb_count == pending["count"]
            event(f"meter: pulled with a purchase pending, {'' if announced else 'not '}announced")
            if announced:
                after = pending["count"]
        if card.count == before + 1 and after == card.count:
            event("meter: loaded a purchase")
            assert card.tag is not None
            assert result is None or result.credited == settles + card.amount, (result, settles)
            self.loaded.append((card.count, card.tag, card.amount))
            transfer = self.transfers.get(card.tag)
            self.credited += card.amount if transfer is None else transfer.unloaded
        else:
            event("meter: nothing to load")
            assert after == before and (result is None or result.credited == settles)
            assert result is None or card.count == before, (card, before)
        if result is not None:  # a completed insert settles whatever was pending
            assert state.purchase_count == after and pending is None

    def assert_resolved(self, before: Snapshot) -> None:
        """The card was read and assessed: what was unresolved is decided by what it held."""
        after = self.observe()
        for sale in before.unresolved:
            want = COMPLETED if before.card_holds(sale) else SaleState.FAILED.value
            assert after.sale(sale.id).state == want, (sale, before.card)
        for rev in before.pending_reversals:
            restored = before.card.count == before.sale(rev.sale_id).count - 1
            want = "completed" if restored else "failed"
            assert next(r for r in after.reversals if r.id == rev.id).state == want, rev

    def _follow_cash(self, s: Snapshot) -> None:
        """Move the drawer by what happened since the last step: the cash is taken when a sale
        begins, handed back when it fails or when its reversal completes; fees are taken."""
        for sale in s.sales:
            old = self.seen_sales.get(sale.id)
            if old is None:
                self.drawer += sale.amount
            if sale.state == SaleState.FAILED.value and old != SaleState.FAILED.value:
                self.drawer -= sale.amount
            self.seen_sales[sale.id] = sale.state
        for rev in s.reversals:
            if rev.state == "completed" and self.seen_reversals.get(rev.id) != "completed":
                self.drawer -= rev.amount
            self.seen_reversals[rev.id] = rev.state
        for fee_id, amount in s.fees:
            if fee_id not in self.seen_fees:
                self.drawer += amount
                self.seen_fees.add(fee_id)
