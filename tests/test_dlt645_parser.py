"""The streaming DL/T 645 parser (cardio/dlt645/parser.py): noise, split and concatenated frames,
damaged frames with typed errors, resynchronisation, and hypothesis fuzzing."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from cardio.dlt645.errors import ChecksumError
from cardio.dlt645.errors import FrameError
from cardio.dlt645.errors import FrameLengthError
from cardio.dlt645.errors import TruncatedFrame
from cardio.dlt645.frame import MIN_FRAME
from cardio.dlt645.frame import Frame
from cardio.dlt645.parser import FrameParser
from cardio.dlt645.parser import Item

FAST = settings(max_examples=100, deadline=None, database=None)
FUZZ = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

READ = Frame("000000000001", 0x11, bytes.fromhex("00 02 90 00"))
REPLY = Frame("000000000001", 0x91, bytes.fromhex("00 02 90 00 56 34 12 00"))
ERROR = Frame("000000000002", 0xD4, b"\x04")


def frames_of(items: Sequence[Item]) -> list[Frame]:
    return [i for i in items if isinstance(i, Frame)]


def errors_of(items: Sequence[Item]) -> list[FrameError]:
    return [i for i in items if isinstance(i, FrameError)]


def parse(*chunks: bytes) -> tuple[list[Item], FrameParser]:
    parser = FrameParser()
    out: list[Item] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out, parser


def test_noise_and_preamble_before_a_frame_are_skipped() -> None:
    noise = bytes.fromhex("00 FF 16 68 12 FE FE")
    items, parser = parse(noise + REPLY.encode())
    assert items == [REPLY]
    assert parser.skipped == len(noise) + 4  # the noise and the FE preamble
    assert parser.pending() == 0


def test_a_frame_split_anywhere_comes_out_once() -> None:
    raw = REPLY.encode()
    for cut in range(1, len(raw)):
        items, parser = parse(raw[:cut], raw[cut:])
        assert items == [REPLY], cut
        assert parser.pending() == 0


def test_a_frame_byte_by_byte() -> None:
    parser = FrameParser()
    out: list[Item] = []
    for b in REPLY.encode():
        out += parser.feed(bytes([b]))
    assert out == [REPLY]


def test_several_frames_in_one_read_come_out_in_order() -> None:
    items, _ = parse(READ.encode() + REPLY.encode(preamble=False) + ERROR.encode())
    assert items == [READ, REPLY, ERROR]


def test_bad_checksum_is_reported_and_the_next_frame_still_read() -> None:
    bad = bytearray(REPLY.encode(preamble=False))
    bad[-2] ^= 0x01
    items, _ = parse(bytes(bad) + READ.encode())
    assert isinstance(items[0], ChecksumError)
    assert frames_of(items) == [READ]


def test_wrong_length_is_reported_and_the_parser_resynchronises() -> None:
    bad = bytearray(REPLY.encode(preamble=False))
    bad[9] = 4  # L says 4, the frame has 8 data bytes: byte 14 is not 16
    items, _ = parse(bytes(bad) + READ.encode())
    assert isinstance(items[0], FrameLengthError)
    assert frames_of(items) == [READ]


def test_a_bogus_header_with_a_long_length_does_not_hold_back_a_frame() -> None:
    bogus = bytes.fromhex("68 11 22 33 44 55 66 68 11 FF")  # waits for 255 data bytes
    items, parser = parse(bogus, READ.encode())
    assert frames_of(items) == [READ]
    assert isinstance(items[0], FrameLengthError)
    assert parser.pending() == 0


def test_a_frame_cut_off_gives_truncated_at_the_end_of_the_stream() -> None:
    raw = REPLY.encode(preamble=False)
    items, parser = parse(raw[:-3])
    assert items == []
    assert parser.needed() == 3
    assert isinstance(parser.end(), TruncatedFrame)
    assert parser.pending() == 0 and parser.end() is None


def test_a_frame_cut_off_then_a_new_one() -> None:
    items, _ = parse(REPLY.encode()[:-6] + READ.encode())
    assert frames_of(items) == [READ]
    assert len(errors_of(items)) == 1


def test_data_bytes_that_look_like_frame_starts() -> None:
    # 0x35 + 0x33 = 0x68 and 0xE3 + 0x33 = 0x16 on the line
    frame = Frame("686868686868", 0x91, bytes.fromhex("35 35 E3 35 E3 35 35 35 35 E3"))
    raw = frame.encode()
    for cut in range(1, len(raw)):
        assert parse(raw[:cut], raw[cut:])[0] == [frame]


def test_needed_counts_only_what_a_frame_still_needs() -> None:
    parser = FrameParser()
    assert parser.needed() == MIN_FRAME
    raw = REPLY.encode(preamble=False)
    parser.feed(raw[:3])
    assert parser.needed() == MIN_FRAME - 3
    parser.feed(raw[3:10])
    # the frame needs 10 more; the second 68 might begin a frame of its own needing 9
    assert parser.needed() == 9
    assert parser.feed(raw[10:19]) == []
    assert parser.needed() == 1
    assert parser.feed(raw[19:]) == [REPLY]
    assert parser.needed() == MIN_FRAME


def test_reset_forgets_a_partial_frame() -> None:
    parser = FrameParser()
    parser.feed(REPLY.encode()[:-2])
    parser.reset()
    assert parser.feed(READ.encode()) == [READ]


# --------------------------------------------------------------------------- hypothesis

addresses = st.from_regex(r"(?:[0-9]{2}|AA){6}", fullmatch=True)
frames = st.builds(Frame, addresses, st.integers(0, 255), st.binary(max_size=255))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@FUZZ
@given(stream=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=20))
def test_random_bytes_never_raise_and_every_byte_is_accounted_for(
    stream: bytes, cuts: list[int]
) -> None:
    parser = FrameParser()
    items: list[Item] = []
    for chunk in split(stream, cuts):
        items += parser.feed(chunk)
        assert parser.needed() >= 1
    assert all(isinstance(i, Frame | FrameError) for i in items)
    in_frames = sum(MIN_FRAME + len(f.data) for f in frames_of(items))
    assert parser.skipped + in_frames + parser.pending() == len(stream)
    end = parser.end()
    assert end is None or isinstance(end, TruncatedFrame)


@FUZZ
@given(noise=st.binary(max_size=300), frame=frames, cuts=st.lists(st.integers(0, 900), max_size=12))
def test_a_valid_frame_survives_noise_and_any_splitting(
    noise: bytes, frame: Frame, cuts: list[int]
) -> None:
    raw = frame.encode()
    stream = noise + raw
    items, parser = parse(*split(stream, cuts))
    found = frames_of(items)
    if frame not in found:
        # only possible when the noise itself begins a valid frame that runs into this one
        # (no parser can tell such a stream apart from that frame); say which one it was
        body = raw[4:]
        swallowed = [
            f for f in found if stream.find(f.encode(preamble=False)) < len(noise) + len(body)
        ]
        assert swallowed, (noise.hex(), found, items)
    else:
        assert found[-1] == frame
        assert parser.pending() == 0


@FAST
@given(batch=st.lists(frames, min_size=1, max_size=8), cuts=st.lists(st.integers(0, 3000)))
def test_concatenated_frames_come_out_exactly(batch: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(f.encode(preamble=bool(k % 2)) for k, f in enumerate(batch))
    items, parser = parse(*split(stream, cuts))
    assert items == batch
    assert parser.pending() == 0


@FAST
@given(noise=st.binary(max_size=200), frame=frames)
def test_reading_what_needed_says_never_waits_past_the_frame(noise: bytes, frame: Frame) -> None:
    # a reader asks the line for needed() bytes and blocks until they come: it must never ask
    # for more than the stream still holds before the frame is complete
    stream = noise + frame.encode()
    parser = FrameParser()
    pos = 0
    found: list[Frame] = []
    while pos < len(stream) and frame not in found:
        want = parser.needed()
        assert want <= len(stream) - pos, (noise.hex(), pos, want)
        found += frames_of(parser.feed(stream[pos : pos + want]))
        pos += want
    assert frame in found or found  # found it (or a frame the noise began, see above)
