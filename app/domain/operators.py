"""Operators and their roles. Permissions and approvals build on these roles."""

from __future__ import annotations

# an operator id is checked by the one set of id formats
from app.domain.ids import check_operator_id as check_operator_id
from app.domain.labels import Labelled
from app.i18n import N_


class Role(Labelled):
    TELLER = "teller", N_("teller")
    SUPERVISOR = "supervisor", N_("supervisor")
    TECHNICIAN = "technician", N_("technician")
    ADMIN = "admin", N_("administrator")
    AUDITOR = "auditor", N_("auditor")
