"""A card that claims more than was sold, and the card checks of the counter that must refuse.

* The purchase record carries a MAC under the purchase key (PROFILE.md): a card image edited to
  raise the amount (CRC fixed) is refused by the simulated meter and by the counter.
* A genuine write-back whose remaining balance exceeds everything ever sold to the customer is
  recorded as a card anomaly and the sale is refused.
* A write-back whose meter MAC is wrong is refused (``ApduTerminal._check_write_back`` false).
* A card that acknowledges a write but keeps its old bytes: only the read-back can tell, and
  the sale ends in doubt (in-process and through pcscd + vpcd).

Sale-level tests run on SQLite and PostgreSQL (the ``db`` fixture), on emulated cards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select

from app.domain.card import CardWrite
from app.domain.card import CorruptCardFile
from app.domain.card import PurchaseRecord
from app.domain.ledger import SaleState
from app.errors import CardVendError
from app.persistence.models import AuditEntry
from app.persistence.models import Customer
from app.persistence.models import Sale
from app.ports import KeyRole
from app.services import ledger
from app.services import selling
from cardio import profile as P
from cardio.channel import EmulatedChannel
from cardio.emulator import CardImage
from cardio.emulator import PsamOS
from cardio.emulator import UserCardOS
from cardio.keys import PsamKeyProvider
from cardio.meter_sim import REASON_PURCHASE_MAC
from cardio.terminal import ApduTerminal
from tests.cardkit import UTILITY
from tests.rigs.cli import run
from tests.rigs.cli import terminal_for
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import Counter
from tests.rigs.user_card import user_params

PARAMS = user_params()


def edit_image(image: Path, sfi: int, change: object) -> None:
    """What a tamperer does to a card image: decode a file, change it, encode it again (the
    frame and its CRC are rebuilt; a MAC in the record is kept as it was)."""
    img = CardImage.load(image)
    decode, encode = {
        P.SFI_PURCHASE: (P.decode_purchase, P.encode_purchase),
        P.SFI_WRITE_BACK: (P.decode_write_back, P.encode_write_back),
    }[sfi]
    record = decode(bytes(img.files[sfi]))
    assert record is not None
    img.files[sfi][:] = encode(replace(record, **change))  # type: ignore[operator, arg-type]
    img.save(image)


def anomalies(counter: Counter) -> list[dict[str, object]]:
    with counter.db.read() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "card_anomaly").order_by(AuditEntry.seq)
        ).all()
        return [json.loads(r.detail) for r in rows]


def sale_count(counter: Counter) -> int:
    with counter.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Sale)) or 0)


# --------------------------------------------------------------------------- purchase MAC


def test_an_edited_purchase_is_refused_by_the_meter_and_the_counter(counter: Counter) -> None:
    image = counter.open(amount=5000)  # purchase 1
    counter.to_meter(image)
    counter.sell(image, 1000)  # purchase 2: 10.00 yuan, not loaded yet
    edit_image(image, P.SFI_PURCHASE, {"amount": 500_000})  # raised to 5000.00 yuan
    card = counter.kit.terminal(image).read()
    assert card.purchase is not None and card.purchase.amount == 500_000
    assert card.purchase_genuine is False

    result = counter.meter.insert(counter.kit.terminal(image))
    assert not result.accepted and result.reason == REASON_PURCHASE_MAC and result.credited == 0
    state = counter.meter.state
    assert (state.remaining, state.purchase_count, state.illegal_insert_count) == (5000, 1, 1)

    sales = sale_count(counter)
    with pytest.raises(selling.CardAnomaly, match="not genuine") as info:
        counter.sell(image, 100)
    assert "{" not in info.value.localized("zh_CN")
    assert sale_count(counter) == sales  # nothing sold
    recorded = anomalies(counter)
    assert len(recorded) == 1 and recorded[0]["serial"] == card.serial_hex


def test_an_edited_purchase_decides_no_sale(counter: Counter) -> None:
    """A sale in doubt is decided by the card; an edited record (here its count set back, as
    if the write had never arrived) must not hand the cash back."""
    image = counter.open(amount=5000)
    counter.to_meter(image)
    doubt = counter.sell_pulled(image, 2000, applied=True)  # applied, the answer lost
    sale_id = str(doubt.params["sale_id"])
    held = counter.kit.terminal(image).read().purchase
    assert held is not None and held.purchase_count == 2  # the card holds the sale
    edit_image(image, P.SFI_PURCHASE, {"purchase_count": 1})
    with pytest.raises(selling.CardAnomaly):
        counter.recover(image)
    assert ledger.get_sale(counter.db, sale_id).state == SaleState.IN_DOUBT.value


def test_meter_insert_command_refuses_an_edited_card(tmp_path: Path) -> None:
    """``cardvend meter insert`` (a real process) on a card image whose amount was raised."""
    home, image, state = tmp_path, tmp_path / "card.json", tmp_path / "meter.json"
    assert run(home, "card", "blank", "--image", str(image)).returncode == 0
    assert run(home, "card", "issue", "--image", str(image), "--kind", "user").returncode == 0
    first = PurchaseRecord(10_000, 1, b"\x01" * 8, None)
    terminal_for(home, image).write(CardWrite(parameters=PARAMS, purchase=first))
    insert = ("meter", "insert", "--meter-state", str(state), "--image", str(image), "--json")
    r = run(home, *insert)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["credited_fen"] == 10_000
    terminal_for(home, image).write(CardWrite(purchase=PurchaseRecord(5_000, 2, b"\x02" * 8, None)))
    edit_image(image, P.SFI_PURCHASE, {"amount": 900_000})
    read = json.loads(run(home, "card", "read", "--image", str(image), "--json").stdout)
    assert read["purchase_amount_fen"] == 900_000 and read["purchase_genuine"] is False
    r = run(home, *insert)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["accepted"], out["reason"], out["credited_fen"]) == (False, "purchase_mac", 0)
    meter = json.loads(state.read_text())
    assert (meter["remaining"], meter["purchase_count"], meter["illegal_insert_count"]) == (
        10_000,
        1,
        1,
    )


# --------------------------------------------------------------------------- write-back balance


def test_a_write_back_claiming_more_than_was_sold_is_an_anomaly(counter: Counter) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    counter.sell(image, 3000)
    counter.to_meter(image)  # the meter holds 80.00 yuan: exactly what was sold, no use yet
    counter.sell(image, 1000)
    counter.to_meter(image)
    assert counter.meter.state.remaining == 9000
    # a meter credited with something never sold (a card edited before meters checked MACs)
    counter.meter.state.remaining += 100_000
    counter.meter.save()
    counter.to_meter(image)
    card = counter.kit.terminal(image).read()
    assert card.write_back is not None and card.write_back_genuine is True
    assert card.write_back.remaining == 109_000

    sales = sale_count(counter)
    with pytest.raises(selling.CardAnomaly, match="more than") as info:
        counter.sell(image, 100)
    assert "1090.00" in str(info.value) and "90.00" in str(info.value)
    assert sale_count(counter) == sales
    recorded = anomalies(counter)
    assert len(recorded) == 1
    assert (recorded[0]["remaining_fen"], recorded[0]["sold_fen"]) == (109_000, 9000)
    with pytest.raises(selling.CardAnomaly):  # each presentation is refused and recorded
        counter.recover(image)
    assert len(anomalies(counter)) == 2
    # the meter's reading is still noted for the central system
    with counter.db.read() as session:
        customer = session.scalar(select(Customer).where(Customer.customer_no == CUSTOMER))
        assert customer is not None and customer.meter_remaining == 109_000


def test_sold_credit_counts_completed_and_unresolved_sales(counter: Counter) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    sold = counter.sell(image, 4000)

    def credit() -> int | None:
        with counter.db.read() as session:
            customer = session.scalar(select(Customer).where(Customer.customer_no == CUSTOMER))
            assert customer is not None
            return selling.sold_credit(session, customer)

    assert credit() == 9000
    counter.reverse(image, sold.sale.sale_id)
    assert credit() == 5000  # a reversed sale is no longer sold
    ledger.begin_card_sale(
        counter.db, actor=counter.teller, customer_no=CUSTOMER, amount=700, clock=counter.clock
    )
    assert credit() == 5700  # a pending sale may reach the meter
    with counter.db.write() as session:  # a purchase sold on another database, known by count
        customer = session.scalar(select(Customer).where(Customer.customer_no == CUSTOMER))
        assert customer is not None
        customer.purchase_count += 1
    assert credit() is None  # this ledger cannot tell


# --------------------------------------------------------------------------- write-back MAC


@pytest.mark.parametrize("provider", ["software", "psam"])
def test_a_write_back_with_a_wrong_mac_is_refused(counter: Counter, provider: str) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    before = counter.recover(image).contents  # the counter notes the genuine write-back: 50.00 left
    assert before.write_back_genuine is True and before.write_back is not None
    edit_image(image, P.SFI_WRITE_BACK, {"remaining": 4000})  # MAC kept, CRC fixed

    keys = counter.kit.keys
    if provider == "psam":
        master = {int(role): counter.kit.master.key(role) for role in KeyRole}
        keys = PsamKeyProvider(EmulatedChannel(PsamOS(master, bytes.fromhex("5053414D00000001"))))
    terminal = ApduTerminal(EmulatedChannel(counter.kit.os(image)), keys, utility_code=UTILITY)  # type: ignore[arg-type]
    contents = terminal.read()
    assert contents.write_back is not None and contents.write_back.remaining == 4000
    assert contents.write_back_genuine is False
    assert terminal._check_write_back(contents.serial, b"", contents.write_back) is False
    with pytest.raises(selling.CardAnomaly, match="write-back is not genuine"):
        counter.sell_on(terminal, 100, contents=contents)
    with counter.db.read() as session:  # the forged balance is not taken as the meter's
        customer = session.scalar(select(Customer).where(Customer.customer_no == CUSTOMER))
        assert customer is not None and customer.meter_remaining == 5000


# --------------------------------------------------------------------------- read-back


@pytest.mark.parametrize("stored", [0, 12], ids=["nothing-stored", "some-bytes-stored"])
def test_a_card_that_keeps_old_bytes_leaves_the_sale_in_doubt(
    counter: Counter, stored: int
) -> None:
    image = counter.open(amount=5000)
    counter.to_meter(image)
    card = counter.kit.os(image)
    card.keep_old_bytes(1, stored=stored, sfi=P.SFI_PURCHASE)
    with pytest.raises(selling.SaleInDoubt, match="did not keep") as raised:
        counter.sell_on(counter.kit.terminal(image, card), 2000)
    # the teller reads the card's fault in the teller's language, inside the in-doubt message
    fault = raised.value.params["detail"]
    assert isinstance(fault, CardVendError)
    in_chinese = raised.value.localized("zh_CN")
    assert fault.localized("zh_CN") in in_chinese
    assert fault.localized("en") not in in_chinese and fault.localized("en") in str(raised.value)
    (left,) = selling.unresolved(counter.db)
    assert (left.state, left.purchase_count) == (SaleState.IN_DOUBT.value, 2)
    if stored == 0:  # the card kept purchase 1: presenting it fails the sale (cash back)
        counter.recover(image)
        assert ledger.get_sale(counter.db, left.sale_id).state == SaleState.FAILED.value
    else:  # part new, part old: a damaged file decides nothing
        with pytest.raises(CorruptCardFile):
            counter.kit.terminal(image).read()
        assert ledger.get_sale(counter.db, left.sale_id).state == SaleState.IN_DOUBT.value


# --------------------------------------------------------------------------- through pcscd


@pytest.fixture
def vpcd_card(pcscd: object, counter: Counter) -> Iterator[tuple[UserCardOS, ApduTerminal]]:
    from cardio.pcsc import PcscReaderPort
    from cardio.vpcd import VpcdCard
    from tests.pcsc_fixtures import READER_SLOT0
    from tests.pcsc_fixtures import wait_card_absent

    image = counter.kit.blank()
    card = UserCardOS(CardImage.load(image), persist_path=image)
    server = VpcdCard(card, slot=0, min_out_time=1.0).start()
    port = PcscReaderPort()
    channel = None
    try:
        channel = port.connect(READER_SLOT0, timeout=15.0)
        yield card, ApduTerminal(channel, counter.kit.keys, utility_code=UTILITY)
    finally:
        if channel is not None:
            channel.close()
        server.stop()
        port.close()
        wait_card_absent()


@pytest.mark.parametrize("empty_db", ["sqlite"], indirect=True)
def test_through_pcscd_a_card_that_keeps_old_bytes_leaves_the_sale_in_doubt(
    counter: Counter, vpcd_card: tuple[UserCardOS, ApduTerminal]
) -> None:
    card, terminal = vpcd_card
    counter.open_account(terminal, CUSTOMER, None)
    card.keep_old_bytes(1, sfi=P.SFI_PURCHASE)
    with pytest.raises(selling.SaleInDoubt, match="did not keep"):
        counter.sell_on(terminal, 2000)
    (left,) = selling.unresolved(counter.db)
    assert (left.state, left.purchase_count) == (SaleState.IN_DOUBT.value, 1)
    assert terminal.read().purchase is None  # the card acknowledged, and kept nothing
    selling.recover_with_card(counter.db, terminal, clock=counter.clock, settings=counter.settings)
    assert ledger.get_sale(counter.db, left.sale_id).state == SaleState.FAILED.value
    done = counter.sell_on(terminal, 2000)  # the card works again: the next sale completes
    assert done.sale.state == SaleState.COMPLETED.value
