"""Customers of the utility as the counter knows them, and the rules for their fields."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# customer_no and meter_no are checked by the one set of id formats
from app.domain.ids import check_customer_no as check_customer_no
from app.domain.ids import check_meter_no as check_meter_no
from app.domain.ids import is_digits
from app.domain.ledger import NO_CREDIT_CEILING
from app.errors import ValidationError
from app.i18n import N_

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_DIGIT = re.compile(r"[^0-9]")
_PHONE = re.compile(r"\+?[0-9][0-9 \-]{2,23}", re.ASCII)
MAX_RATIO = 100_000


class MeterKind(enum.StrEnum):
    CARD = "card"  # prepaid IC card meter: credit travels on the user card
    REMOTE = "remote"  # remote fee control: the central system issues credit to the meter


class CustomerStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"


def check_text(value: str, field: str, *, max_len: int, required: bool = True) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ValidationError(N_("{field} must not be empty"), field=field)
    if len(value) > max_len:
        raise ValidationError(
            N_("{field} is longer than {max_len} characters"), field=field, max_len=max_len
        )
    if _CONTROL.search(value):
        raise ValidationError(N_("{field} contains control characters"), field=field)
    return value


def check_phone(value: str) -> str:
    value = (value or "").strip()
    if value and not _PHONE.fullmatch(value):
        raise ValidationError(N_("phone {value!r} is not a telephone number"), value=value)
    return value


def phone_digits(value: str) -> str:
    return _NOT_DIGIT.sub("", value)


def check_ratio(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RATIO:
        raise ValidationError(
            N_("{field} must be a whole number from 1 to {max}, got {value!r}"),
            field=field,
            max=MAX_RATIO,
            value=value,
        )
    return value


def parse_ratio(text: str, field: str) -> int:
    text = (text or "").strip() or "1"
    if not is_digits(text):
        raise ValidationError(
            N_("{field} must be a whole number from 1 to {max}, got {value!r}"),
            field=field,
            max=MAX_RATIO,
            value=text,
        )
    return check_ratio(int(text), field)


def parse_meter_kind(text: str) -> MeterKind:
    try:
        return MeterKind((text or "").strip().lower())
    except ValueError:
        raise ValidationError(
            N_("meter_kind must be card or remote, got {value!r}"), value=text
        ) from None


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Charge-control thresholds of one customer, all in fen."""

    alarm1: int = 2000  # first low-balance alarm
    alarm2: int = 1000  # second alarm, shortly before the trip
    overdraft_limit: int = 0  # credit the meter may run below zero before it trips
    credit_ceiling: int = NO_CREDIT_CEILING  # most credit a customer may hold (hoarding limit)

    def validate(self) -> Thresholds:
        for name in ("alarm1", "alarm2", "overdraft_limit", "credit_ceiling"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 2**31 - 1:
                raise ValidationError(N_("threshold {name} is out of range"), name=name)
        if self.alarm2 > self.alarm1:
            raise ValidationError(N_("alarm2 must not be above alarm1"))
        return self
