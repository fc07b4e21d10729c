"""UserCardOS: the emulated user card's operating system (cardio/PROFILE.md)."""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from app.domain.card import PROFILE_VERSION
from app.ports import KeyRole
from cardio.crypto import MAC_LEN
from cardio.crypto import auth_cryptogram
from cardio.crypto import challenge_iv
from cardio.crypto import mac4
from cardio.emulator.base import _Apdu
from cardio.emulator.base import _Df
from cardio.emulator.base import _EmulatedCard
from cardio.emulator.base import _SilentFault
from cardio.emulator.base import _Status
from cardio.emulator.base import _sw
from cardio.emulator.base import _tlv
from cardio.emulator.image import CHALLENGE_LEN
from cardio.emulator.image import ISSUABLE_KINDS
from cardio.emulator.image import MAX_TRIES
from cardio.emulator.image import SW_BAD_MAC
from cardio.emulator.image import SW_CLA_NOT_SUPPORTED
from cardio.emulator.image import SW_CONDITIONS
from cardio.emulator.image import SW_INS_NOT_SUPPORTED
from cardio.emulator.image import SW_KEY_BLOCKED
from cardio.emulator.image import SW_MEMORY_FAILURE
from cardio.emulator.image import SW_NO_CHALLENGE
from cardio.emulator.image import SW_NOT_AUTHENTICATED
from cardio.emulator.image import SW_NOT_FOUND
from cardio.emulator.image import SW_OK
from cardio.emulator.image import SW_WRONG_LENGTH
from cardio.emulator.image import SW_WRONG_OFFSET
from cardio.emulator.image import SW_WRONG_P1P2
from cardio.emulator.image import CardImage
from cardio.emulator.image import CardState
from cardio.emulator.image import make_atr
from cardio.emulator.image import sw_tries_left
from cardio.profile import APP_AID
from cardio.profile import APP_FID
from cardio.profile import FILE_SIZES
from cardio.profile import MF_FID
from cardio.profile import SFI_WRITE_BACK

log = logging.getLogger(__name__)


