"""A price decided for later reaches the meter early, on the card's backup tariff file, and the
meter switches by itself at the switch-over time (emulated cards, the meter simulator)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from app.domain.card import UpdateFlags
from app.services import auth
from app.services import tariffs
from tests.rigs.counter import CUSTOMER
from tests.rigs.counter import Counter

BEIJING = ZoneInfo("Asia/Shanghai")
NEW_PRICE = {"kind": "flat", "flat_rate": 10000}  # 1.0000 yuan/kWh: 1 kWh costs 100 fen
SWITCH = dt.datetime(2026, 3, 3, 0, 0, tzinfo=BEIJING)  # the counter's day is 2026-03-01


def add_future_price(counter: Counter) -> int:
    with counter.db.write() as session:
        return tariffs.add_version(session, "RES-TOU", NEW_PRICE, SWITCH, counter.clock).version_no


def test_a_future_price_goes_on_the_card_and_the_meter_switches_on_time(counter: Counter) -> None:
    image = counter.open()  # purchase 1 with the current price
    counter.to_meter(image)
    first = counter.kit.terminal(image).read()
    assert first.backup_tariff is None and first.current_tariff is not None
    current_no = first.current_tariff.version_no
    assert first.parameters is not None
    version_before = first.parameters.param_version
    new_no = add_future_price(counter)

    # the next sale writes the new price into the backup tariff file, not the current one
    outcome = counter.sell(image, 2000)
    assert "backup tariff file" in outcome.files and "current tariff file" not in outcome.files
    card = counter.kit.terminal(image).read()
    assert card.current_tariff is not None and card.current_tariff.version_no == current_no
    assert card.backup_tariff is not None and card.backup_tariff.version_no == new_no
    assert card.backup_tariff.effective_from == SWITCH
    assert card.parameters is not None
    assert card.parameters.update_flags & UpdateFlags.BACKUP_TARIFF
    assert card.parameters.param_version == version_before + 1  # so the meter takes it

    taken = counter.meter.insert(counter.kit.terminal(image))
    assert taken.applied & UpdateFlags.BACKUP_TARIFF
    meter = counter.meter.state
    assert meter.backup_tariff is not None and meter.backup_tariff["version_no"] == new_no
    assert meter.current_tariff is not None and meter.current_tariff["version_no"] == current_no

    # a second sale before the date leaves both tariff files alone
    again = counter.sell(image, 1000)
    assert again.files == ("purchase file",)
    card = counter.kit.terminal(image).read()
    assert card.current_tariff is not None and card.current_tariff.version_no == current_no
    counter.meter.insert(counter.kit.terminal(image))

    # the customer does not come back: the meter clock passes the switch-over by itself
    to_switch = int((SWITCH - counter.meter.state.clock) / dt.timedelta(minutes=1))
    counter.meter.consume(to_switch, 0)
    assert counter.meter.state.current_tariff is not None
    assert counter.meter.state.current_tariff["version_no"] == new_no
    assert counter.meter.state.backup_tariff is None
    used = counter.meter.consume(60, 1000)  # 1 kWh at the new price
    assert (used.energy_wh, used.charged) == (1000, 100)

    # the counter's next sale after the date writes the new price as the current tariff
    counter.clock.set(SWITCH + dt.timedelta(hours=9))
    counter.teller = auth.login(
        counter.db, "t01", "demo-t01", counter_id="C01", clock=counter.clock
    )
    later = counter.sell(image, 1000)
    assert "current tariff file" in later.files and "backup tariff file" not in later.files
    card = counter.kit.terminal(image).read()
    assert card.current_tariff is not None and card.current_tariff.version_no == new_no
    assert counter.meter.insert(counter.kit.terminal(image)).accepted


def test_a_replacement_card_and_a_new_account_carry_the_future_price(counter: Counter) -> None:
    add_future_price(counter)
    image = counter.open()  # the first card already holds the coming price
    card = counter.kit.terminal(image).read()
    assert card.backup_tariff is not None and card.backup_tariff.effective_from == SWITCH
    taken = counter.meter.insert(counter.kit.terminal(image))
    assert taken.applied & UpdateFlags.BACKUP_TARIFF

    new = counter.kit.blank()
    counter.replace_card(counter.kit.terminal(new), counter.approval("replace_card", CUSTOMER))
    replacement = counter.kit.terminal(new).read()
    assert replacement.backup_tariff == card.backup_tariff
    assert replacement.parameters is not None
    assert replacement.parameters.update_flags & UpdateFlags.BACKUP_TARIFF
    assert counter.meter.insert(counter.kit.terminal(new)).accepted
    assert counter.meter.state.backup_tariff is not None
