"""Atomic card operations: an account opening or a replacement whose card is pulled at any
moment leaves nothing half done, and the retry works (emulated cards in-process, on SQLite and
PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlalchemy import select

from app.domain.card import CardContents
from app.domain.card import CardError
from app.domain.card import CardRemoved
from app.domain.card import UserCardType
from app.domain.receipt import ReceiptData
from app.errors import Conflict
from app.errors import ShiftError
from app.files import OutputFileError
from app.persistence.db import Database
from app.persistence.models import ApprovalRequest
from app.persistence.models import AuditEntry
from app.persistence.models import CardBlacklist
from app.persistence.models import Customer
from app.persistence.models import FeePayment
from app.persistence.models import OutboxEntry
from app.persistence.models import ReceiptPrint
from app.persistence.models import Shift
from app.services import receipts
from app.services import selling
from app.services import shifts
from app.services.auth import Principal
from app.services.demo import FIRST_CUSTOMER
from app.services.demo import demo_arrears
from cardio.emulator import CardImage
from cardio.emulator import CardImageError
from cardio.terminal import ApduTerminal
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import Counter


def free_customers(db: Database, n: int) -> list[str]:
    """Active card-meter customers without a card and without arrears or fees."""
    with db.read() as session:
        rows = session.scalars(
            select(Customer.customer_no)
            .where(
                Customer.meter_kind == "card",
                Customer.status == "active",
                Customer.card_serial.is_(None),
            )
            .order_by(Customer.customer_no)
        ).all()
    owing = {c for c in rows if demo_arrears(int(c) - FIRST_CUSTOMER)}
    return [c for c in rows if c not in owing][:n]


def card_of(db: Database, customer_no: str) -> str | None:
    with db.read() as session:
        return session.scalar(
            select(Customer.card_serial).where(Customer.customer_no == customer_no)
        )


def bound_rows(db: Database, customer_no: str) -> int:
    with db.read() as session:
        rows = session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "card_bound"))
        return sum(1 for r in rows if r.payload["customer_no"] == customer_no)


# --------------------------------------------------------------------------- open account


def test_open_account_pulled_at_every_apdu_then_retried(counter: Counter) -> None:
    """The card vanishes at the n-th APDU of the opening (the read of the blank card, the
    issue, the parameter and tariff write and its read-back), before or after the card applied
    it.  The customer is never left bound to a card; the retry on the same card opens the
    account and sells."""
    customers = iter(free_customers(counter.db, 80))
    pulled = 0
    for applied in (False, True):
        n = 0
        while True:
            n += 1
            customer = next(customers)
            image = counter.kit.blank()
            card = counter.kit.os(image)
            card.pull_after(n, applied=applied)
            try:
                counter.open_account(counter.kit.terminal(image, card), customer, None)
            except CardRemoved:
                pulled += 1
            else:
                card.cancel_pull()
                assert n > 15, f"the opening used only {n - 1} APDUs"
                break
            assert card_of(counter.db, customer) is None, (n, applied)
            assert bound_rows(counter.db, customer) == 0
            _, outcome = counter.open_account(counter.kit.terminal(image), customer, 3000)
            assert outcome is not None and outcome.sale.state == "completed", (n, applied)
            assert card_of(counter.db, customer) == counter.kit.terminal(image).read().serial_hex
            assert bound_rows(counter.db, customer) == 1
            contents = counter.kit.terminal(image).read()
            assert contents.parameters is not None
            assert contents.parameters.customer_no == customer
            assert contents.purchase is not None and contents.purchase.purchase_count == 1
    assert pulled > 30


def test_a_card_written_but_not_bound_says_so_and_the_retry_binds_it(counter: Counter) -> None:
    """The process stopped between the card write and the binding (the parameters are on the
    card, the database has no binding): a sale on it says what to do, the retry binds it."""
    image = counter.kit.blank()
    terminal = counter.kit.terminal(image)
    terminal.issue(1)
    # what the opening writes, written by hand: the binding never committed
    with counter.db.read() as session:
        customer = session.scalar(select(Customer).where(Customer.customer_no == CUSTOMER))
        assert customer is not None
        change, _ = selling.card_change(
            session,
            customer,
            None,
            "100001",
            UserCardType.OPEN,
            counter.clock.now(),
            force_params=True,
        )
    terminal.write(change)
    with pytest.raises(selling.CardRefused, match="open the account again"):
        counter.sell(image, 1000)
    counter.open_account(counter.kit.terminal(image), CUSTOMER, None)
    assert counter.sell(image, 1000).sale.purchase_count == 1
    # another customer cannot take a card that carries someone else's account
    other = free_customers(counter.db, 1)[0]
    image2 = counter.kit.blank()
    counter.kit.terminal(image2).issue(1)
    counter.kit.terminal(image2).write(change)
    with pytest.raises(selling.CardRefused, match="not blank"):
        counter.open_account(counter.kit.terminal(image2), other, None)


def test_a_bound_card_cannot_open_another_account(counter: Counter) -> None:
    image = counter.open(amount=None)
    other = free_customers(counter.db, 1)[0]
    with pytest.raises(selling.CardRefused, match="not blank"):
        counter.open_account(counter.kit.terminal(image), other, None)
    assert card_of(counter.db, other) is None


# --------------------------------------------------------------------------- replacement

# APDUs of a replacement before its card write: the read of the blank card (SELECT of the
# application, SELECT MF), the issue (SELECT MF, GET CHALLENGE, EXTERNAL AUTHENTICATE, ISSUE,
# then SELECT and the reads of the new card's files: 11 in all)
WRITE_START = 13


def approval_state(db: Database, request: str) -> str:
    with db.read() as session:
        row = session.get(ApprovalRequest, request)
        assert row is not None
        return row.state


def fees(db: Database) -> list[tuple[int, str]]:
    with db.read() as session:
        return [(f.amount, f.shift_id) for f in session.scalars(select(FeePayment))]


@pytest.mark.parametrize("applied", [False, True])
def test_replacement_issue_fails_and_the_approval_serves_the_retry(
    counter: Counter, applied: bool
) -> None:
    old = counter.open()
    old_serial = counter.kit.terminal(old).read().serial_hex
    request = counter.approval("replace_card", CUSTOMER)
    new = counter.kit.blank()
    card = counter.kit.os(new)
    # the read of the blank card takes 2 APDUs; the 4th of the issue is the ISSUE command
    card.pull_after(6, applied=applied)
    with pytest.raises(CardRemoved):
        counter.replace_card(counter.kit.terminal(new, card), request)
    assert approval_state(counter.db, request) == "approved"
    assert card_of(counter.db, CUSTOMER) == old_serial and fees(counter.db) == []
    _, fee = counter.replace_card(counter.kit.terminal(new), request)
    assert fee == 2000 and approval_state(counter.db, request) == "used"
    contents = counter.kit.terminal(new).read()
    assert card_of(counter.db, CUSTOMER) == contents.serial_hex != old_serial
    assert contents.purchase is not None and contents.purchase.purchase_count == 1
    with counter.db.read() as session:
        assert session.get(CardBlacklist, old_serial) is not None


class ShiftClosedDuringIssue(ApduTerminal):
    """A card terminal whose issue takes long enough for the teller to close the shift in
    another window."""

    def __init__(self, inner: ApduTerminal, counter: Counter, actor: Principal) -> None:
        super().__init__(inner.channel, inner.keys, utility_code=inner.utility_code)
        self.counter, self.actor = counter, actor

    def issue(self, kind: int) -> CardContents:
        out = super().issue(kind)
        shifts.close_shift(
            self.counter.db, actor=self.actor, counted_fen=5000, clock=self.counter.clock
        )
        return out


def test_replacement_fee_goes_on_the_shift_the_binding_reads(counter: Counter) -> None:
    counter.open()  # 50.00 yuan sold in the first shift
    request = counter.approval("replace_card", CUSTOMER)
    new = counter.kit.blank()
    terminal = ShiftClosedDuringIssue(counter.kit.terminal(new), counter, counter.teller)
    with pytest.raises(ShiftError, match="No shift is open"):
        counter.replace_card(terminal, request)
    with counter.db.read() as session:
        first = session.scalars(select(Shift)).one()
        assert first.closed_at is not None and (first.expected_cash, first.variance) == (5000, 0)
    assert fees(counter.db) == [] and approval_state(counter.db, request) == "approved"
    second = shifts.open_shift(counter.db, actor=counter.teller, float_fen=0, clock=counter.clock)
    _, fee = counter.replace_card(counter.kit.terminal(new), request)  # the card issued before
    assert fees(counter.db) == [(fee, second.shift_id)]
    closed = shifts.close_shift(
        counter.db, actor=counter.teller, counted_fen=fee, clock=counter.clock
    )
    assert (closed.expected_fen, closed.variance_fen) == (fee, 0)


def test_replacement_write_pulled_is_finished_by_the_same_card(counter: Counter) -> None:
    counter.to_meter(counter.open())  # the meter loaded purchase 1 from the old card
    request = counter.approval("replace_card", CUSTOMER)
    new = counter.kit.blank()
    card = counter.kit.os(new)
    card.pull_after(WRITE_START + 5, applied=False)  # inside the write
    with pytest.raises(CardError):
        counter.replace_card(counter.kit.terminal(new, card), request)
    serial = counter.kit.terminal(new).read().serial_hex
    assert card_of(counter.db, CUSTOMER) == serial  # bound: the next presentation finishes it
    _, fee = counter.replace(new)
    assert fee == 0 and len(fees(counter.db)) == 1
    counter.to_meter(new)  # the meter rebinds to the replacement card
    assert counter.sell(new, 1000).sale.purchase_count == 2


def test_a_card_bound_without_data_is_no_other_customers_card(counter: Counter) -> None:
    """A replacement bound its card but the write never reached it (no customer data on the
    card): another customer's opening refuses that card by its binding."""
    counter.open()
    new = counter.kit.blank()
    card = counter.kit.os(new)
    card.pull_after(WRITE_START + 1, applied=False)
    with pytest.raises(CardRemoved):
        counter.replace_card(
            counter.kit.terminal(new, card), counter.approval("replace_card", CUSTOMER)
        )
    assert counter.kit.terminal(new).read().parameters is None
    other = free_customers(counter.db, 1)[0]
    with pytest.raises(selling.CardRefused, match=f"card of customer {CUSTOMER}"):
        counter.open_account(counter.kit.terminal(new), other, None)
    assert card_of(counter.db, other) is None