class UserCardOS(_EmulatedCard):
    """The operating system of a CardVend card (user and management cards alike).

    ``persist_path``: where the image is saved (atomically) after every change, before the
    answer.  Without it the image lives only in memory.  ``rng`` gives the challenges."""

    def __init__(
        self,
        image: CardImage,
        *,
        persist_path: str | os.PathLike[str] | None = None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__()
        self.image = image
        self.persist_path = Path(persist_path) if persist_path is not None else None
        self._rng = rng
        self._selected = _Df.MF
        self._authenticated: set[int] = set()
        self._challenge: bytes | None = None
        self._silent: _SilentFault | None = None

    # ---- fault injection

    def keep_old_bytes(self, updates: int = 1, *, stored: int = 0, sfi: int | None = None) -> None:
        """Fault injection: a card whose memory fails without saying so.  The next ``updates``
        secure UPDATE BINARY commands (of file ``sfi`` only, when given) are answered as if
        they succeeded (9000 and the next challenge), but the card stores only the first
        ``stored`` bytes of each one's data: the rest of the file keeps its old bytes.  Only a
        read-back shows it.  Works the same in-process and behind vpcd (it is the card's)."""
        if updates < 1 or stored < 0:
            raise ValueError("updates counts from 1 and stored is not negative")
        if sfi is not None and sfi not in FILE_SIZES:
            raise ValueError(f"no file with SFI {sfi}")
        with self._lock:
            self._silent = _SilentFault(updates, stored, sfi)

    def cancel_faults(self) -> None:
        """Ends :meth:`keep_old_bytes` and :meth:`pull_after`."""
        with self._lock:
            self._silent = None
        self.cancel_pull()

    def _stored_part(self, sfi: int, length: int) -> int:
        """How many bytes of an update of ``length`` bytes to file ``sfi`` the memory keeps."""
        fault = self._silent
        if fault is None or (fault.sfi is not None and fault.sfi != sfi):
            return length
        left = fault.updates - 1
        self._silent = _SilentFault(left, fault.stored, fault.sfi) if left else None
        return min(fault.stored, length)

    # ---- volatile state

    def _clear_volatile(self) -> None:
        self._selected = _Df.MF
        self._authenticated = set()
        self._challenge = None

    @property
    def serial(self) -> bytes:
        return self.image.serial

    @property
    def authenticated(self) -> frozenset[int]:
        """Key ids whose EXTERNAL AUTHENTICATE succeeded since the last reset (for tests)."""
        with self._lock:
            return frozenset(self._authenticated)

    @property
    def atr(self) -> bytes:
        with self._lock:
            kind = self.image.kind if self.image.state is CardState.ISSUED else 0
            hist = b"CVELEC" + bytes([kind, int(self.image.state), 0, 0])
            return make_atr(hist)

    # ---- persistence

    def _commit(self, change: Callable[[CardImage], None]) -> None:
        """Apply ``change`` to a copy of the image, save the copy, then swap it in.  If saving
        fails the card answers 6581 and nothing has changed."""
        new = self.image.copy()
        change(new)
        if self.persist_path is not None:
            try:
                new.save(self.persist_path)
            except OSError:
                log.exception("card emulator could not save its image")
                raise _Status(SW_MEMORY_FAILURE) from None
        for f in fields(CardImage):
            setattr(self.image, f.name, getattr(new, f.name))

    # ---- dispatch

    def _dispatch(self, apdu: _Apdu) -> bytes:
        if apdu.cla == 0x00:
            handler = {
                0xA4: self._select,
                0xB0: self._read_binary,
                0x84: self._get_challenge,
                0x82: self._external_authenticate,
                0xD6: self._plain_update,
            }.get(apdu.ins)
        elif apdu.cla == 0x04:
            handler = {0xD6: self._secure_update}.get(apdu.ins)
        elif apdu.cla == 0x80:
            handler = {0xE0: self._issue, 0x0E: self._erase}.get(apdu.ins)
        else:
            raise _Status(SW_CLA_NOT_SUPPORTED)
        if handler is None:
            raise _Status(SW_INS_NOT_SUPPORTED)
        return handler(apdu)

    def _fci(self, name: bytes) -> bytes:
        issued = self.image.state is CardState.ISSUED
        a5 = (
            _tlv(b"\x9f\x0c", self.image.serial)
            + _tlv(b"\xc1", bytes([int(self.image.state)]))
            + _tlv(b"\xc2", bytes([self.image.kind if issued else 0]))
            + _tlv(b"\xc3", bytes([self.image.profile_version if issued else 0]))
        )
        return _tlv(b"\x6f", _tlv(b"\x84", name) + _tlv(b"\xa5", a5))

    def _enter(self, df: _Df) -> None:
        if df is not self._selected:
            self._authenticated = set()  # the security state belongs to the DF left behind
        self._selected = df

    def _select(self, apdu: _Apdu) -> bytes:
        data = apdu.expect_data()
        if apdu.p2 != 0x00:
            raise _Status(SW_WRONG_P1P2)
        if apdu.p1 == 0x00:
            if len(data) != 2:
                raise _Status(SW_WRONG_LENGTH)
            fid = int.from_bytes(data, "big")
            if fid == MF_FID:
                self._enter(_Df.MF)
                return self._fci(data) + _sw(SW_OK)
            if fid != APP_FID:
                raise _Status(SW_NOT_FOUND)
        elif apdu.p1 == 0x04:
            if data != APP_AID:
                raise _Status(SW_NOT_FOUND)
        else:
            raise _Status(SW_WRONG_P1P2)
        if self.image.state is not CardState.ISSUED:
            raise _Status(SW_NOT_FOUND)
        self._enter(_Df.APP)
        return self._fci(APP_AID) + _sw(SW_OK)

    def _file(self, p1: int) -> tuple[int, bytearray]:
        """The EF addressed by ``P1 = 80 + SFI`` in the selected application."""
        if p1 & 0xE0 != 0x80 or p1 & 0x1F == 0:
            raise _Status(SW_WRONG_P1P2)
        sfi = p1 & 0x1F
        if self._selected is not _Df.APP or sfi not in self.image.files:
            raise _Status(SW_NOT_FOUND)
        return sfi, self.image.files[sfi]

    def _read_binary(self, apdu: _Apdu) -> bytes:
        apdu.expect_no_data()
        if apdu.le is None:
            raise _Status(SW_WRONG_LENGTH)
        _, content = self._file(apdu.p1)
        offset = apdu.p2
        if offset >= len(content):
            raise _Status(SW_WRONG_OFFSET)
        return bytes(content[offset : offset + apdu.le]) + _sw(SW_OK)

    def _get_challenge(self, apdu: _Apdu) -> bytes:
        apdu.expect_no_data()
        if apdu.le != CHALLENGE_LEN:
            raise _Status(SW_WRONG_LENGTH)
        if apdu.p1 or apdu.p2:
            raise _Status(SW_WRONG_P1P2)
        self._challenge = self._new_challenge()
        return self._challenge + _sw(SW_OK)

    def _new_challenge(self) -> bytes:
        challenge = bytes(self._rng(CHALLENGE_LEN))
        if len(challenge) != CHALLENGE_LEN:
            raise RuntimeError("the challenge source gave the wrong length")
        return challenge

    def _take_challenge(self) -> bytes | None:
        challenge, self._challenge = self._challenge, None
        return challenge

    def _external_authenticate(self, apdu: _Apdu) -> bytes:
        challenge = self._take_challenge()  # consumed whatever the outcome
        data = apdu.expect_data()
        if len(data) != 2 * CHALLENGE_LEN:
            raise _Status(SW_WRONG_LENGTH)
        key_id = apdu.p2
        if apdu.p1 != 0x00 or key_id not in self.image.keys:
            raise _Status(SW_WRONG_P1P2)
        tries = self.image.retries[key_id]
        if tries == 0:
            raise _Status(SW_KEY_BLOCKED)
        if challenge is None:
            raise _Status(SW_NO_CHALLENGE)
        expected = auth_cryptogram(self.image.keys[key_id], challenge)
        if not hmac.compare_digest(expected, data):
            left = tries - 1

            def count_failure(img: CardImage) -> None:
                img.retries[key_id] = left

            self._commit(count_failure)
            raise _Status(sw_tries_left(left))
        if tries != MAX_TRIES:

            def reset_counter(img: CardImage) -> None:
                img.retries[key_id] = MAX_TRIES

            self._commit(reset_counter)
        self._authenticated.add(key_id)
        return _sw(SW_OK)

    @staticmethod
    def _roles_for(sfi: int) -> tuple[int, int]:
        """(authentication key id, MAC key id) that guard updates of a file."""
        if sfi == SFI_WRITE_BACK:
            return KeyRole.METER_AUTH, KeyRole.METER_MAC
        return KeyRole.COUNTER_AUTH, KeyRole.COUNTER_MAC

    def _plain_update(self, apdu: _Apdu) -> bytes:
        """UPDATE BINARY without secure messaging: every file needs a MAC, so it is refused."""
        apdu.expect_data()
        self._file(apdu.p1)
        raise _Status(SW_NOT_AUTHENTICATED)

    def _secure_update(self, apdu: _Apdu) -> bytes:
        challenge = self._take_challenge()  # any MAC attempt uses the challenge up
        data = apdu.expect_data()
        if len(data) <= MAC_LEN:
            raise _Status(SW_WRONG_LENGTH)
        sfi, content = self._file(apdu.p1)
        auth_key, mac_key = self._roles_for(sfi)
        if auth_key not in self._authenticated:
            raise _Status(SW_NOT_AUTHENTICATED)
        if challenge is None:
            raise _Status(SW_NO_CHALLENGE)
        body, mac = data[:-MAC_LEN], data[-MAC_LEN:]
        expected = mac4(self.image.keys[mac_key], challenge_iv(challenge), apdu.header + body)
        if not hmac.compare_digest(expected, mac):
            raise _Status(SW_BAD_MAC)
        offset = apdu.p2
        if offset + len(body) > len(content):
            raise _Status(SW_WRONG_OFFSET)
        new_content = bytearray(content)
        kept = self._stored_part(sfi, len(body))  # all of it, unless a fault is injected
        new_content[offset : offset + kept] = body[:kept]

        def write(img: CardImage) -> None:
            img.files[sfi] = new_content

        self._commit(write)
        self._challenge = self._new_challenge()
        return self._challenge + _sw(SW_OK)

    def _issue(self, apdu: _Apdu) -> bytes:
        apdu.expect_no_data()
        kind = apdu.p2
        if apdu.p1 != 0x00 or kind not in ISSUABLE_KINDS:
            raise _Status(SW_WRONG_P1P2)
        if self.image.state is CardState.ISSUED:
            raise _Status(SW_CONDITIONS)
        if KeyRole.ISSUER not in self._authenticated:
            raise _Status(SW_NOT_AUTHENTICATED)

        def issue(img: CardImage) -> None:
            img.state = CardState.ISSUED
            img.kind = kind
            img.profile_version = PROFILE_VERSION
            img.files = {sfi: bytearray(size) for sfi, size in FILE_SIZES.items()}

        self._commit(issue)
        self._selected = _Df.APP
        self._authenticated = set()
        return self._fci(APP_AID) + _sw(SW_OK)

    def _erase(self, apdu: _Apdu) -> bytes:
        apdu.expect_no_data()
        if apdu.p1 or apdu.p2:
            raise _Status(SW_WRONG_P1P2)
        if self.image.state is not CardState.ISSUED:
            raise _Status(SW_CONDITIONS)
        if KeyRole.ISSUER not in self._authenticated:
            raise _Status(SW_NOT_AUTHENTICATED)

        def erase(img: CardImage) -> None:
            img.state = CardState.BLANK
            img.kind = 0
            img.profile_version = 0
            img.files = {}

        self._commit(erase)
        self._selected = _Df.MF
        self._authenticated = set()
        return _sw(SW_OK)
