"""The counter's (and the meter's) side of a card session, over any APDU channel.

:class:`ApduTerminal` implements ``app.ports.CardTerminal``: it reads every file of a card,
writes files in one authenticated session with MAC'd updates and reads each one back, and
issues or erases cards.  The command sequences are those of ``cardio/PROFILE.md``.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from app.domain.card import CardContents
from app.domain.card import CardKind
from app.domain.card import CardWrite
from app.domain.card import DifferentCard
from app.domain.card import ForeignCard
from app.domain.card import PurchaseRecord
from app.domain.card import UnissuedCard
from app.domain.card import WriteBack
from app.domain.card import WriteResult
from app.domain.card import WriteVerifyFailed
from app.domain.card import WrongCardKind
from app.faults import checkpoint
from app.i18n import N_
from app.ports import ApduChannel
from app.ports import KeyProvider
from app.ports import KeyRole
from cardio import apdu as A
from cardio import profile as P
from cardio.crypto import challenge_iv

log = logging.getLogger(__name__)


class ApduTerminal:
    """One card in one reader. ``keys`` may be ``None`` for read-only use."""

    def __init__(
        self,
        channel: ApduChannel,
        keys: KeyProvider | None = None,
        *,
        utility_code: str | None = None,
    ) -> None:
        self.channel = channel
        self.keys = keys
        self.utility_code = utility_code
        self.apdu_count = 0

    def close(self) -> None:
        """End the card connection (the key provider is not the terminal's: it stays open)."""
        self.channel.close()

    # ------------------------------------------------------------------ low level

    def _send(self, command: bytes, name: str) -> tuple[bytes, int]:
        self.apdu_count += 1
        checkpoint(f"apdu_{self.apdu_count}")
        return self.channel.transmit(command)

    def _ok(self, command: bytes, name: str) -> bytes:
        data, sw = self._send(command, name)
        A.raise_for_sw(sw, name)
        return data

    def select_application(self) -> P.Fci:
        data, sw = self._send(A.select_aid(P.APP_AID), "SELECT")
        if sw == A.SW_OK:
            return P.parse_fci(data)
        if sw == A.SW_NOT_FOUND:
            # our MF without the application is a blank card; anything else is not ours
            mf, sw2 = self._send(A.select_fid(P.MF_FID), "SELECT")
            if sw2 == A.SW_OK:
                try:
                    fci = P.parse_fci(mf)
                except Exception:
                    raise ForeignCard(detail=N_("unknown card layout")) from None
                if not fci.issued:
                    raise UnissuedCard()
            raise ForeignCard(detail=N_("the CardVend application is missing"))
        if sw in (A.SW_INS, A.SW_CLA, A.SW_BAD_P1P2):
            raise ForeignCard(detail=N_("it does not understand the commands"))
        raise A.error_for_sw(sw, "SELECT")

    def select_mf(self) -> P.Fci:
        data = self._ok(A.select_fid(P.MF_FID), "SELECT")
        return P.parse_fci(data)

    def read_file(self, sfi: int) -> bytes:
        size = P.FILE_SIZES[sfi]
        out = b""
        while len(out) < size:
            chunk = min(256, size - len(out))
            data = self._ok(A.read_binary(sfi, len(out), chunk), "READ BINARY")
            if not data:
                break
            out += data
        return out

    def authenticate(self, serial: bytes, role: KeyRole) -> bytes:
        """External authentication for ``role``; returns a fresh challenge for the first MAC."""
        if self.keys is None:
            raise ValueError("writing a card needs a key provider")
        challenge = self._ok(A.get_challenge(), "GET CHALLENGE")
        cryptogram = self.keys.auth_cryptogram(role, serial, challenge)
        self._ok(A.external_authenticate(int(role), cryptogram), "EXTERNAL AUTHENTICATE")
        return self._ok(A.get_challenge(), "GET CHALLENGE")

    def secure_update(
        self, serial: bytes, sfi: int, data: bytes, challenge: bytes, mac_role: KeyRole
    ) -> bytes:
        """Write a whole file with a MAC; returns the next challenge the card answered."""
        assert self.keys is not None
        header = A.secure_update_header(sfi, 0, len(data))
        mac = self.keys.command_mac(mac_role, serial, challenge_iv(challenge), header + data)
        return self._ok(header + data + mac, "UPDATE BINARY")

    # ------------------------------------------------------------------ CardTerminal

    def read(self) -> CardContents:
        with self.channel.transaction():
            fci = self.select_application()
            return self._read_files(fci)

    def _read_files(self, fci: P.Fci) -> CardContents:
        if fci.profile_version != P.PROFILE_VERSION:
            from app.domain.card import UnsupportedProfile

            raise UnsupportedProfile(version=fci.profile_version)
        kind = CardKind(fci.kind) if fci.kind in CardKind._value2member_map_ else None
        if kind is None:
            raise ForeignCard(detail=N_("unknown card kind"))
        sfis = [
            P.SFI_PARAMETERS,
            P.SFI_PURCHASE,
            P.SFI_CURRENT_TARIFF,
            P.SFI_BACKUP_TARIFF,
            P.SFI_WRITE_BACK,
        ]
        if kind.is_management:
            sfis.append(P.SFI_JOB)
        raw = {sfi: self.read_file(sfi) for sfi in sfis}
        params = P.decode_parameters(raw[P.SFI_PARAMETERS])
        if params is not None:
            if params.card_kind != kind:
                raise WrongCardKind(found=CardKind(params.card_kind).label, expected=kind.label)
            if self.utility_code and params.utility_code != self.utility_code:
                raise ForeignCard(detail=N_("utility code {code}"), code=params.utility_code)
        write_back = P.decode_write_back(raw[P.SFI_WRITE_BACK])
        genuine = self._check_write_back(fci.serial, raw[P.SFI_WRITE_BACK], write_back)
        purchase = P.decode_purchase(raw[P.SFI_PURCHASE])
        return CardContents(
            serial=fci.serial,
            kind=kind,
            profile_version=fci.profile_version,
            parameters=params,
            purchase=purchase,
            current_tariff=P.decode_tariff(
                raw[P.SFI_CURRENT_TARIFF], P.FILE_NAMES[P.SFI_CURRENT_TARIFF]
            ),
            backup_tariff=P.decode_tariff(
                raw[P.SFI_BACKUP_TARIFF], P.FILE_NAMES[P.SFI_BACKUP_TARIFF]
            ),
            write_back=write_back,
            job=P.decode_job(raw[P.SFI_JOB]) if P.SFI_JOB in raw else None,
            write_back_genuine=genuine,
            purchase_genuine=self._check_purchase(fci.serial, purchase),
            raw={P.FILE_NAMES[s]: v for s, v in raw.items()},
        )

    def _check_purchase(self, serial: bytes, purchase: PurchaseRecord | None) -> bool | None:
        """Whether the purchase record carries the purchase MAC of this card (None: unchecked)."""
        if purchase is None or self.keys is None:
            return None
        return self.keys.verify_purchase(serial, P.encode_purchase_body(purchase), purchase.mac)

    def _purchase_file(self, serial: bytes, purchase: PurchaseRecord, body: bytes) -> bytes:
        """The purchase file for the card ``serial``, with the MAC the key provider gives."""
        assert self.keys is not None
        return P.encode_purchase(replace(purchase, mac=self.keys.purchase_mac(serial, body)))

    def _check_write_back(self, serial: bytes, raw: bytes, wb: WriteBack | None) -> bool | None:
        if wb is None or self.keys is None:
            return None
        body = P.encode_write_back_body(wb)
        return self.keys.verify_write_back(serial, wb.meter_no, body, wb.mac)

    def write(self, change: CardWrite, *, expect_serial: bytes | None = None) -> WriteResult:
        files: list[tuple[int, bytes]] = []
        if change.current_tariff is not None:
            files.append((P.SFI_CURRENT_TARIFF, P.encode_tariff(change.current_tariff)))
        if change.backup_tariff is not None:
            files.append((P.SFI_BACKUP_TARIFF, P.encode_tariff(change.backup_tariff)))
        if change.parameters is not None:
            files.append((P.SFI_PARAMETERS, P.encode_parameters(change.parameters)))
        if change.job is not None:
            files.append((P.SFI_JOB, P.encode_job(change.job)))
        # checked before the card is touched; its MAC needs the serial of the card in the reader
        purchase_body = None if change.purchase is None else P.encode_purchase_body(change.purchase)
        start = self.apdu_count
        with self.channel.transaction():
            fci = self.select_application()
            if expect_serial is not None and fci.serial != expect_serial:
                raise DifferentCard(
                    found=fci.serial.hex().upper(), expected=expect_serial.hex().upper()
                )
            if change.purchase is not None and purchase_body is not None:
                if self.keys is None:
                    raise ValueError("writing a card needs a key provider")
                # last: the purchase follows what it depends on
                purchase_file = self._purchase_file(fci.serial, change.purchase, purchase_body)
                files.append((P.SFI_PURCHASE, purchase_file))
            if files:
                challenge = self.authenticate(fci.serial, KeyRole.COUNTER_AUTH)
                for sfi, data in files:
                    challenge = self.secure_update(
                        fci.serial, sfi, data, challenge, KeyRole.COUNTER_MAC
                    )
                for sfi, data in files:
                    if self.read_file(sfi) != data:
                        raise WriteVerifyFailed(file=P.FILE_NAMES[sfi])
        return WriteResult(
            fci.serial, tuple(P.FILE_NAMES[sfi] for sfi, _ in files), self.apdu_count - start
        )

    def write_back(self, wb: WriteBack, *, meter_no: str) -> CardContents:
        """The meter's side: write the write-back file (meter authentication and MAC)."""
        assert self.keys is not None
        with self.channel.transaction():
            fci = self.select_application()
            body = P.encode_write_back_body(wb)
            mac = self.keys.write_back_mac(fci.serial, meter_no, body)
            data = P.encode_write_back(replace(wb, mac=mac))
            challenge = self.authenticate(fci.serial, KeyRole.METER_AUTH)
            self.secure_update(fci.serial, P.SFI_WRITE_BACK, data, challenge, KeyRole.METER_MAC)
            if self.read_file(P.SFI_WRITE_BACK) != data:
                raise WriteVerifyFailed(file=P.FILE_NAMES[P.SFI_WRITE_BACK])
            return self._read_files(fci)

    def issue(self, kind: int) -> CardContents:
        kind = CardKind(kind)
        if kind == CardKind.BLANK:
            raise ValueError("issue into a real kind; erase makes a card blank")
        with self.channel.transaction():
            fci = self.select_mf()
            if fci.issued:
                raise WrongCardKind(found=CardKind(fci.kind).label, expected=CardKind.BLANK.label)
            self.authenticate(fci.serial, KeyRole.ISSUER)
            self._ok(A.apdu(0x80, A.INS_ISSUE, 0x00, int(kind), le=0), "ISSUE")
            return self._read_files(self.select_application())

    def erase(self) -> CardContents:
        with self.channel.transaction():
            fci = self.select_mf()
            if not fci.issued:
                raise UnissuedCard()
            self.authenticate(fci.serial, KeyRole.ISSUER)
            self._ok(A.apdu(0x80, A.INS_ERASE, 0x00, 0x00, le=0), "ERASE")
            mf = self.select_mf()
            return CardContents(serial=mf.serial, kind=CardKind.BLANK, profile_version=0)
