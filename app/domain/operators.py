"""Operators and their roles. Permissions and approvals build on these roles."""

from __future__ import annotations

import enum
import re

from app.errors import ValidationError
from app.i18n import N_

_OPERATOR_ID = re.compile(r"^[A-Za-z0-9_.-]{2,32}$")


class Role(enum.StrEnum):
    TELLER = "teller"
    SUPERVISOR = "supervisor"
    TECHNICIAN = "technician"
    ADMIN = "admin"
    AUDITOR = "auditor"


def check_operator_id(value: str) -> str:
    if not isinstance(value, str) or not _OPERATOR_ID.match(value):
        raise ValidationError(
            N_(
                "operator id {value!r} must be 2 to 32 letters, digits, dots, dashes or underscores"
            ),
            value=value,
        )
    return value
