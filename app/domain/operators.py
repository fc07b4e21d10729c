"""Operators and their roles. Permissions and approvals build on these roles."""

from __future__ import annotations

# an operator id is checked by the one set of id formats
from app.domain.ids import check_operator_id as check_operator_id
from app.domain.labels import Labelled
from app.i18n import N_


class Role(Labelled):
    TELLER = "teller"
    SUPERVISOR = "supervisor"
    TECHNICIAN = "technician"
    ADMIN = "admin"
    AUDITOR = "auditor"

    @classmethod
    def _labels(cls) -> dict[Role, str]:
        return _ROLE_LABELS


_ROLE_LABELS = {
    Role.TELLER: N_("teller"),
    Role.SUPERVISOR: N_("supervisor"),
    Role.TECHNICIAN: N_("technician"),
    Role.ADMIN: N_("administrator"),
    Role.AUDITOR: N_("auditor"),
}
