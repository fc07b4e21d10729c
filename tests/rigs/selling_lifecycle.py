"""The card and meter lifecycle rules of the stateful sale machine
(tests/test_selling_stateful.py): a lost card replaced, a damaged card exchanged (换卡) and
the meter changed (换表), each clean, with the card pulled, or killed, and what they must leave
on the new card."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import precondition
from hypothesis.stateful import rule
from sqlalchemy import select

from app.domain.card import CardRemoved
from app.errors import Conflict
from app.persistence.models import Customer
from app.services import selling
from app.services.lifecycle import meter_change as mc
from app.settings import EXCHANGE_FEE
from cardio.meter_sim import MeterSimulator
from tests.rigs.selling_machine import SellingRig
from tests.rigs.selling_model import COMPLETED
from tests.rigs.selling_model import CUSTOMER
from tests.rigs.selling_model import CardFile
from tests.rigs.selling_model import Killed
from tests.rigs.selling_model import Snapshot
from tests.rigs.selling_model import Transfer
from tests.rigs.selling_model import breaks_replacement
from tests.rigs.selling_model import event
from tests.rigs.selling_model import kill_at
from tests.rigs.selling_model import read_card


class LifecycleRules(SellingRig):
    """``replace``, ``exchange`` and ``change_meter``, mixed into the machine."""

    @rule(
        fault=st.sampled_from(("none", "none", "pull")),
        n=st.integers(1, 24),
        applied=st.booleans(),
    )
    def replace(self, fault: str, n: int, applied: bool) -> None:
        """The card is lost: a blank card becomes the customer's card, for a fee."""
        self.tick()
        before = self.snap
        pull = (n, applied) if fault == "pull" else None
        breaks = breaks_replacement(pull)
        new = self.blank_card()
        try:
            self.replace_card(self.terminal(new, pull))
        except Conflict:
            event("replace: refused, unfinished sale")
            assert before.unresolved
            return
        except CardRemoved:
            assert pull is not None
            if self.observe().card_serial != read_card(new).serial:
                event("replace: card pulled before it was bound")
                return
            event("replace: card pulled after it was bound")
            if breaks:  # the card is unusable: the teller puts it back to finish the job
                self.replace_card(self.terminal(new))
        else:
            event("replace: done")
        assert not before.unresolved
        self.old_cards.append(self.card_path)
        self.card_path = new
        card = read_card(new)
        assert card.has_parameters
        self.assert_last_purchase(card, before)
        with pytest.raises(selling.CardRefused):  # the old card is blacklisted
            self.present_card(self.old_cards[-1])

    @rule(
        readable=st.booleans(),
        erase=st.booleans(),
        fault=st.sampled_from(("none", "none", "pull")),
        n=st.integers(1, 24),
        applied=st.booleans(),
    )
    def exchange(self, readable: bool, erase: bool, fault: str, n: int, applied: bool) -> None:
        """The card is damaged (换卡): the customer brings it (read, or unreadable); a blank
        card becomes the customer's card for the exchange fee; the old card is erased back to
        a blank card (``erase``, when it can be read) or stays blacklisted."""
        self.tick()
        before = self.snap
        old = self.card_path
        old_card = self.terminal(old).read() if readable else None
        pull = (n, applied) if fault == "pull" else None
        breaks = breaks_replacement(pull)
        new = self.blank_card()
        try:
            out = self.exchange_card(new, old_card, pull)
        except Conflict:
            event("exchange: refused, unfinished sale")
            assert before.unresolved and old_card is None
            self.spare.append(new)
            return
        except CardRemoved:
            assert pull is not None
            if self.observe().card_serial != read_card(new).serial:
                event("exchange: card pulled before it was bound")
                return  # the new card may be issued already: it is not used again
            event("exchange: card pulled after it was bound")
            fee = self.settings.value(EXCHANGE_FEE)
            if breaks:  # the card is unusable: the teller puts it back to finish the job
                assert self.exchange_card(new, None).fee == 0
        else:
            event(f"exchange: done, old card {'read' if readable else 'unreadable'}")
            fee = out.fee
            assert out.old_read == readable and out.old_serial == read_card(old).serial
        assert fee == self.settings.value(EXCHANGE_FEE)
        after = self.observe()
        assert not after.unresolved, "an exchange left a sale unresolved"
        self.card_path = new
        card = read_card(new)
        assert card.has_parameters and after.card_serial == card.serial
        self.assert_last_purchase(card, after)
        if erase and readable:
            serial = selling.erase_exchanged_card(
                self.db,
                self.terminal(old),
                actor=self.teller,
                customer_no=CUSTOMER,
                clock=self.clock,
            )
            assert serial == read_card(old).serial and not read_card(old).issued
            self.spare.append(old)  # a blank card again, not blacklisted
            # what it held in its first life is gone (card_loses_purchase reverts within one)
            for key in [k for k in self.purchase_files if k[0] == serial]:
                del self.purchase_files[key]
            event("exchange: old card erased")
            return
        self.old_cards.append(old)
        with pytest.raises(selling.CardRefused):  # the old card is blacklisted
            self.present_card(old)

    def assert_last_purchase(self, card: CardFile, s: Snapshot) -> None:
        """A replacement card carries the account's last purchase (the meter loads it at most
        once): the last sale, or the transfer of a meter change no sale has completed since."""
        since = s.sales[self.sales_at_change :]
        if self.last_transfer is not None and not any(x.state == COMPLETED for x in since):
            transfer = self.transfers[self.last_transfer]
            assert (card.count, card.tag, card.amount) == (
                transfer.count,
                self.last_transfer,
                transfer.amount,
            ), card
            return
        last = s.last_completed()
        if last is not None:
            assert card.count == last.count and card.tag == last.tag, (card, last)
        else:
            assert card.count == 0

    def exchange_card(
        self, new: Path, old_card: Any, pull: tuple[int, bool] | None = None
    ) -> selling.ExchangeOutcome:
        out: selling.ExchangeOutcome = self.service(
            selling.exchange_card,
            self.terminal(new, pull),
            customer_no=CUSTOMER,
            old_card=old_card,
            approval_request=None,
        )
        return out

    @precondition(lambda self: self.meters < 4)
    @rule(
        insert_first=st.booleans(),
        fault=st.sampled_from(("none", "none", "pull", "kill")),
        n=st.integers(1, 30),
        applied=st.booleans(),
        point=st.sampled_from(("meter_changed", "card_erased")),
    )
    def change_meter(
        self, insert_first: bool, fault: str, n: int, applied: bool, point: str
    ) -> None:
        """The meter is changed (换表) with the card: the old meter writes back onto the card
        (the technician's last insert, unless the card's write-back already shows the meter as
        it is), then the counter moves the account to a new meter, carrying the old meter's
        remaining and a purchase it had not loaded on the card as a transfer; a pull or a kill
        after the commit is finished by running the change again."""
        snap = self.observe()
        wb_current = (snap.card.wb_meter, snap.card.wb_count, snap.card.wb_remaining) == (
            self.meter_no,
            snap.meter_count,
            snap.meter_remaining,
        )
        if insert_first or not wb_current:
            self.insert_into_meter(0, 0)
        self.tick()
        before = self.observe()
        c = before.card.count
        unloaded = before.card.amount if before.meter_count == c - 1 else 0
        if before.meter_remaining + unloaded < 0:
            # the meter overshot its trip point in its last minute (an overdraft of a few fen):
            # the change would book that as arrears, which this machine (a customer without
            # arrears) does not model; tests/test_meter_change.py covers it
            event("change_meter: skipped, the old meter is in overdraft")
            return
        new_meter_no = f"99{self.meters + 1:010d}"
        pull = (n, applied) if fault == "pull" else None
        kill = point if fault == "kill" else None
        try:
            with kill_at(kill):
                out = self.meter_change(new_meter_no, pull)
        except Conflict:
            event("change_meter: refused")
            assert before.unresolved or c < before.ledger_count, before
            return
        except (CardRemoved, Killed) as exc:
            if isinstance(exc, Killed):
                self.restart()
            if self.customer_meter() != new_meter_no:
                event("change_meter: interrupted before the change")
                assert isinstance(exc, CardRemoved) and read_card(self.card_path) == before.card
                return
            event(f"change_meter: interrupted after the change ({type(exc).__name__})")
            out = self.meter_change(new_meter_no)
            assert out.resumed
        else:
            event("change_meter: done")
        assert not before.unresolved and c == before.ledger_count, before
        # the old meter's remaining (as its write-back on the card showed it, which is its
        # state: no energy was used since) and the purchase it had not loaded are carried
        assert before.meter_count in (c, c - 1)
        assert (out.remaining_fen, out.unloaded_fen) == (before.meter_remaining, unloaded), out
        assert (out.carried_fen, out.arrears_fen) == (before.meter_remaining + unloaded, 0)
        assert out.purchase_count == c and out.new_meter_no == new_meter_no
        card = read_card(self.card_path)
        tag = uuid.UUID(out.event_id).bytes[:8]
        assert (card.count, card.tag, card.amount) == (c, tag, out.carried_fen), card
        assert card.wb_count is None and card.has_parameters
        # the model moves to the new meter: the old one is retired with what it loaded
        self.transfers[tag] = Transfer(c, out.carried_fen, unloaded)
        self.last_transfer = tag
        self.sales_at_change = len(before.sales)
        self.retired_loads.extend(self.loaded)
        self.loaded, self.charged, self.base = [], 0, max(c - 1, 0)
        self.meters += 1
        self.meter_no = new_meter_no
        self.meter_path = self.tmp / f"meter{self.meters}.json"
        MeterSimulator(self.meter_path, self.keys, meter_no=new_meter_no, clock=self.clock)

    def meter_change(
        self, new_meter_no: str, pull: tuple[int, bool] | None = None
    ) -> mc.MeterChange:
        out: mc.MeterChange = self.service(
            mc.change_meter,
            self.terminal(self.card_path, pull),
            customer_no=CUSTOMER,
            new_meter_no=new_meter_no,
            source=mc.SOURCE_CARD,
        )
        return out

    def customer_meter(self) -> str:
        with self.db.read() as session:
            meter_no = session.scalar(
                select(Customer.meter_no).where(Customer.customer_no == CUSTOMER)
            )
            assert meter_no is not None
            return meter_no
