"""What a prepaid card carries, as the counter's domain sees it, and the card errors.

The byte layouts live in ``cardio/profile.py`` (documented in ``cardio/PROFILE.md``); these are the
decoded records the services work with.  Money is fen, energy Wh, times timezone-aware.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from app.errors import CardVendError
from app.i18n import N_

PROFILE_VERSION = 2  # 2: the purchase record carries a MAC (cardio/PROFILE.md)
ANY_METER = "999999999999"


class CardKind(enum.IntEnum):
    BLANK = 0x00
    USER = 0x01
    TARIFF = 0x11  # management card: tariff adjustment
    PARAMETERS = 0x12  # management card: purchase parameters (thresholds, ratios)
    READING_DAY = 0x13  # management card: meter reading day
    CHECK = 0x14  # management card: collects meter data on site

    @property
    def label(self) -> str:
        return {
            CardKind.BLANK: N_("blank card"),
            CardKind.USER: N_("user card"),
            CardKind.TARIFF: N_("tariff adjustment card"),
            CardKind.PARAMETERS: N_("purchase parameters card"),
            CardKind.READING_DAY: N_("reading day card"),
            CardKind.CHECK: N_("check card"),
        }[self]

    @property
    def is_management(self) -> bool:
        return self >= 0x11


class UserCardType(enum.IntEnum):
    NONE = 0
    OPEN = 1  # the first card of a new account
    PURCHASE = 2
    REPLACEMENT = 3


class UpdateFlags(enum.IntFlag):
    NONE = 0
    PARAMETERS = 1
    CURRENT_TARIFF = 2
    BACKUP_TARIFF = 4


class WriteBackStatus(enum.IntFlag):
    NONE = 0
    ALARM1 = 1
    ALARM2 = 2
    TRIPPED = 4
    OVERDRAFT = 8
    PURCHASE_REFUSED = 16
    MISMATCH = 32
    JOB_APPLIED = 64


class JobKind(enum.IntEnum):
    TARIFF = 1
    PARAMETERS = 2
    READING_DAY = 3
    CHECK = 4


@dataclass(frozen=True)
class ParameterRecord:
    card_kind: CardKind
    utility_code: str  # 6 digits
    user_card_type: UserCardType
    customer_no: str  # 12 digits, zeros on management cards
    meter_no: str  # 12 digits; ANY_METER on a management card for every meter
    alarm1: int
    alarm2: int
    overdraft_limit: int
    credit_ceiling: int
    ct_ratio: int
    pt_ratio: int
    update_flags: UpdateFlags
    param_version: int
    profile_version: int = PROFILE_VERSION


@dataclass(frozen=True)
class PurchaseRecord:
    amount: int  # fen, the credit of this purchase
    purchase_count: int
    sale_tag: bytes  # first 8 bytes of the sale UUID
    time: dt.datetime | None
    # the purchase MAC as read from a card (4 bytes). Not part of what the record says: the
    # counter's terminal computes it for the card it writes to, whatever a record carries.
    mac: bytes = field(default=b"", compare=False)


@dataclass(frozen=True)
class TariffRecord:
    """A tariff as carried on a card: the pricing spec (dict form of app.domain.pricing) plus
    its version number and switch-over time."""

    version_no: int
    effective_from: dt.datetime | None
    spec: dict[str, Any]


@dataclass(frozen=True)
class WriteBack:
    meter_no: str
    remaining: int  # fen, negative while overdraft is used
    overdraft_used: int
    purchase_count: int
    total_energy_wh: int
    status: WriteBackStatus
    illegal_insert_count: int
    time: dt.datetime | None
    param_version: int
    mac: bytes


@dataclass(frozen=True)
class JobRecord:
    job_id: bytes  # 16 bytes (UUID)
    kind: JobKind
    reading_day: int = 0
    reading_hour: int = 0


@dataclass(frozen=True)
class CardContents:
    """Everything read from a card. ``None`` for a file that was never written."""

    serial: bytes
    kind: CardKind
    profile_version: int
    parameters: ParameterRecord | None = None
    purchase: PurchaseRecord | None = None
    current_tariff: TariffRecord | None = None
    backup_tariff: TariffRecord | None = None
    write_back: WriteBack | None = None
    job: JobRecord | None = None
    # True: the write-back carries a valid meter MAC; False: forged or copied; None: not checked
    write_back_genuine: bool | None = None
    # True: the purchase record carries a valid purchase MAC; False: edited, forged or copied
    # from another card; None: not checked (no purchase, or read without keys)
    purchase_genuine: bool | None = None
    raw: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def serial_hex(self) -> str:
        return self.serial.hex().upper()


@dataclass(frozen=True)
class CardWrite:
    """What the counter writes onto a card in one authenticated session. Files left ``None`` are
    not touched. Every file written is read back and compared."""

    parameters: ParameterRecord | None = None
    purchase: PurchaseRecord | None = None
    current_tariff: TariffRecord | None = None
    backup_tariff: TariffRecord | None = None
    job: JobRecord | None = None


# --------------------------------------------------------------------------- errors


class CardError(CardVendError):
    code = "card"
    template = N_("The card could not be used: {detail}")


class NoReader(CardError):
    code = "no_reader"
    template = N_("No card reader is connected. Connect the reader and try again.")


class NoCard(CardError):
    code = "no_card"
    template = N_("There is no card in reader {reader}. Insert the card and try again.")


class CardRemoved(CardError):
    code = "card_removed"
    template = N_("The card was taken out during the operation. Insert it again; nothing is lost.")


class UnissuedCard(CardError):
    code = "unissued"
    template = N_("This is a blank card that has not been issued yet.")


class ForeignCard(CardError):
    code = "foreign"
    template = N_(
        "This card does not belong to this utility ({detail}). Return it to the customer."
    )


class WrongCardKind(CardError):
    code = "wrong_kind"
    template = N_("This is a {found}, but a {expected} is needed here.")


class CardAuthError(CardError):
    code = "card_auth"
    template = N_(
        "The card refused the security check ({detail}). Do not retry with this card; "
        "call a supervisor."
    )


class CorruptCardFile(CardError):
    code = "corrupt"
    template = N_(
        "The {file} on the card is damaged ({detail}). The card must be rewritten or replaced."
    )


class UnsupportedProfile(CardError):
    code = "profile"
    template = N_("The card uses profile version {version}, which this CardVend cannot read.")


class CardCommandError(CardError):
    code = "card_command"
    template = N_("The card answered {sw} to {command}. Take the card out and try again.")


class WriteVerifyFailed(CardError):
    code = "verify"
    template = N_(
        "The card did not keep what was written to the {file}. Try again or replace the card."
    )


class DifferentCard(CardError):
    code = "different_card"
    template = N_(
        "A different card ({found}) is in the reader than the one read before ({expected}). "
        "Insert the customer's card again."
    )


@dataclass(frozen=True)
class WriteResult:
    """A verified write: every file named was written and read back identical."""

    serial: bytes
    files: tuple[str, ...]  # file names (msgids), in the order written
    apdus: int  # commands the session took
