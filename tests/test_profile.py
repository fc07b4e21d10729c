"""Tests for cardio/profile.py: the encodings and framing of cardio/PROFILE.md (BCD, time6, the
frame and CRC every card file shares, with every file round-tripped and fuzzed, FCI and ATR, the
profile's constants).  The layouts of the files themselves are tested in
tests/test_profile_files.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

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
