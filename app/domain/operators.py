"""Operators and their roles. Permissions and approvals build on these roles."""

from __future__ import annotations

import enum

# an operator id is checked by the one set of id formats
from app.domain.ids import check_operator_id as check_operator_id


class Role(enum.StrEnum):
    TELLER = "teller"
    SUPERVISOR = "supervisor"
    TECHNICIAN = "technician"
    ADMIN = "admin"
    AUDITOR = "auditor"
