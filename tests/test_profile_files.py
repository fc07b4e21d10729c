"""Tests for cardio/profile.py: the layouts of the card files of cardio/PROFILE.md (parameter,
purchase, tariff, write-back and job files), their checks and their refusals.

The known-answer vector below is written byte by byte from the parameter-file table of
PROFILE.md, not produced by the encoder under test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from app.domain.card import ANY_METER
from app.domain.card import CardKind
from app.domain.card import CorruptCardFile
from app.domain.card import JobKind
from app.domain.card import JobRecord
from app.domain.card import ParameterRecord
from app.domain.card import PurchaseRecord
from app.domain.card import TariffRecord
from app.domain.card import UnsupportedProfile
from app.domain.card import UpdateFlags
from app.domain.card import UserCardType
from app.domain.card import WriteBack
from app.domain.card import WriteBackStatus
from app.domain.pricing import TariffSpec
from app.domain.pricing import TariffSpecError
from cardio import profile as P
from cardio.crypto import crc16_x25

# --------------------------------------------------------------------------------- parameter file


def test_parameter_file_known_answer() -> None:
    rec = ParameterRecord(
        card_kind=CardKind.USER,
        utility_code="123456",
        user_card_type=UserCardType.OPEN,
        customer_no="100000000001",
        meter_no="202400000042",
        alarm1=2000,
        alarm2=500,
        overdraft_limit=1000,
        credit_ceiling=9_999_900,
        ct_ratio=1,
        pt_ratio=40,
        update_flags=UpdateFlags.PARAMETERS | UpdateFlags.CURRENT_TARIFF,
        param_version=7,
    )
    body = bytes(
        [
            0x01,  # 0 card_kind: user card
            0x02,  # 1 profile_version 2
            0x12, 0x34, 0x56,  # 2 utility_code bcd3
            0x01,  # 5 user_card_type: open account
            0x10, 0x00, 0x00, 0x00, 0x00, 0x01,  # 6 customer_no bcd6
            0x20, 0x24, 0x00, 0x00, 0x00, 0x42,  # 12 meter_no bcd6
            0x00, 0x00, 0x07, 0xD0,  # 18 alarm1 2000 fen
            0x00, 0x00, 0x01, 0xF4,  # 22 alarm2 500 fen
            0x00, 0x00, 0x03, 0xE8,  # 26 overdraft_limit 1000 fen
            0x00, 0x98, 0x96, 0x1C,  # 30 credit_ceiling 9,999,900 fen
            0x00, 0x00, 0x00, 0x01,  # 34 ct_ratio 1
            0x00, 0x00, 0x00, 0x28,  # 38 pt_ratio 40
            0x03,  # 42 update_flags: thresholds/ratios + current tariff
            0x00, 0x07,  # 43 param_version 7
        ]
    )  # fmt: skip
    assert len(body) == 45
    crc = crc16_x25(b"\x00\x2d" + body)
    expected = b"\x68\x00\x2d" + body + crc.to_bytes(2, "big") + b"\x16" + bytes(64 - 51)
    assert P.encode_parameters(rec) == expected
    assert P.decode_parameters(expected) == rec


def _reframe(data: bytes, change: Callable[[bytearray], None]) -> bytes:
    body = bytearray(P.unframe(data, "x") or b"")
    change(body)
    return P.frame(bytes(body), len(data))


def test_parameter_file_of_another_profile_version() -> None:
    rec = ParameterRecord(
        CardKind.USER, "123456", UserCardType.PURCHASE, "1" * 12, "2" * 12,
        0, 0, 0, 0, 1, 1, UpdateFlags.NONE, 0,
    )  # fmt: skip
    data = P.encode_parameters(rec)

    def version3(body: bytearray) -> None:
        body[1] = 3
        body.extend(b"future")  # a later profile may have a longer body

    with pytest.raises(UnsupportedProfile) as info:
        P.decode_parameters(_reframe(data, version3))
    assert info.value.params["version"] == 3

    def version1(body: bytearray) -> None:  # the layout before purchase MACs
        body[1] = 1

    with pytest.raises(UnsupportedProfile) as info:
        P.decode_parameters(_reframe(data, version1))
    assert info.value.params["version"] == 1


def test_parameter_field_checks() -> None:
    rec = ParameterRecord(
        CardKind.TARIFF, "123456", UserCardType.NONE, "0" * 12, ANY_METER,
        0, 0, 0, 0, 1, 1, UpdateFlags.CURRENT_TARIFF, 3,
    )  # fmt: skip
    data = P.encode_parameters(rec)
    assert P.decode_parameters(data) == rec

    def setter(pos: int, value: int) -> Callable[[bytearray], None]:
        def change(body: bytearray) -> None:
            body[pos] = value

        return change

    for pos, value in [(0, 0x00), (0, 0x02), (0, 0x15), (2, 0x1A), (5, 1), (6, 0x01), (42, 8)]:
        with pytest.raises(CorruptCardFile):
            P.decode_parameters(_reframe(data, setter(pos, value)))


@pytest.mark.parametrize(
    "change",
    [
        {"meter_no": "12345678901"},
        {"meter_no": "12345678901x"},
        {"utility_code": 123456},
        {"alarm1": -1},
        {"alarm2": 2**32},
        {"param_version": 0x10000},
        {"update_flags": 8},
        {"profile_version": 1},
        {"profile_version": 3},
        {"card_kind": CardKind.BLANK},
        {"card_kind": 0x15},
        {"user_card_type": UserCardType.NONE},
        {"ct_ratio": True},
    ],
)
def test_parameter_encode_validates(change: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "card_kind": CardKind.USER,
        "utility_code": "123456",
        "user_card_type": UserCardType.PURCHASE,
        "customer_no": "1" * 12,
        "meter_no": "2" * 12,
        "alarm1": 0,
        "alarm2": 0,
        "overdraft_limit": 0,
        "credit_ceiling": 0,
        "ct_ratio": 1,
        "pt_ratio": 1,
        "update_flags": UpdateFlags.NONE,
        "param_version": 0,
    }
    with pytest.raises(P.NotCardable) as info:
        P.encode_parameters(ParameterRecord(**(fields | change)))
    assert isinstance(info.value, ValueError)
    assert "{" not in str(info.value)


def test_a_management_card_has_no_customer() -> None:
    rec = ParameterRecord(
        CardKind.CHECK, "123456", UserCardType.NONE, "1" * 12, ANY_METER,
        0, 0, 0, 0, 1, 1, UpdateFlags.NONE, 0,
    )  # fmt: skip
    with pytest.raises(P.NotCardable, match="customer_no"):
        P.encode_parameters(rec)


# --------------------------------------------------------------------------------- other files


def test_purchase_encode_validates() -> None:
    good = PurchaseRecord(100, 1, b"12345678", None, mac=b"MAC!")
    back = P.decode_purchase(P.encode_purchase(good))
    assert back == good and back is not None and back.mac == b"MAC!"
    for bad in (
        PurchaseRecord(-1, 1, b"12345678", None, b"MAC!"),
        PurchaseRecord(100, 2**32, b"12345678", None, b"MAC!"),
        PurchaseRecord(100, 1, b"1234567", None, b"MAC!"),
        PurchaseRecord(100, 1, b"12345678", dt.datetime(2100, 1, 1, tzinfo=P.BEIJING), b"MAC!"),
        PurchaseRecord(100, 1, b"12345678", None),  # no MAC: the terminal computes it
        PurchaseRecord(100, 1, b"12345678", None, b"MAC"),
    ):
        with pytest.raises(P.NotCardable):
            P.encode_purchase(bad)
    # the body the MAC covers needs none
    assert P.encode_purchase_body(PurchaseRecord(100, 1, b"12345678", None)) == (
        bytes.fromhex("00000064 00000001") + b"12345678" + bytes(6)
    )


def test_purchase_file_known_answer() -> None:
    rec = PurchaseRecord(
        amount=123_456,
        purchase_count=7,
        sale_tag=bytes.fromhex("0102030405060708"),
        time=dt.datetime(2026, 3, 1, 9, 30, 5, tzinfo=P.BEIJING),
        mac=bytes.fromhex("A1B2C3D4"),
    )
    body = bytes(
        [
            0x00, 0x01, 0xE2, 0x40,  # 0 purchase_amount 123,456 fen
            0x00, 0x00, 0x00, 0x07,  # 4 purchase_count 7
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  # 8 sale_tag
            0x26, 0x03, 0x01, 0x09, 0x30, 0x05,  # 16 time6
            0xA1, 0xB2, 0xC3, 0xD4,  # 22 MAC
        ]
    )  # fmt: skip
    assert len(body) == P.PURCHASE_BODY == 26
    crc = crc16_x25(b"\x00\x1a" + body)
    expected = b"\x68\x00\x1a" + body + crc.to_bytes(2, "big") + b"\x16"
    assert len(expected) == P.FILE_SIZES[P.SFI_PURCHASE]  # the frame fills the file exactly
    assert P.encode_purchase(rec) == expected
    assert P.encode_purchase_body(rec) == body[:22]
    assert P.decode_purchase(expected) == rec


def test_purchase_time_comes_back_in_beijing_time() -> None:
    sold = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
    back = P.decode_purchase(P.encode_purchase(PurchaseRecord(100, 1, b"12345678", sold, b"MAC!")))
    assert back is not None and back.time == sold
    assert back.time is not None and back.time.hour == 17


def tou_spec(periods: list[tuple[str, int]], starts: list[tuple[int, str]]) -> dict[str, Any]:
    return {
        "kind": "tou",
        "flat_rate": None,
        "periods": [{"name": n, "rate": r} for n, r in periods],
        "schedule": [{"start_minute": s, "period": p} for s, p in starts],
        "tiers": [],
        "reset_month": 1,
        "reset_day": 1,
    }


def test_tariff_layout() -> None:
    spec = tou_spec([("peak", 8000), ("valley", 3000)], [(0, "valley"), (480, "peak")])
    rec = TariffRecord(5, dt.datetime(2026, 7, 1, tzinfo=P.BEIJING), spec)
    body = P.unframe(P.encode_tariff(rec), "x")
    assert body == bytes(
        [
            2, 0x00, 0x05, 0x26, 0x07, 0x01, 0, 0, 0,  # tou, version 5, 2026-07-01 00:00:00
            0, 0, 0, 0,  # flat_rate 0 for TOU
            2, 2, 0x00, 0x00, 0x1F, 0x40, 4, 0x00, 0x00, 0x0B, 0xB8,  # peak 8000, valley 3000
            2, 0x00, 0x00, 4, 0x01, 0xE0, 2,  # 00:00 valley, 08:00 peak
            0,  # no tiers
            1, 1,  # reset January 1
        ]
    )  # fmt: skip
    assert P.decode_tariff(P.encode_tariff(rec)) == rec


def test_open_tier_is_all_ones() -> None:
    spec = TariffSpec.from_dict(
        {
            "kind": "tiered",
            "flat_rate": 5000,
            "periods": [],
            "schedule": [],
            "tiers": [{"upto_kwh": 2160, "surcharge": 0}, {"upto_kwh": None, "surcharge": 500}],
            "reset_month": 1,
            "reset_day": 1,
        }
    ).to_dict()
    body = P.unframe(P.encode_tariff(TariffRecord(1, None, spec)), "x")
    assert body is not None and body[-18:-2] == bytes.fromhex("00000870 00000000 FFFFFFFF 000001F4")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (tou_spec([("shoulder", 5000)], [(0, "shoulder")]), "shoulder"),
        (
            tou_spec(
                [("sharp", 1), ("peak", 2), ("flat", 3), ("valley", 4), ("night", 5)],
                [(0, "sharp")],
            ),
            "at most 4 TOU periods",
        ),
        (tou_spec([("peak", 100)], [(i * 60, "peak") for i in range(13)]), "at most 12 schedule"),
        (
            {
                "kind": "tiered",
                "flat_rate": 100,
                "periods": [],
                "schedule": [],
                "tiers": [{"upto_kwh": u, "surcharge": 0} for u in [1, 2, 3, 4, 5, 6, None]],
                "reset_month": 1,
                "reset_day": 1,
            },
            "at most 6 tiers",
        ),
        (
            {
                "kind": "tiered",
                "flat_rate": 100,
                "periods": [],
                "schedule": [],
                "tiers": [
                    {"upto_kwh": 2**32 - 1, "surcharge": 0},
                    {"upto_kwh": None, "surcharge": 0},
                ],
                "reset_month": 1,
                "reset_day": 1,
            },
            "upto_kwh",
        ),
    ],
)
def test_tariffs_a_card_cannot_carry(spec: dict[str, Any], words: str) -> None:
    TariffSpec.from_dict(spec)  # a valid tariff ...
    with pytest.raises(P.NotCardable) as info:  # ... that no card can carry
        P.encode_tariff(TariffRecord(1, None, spec))
    assert isinstance(info.value, ValueError)
    assert words in str(info.value)


def test_an_invalid_tariff_is_refused() -> None:
    with pytest.raises(TariffSpecError):
        P.encode_tariff(TariffRecord(1, None, {"kind": "flat"}))


def test_inconsistent_tariff_on_a_card_is_corrupt() -> None:
    spec = tou_spec([("peak", 8000)], [(0, "peak")])
    data = P.encode_tariff(TariffRecord(1, None, spec))

    def flat_rate_on_tou(body: bytearray) -> None:
        body[12] = 1

    with pytest.raises(CorruptCardFile) as info:
        P.decode_tariff(_reframe(data, flat_rate_on_tou), P.FILE_NAMES[P.SFI_BACKUP_TARIFF])
    assert info.value.params["file"] == "backup tariff file"


def test_write_back_body_and_mac() -> None:
    wb = WriteBack(
        meter_no="202400000042",
        remaining=-150,
        overdraft_used=150,
        purchase_count=3,
        total_energy_wh=1_234_567,
        status=WriteBackStatus.OVERDRAFT | WriteBackStatus.ALARM2,
        illegal_insert_count=1,
        time=dt.datetime(2026, 3, 1, 8, 0, tzinfo=P.BEIJING),
        param_version=7,
        mac=b"\xde\xad\xbe\xef",
    )
    body = P.encode_write_back_body(wb)
    assert body == bytes.fromhex(
        "202400000042 FFFFFF6A 00000096 00000003 000000000012D687 0A 0001 260301080000 0007"
    )
    data = P.encode_write_back(wb)
    assert P.unframe(data, "x") == body + b"\xde\xad\xbe\xef"
    assert P.decode_write_back(data) == wb
    with pytest.raises(ValueError):
        P.encode_write_back(WriteBack(**{**wb.__dict__, "mac": b"\x00"}))
    with pytest.raises(ValueError):
        P.encode_write_back_body(WriteBack(**{**wb.__dict__, "remaining": 2**31}))


def test_job_rules() -> None:
    day_job = JobRecord(bytes(16), JobKind.READING_DAY, reading_day=28, reading_hour=23)
    assert P.decode_job(P.encode_job(day_job)) == day_job
    for bad in (
        JobRecord(bytes(16), JobKind.READING_DAY, reading_day=0),
        JobRecord(bytes(16), JobKind.READING_DAY, reading_day=29),
        JobRecord(bytes(16), JobKind.TARIFF, reading_day=5),
        JobRecord(bytes(16), JobKind.CHECK, reading_hour=24),
        JobRecord(bytes(15), JobKind.CHECK),
    ):
        with pytest.raises(P.NotCardable):
            P.encode_job(bad)

    def reserved(body: bytearray) -> None:
        body[19] = 1

    with pytest.raises(CorruptCardFile):
        P.decode_job(_reframe(P.encode_job(day_job), reserved))


def test_corrupt_messages_are_complete() -> None:
    with pytest.raises(CorruptCardFile) as info:
        P.decode_purchase(bytes([0x68]) + bytes(31))
    text = str(info.value)
    assert text.startswith("The purchase file on the card is damaged (")
    assert "{" not in text


def test_not_cardable_in_chinese() -> None:
    spec = tou_spec([("shoulder", 5000)], [(0, "shoulder")])
    with pytest.raises(P.NotCardable) as info:
        P.encode_tariff(TariffRecord(1, None, spec))
    assert (
        info.value.localized("zh_CN")
        == "无法写入卡片：卡片只支持尖、峰、平、谷四个分时时段，不支持 shoulder"
    )
