"""A streaming DL/T 645 frame parser: bytes in as they arrive, frames and errors out in order.

:meth:`FrameParser.feed` takes any chunk of a byte stream and returns what it completed, in
stream order: :class:`~cardio.dlt645.frame.Frame` objects and the damaged-frame errors
(:class:`~cardio.dlt645.errors.FrameError` instances, returned, never raised).  The rules:

1. Bytes before a ``68`` (``FE`` preambles, line noise) are skipped silently and counted in
   :attr:`FrameParser.skipped`.
2. A ``68`` whose eighth byte is not ``68`` is noise too (skipped silently).
3. A candidate with both ``68`` is complete when its length field says so.  If the byte at its
   end is not ``16`` it gives :class:`FrameLengthError`; if its checksum is wrong,
   :class:`ChecksumError`.  Either way the parser resynchronises on the next ``68`` after the
   candidate's *first* byte (not after its claimed end), so a real frame hidden behind a bogus
   header is still found.
4. A candidate still waiting for bytes is given up (:class:`FrameLengthError`) as soon as a
   complete, valid frame starts inside it: noise that looks like a header with a long length
   field cannot hold back a frame that has already arrived.
5. Frames split across chunks are joined; several frames in one chunk all come out.
6. :meth:`FrameParser.end` tells the parser the stream stopped (a reply timed out): a frame
   begun but not finished gives :class:`TruncatedFrame`.

Random bytes never make it raise.  :meth:`FrameParser.needed` is a lower bound of the bytes still
to come before any frame can complete, so a reader never blocks on more than a frame needs.
"""

from __future__ import annotations

from typing import Final

from cardio.dlt645.errors import ChecksumError
from cardio.dlt645.errors import FrameError
from cardio.dlt645.errors import FrameLengthError
from cardio.dlt645.errors import TruncatedFrame
from cardio.dlt645.frame import END
from cardio.dlt645.frame import HEADER_SIZE
from cardio.dlt645.frame import MIN_FRAME
from cardio.dlt645.frame import START
from cardio.dlt645.frame import UNMASK
from cardio.dlt645.frame import Frame

_SECOND_START: Final = 7
_LENGTH: Final = 9

Item = Frame | FrameError


class FrameParser:
    """Frames from a byte stream (see the module's rules). Not thread-safe: one per stream."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = 0  # bytes dropped as noise, preambles included

    def feed(self, data: bytes | bytearray) -> list[Item]:
        """Take the next bytes of the stream; return the frames and errors they completed."""
        buf = self._buf
        buf += data
        out: list[Item] = []
        n = len(buf)
        pos = 0
        keep = n  # the buffer is cut here at the end: the start of a frame still arriving
        in_frames = 0
        while True:
            i = buf.find(START, pos)
            if i < 0:
                break
            if n - i < HEADER_SIZE:
                keep = i
                break
            if buf[i + _SECOND_START] != START:
                pos = i + 1  # rule 2
                continue
            end = i + MIN_FRAME + buf[i + _LENGTH]
            if end > n:
                j = self._valid_frame_after(i + 1)
                if j < 0:
                    keep = i
                    break
                out.append(FrameLengthError(f"header at {i} overlapped by a frame at {j}"))
                pos = j  # rule 4
                continue
            if buf[end - 1] != END:
                out.append(FrameLengthError(f"L={buf[i + _LENGTH]}, byte {end - 1 - i} is not 16"))
                pos = i + 1  # rule 3
                continue
            if sum(buf[i : end - 2]) & 0xFF != buf[end - 2]:
                out.append(ChecksumError(f"frame of {end - i} bytes, checksum {buf[end - 2]:02X}"))
                pos = i + 1
                continue
            out.append(
                Frame(
                    buf[i + 6 : i : -1].hex().upper(),  # A5..A0: the address as printed
                    buf[i + 8],
                    bytes(buf[i + HEADER_SIZE : end - 2].translate(UNMASK)),
                )
            )
            in_frames += end - i
            pos = end
        self.skipped += keep - in_frames
        del buf[:keep]
        return out

    def _valid_frame_after(self, start: int) -> int:
        """The offset of the first complete, valid frame at or after ``start``; -1 if none."""
        buf = self._buf
        n = len(buf)
        j = buf.find(START, start)
        while 0 <= j <= n - MIN_FRAME:
            if buf[j + _SECOND_START] == START:
                end = j + MIN_FRAME + buf[j + _LENGTH]
                if (
                    end <= n
                    and buf[end - 1] == END
                    and sum(buf[j : end - 2]) & 0xFF == buf[end - 2]
                ):
                    return j
            j = buf.find(START, j + 1)
        return -1

    def needed(self) -> int:
        """At least this many more bytes must arrive before another frame can complete."""
        buf = self._buf
        n = len(buf)
        best = MIN_FRAME
        j = buf.find(START)
        while j >= 0:
            have = n - j
            if have > _SECOND_START and buf[j + _SECOND_START] != START:
                need = 0  # not a frame start
            elif have >= HEADER_SIZE:
                need = MIN_FRAME + buf[j + _LENGTH] - have
            else:
                need = MIN_FRAME - have
            if 0 < need < best:
                best = need
            j = buf.find(START, j + 1)
        return best

    def pending(self) -> int:
        """Bytes held back: the beginning of a frame still arriving."""
        return len(self._buf)

    def end(self) -> TruncatedFrame | None:
        """The stream stopped here: :class:`TruncatedFrame` if a frame was begun; the parser is
        empty afterwards."""
        held = len(self._buf)
        self._buf.clear()
        if not held:
            return None
        self.skipped += held
        return TruncatedFrame(f"{held} bytes of a frame")

    def reset(self) -> None:
        """Forget what is held (before a new question, so a stale answer is not mixed in)."""
        self.skipped += len(self._buf)
        self._buf.clear()
