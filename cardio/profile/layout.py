"""The card's file layout (cardio/PROFILE.md): file ids, sizes, states, limits, codes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Final

from app.domain.card import UserCardType
from app.i18n import N_

MF_FID: Final = 0x3F00


APP_FID: Final = 0x1001


APP_AID: Final = bytes.fromhex("D15600004356454C4543")  # D1 56 00 00 "CVELEC"


PSAM_AID: Final = bytes.fromhex("D156000043565053414D")  # D1 56 00 00 "CVPSAM"


SFI_PARAMETERS: Final = 1


SFI_PURCHASE: Final = 2


SFI_CURRENT_TARIFF: Final = 3


SFI_BACKUP_TARIFF: Final = 4


SFI_WRITE_BACK: Final = 5


SFI_JOB: Final = 6


FILE_SIZES: Final[Mapping[int, int]] = {
    SFI_PARAMETERS: 64,
    SFI_PURCHASE: 32,
    SFI_CURRENT_TARIFF: 160,
    SFI_BACKUP_TARIFF: 160,
    SFI_WRITE_BACK: 64,
    SFI_JOB: 48,
}


FILE_NAMES: Final[Mapping[int, str]] = {
    SFI_PARAMETERS: N_("parameter file"),
    SFI_PURCHASE: N_("purchase file"),
    SFI_CURRENT_TARIFF: N_("current tariff file"),
    SFI_BACKUP_TARIFF: N_("backup tariff file"),
    SFI_WRITE_BACK: N_("write-back file"),
    SFI_JOB: N_("job file"),
}


FCI_NAME: Final = N_("card information")


PARAMETERS_BODY: Final = 45


PURCHASE_BODY: Final = 26


PURCHASE_MAC_OFFSET: Final = 22


WRITE_BACK_BODY: Final = 41


WRITE_BACK_MAC_OFFSET: Final = 37


JOB_BODY: Final = 20


TARIFF_BODY_MAX: Final = 154


BODY_SIZES: Final[Mapping[int, int]] = {
    SFI_PARAMETERS: PARAMETERS_BODY,
    SFI_PURCHASE: PURCHASE_BODY,
    SFI_CURRENT_TARIFF: TARIFF_BODY_MAX,  # the largest; a tariff body is variable
    SFI_BACKUP_TARIFF: TARIFF_BODY_MAX,
    SFI_WRITE_BACK: WRITE_BACK_BODY,
    SFI_JOB: JOB_BODY,
}


STATE_BLANK: Final = 0x00


STATE_ISSUED: Final = 0x01


MAX_PERIODS: Final = 4


MAX_SEGMENTS: Final = 12


MAX_TIERS: Final = 6


OPEN_TIER: Final = 0xFFFFFFFF


TARIFF_KIND_CODES: Final[Mapping[str, int]] = {"flat": 1, "tou": 2, "tiered": 3, "tou_tiered": 4}


PERIOD_CODES: Final[Mapping[str, int]] = {"sharp": 1, "peak": 2, "flat": 3, "valley": 4}


_KIND_NAMES: Final = {code: name for name, code in TARIFF_KIND_CODES.items()}


_PERIOD_NAMES: Final = {code: name for name, code in PERIOD_CODES.items()}


BEIJING: Final = dt.timezone(dt.timedelta(hours=8))


_START: Final = 0x68


_END: Final = 0x16


_OVERHEAD: Final = 6  # 68, LEN u16, CRC u16, 16


_DIGITS: Final = frozenset("0123456789")


_U8: Final = 0xFF


_U16: Final = 0xFFFF


_U32: Final = 0xFFFFFFFF


_U64: Final = 0xFFFFFFFFFFFFFFFF


_S32_MIN: Final = -(2**31)


_S32_MAX: Final = 2**31 - 1


_USER_CARD_TYPES: Final = frozenset(
    {UserCardType.OPEN, UserCardType.PURCHASE, UserCardType.REPLACEMENT}
)
