"""Tests for cardio/profile.py: the byte layouts of cardio/PROFILE.md.

The known-answer vector below is written byte by byte from the parameter-file table of
PROFILE.md, not produced by the encoder under test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.card import (
    ANY_METER,
    CardKind,
    CorruptCardFile,
    JobKind,
    JobRecord,
    ParameterRecord,
    PurchaseRecord,
    TariffRecord,
    UnsupportedProfile,
    UpdateFlags,
    UserCardType,
    WriteBack,
    WriteBackStatus,
)
from app.domain.pricing import TariffSpec, TariffSpecError
from cardio import profile as P
from cardio.crypto import crc16_x25

FAST = settings(max_examples=60, deadline=None, database=None)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
U32 = 2**32 - 1
DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
PERIOD_NAMES = ("sharp", "peak", "flat", "valley")

# --------------------------------------------------------------------------------- strategies


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


card_times = st.one_of(
    st.none(),
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1),
        max_value=dt.datetime(2099, 12, 31, 23, 59, 59),
        timezones=st.just(P.BEIJING),
    ).map(lambda t: t.replace(microsecond=0)),
)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, U32)


@st.composite
def parameter_records(draw: st.DrawFn) -> ParameterRecord:
    kind = draw(st.sampled_from([k for k in CardKind if k != CardKind.BLANK]))
    if kind == CardKind.USER:
        user_type = draw(st.sampled_from([t for t in UserCardType if t != UserCardType.NONE]))
        customer_no = draw(digits(12))
        meter_no = draw(digits(12))
    else:
        user_type, customer_no = UserCardType.NONE, "0" * 12
        meter_no = draw(st.one_of(st.just(ANY_METER), digits(12)))
    return ParameterRecord(
        card_kind=kind,
        utility_code=draw(digits(6)),
        user_card_type=user_type,
        customer_no=customer_no,
        meter_no=meter_no,
        alarm1=draw(u32),
        alarm2=draw(u32),
        overdraft_limit=draw(u32),
        credit_ceiling=draw(u32),
        ct_ratio=draw(u32),
        pt_ratio=draw(u32),
        update_flags=UpdateFlags(draw(st.integers(0, 7))),
        param_version=draw(u16),
    )


purchase_records = st.builds(
    PurchaseRecord,
    amount=u32,
    purchase_count=u32,
    sale_tag=st.binary(min_size=8, max_size=8),
    time=card_times,
    mac=st.binary(min_size=4, max_size=4),
)


@st.composite
def cardable_specs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(P.TARIFF_KIND_CODES)))
    tou = kind in ("tou", "tou_tiered")
    tiered = kind in ("tiered", "tou_tiered")
    max_surcharge = draw(st.integers(0, 50_000)) if tiered else 0
    rate = st.integers(1, 99_999 - max_surcharge)
    spec: dict[str, Any] = {"kind": kind, "flat_rate": None, "periods": [], "schedule": []}
    if tou:
        names = draw(st.lists(st.sampled_from(PERIOD_NAMES), min_size=1, max_size=4, unique=True))
        spec["periods"] = [{"name": n, "rate": draw(rate)} for n in names]
        starts = sorted(draw(st.sets(st.integers(1, 1439), max_size=11)))
        spec["schedule"] = [
            {"start_minute": s, "period": draw(st.sampled_from(names))} for s in [0, *starts]
        ]
    else:
        spec["flat_rate"] = draw(rate)
    tiers: list[dict[str, Any]] = []
    if tiered:
        count = draw(st.integers(1, 6))
        bounds = sorted(
            draw(st.sets(st.integers(1, U32 - 1), min_size=count - 1, max_size=count - 1))
        )
        for upto in [*bounds, None]:
            tiers.append({"upto_kwh": upto, "surcharge": draw(st.integers(0, max_surcharge))})
    spec["tiers"] = tiers
    month = draw(st.integers(1, 12))
    spec["reset_month"], spec["reset_day"] = month, draw(st.integers(1, DAYS[month - 1]))
    return TariffSpec.from_dict(spec).to_dict()


tariff_records = st.builds(
    TariffRecord, version_no=u16, effective_from=card_times, spec=cardable_specs()
)

write_backs = st.builds(
    WriteBack,
    meter_no=digits(12),
    remaining=st.integers(-(2**31), 2**31 - 1),
    overdraft_used=u32,
    purchase_count=u32,
    total_energy_wh=st.integers(0, 2**64 - 1),
    status=st.integers(0, 0x7F).map(WriteBackStatus),
    illegal_insert_count=u16,
    time=card_times,
    param_version=u16,
    mac=st.binary(min_size=4, max_size=4),
)


@st.composite
def job_records(draw: st.DrawFn) -> JobRecord:
    kind = draw(st.sampled_from(list(JobKind)))
    day = draw(st.integers(1, 28)) if kind == JobKind.READING_DAY else 0
    return JobRecord(
        job_id=draw(st.binary(min_size=16, max_size=16)),
        kind=kind,
        reading_day=day,
        reading_hour=draw(st.integers(0, 23)),
    )


def decode_backup(data: bytes) -> TariffRecord | None:
    return P.decode_tariff(data, P.FILE_NAMES[P.SFI_BACKUP_TARIFF])


# (sfi, encoder, decoder, strategy of valid records)
FILES: list[tuple[int, Callable[[Any], bytes], Callable[[bytes], Any], st.SearchStrategy[Any]]] = [
    (P.SFI_PARAMETERS, P.encode_parameters, P.decode_parameters, parameter_records()),
    (P.SFI_PURCHASE, P.encode_purchase, P.decode_purchase, purchase_records),
    (P.SFI_CURRENT_TARIFF, P.encode_tariff, P.decode_tariff, tariff_records),
    (P.SFI_BACKUP_TARIFF, P.encode_tariff, decode_backup, tariff_records),
    (P.SFI_WRITE_BACK, P.encode_write_back, P.decode_write_back, write_backs),
    (P.SFI_JOB, P.encode_job, P.decode_job, job_records()),
]
FILE_IDS = [P.FILE_NAMES[sfi] for sfi, *_ in FILES]
# the backup tariff file shares the codec of the current one: fuzz it only once
FUZZED = [f for f in FILES if f[0] != P.SFI_BACKUP_TARIFF]
FUZZED_IDS = [P.FILE_NAMES[sfi] for sfi, *_ in FUZZED]


def only_card_errors(
    decode: Callable[[bytes], Any], encode: Callable[[Any], bytes], data: bytes
) -> None:
    """Decoding gives a record (that encodes back to the same bytes), None or a card error."""
    try:
        rec = decode(data)
    except (CorruptCardFile, UnsupportedProfile):
        return
    if rec is not None:
        assert encode(rec) == data
    else:
        assert not any(data)


# --------------------------------------------------------------------------------- BCD, time6


def test_bcd() -> None:
    assert P.bcd_encode("123456", 3) == b"\x12\x34\x56"
    assert P.bcd_encode("000000000000", 6) == bytes(6)
    assert P.bcd_decode(b"\x98\x76\x05") == "987605"
    for bad in ("12345", "1234567", "12345a", "١٢٣٤٥٦", " 12345", "+12345"):
        with pytest.raises(ValueError):
            P.bcd_encode(bad, 3)
    for bad_bytes in (b"\x1a", b"\xa1", b"\x12\xff"):
        with pytest.raises(ValueError):
            P.bcd_decode(bad_bytes)


@FAST
@given(digits(12))
def test_bcd_round_trip(number: str) -> None:
    assert P.bcd_decode(P.bcd_encode(number, 6)) == number


def test_time6_is_beijing_time() -> None:
    utc = dt.datetime(2026, 3, 1, 9, 0, 5, 999_999, tzinfo=dt.UTC)
    encoded = P.time6_encode(utc)
    assert encoded == bytes([0x26, 0x03, 0x01, 0x17, 0x00, 0x05])  # 17:00:05 in Beijing
    decoded = P.time6_decode(encoded)
    assert decoded == utc.replace(microsecond=0)
    assert decoded is not None and decoded.utcoffset() == dt.timedelta(hours=8)
    # New Year in Beijing is still the old year in UTC
    assert P.time6_encode(dt.datetime(2024, 12, 31, 16, tzinfo=dt.UTC))[:4] == b"\x25\x01\x01\x00"


def test_time6_none_and_refusals() -> None:
    assert P.time6_encode(None) == bytes(6)
    assert P.time6_decode(bytes(6)) is None
    with pytest.raises(ValueError):
        P.time6_encode(dt.datetime(2026, 1, 1))  # naive
    with pytest.raises(ValueError):
        P.time6_encode(dt.datetime(1999, 12, 31, 15, 59, tzinfo=dt.UTC))  # 1999 in Beijing
    for bad in ("260230120000", "261301000000", "260101240000", "260101006000", "2601010000AA"):
        with pytest.raises(ValueError):
            P.time6_decode(bytes.fromhex(bad))


@FAST
@given(card_times)
def test_time6_round_trip(t: dt.datetime | None) -> None:
    assert P.time6_decode(P.time6_encode(t)) == t


# --------------------------------------------------------------------------------- frames


def test_crc_is_crc16_x25() -> None:
    assert crc16_x25(b"123456789") == 0x906E  # the catalogued check value


def test_frame_layout_and_empty_file() -> None:
    data = P.frame(b"\xab\xcd", 16)
    crc = crc16_x25(b"\x00\x02\xab\xcd")
    assert data == b"\x68\x00\x02\xab\xcd" + crc.to_bytes(2, "big") + b"\x16" + bytes(8)
    assert P.unframe(data, "x") == b"\xab\xcd"
    assert P.unframe(bytes(16), "x") is None
    with pytest.raises(ValueError):
        P.frame(bytes(11), 16)


@pytest.mark.parametrize(("sfi", "encode", "decode", "records"), FILES, ids=FILE_IDS)
def test_an_empty_file_is_none(sfi: int, encode: Any, decode: Any, records: Any) -> None:
    assert decode(bytes(P.FILE_SIZES[sfi])) is None


@pytest.mark.parametrize(("sfi", "encode", "decode", "records"), FILES, ids=FILE_IDS)
def test_round_trip(sfi: int, encode: Any, decode: Any, records: Any) -> None:
    @FAST
    @given(records)
    def check(rec: Any) -> None:
        data = encode(rec)
        assert len(data) == P.FILE_SIZES[sfi]
        assert decode(data) == rec

    check()


@pytest.mark.parametrize(("sfi", "encode", "decode", "records"), FILES, ids=FILE_IDS)
def test_a_flipped_bit_anywhere_is_detected(
    sfi: int, encode: Any, decode: Any, records: Any
) -> None:
    @FAST
    @given(records, st.data())
    def check(rec: Any, data: st.DataObject) -> None:
        written = bytearray(encode(rec))
        bit = data.draw(st.integers(0, 8 * len(written) - 1), label="bit")
        written[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CorruptCardFile) as info:
            decode(bytes(written))
        assert info.value.params["file"] == P.FILE_NAMES[sfi]

    check()


@pytest.mark.parametrize(("sfi", "encode", "decode", "records"), FUZZED, ids=FUZZED_IDS)
def test_random_bytes_give_only_card_errors(
    sfi: int, encode: Any, decode: Any, records: Any
) -> None:
    size = P.FILE_SIZES[sfi]

    @FUZZ
    @given(st.one_of(st.binary(max_size=200), st.binary(min_size=size, max_size=size)))
    def check(data: bytes) -> None:
        only_card_errors(decode, encode, data)

    check()


@pytest.mark.parametrize(("sfi", "encode", "decode", "records"), FUZZED, ids=FUZZED_IDS)
def test_framed_random_bodies_give_only_card_errors(
    sfi: int, encode: Any, decode: Any, records: Any
) -> None:
    """Well-framed garbage reaches the field checks; nothing but a card error comes out."""
    size = P.FILE_SIZES[sfi]
    body_len = P.BODY_SIZES[sfi]

    @FUZZ
    @given(
        st.one_of(
            st.binary(min_size=body_len, max_size=body_len),
            st.binary(max_size=size - 6),
            # a valid record with a few bytes of its body replaced
            st.tuples(
                records, st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=3)
            ),
        )
    )
    def check(body: Any) -> None:
        if isinstance(body, tuple):
            rec, changes = body
            inner = bytearray(P.unframe(encode(rec), "x") or b"")
            for pos, value in changes:
                inner[pos % len(inner)] = value
            body = bytes(inner)
        only_card_errors(decode, encode, P.frame(body, size))

    check()


def test_frame_defects_name_the_file() -> None:
    rec = JobRecord(job_id=bytes(range(16)), kind=JobKind.CHECK)
    good = P.encode_job(rec)
    cases = {
        "start": b"\x69" + good[1:],
        "end": good[:25] + b"\x17" + good[26:],
        "length": good[:1] + b"\x00\x30" + good[3:],
        "padding": good[:-1] + b"\x01",
        "short": good[:-1],
        "long": good + b"\x00",
        "tiny": b"\x68",
    }
    for case, data in cases.items():
        with pytest.raises(CorruptCardFile) as info:
            P.decode_job(data)
        assert info.value.params["file"] == "job file", case
        assert "job file" in str(info.value)


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


# --------------------------------------------------------------------------------- FCI and ATR


@FAST
@given(
    st.binary(min_size=8, max_size=8),
    st.sampled_from([k for k in CardKind if k != CardKind.BLANK]),
    st.one_of(st.just(P.APP_AID), st.just(P.APP_FID), st.just(P.MF_FID)),
)
def test_fci_round_trip(serial: bytes, kind: CardKind, name: bytes | int) -> None:
    fci = P.parse_fci(P.build_fci(name, serial, P.STATE_ISSUED, kind, P.PROFILE_VERSION))
    assert (fci.serial, fci.issued, fci.kind, fci.profile_version) == (serial, True, kind, 2)
    assert isinstance(fci.kind, CardKind)


def test_fci_layout() -> None:
    serial = bytes.fromhex("0011223344556677")
    assert P.build_fci(P.MF_FID, serial, P.STATE_BLANK, 0, 0) == bytes.fromhex(
        "6F 1A 8402 3F00 A5 14 9F0C08 0011223344556677 C10100 C20100 C30100"
    )
    blank = P.parse_fci(
        bytes.fromhex("6F1A 84023F00 A514 9F0C080011223344556677 C10100 C20100 C30100")
    )
    assert blank == P.Fci(serial, False, CardKind.BLANK, 0, b"\x3f\x00")
    fci = P.parse_fci(P.build_fci(P.APP_AID, serial, P.STATE_ISSUED, CardKind.USER, 2))
    assert fci.name == P.APP_AID and fci.serial_hex == "0011223344556677"


def test_fci_refusals() -> None:
    serial = bytes(8)
    for other in (1, 3):  # version 1: the layout before purchase MACs
        with pytest.raises(UnsupportedProfile):
            P.parse_fci(P.build_fci(P.APP_AID, serial, P.STATE_ISSUED, CardKind.USER, other))
    unknown = P.parse_fci(P.build_fci(P.APP_AID, serial, P.STATE_ISSUED, 0x42, 2))
    assert unknown.kind == 0x42 and not isinstance(unknown.kind, CardKind)
    for bad in (
        P.build_fci(P.APP_AID, serial, P.STATE_ISSUED, CardKind.BLANK, 2),
        P.build_fci(P.MF_FID, serial, P.STATE_BLANK, CardKind.USER, 0),
        P.build_fci(P.APP_AID, serial, P.STATE_ISSUED, CardKind.USER, 2) + b"\x00",
        P.build_fci(P.APP_AID, serial, P.STATE_ISSUED, CardKind.USER, 2)[:-1],
        P.build_psam_fci(serial),
        b"",
        b"\x6f\x00",
    ):
        with pytest.raises(CorruptCardFile):
            P.parse_fci(bad)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=80),
        st.builds(lambda b: b"\x6f" + bytes([len(b)]) + b, st.binary(max_size=60)),
    )
)
def test_random_fci_gives_only_card_errors(data: bytes) -> None:
    for parse in (P.parse_fci, P.parse_psam_fci):
        try:
            parse(data)
        except (CorruptCardFile, UnsupportedProfile):
            pass


@FUZZ
@given(st.binary(min_size=8, max_size=8), st.data())
def test_mutated_fci_gives_only_card_errors(serial: bytes, data: st.DataObject) -> None:
    fci = bytearray(P.build_fci(P.APP_AID, serial, P.STATE_ISSUED, CardKind.USER, 1))
    for _ in range(data.draw(st.integers(1, 3))):
        fci[data.draw(st.integers(0, len(fci) - 1))] = data.draw(st.integers(0, 255))
    try:
        P.parse_fci(bytes(fci))
    except (CorruptCardFile, UnsupportedProfile):
        pass


def test_psam_fci() -> None:
    serial = bytes.fromhex("A1A2A3A4A5A6A7A8")
    fci = P.build_psam_fci(serial)
    assert fci == bytes.fromhex("6F19 840A D156000043565053414D A50B 9F0C08 A1A2A3A4A5A6A7A8")
    assert P.parse_psam_fci(fci) == serial


def test_atrs() -> None:
    history = bytes.fromhex("43 56 45 4C 45 43") + bytes([0x01, 0x01, 0x00, 0x00])
    tck = 0
    for byte in bytes([0x8A, 0x80, 0x01]) + history:
        tck ^= byte
    atr = bytes([0x3B, 0x8A, 0x80, 0x01]) + history + bytes([tck])
    assert P.build_card_atr(CardKind.USER, P.STATE_ISSUED) == atr
    assert P.parse_card_atr(atr) == (CardKind.USER, P.STATE_ISSUED)
    assert P.parse_card_atr(atr[:-1] + bytes([tck ^ 1])) is None
    psam = P.build_psam_atr()
    assert psam[:14] == bytes.fromhex("3B 8A 80 01 43 56 50 53 41 4D 00 01 00 00")
    assert P.is_psam_atr(psam) and not P.is_psam_atr(atr)
    assert P.parse_card_atr(psam) is None
    assert P.parse_card_atr(bytes.fromhex("3B 8F 80 01 80 4F 0C A0 00 00 03 06")) is None


def test_constants() -> None:
    assert P.APP_AID == bytes.fromhex("D1 56 00 00 43 56 45 4C 45 43")
    assert P.PSAM_AID == bytes.fromhex("D1 56 00 00 43 56 50 53 41 4D")
    assert [P.SFI_PARAMETERS, P.SFI_PURCHASE, P.SFI_CURRENT_TARIFF, P.SFI_BACKUP_TARIFF,
            P.SFI_WRITE_BACK, P.SFI_JOB] == [1, 2, 3, 4, 5, 6]  # fmt: skip
    assert dict(P.FILE_SIZES) == {1: 64, 2: 32, 3: 160, 4: 160, 5: 64, 6: 48}


def test_not_cardable_in_chinese() -> None:
    spec = tou_spec([("shoulder", 5000)], [(0, "shoulder")])
    with pytest.raises(P.NotCardable) as info:
        P.encode_tariff(TariffRecord(1, None, spec))
    assert (
        info.value.localized("zh_CN")
        == "无法写入卡片：卡片只支持尖、峰、平、谷四个分时时段，不支持 shoulder"
    )
