"""The simulated prepaid meter (cardio/meter_sim.py) with in-process emulated cards: binding and
purchases, its state and MACs, credit after the write-back, management cards (consumption:
tests/test_meter_sim_consumption.py)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import pytest

from app.domain.card import ANY_METER
from app.domain.card import CardKind
from app.domain.card import CardRemoved
from app.domain.card import CorruptCardFile
from app.domain.card import JobKind
from app.domain.card import JobRecord
from app.domain.card import UnissuedCard
from app.domain.card import UpdateFlags
from app.domain.card import UserCardType
from cardio import profile as P
from cardio.keys import SoftwareKeyProvider
from cardio.meter_sim import REASON_CREDIT_CEILING
from cardio.meter_sim import REASON_METER_NO
from cardio.meter_sim import REASON_NO_JOB
from cardio.meter_sim import REASON_NOT_OPENED
from cardio.meter_sim import REASON_PURCHASE_COUNT
from cardio.meter_sim import REASON_PURCHASE_MAC
from cardio.meter_sim import REASON_SERIAL
from cardio.meter_sim import RELAY_CLOSED
from cardio.meter_sim import RELAY_TRIPPED
from cardio.meter_sim import MeterSimulator
from cardio.meter_sim import MeterState
from cardio.meter_sim import MeterStateError
from tests.rigs.meter_sim import FLAT
from tests.rigs.meter_sim import METER
from tests.rigs.meter_sim import TOU
from tests.rigs.meter_sim import Card
from tests.rigs.meter_sim import Env
from tests.rigs.meter_sim import S
from tests.rigs.meter_sim import bj
from tests.rigs.meter_sim import purchase
from tests.rigs.meter_sim import spec
from tests.rigs.meter_sim import tariff
from tests.rigs.meter_sim import user_params

OTHER = "000000654321"


# --------------------------------------------------------------------------- fixtures
# the fixtures master, keys and env: tests/rigs/meter_sim.py


# --------------------------------------------------------------------------- binding, purchases


def test_open_card_binds_the_meter_and_credits_once(env: Env) -> None:
    meter = env.meter()
    assert meter.state.meter_no is None and meter.state.relay == RELAY_TRIPPED
    card = env.card()
    card.write(parameters=user_params(), current_tariff=tariff(FLAT), purchase=purchase(1, 10_000))
    result = meter.insert(card.slot())
    assert result.accepted and result.credited == 10_000
    assert result.applied == UpdateFlags.PARAMETERS | UpdateFlags.CURRENT_TARIFF
    s = meter.state
    assert (s.meter_no, s.card_serial, s.purchase_count, s.remaining) == (
        METER,
        card.serial.hex().upper(),
        1,
        10_000,
    )
    assert s.relay == RELAY_CLOSED and s.param_version == 1 and s.alarm1 == 1000
    assert s.current_tariff is not None and s.current_tariff["spec"] == spec(FLAT)
    wb = card.read().write_back
    assert wb is not None and wb == result.write_back
    assert (wb.meter_no, wb.remaining, wb.purchase_count, wb.param_version) == (METER, 10_000, 1, 1)
    assert wb.status == S.NONE and wb.time == bj(2026, 3, 1, 0, 0)
    assert card.read().write_back_genuine is True


def test_purchase_count_rule(env: Env) -> None:
    meter = env.meter()
    card = env.opened(meter)
    again = meter.insert(card.slot())  # the open card once more: already loaded
    assert again.accepted and again.credited == 0 and again.status == S.NONE
    p2 = replace(user_params(card_type=UserCardType.PURCHASE))
    card.write(parameters=p2, purchase=purchase(2, 5_000))
    assert meter.insert(card.slot()).credited == 5_000
    assert meter.insert(card.slot()).credited == 0  # inserting again adds nothing
    assert (meter.state.remaining, meter.state.purchase_count) == (15_000, 2)

    card.write(purchase=purchase(4, 5_000))  # N+2: refused, yet written back
    refused = meter.insert(card.slot())
    assert refused.accepted and refused.credited == 0 and refused.reason == REASON_PURCHASE_COUNT
    wb = card.read().write_back
    assert wb is not None and wb.status & S.PURCHASE_REFUSED and wb.purchase_count == 2
    card.write(purchase=purchase(1, 5_000))  # an old purchase: refused too
    assert meter.insert(card.slot()).status & S.PURCHASE_REFUSED
    assert (meter.state.remaining, meter.state.purchase_count) == (15_000, 2)

    # the credit ceiling refuses a purchase that would lift remaining above it
    card.write(
        parameters=replace(p2, param_version=2, credit_ceiling=20_000), purchase=purchase(3, 10_000)
    )
    ceiling = meter.insert(card.slot())
    assert ceiling.reason == REASON_CREDIT_CEILING and ceiling.status & S.PURCHASE_REFUSED
    assert (meter.state.remaining, meter.state.purchase_count) == (15_000, 2)
    card.write(purchase=purchase(3, 5_000))  # exactly up to the ceiling is fine
    assert meter.insert(card.slot()).credited == 5_000
    assert meter.state.remaining == 20_000


def test_wrong_meter_and_stranger_cards_are_refused_and_counted(env: Env) -> None:
    meter = env.meter(meter_no=METER)
    card = env.opened(meter)
    other = env.card()
    other.write(parameters=user_params(meter_no=OTHER), purchase=purchase(1, 99_999))
    result = meter.insert(other.slot())
    assert not result.accepted and result.reason == REASON_METER_NO
    assert result.status & S.MISMATCH and result.write_back is None
    assert other.read().write_back is None  # nothing written onto a stranger's card
    stranger = env.card()  # right meter number, but not the bound card
    stranger.write(
        parameters=user_params(card_type=UserCardType.PURCHASE), purchase=purchase(2, 5_000)
    )
    assert meter.insert(stranger.slot()).reason == REASON_SERIAL
    assert stranger.read().write_back is None
    assert (meter.state.remaining, meter.state.illegal_insert_count) == (10_000, 2)

    blank = env.card(kind=None)
    with pytest.raises(UnissuedCard):
        meter.insert(blank.slot())
    broken = env.card()
    broken.write(parameters=user_params())
    broken.os.image.files[P.SFI_PARAMETERS][10] ^= 0x01  # CRC no longer matches
    with pytest.raises(CorruptCardFile):
        meter.insert(broken.slot())
    assert env.meter().state.illegal_insert_count == 4  # saved
    wb = meter.insert(card.slot()).write_back
    assert wb is not None and wb.illegal_insert_count == 4


def test_meter_number_given_at_construction(env: Env) -> None:
    env.meter(meter_no=METER)
    with pytest.raises(ValueError):
        env.meter(meter_no=OTHER)
    meter = env.meter()
    assert meter.state.meter_no == METER
    card = env.card()
    card.write(parameters=user_params(meter_no=OTHER), purchase=purchase(1, 100))
    assert meter.insert(card.slot()).reason == REASON_METER_NO  # an open card cannot rebind


def test_purchase_card_before_the_open_card_and_management_card_without_job(env: Env) -> None:
    meter = env.meter(meter_no=METER)
    card = env.card()
    card.write(parameters=user_params(card_type=UserCardType.PURCHASE), purchase=purchase(1, 100))
    assert meter.insert(card.slot()).reason == REASON_NOT_OPENED
    assert meter.state.remaining == 0 and meter.state.illegal_insert_count == 1
    no_job = env.card(CardKind.TARIFF)
    no_job.write(
        parameters=replace(
            user_params(),
            card_kind=CardKind.TARIFF,
            user_card_type=UserCardType.NONE,
            customer_no="0" * 12,
        )
    )
    result = meter.insert(no_job.slot())
    assert result.accepted and result.reason == REASON_NO_JOB and result.job is None
    assert result.write_back is not None and not result.write_back.status & S.JOB_APPLIED


def test_replacement_card_rebinds_and_the_old_card_is_refused(env: Env) -> None:
    meter = env.meter()
    old = env.opened(meter)
    new = env.card()
    new.write(
        parameters=user_params(card_type=UserCardType.REPLACEMENT),
        current_tariff=tariff(FLAT),
        purchase=purchase(2, 3_000),
    )
    result = meter.insert(new.slot())
    assert result.accepted and result.credited == 3_000
    assert meter.state.card_serial == new.serial.hex().upper()
    refused = meter.insert(old.slot())
    assert not refused.accepted and refused.reason == REASON_SERIAL
    assert meter.state.illegal_insert_count == 1 and meter.state.remaining == 13_000
    new.write(parameters=user_params(card_type=UserCardType.PURCHASE), purchase=purchase(3, 1_000))
    assert meter.insert(new.slot()).credited == 1_000


def test_updates_follow_flags_and_param_version(env: Env) -> None:
    meter = env.meter()
    card = env.opened(meter)
    base = user_params(card_type=UserCardType.PURCHASE)
    # the same version: nothing applied
    card.write(
        parameters=replace(base, alarm1=3000), current_tariff=tariff(FLAT, 2, flat_rate=9000)
    )
    assert meter.insert(card.slot()).applied == UpdateFlags.NONE
    assert meter.state.alarm1 == 1000 and meter.state.current_tariff["spec"]["flat_rate"] == 5000
    # newer, current tariff flag only
    card.write(
        parameters=replace(
            base, alarm1=3000, param_version=2, update_flags=UpdateFlags.CURRENT_TARIFF
        )
    )
    assert meter.insert(card.slot()).applied == UpdateFlags.CURRENT_TARIFF
    assert meter.state.alarm1 == 1000 and meter.state.current_tariff["spec"]["flat_rate"] == 9000
    assert meter.state.current_tariff["version_no"] == 2 and meter.state.param_version == 2
    # newer, parameters flag
    card.write(
        parameters=replace(
            base, alarm1=3000, ct_ratio=2, param_version=3, update_flags=UpdateFlags.PARAMETERS
        )
    )
    result = meter.insert(card.slot())
    assert result.applied == UpdateFlags.PARAMETERS and result.write_back is not None
    assert (meter.state.alarm1, meter.state.ct_ratio, result.write_back.param_version) == (
        3000,
        2,
        3,
    )
    # an older version is not applied either
    card.write(parameters=replace(base, alarm1=1, param_version=2))
    assert meter.insert(card.slot()).applied == UpdateFlags.NONE and meter.state.alarm1 == 3000


def test_backup_tariff_switches_at_its_time(env: Env) -> None:
    meter = env.meter()
    card = env.opened(meter, amount=100_000)
    switch = bj(2026, 3, 1, 1, 0)
    card.write(
        parameters=user_params(
            card_type=UserCardType.PURCHASE, version=2, flags=UpdateFlags.BACKUP_TARIFF
        ),
        backup_tariff=tariff(FLAT, 2, switch, flat_rate=8000),
    )
    assert meter.insert(card.slot()).applied == UpdateFlags.BACKUP_TARIFF
    assert meter.state.backup_tariff is not None
    used = meter.consume(120, 1000)  # 1 kWh at 0.5000 then 1 kWh at 0.8000 yuan/kWh
    assert used.energy_wh == 2000 and used.charged == 50 + 80
    assert meter.state.backup_tariff is None
    assert meter.state.current_tariff is not None and meter.state.current_tariff["version_no"] == 2


# --------------------------------------------------------------------------- state and MAC


def test_state_survives_a_reload(env: Env) -> None:
    meter = env.meter()
    env.opened(meter, current=tariff(FLAT, flat_rate=5283), ct_ratio=3)
    meter.consume(37, 777)
    again = env.meter()
    assert again.state == meter.state
    again.consume(41, 777)
    meter.consume(41, 777)
    assert again.state == meter.state
    text = (env.tmp / "meter.json").read_text()

    def no_floats(value: Any) -> None:
        assert not isinstance(value, float)
        for item in (
            value.values()
            if isinstance(value, dict)
            else (value if isinstance(value, list) else [])
        ):
            no_floats(item)

    no_floats(json.loads(text))
    assert MeterState.from_dict(json.loads(text)) == meter.state
    assert not list(env.tmp.glob("*.tmp"))


def test_write_back_mac_verifies_and_fails_when_changed(
    env: Env, keys: SoftwareKeyProvider
) -> None:
    meter = env.meter()
    card = env.opened(meter)
    wb = card.read().write_back
    assert wb is not None
    body = P.encode_write_back_body(wb)
    assert keys.verify_write_back(card.serial, METER, body, wb.mac)
    for i in (0, 7, 36):
        changed = bytearray(body)
        changed[i] ^= 0x01
        assert not keys.verify_write_back(card.serial, METER, bytes(changed), wb.mac)
    assert not keys.verify_write_back(card.serial, OTHER, body, wb.mac)
    assert not keys.verify_write_back(bytes(8), METER, body, wb.mac)


# --------------------------------------------------------------------------- purchase MAC


def edit_purchase(card: Card, **changes: Any) -> None:
    """What a tamperer does to the card's memory: change the purchase record and fix the CRC
    (the frame is rebuilt), keeping the MAC it had."""
    files = card.os.image.files
    old = P.decode_purchase(bytes(files[P.SFI_PURCHASE]))
    assert old is not None
    files[P.SFI_PURCHASE][:] = P.encode_purchase(replace(old, **changes))


def test_an_edited_purchase_is_refused_and_counted(env: Env) -> None:
    meter = env.meter()
    card = env.opened(meter)  # purchase 1: 10,000 fen, loaded
    card.write(parameters=user_params(card_type=UserCardType.PURCHASE), purchase=purchase(2, 5_000))
    written_back = card.read().write_back
    edit_purchase(card, amount=500_000)  # the amount raised, the CRC fixed
    contents = card.read()
    assert contents.purchase is not None and contents.purchase.amount == 500_000
    assert contents.purchase_genuine is False  # the counter's terminal sees it too
    result = meter.insert(card.slot())
    assert not result.accepted and result.reason == REASON_PURCHASE_MAC and result.credited == 0
    assert result.write_back is None and card.read().write_back == written_back
    s = env.meter().state  # saved
    assert (s.remaining, s.purchase_count, s.illegal_insert_count) == (10_000, 1, 1)
    assert s.pending_purchase is None
    # a purchase record copied from another card (genuine there) is refused here as well
    other = env.card()
    other.write(parameters=user_params(), purchase=purchase(2, 5_000))
    card.os.image.files[P.SFI_PURCHASE][:] = other.os.image.files[P.SFI_PURCHASE]
    assert meter.insert(card.slot()).reason == REASON_PURCHASE_MAC
    assert env.meter().state.illegal_insert_count == 2
    # the purchase the counter really wrote is loaded
    card.write(purchase=purchase(2, 5_000))
    assert card.read().purchase_genuine is True
    loaded = meter.insert(card.slot())
    assert loaded.accepted and loaded.credited == 5_000 and meter.state.remaining == 15_000


def test_an_edited_purchase_already_loaded_is_refused_too(env: Env) -> None:
    meter = env.meter()
    card = env.opened(meter)
    edit_purchase(card, amount=1)  # nothing to load, but the card is not what was sold
    assert meter.insert(card.slot()).reason == REASON_PURCHASE_MAC
    assert meter.state.remaining == 10_000 and meter.state.illegal_insert_count == 1


# --------------------------------------------------------------------------- credit after the write-back

# The meter's session on a user card: the read (SELECT and 5 READ BINARY, APDUs 1-6), then the
# write-back: SELECT (7), GET CHALLENGE, EXTERNAL AUTHENTICATE, GET CHALLENGE (8-10), the UPDATE
# of the write-back file (11), its read-back (12), and the files read again (13-17).
WB_UPDATE_APDU = 11


def pulled_insert(meter: MeterSimulator, card: Card, n: int, *, applied: bool) -> None:
    """The card inserted into ``meter`` and pulled at its ``n``-th APDU (``applied``: whether
    the card took that command)."""
    card.os.pull_after(n, applied=applied)
    with pytest.raises(CardRemoved):
        meter.insert(card.slot())


def second_purchase(env: Env, meter: MeterSimulator) -> Card:
    card = env.opened(meter)
    card.write(parameters=user_params(card_type=UserCardType.PURCHASE), purchase=purchase(2, 5_000))
    return card


@pytest.mark.parametrize("n", range(7, WB_UPDATE_APDU + 1))
def test_a_purchase_is_not_credited_before_its_write_back_is_on_the_card(env: Env, n: int) -> None:
    meter = env.meter()
    card = second_purchase(env, meter)
    pulled_insert(meter, card, n, applied=False)  # pulled before the write-back reached the card
    wb = card.read().write_back
    assert wb is not None and wb.purchase_count == 1  # the card still says: not loaded
    s = env.meter().state
    assert (s.remaining, s.purchase_count) == (10_000, 1)  # nothing credited ...
    assert s.pending_purchase == {"count": 2, "amount": 5_000, "tag": "00" * 8}
    assert meter.state == s
    again = env.meter().insert(card.slot())  # ... until the card comes back
    assert again.credited == 5_000 and again.write_back is not None
    assert again.write_back.purchase_count == 2
    assert (env.meter().state.remaining, env.meter().state.pending_purchase) == (15_000, None)


def test_a_purchase_taken_back_before_its_write_back_is_never_credited(env: Env) -> None:
    meter = env.meter()
    card = second_purchase(env, meter)
    pulled_insert(meter, card, WB_UPDATE_APDU, applied=False)
    # the counter sees purchase 2 not loaded and reverses it: the card holds purchase 1 again
    card.write(purchase=purchase(1, 10_000))
    result = env.meter().insert(card.slot())
    assert result.accepted and result.credited == 0
    s = env.meter().state
    assert (s.remaining, s.purchase_count, s.pending_purchase) == (10_000, 1, None)


@pytest.mark.parametrize("n", [WB_UPDATE_APDU, WB_UPDATE_APDU + 1, 15])
def test_a_purchase_whose_write_back_reached_the_card_is_credited_at_the_next_insert(
    env: Env, n: int
) -> None:
    meter = env.meter()
    card = second_purchase(env, meter)
    # the write-back is on the card, the meter never knew
    pulled_insert(meter, card, n, applied=True)
    wb = card.read().write_back
    assert wb is not None and wb.purchase_count == 2 and wb.remaining == 15_000
    assert card.read().write_back_genuine
    s = env.meter().state
    assert (s.remaining, s.purchase_count) == (10_000, 1) and s.pending_purchase is not None
    # the counter, seeing purchase 2 loaded, sold purchase 3 on the card
    card.write(purchase=purchase(3, 2_000))
    result = env.meter().insert(card.slot())
    assert result.accepted and result.reason is None
    assert result.credited == 5_000 + 2_000  # purchase 2 settled, purchase 3 loaded
    s = env.meter().state
    assert (s.remaining, s.purchase_count, s.pending_purchase) == (17_000, 3, None)


def test_a_pending_purchase_announced_on_a_lost_card_reaches_the_meter_once(env: Env) -> None:
    meter = env.meter()
    old = second_purchase(env, meter)
    pulled_insert(meter, old, WB_UPDATE_APDU, applied=True)
    new = env.card()  # the replacement carries the last purchase, without a write-back
    new.write(
        parameters=user_params(card_type=UserCardType.REPLACEMENT),
        current_tariff=tariff(FLAT),
        purchase=purchase(2, 5_000),
    )
    result = env.meter().insert(new.slot())
    assert result.accepted and result.credited == 5_000
    assert env.meter().insert(new.slot()).credited == 0
    s = env.meter().state
    assert (s.remaining, s.purchase_count, s.pending_purchase) == (15_000, 2, None)


def test_pending_purchase_in_the_state_file(env: Env) -> None:
    meter = env.meter()
    env.opened(meter)
    data = meter.state.to_dict()
    assert data["format"] == 2 and data["pending_purchase"] is None
    old = {k: v for k, v in data.items() if k != "pending_purchase"} | {"format": 1}
    assert MeterState.from_dict(old) == meter.state  # a format-1 file: nothing pending
    for bad in (
        {"count": 3, "amount": 1, "tag": "00" * 8},  # not the next purchase
        {"count": 2, "amount": -1, "tag": "00" * 8},
        {"count": 2, "amount": 1, "tag": "00"},
        {"count": 2, "amount": 1},
    ):
        with pytest.raises(MeterStateError):
            MeterState.from_dict(data | {"pending_purchase": bad})


# --------------------------------------------------------------------------- management cards


def management(env: Env, kind: CardKind, target: str, job: JobRecord, **files: Any) -> Card:
    card = env.card(kind)
    thresholds = {"alarm1": 2000, "alarm2": 700, "overdraft_limit": 300}
    params = replace(
        user_params(target, UserCardType.NONE, 0, UpdateFlags.NONE, **thresholds),
        card_kind=kind,
        customer_no="0" * 12,
    )
    card.write(parameters=params, job=job, **files)
    return card


def test_tariff_card_applies_only_to_its_meter(env: Env) -> None:
    a = env.meter("a")
    env.opened(a)
    b = env.meter("b", meter_no=OTHER)
    env.opened(b, meter_no=OTHER)
    job = JobRecord(job_id=uuid.uuid4().bytes, kind=JobKind.TARIFF)
    card = management(env, CardKind.TARIFF, METER, job, current_tariff=tariff(TOU, 7))
    result = a.insert(card.slot())
    assert result.accepted and result.job == JobKind.TARIFF
    assert result.applied == UpdateFlags.CURRENT_TARIFF
    assert a.state.current_tariff is not None and a.state.current_tariff["version_no"] == 7
    assert a.state.last_job_id == job.job_id.hex()
    again = a.insert(card.slot())  # the same job twice applies once
    assert again.job == JobKind.TARIFF and again.applied == UpdateFlags.NONE
    wb = card.read().write_back
    assert wb is not None and wb.meter_no == METER and wb.status & S.JOB_APPLIED
    assert wb.remaining == 10_000 and card.read().write_back_genuine

    refused = b.insert(card.slot())
    assert not refused.accepted and refused.reason == REASON_METER_NO
    assert b.state.current_tariff is not None and b.state.current_tariff["version_no"] == 1
    assert b.state.illegal_insert_count == 1
    assert card.read().write_back == wb  # still what meter a wrote

    every = management(
        env,
        CardKind.PARAMETERS,
        ANY_METER,
        JobRecord(job_id=uuid.uuid4().bytes, kind=JobKind.PARAMETERS),
    )
    for meter in (a, b):
        assert meter.insert(every.slot()).applied == UpdateFlags.PARAMETERS
        assert (meter.state.alarm1, meter.state.overdraft_limit) == (2000, 300)
    day = management(
        env,
        CardKind.READING_DAY,
        ANY_METER,
        JobRecord(
            job_id=uuid.uuid4().bytes, kind=JobKind.READING_DAY, reading_day=15, reading_hour=6
        ),
    )
    assert a.insert(day.slot()).job == JobKind.READING_DAY
    assert (a.state.reading_day, a.state.reading_hour) == (15, 6)


def test_check_card_collects(env: Env) -> None:
    meter = env.meter()
    env.opened(meter)
    meter.consume(60, 1000)
    before = meter.state.to_dict()
    job = JobRecord(job_id=uuid.uuid4().bytes, kind=JobKind.CHECK)
    card = management(env, CardKind.CHECK, METER, job)
    result = meter.insert(card.slot())
    assert result.accepted and result.job == JobKind.CHECK and result.applied == UpdateFlags.NONE
    after = meter.state.to_dict()
    assert after.pop("last_job_id") == job.job_id.hex()
    before.pop("last_job_id")
    assert after == before  # only collected
    wb = card.read().write_back
    assert wb is not None and wb.status == S.JOB_APPLIED
    assert (wb.remaining, wb.total_energy_wh, wb.purchase_count) == (9_950, 1000, 1)
