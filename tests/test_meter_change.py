"""Meter change (换表) end to end: emulated cards, the old and the new meter simulator, the
ledger, the outbox and the reference central server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.clock import FixedClock
from app.domain.card import CardRemoved
from app.errors import Conflict
from app.errors import ValidationError
from app.persistence.models import AccountEvent
from app.persistence.models import ArrearsItem
from app.persistence.models import AuditEntry
from app.persistence.models import Customer
from app.persistence.models import OutboxEntry
from app.services.approvals import ApprovalStateError
from app.services.lifecycle import meter_change as mc
from app.services.meter_reading import MeterReading
from app.services.selling import assess
from app.services.selling.errors import CardRefused
from cardio.meter_sim import MeterSimulator
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import Counter

NEW = "990000000123"


def change(counter: Counter, image: Path, **kw: Any) -> mc.MeterChange:
    kw.setdefault("source", mc.SOURCE_CARD)
    kw.setdefault("new_meter_no", NEW)
    return counter.service(mc.change_meter, counter.kit.terminal(image), customer_no=CUSTOMER, **kw)


def approved_typed(counter: Counter, image: Path, remaining: int, **kw: Any) -> mc.MeterChange:
    """The old meter (which loaded purchase 1) typed in, approved by s01."""
    counter.to_meter(image)
    return change(
        counter,
        image,
        source=mc.SOURCE_TYPED,
        remaining_fen=remaining,
        purchase_count=1,
        approval_request=counter.approval("change_meter", CUSTOMER),
        **kw,
    )


def new_meter(counter: Counter, tmp: Path, meter_no: str = NEW) -> MeterSimulator:
    return MeterSimulator(
        tmp / f"meter-{meter_no}.json", counter.kit.keys, meter_no=meter_no, clock=counter.clock
    )


def events(counter: Counter) -> list[AccountEvent]:
    with counter.db.read() as session:
        rows = list(session.scalars(select(AccountEvent)))
        for r in rows:
            session.expunge(r)
        return rows


def outbox(counter: Counter, kind: str = "account_event") -> list[OutboxEntry]:
    with counter.db.read() as session:
        rows = list(session.scalars(select(OutboxEntry).where(OutboxEntry.kind == kind)))
        for r in rows:
            session.expunge(r)
        return rows


def test_credit_from_the_cards_write_back_reaches_the_new_meter(
    counter: Counter, tmp_path: Path
) -> None:
    image = counter.open(amount=5000)  # purchase 1
    counter.to_meter(image)
    counter.meter.consume(600, 2000)  # some credit used
    counter.sell(image, 3000)  # purchase 2, not yet loaded
    counter.to_meter(image)  # the old meter loads it and writes back
    counter.meter.consume(60, 1000)
    counter.to_meter(image)  # the technician's last insert before taking the meter out
    left = counter.meter.state.remaining
    assert 0 < left < 8000 and counter.meter.state.purchase_count == 2
    old_meter_no = counter.customer_row().meter_no

    done = change(counter, image)

    assert (done.old_meter_no, done.new_meter_no, done.source) == (old_meter_no, NEW, "card")
    assert (done.remaining_fen, done.unloaded_fen, done.carried_fen) == (left, 0, left)
    assert done.arrears_fen == 0 and done.purchase_count == 2 and done.energy_wh
    assert done.customer.meter_no == NEW and not done.resumed
    row = counter.customer_row()
    assert row.meter_no == NEW and row.purchase_count == 2 and row.meter_purchase_count is None
    card = counter.kit.terminal(image).read()
    assert card.parameters is not None and card.parameters.meter_no == NEW
    assert card.write_back is None and card.purchase is not None
    assert (card.purchase.amount, card.purchase.purchase_count) == (left, 2)
    # no sale before the new meter has taken the transfer
    a = assess(
        counter.db, counter.kit.terminal(image).read(), counter.clock, settings=counter.settings
    )
    assert a.situation == "unloaded"
    # the old meter refuses the card now; the new meter takes it and shows the carried credit
    assert not counter.meter.insert(counter.kit.terminal(image)).accepted
    meter = new_meter(counter, tmp_path)
    result = meter.insert(counter.kit.terminal(image))
    assert result.accepted and result.credited == left
    assert (meter.state.remaining, meter.state.purchase_count) == (left, 2)
    # the counter sells on: the next purchase is the third, and the new meter loads it
    a = assess(
        counter.db, counter.kit.terminal(image).read(), counter.clock, settings=counter.settings
    )
    assert a.situation == "ready" and a.meter_count == 2
    assert counter.sell(image, 1000).sale.purchase_count == 3
    assert meter.insert(counter.kit.terminal(image)).credited == 1000
    assert meter.state.remaining == left + 1000
    # one event, one outbox row, audited
    (event,) = events(counter)
    assert event.detail["old_meter_no"] == old_meter_no and event.detail["carried_fen"] == left
    assert event.detail["final_energy_wh"] == done.energy_wh
    (row_out,) = outbox(counter)
    assert row_out.payload == {"customer_no": CUSTOMER, "new_meter_no": NEW}
    with counter.db.read() as session:
        assert session.scalar(select(AuditEntry).where(AuditEntry.action == "meter_change"))


def test_a_purchase_the_old_meter_never_loaded_is_carried(counter: Counter, tmp_path: Path) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    counter.sell(image, 2000)  # on the card, the old meter never sees it
    done = change(counter, image)
    assert (done.remaining_fen, done.unloaded_fen, done.carried_fen) == (5000, 2000, 7000)
    assert done.purchase_count == 2
    meter = new_meter(counter, tmp_path)
    assert meter.insert(counter.kit.terminal(image)).credited == 7000
    assert meter.state.purchase_count == 2


def test_an_overdraft_becomes_arrears(counter: Counter, tmp_path: Path) -> None:
    image = counter.open(amount=1000)
    done = approved_typed(counter, image, -1250, energy_wh=123_456)
    assert (done.carried_fen, done.arrears_fen, done.approver_id) == (0, 1250, "s01")
    assert done.energy_wh == 123_456
    with counter.db.read() as session:
        (item,) = session.scalars(select(ArrearsItem).where(ArrearsItem.amount == 1250)).all()
        assert item.kind == "arrears" and item.must_collect
    a = assess(
        counter.db, counter.kit.terminal(image).read(), counter.clock, settings=counter.settings
    )
    assert a.arrears_due >= 1250
    meter = new_meter(counter, tmp_path)
    assert meter.insert(counter.kit.terminal(image)).accepted
    assert (meter.state.remaining, meter.state.purchase_count) == (0, 1)


def test_typed_values_need_an_approval_that_is_used_once(counter: Counter) -> None:
    image = counter.open(amount=1000)
    counter.to_meter(image)
    with pytest.raises(Conflict):
        change(counter, image, source=mc.SOURCE_TYPED, remaining_fen=900, purchase_count=1)
    other = counter.approval("replace_card", CUSTOMER)
    with pytest.raises(ApprovalStateError):
        change(
            counter,
            image,
            source=mc.SOURCE_TYPED,
            remaining_fen=900,
            purchase_count=1,
            approval_request=other,
        )
    assert counter.customer_row().meter_no != NEW and not events(counter)
    typed = counter.approval("change_meter", CUSTOMER)
    with pytest.raises(Conflict):  # a count that does not fit the ledger changes nothing
        change(
            counter,
            image,
            source=mc.SOURCE_TYPED,
            remaining_fen=900,
            purchase_count=5,
            approval_request=typed,
        )
    done = change(
        counter,
        image,
        source=mc.SOURCE_TYPED,
        remaining_fen=900,
        purchase_count=1,
        approval_request=typed,
    )
    assert done.carried_fen == 900 and done.source == "typed"


def test_a_technicians_read_is_a_source(counter: Counter, tmp_path: Path) -> None:
    image = counter.open(amount=4000)
    counter.to_meter(image)
    old = counter.customer_row().meter_no
    reading = MeterReading(old, 3500, 0, 1, 777, (), None, None, None, (), None)
    with pytest.raises(ValidationError):
        change(
            counter,
            image,
            source=mc.SOURCE_READ,
            reading=MeterReading("123456789012", 3500, 0, 1, 7, (), None, None, None, (), None),
        )
    done = change(counter, image, source=mc.SOURCE_READ, reading=reading)
    assert (done.carried_fen, done.energy_wh) == (3500, 777)


@pytest.mark.parametrize("bad", ["12345", "999999999999"])
def test_the_new_meter_number_must_be_valid_and_free(counter: Counter, bad: str) -> None:
    image = counter.open(amount=1000)
    counter.to_meter(image)
    with pytest.raises(ValidationError):
        change(counter, image, new_meter_no=bad)
    with counter.db.read() as session:
        taken = session.scalar(
            select(Customer.meter_no).where(Customer.customer_no != CUSTOMER).limit(1)
        )
    with pytest.raises(Conflict, match="already the meter of customer"):
        change(counter, image, new_meter_no=taken)
    with pytest.raises(Conflict, match="already has meter"):
        change(counter, image, new_meter_no=counter.customer_row().meter_no)


def test_a_card_without_the_old_meters_write_back_is_refused(counter: Counter) -> None:
    image = counter.open(amount=1000)  # never in the meter
    with pytest.raises(CardRefused, match="write-back of the old meter"):
        change(counter, image)
    assert not events(counter)


@pytest.mark.parametrize("stop_at", ["erase", "issue", "write"])
def test_a_card_pulled_after_the_commit_is_finished_by_running_it_again(
    counter: Counter, tmp_path: Path, stop_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    from cardio.terminal import ApduTerminal

    original = getattr(ApduTerminal, stop_at)

    def pulled(self: ApduTerminal, *a: Any, **kw: Any) -> Any:
        if stop_at != "write":
            original(self, *a, **kw)
        raise CardRemoved()

    monkeypatch.setattr(ApduTerminal, stop_at, pulled)
    with pytest.raises(CardRemoved):
        change(counter, image)
    monkeypatch.setattr(ApduTerminal, stop_at, original)
    assert counter.customer_row().meter_no == NEW  # committed: the retry needs no approval
    again = change(counter, image, source=mc.SOURCE_TYPED)  # the source no longer matters
    assert again.resumed and again.carried_fen == 5000
    once_more = change(counter, image)
    assert once_more.resumed and len(events(counter)) == 1 and len(outbox(counter)) == 1
    meter = new_meter(counter, tmp_path)
    assert meter.insert(counter.kit.terminal(image)).credited == 5000


@pytest.fixture
def central(tmp_path: Path, clock: FixedClock) -> Iterator[Any]:
    from tests.rigs.sync import running_central

    yield from running_central(tmp_path, clock)


def test_the_central_archive_gets_the_new_meter_once(counter: Counter, central: Any) -> None:
    from sync.client import CentralClient
    from sync.service import SyncService
    from tests.rigs.sync import register

    image = counter.open(amount=5000)
    counter.to_meter(image)
    change(counter, image)
    service = SyncService(
        counter.db,
        CentralClient(central.url, register(central)),
        counter.clock,
        counter_id="C01",
        office_code="DEMO",
    )
    assert service.run_round().push.failed == 0
    held = central.store.customer(CUSTOMER)
    assert held is not None and held.meter_no == NEW
    service.run_round()  # sent once: nothing left, the pull keeps the new number
    assert all(o.sent_at is not None for o in outbox(counter))
    assert counter.customer_row().meter_no == NEW


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("zh_CN", ["换表单", "旧表", "新表", "转入新表金额", "50.00元", "透支转欠费", "s01"]),
        ("en", ["Meterchangeslip", "Creditcarriedtothenewmeter", "50.00yuan", "s01"]),
    ],
)
def test_the_slip_in_both_languages(
    counter: Counter, tmp_path: Path, language: str, words: list[str]
) -> None:
    import shutil
    import subprocess

    from printing.meter_change import render_meter_change_pdf

    done = approved_typed(counter, counter.open(amount=5000), 5000)
    pdf = render_meter_change_pdf(done, language=language, tz="Asia/Shanghai")
    assert pdf.startswith(b"%PDF")
    assert render_meter_change_pdf(done, language=language, tz="Asia/Shanghai") == pdf
    if not shutil.which("pdftotext"):
        pytest.skip("needs poppler-utils")
    path = tmp_path / "slip.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    ).stdout.decode()
    flat = "".join(out.split())
    for word in [*words, NEW, done.old_meter_no, CUSTOMER]:
        assert word in flat, (word, flat)