def test_open_account_is_refused_once_bound(counter: Counter) -> None:
    counter.open()
    with pytest.raises(Conflict, match="already has a card"):
        counter.open_account(counter.kit.terminal(counter.kit.blank()), CUSTOMER, None)


# --------------------------------------------------------------------------- card images

_IMAGE_FIELDS = ("format", "serial", "state", "kind", "profile_version", "files", "keys", "retries")
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.binary(max_size=300),
    cut=st.integers(min_value=0, max_value=4000),
    field=st.sampled_from(_IMAGE_FIELDS),
    value=_JSON,
)
def test_any_bytes_load_as_a_card_image_or_say_why(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes, cut: int, field: str, value: object
) -> None:
    """Random bytes, a real image cut short, and a real image with one field replaced by any
    JSON value: each loads, or raises CardImageError naming the file -- nothing else."""
    folder = tmp_path_factory.mktemp("images", numbered=True)
    real = CardImage.blank(b"\x01" * 8, {i: bytes(16) for i in range(5)}).to_json()
    changed = {**real, field: value}
    for name, content in (
        ("random.json", raw),
        ("cut.json", json.dumps(real).encode()[:cut]),
        ("changed.json", json.dumps(changed).encode()),
    ):
        path = folder / name
        path.write_bytes(content)
        try:
            CardImage.load(path)
        except CardImageError as exc:
            assert str(path) in str(exc) and str(path) in exc.localized("zh_CN")


