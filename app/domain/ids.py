"""The one set of id and number formats, used wherever an id crosses a boundary.

Every id is ASCII and matched whole: ``re.fullmatch`` with ``re.ASCII`` (``$`` would also match
before a trailing newline, and ``\\d`` matches every script's digits, so ``３０００…`` or
``t01\\n`` would pass a careless check and then never be found again).  CSV import, the command
line, the window, settings and the contract models all check ids here; the contract models use
the ``*_PATTERN`` strings (pydantic's regex engine has no multiline ``$``, and ``[0-9]`` is ASCII
there too).

Full-width digits typed as an *amount* may be converted on purpose (``app.money``), never in an
id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import ValidationError
from app.i18n import N_


@dataclass(frozen=True)
class IdFormat:
    """One kind of id: its name (for messages), its pattern and what it must look like."""

    name: str
    pattern: str  # for pydantic/JSON Schema: anchored with ^...$, ASCII classes only
    rule: str  # marked message: what a valid value looks like

    @property
    def regex(self) -> re.Pattern[str]:
        return _compiled(self.pattern)

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None

    def check(self, value: object, field: str | None = None) -> str:
        """``value`` when it is a valid id of this kind, otherwise a ValidationError that names
        the field and says what it must look like (the value shown with ``!r``, so a trailing
        newline or a full-width digit is visible)."""
        if not self.matches(value):
            raise ValidationError(
                N_("{field} {value!r} is not valid: {rule}"),
                field=field or self.name,
                value=value,
                rule=self.rule,
            )
        assert isinstance(value, str)
        return value


_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _CACHE.get(pattern)
    if found is None:
        body = pattern.removeprefix("^").removesuffix("$")
        found = _CACHE[pattern] = re.compile(body, re.ASCII)
    return found


DIGITS12_PATTERN = r"^[0-9]{12}$"
# ``name`` is what a message calls the id: the field and column names customer_no and meter_no
# stay as they are (a CSV header says them), the others are marked to be translated
CUSTOMER_NO = IdFormat("customer_no", DIGITS12_PATTERN, N_("exactly 12 digits 0-9"))
METER_NO = IdFormat("meter_no", DIGITS12_PATTERN, N_("exactly 12 digits 0-9"))
OPERATOR_ID = IdFormat(
    N_("operator id"),
    r"^[A-Za-z0-9_.-]{2,32}$",
    N_("2 to 32 letters A-Z, digits, dots, dashes or underscores"),
)
# counter ids and the contract's codes are spelled alike
NAME32_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"
NAME32_RULE = N_("1 to 32 letters A-Z, digits, dots, dashes or underscores")
COUNTER_ID = IdFormat(N_("counter id"), NAME32_PATTERN, NAME32_RULE)
OFFICE_CODE = IdFormat(
    N_("office code"),
    r"^[A-Za-z0-9_-]{1,16}$",
    N_("1 to 16 letters A-Z, digits, dashes or underscores"),
)
CODE = IdFormat(N_("code"), NAME32_PATTERN, NAME32_RULE)
CARD_SERIAL = IdFormat(N_("card serial"), r"^[0-9A-F]{16}$", N_("16 hexadecimal digits 0-9 A-F"))
UUID = IdFormat(
    N_("id"),
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    N_("a UUID in lower case, 36 characters"),
)
# sales, shifts, approvals and management jobs are named by UUIDs
SALE_ID = IdFormat(N_("sale id"), UUID.pattern, UUID.rule)
SHIFT_ID = IdFormat(N_("shift id"), UUID.pattern, UUID.rule)
# a management job as a card carries it: the 16 bytes of its UUID in hexadecimal
CARD_JOB_ID = IdFormat(N_("job id"), r"^[0-9a-f]{32}$", N_("32 hexadecimal digits 0-9 a-f"))
UTILITY_CODE = IdFormat(N_("utility code"), r"^[0-9]{6}$", N_("exactly 6 digits 0-9"))


def check_customer_no(value: object, field: str = "customer_no") -> str:
    return CUSTOMER_NO.check(value, field)


def check_meter_no(value: object, field: str = "meter_no") -> str:
    return METER_NO.check(value, field)


def check_operator_id(value: object) -> str:
    return OPERATOR_ID.check(value)


def check_counter_id(value: object) -> str:
    return COUNTER_ID.check(value)


def check_office_code(value: object) -> str:
    return OFFICE_CODE.check(value)


def is_digits(text: str, length: int | None = None) -> bool:
    """ASCII digits only (``str.isdigit`` is true for every script's digits and for
    superscripts), optionally exactly ``length`` of them."""
    if not text or not text.isascii() or not text.isdigit():
        return False
    return length is None or len(text) == length