# --------------------------------------------------------------------------- reprints


def test_a_reprint_is_counted_only_once_delivered(counter: Counter) -> None:
    sale = counter.remote(1000)
    request = counter.approval("reprint", sale.sale_id)

    def broken(copy: ReceiptData) -> None:
        assert copy.copy_no == 1
        raise OutputFileError(path="/x/copy.pdf", reason="the disk is full")

    def reprint(deliver: object) -> ReceiptData:
        return receipts.reprint(
            counter.db,
            actor=counter.teller,
            sale_id=sale.sale_id,
            settings=counter.settings,
            key=b"k" * 32,
            clock=counter.clock,
            approval_request=request,
            deliver=deliver,  # type: ignore[arg-type]
        )

    with pytest.raises(OutputFileError):
        reprint(broken)
    with counter.db.read() as session:
        assert session.scalar(select(func.count()).select_from(ReceiptPrint)) == 0
        assert "receipt_reprint" not in session.scalars(select(AuditEntry.action)).all()
    assert approval_state(counter.db, request) == "approved"
    delivered: list[int] = []
    copy = reprint(lambda c: delivered.append(c.copy_no))
    assert copy.copy_no == 1 and delivered == [1]
    assert approval_state(counter.db, request) == "used"


def test_a_customers_card_erased_and_issued_again_is_not_blacklisted(counter: Counter) -> None:
    """A technician erased the customer's card (its credit was in the meter); the same card
    becomes the replacement and stays usable."""
    image = counter.open()
    counter.to_meter(image)
    counter.kit.terminal(image).erase()
    serial = counter.kit.terminal(image).select_mf().serial.hex().upper()
    _, fee = counter.replace(image)
    assert fee == 2000 and card_of(counter.db, CUSTOMER) == serial
    with counter.db.read() as session:
        assert session.get(CardBlacklist, serial) is None
    counter.to_meter(image)
    assert counter.sell(image, 1000).sale.purchase_count == 2
