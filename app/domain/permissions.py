"""Roles and the one permission matrix for every service action.

Services check permissions themselves (:func:`require`); the UI only hides what is not allowed.
"""

from __future__ import annotations

import enum

from app.domain.operators import Role
from app.errors import CardVendError
from app.i18n import N_


class Action(enum.StrEnum):
    SELL = "sell"
    OPEN_ACCOUNT = "open_account"
    REPLACE_CARD = "replace_card"
    REWRITE = "rewrite"
    REVERSE = "reverse"
    REPRINT = "reprint"
    OVERRIDE_OFFLINE_LIMIT = "override_offline_limit"
    PROGRAM_MANAGEMENT_CARD = "program_management_card"
    ADMINISTER_CARDS = "administer_cards"  # card blank, issue, erase (cardio/cli.py)
    ERASE_CARD = "erase_card"  # the approval to erase a card holding credit not yet loaded
    READ_METER = "read_meter"
    CHANGE_SETTINGS = "change_settings"
    MANAGE_OPERATORS = "manage_operators"
    IMPORT_CUSTOMERS = "import_customers"  # set-up: load the customer archive from a file
    VIEW_REPORTS = "view_reports"
    EXPORT_REPORTS = "export_reports"
    VERIFY_AUDIT = "verify_audit"
    APPROVE = "approve"  # sign an approval step (the step names the role it needs)
    SHIFT = "shift"  # open and close one's own shift
    RETRY_SYNC = "retry_sync"  # re-send records the central system or the contract refused
    CHANGE_METER = "change_meter"  # carry a customer's credit from the old meter to the new
    CLOSE_ACCOUNT = "close_account"  # settle, refund and close a customer's account
    PAUSE_ACCOUNT = "pause_account"  # pause or resume a customer's account (no sales meanwhile)
    EXCHANGE_CARD = "exchange_card"  # a damaged or faulty card present, exchanged for a blank
    HANDLE_EXCEPTIONS = "handle_exceptions"  # the station's exceptions queue of the office

    # ask the station to lift a remote customer's fee control (approved) or to resume it
    LIFT_CONTROL = "lift_control"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Action.SELL: N_("sell electricity"),
    Action.OPEN_ACCOUNT: N_("open an account"),
    Action.REPLACE_CARD: N_("issue a replacement card"),
    Action.REWRITE: N_("rewrite a card"),
    Action.REVERSE: N_("reverse a sale"),
    Action.REPRINT: N_("reprint a receipt"),
    Action.OVERRIDE_OFFLINE_LIMIT: N_("override an offline limit"),
    Action.PROGRAM_MANAGEMENT_CARD: N_("program a management card"),
    Action.ADMINISTER_CARDS: N_("make, issue or erase cards"),
    Action.ERASE_CARD: N_("erase a card holding credit the meter has not loaded"),
    Action.READ_METER: N_("read a meter"),
    Action.CHANGE_SETTINGS: N_("change settings"),
    Action.MANAGE_OPERATORS: N_("manage operators"),
    Action.IMPORT_CUSTOMERS: N_("import customers"),
    Action.VIEW_REPORTS: N_("view reports"),
    Action.EXPORT_REPORTS: N_("export reports"),
    Action.VERIFY_AUDIT: N_("verify the audit log"),
    Action.APPROVE: N_("approve"),
    Action.SHIFT: N_("open or close a shift"),
    Action.RETRY_SYNC: N_("re-send refused records to the central system"),
    Action.CHANGE_METER: N_("change a customer's meter"),
    Action.CLOSE_ACCOUNT: N_("close an account"),
    Action.PAUSE_ACCOUNT: N_("pause or resume an account"),
    Action.EXCHANGE_CARD: N_("exchange a damaged card"),
    Action.HANDLE_EXCEPTIONS: N_("work the exceptions queue"),
    Action.LIFT_CONTROL: N_("lift or resume a customer's fee control"),
}

_COUNTER = {
    Action.SELL,
    Action.OPEN_ACCOUNT,
    Action.REPLACE_CARD,
    Action.REWRITE,
    Action.REVERSE,
    Action.REPRINT,
    Action.SHIFT,
    Action.VIEW_REPORTS,
    Action.CHANGE_METER,
    Action.CLOSE_ACCOUNT,
    Action.PAUSE_ACCOUNT,
    Action.EXCHANGE_CARD,
    Action.LIFT_CONTROL,
}

PERMISSIONS: dict[Role, frozenset[Action]] = {
    # a teller asks for reversals, replacements and reprints; a supervisor approves them
    Role.TELLER: frozenset(_COUNTER),
    Role.SUPERVISOR: frozenset(
        _COUNTER
        | {
            Action.OVERRIDE_OFFLINE_LIMIT,
            Action.APPROVE,
            Action.EXPORT_REPORTS,
            Action.RETRY_SYNC,
            Action.HANDLE_EXCEPTIONS,
        }
    ),
    Role.TECHNICIAN: frozenset(
        {
            Action.PROGRAM_MANAGEMENT_CARD,
            Action.READ_METER,
            Action.VIEW_REPORTS,
            Action.ADMINISTER_CARDS,
        }
    ),
    Role.ADMIN: frozenset(
        {
            Action.CHANGE_SETTINGS,
            Action.MANAGE_OPERATORS,
            Action.IMPORT_CUSTOMERS,
            Action.ADMINISTER_CARDS,
            Action.VIEW_REPORTS,
            Action.EXPORT_REPORTS,
            Action.VERIFY_AUDIT,
            Action.RETRY_SYNC,
        }
    ),
    Role.AUDITOR: frozenset({Action.VIEW_REPORTS, Action.EXPORT_REPORTS, Action.VERIFY_AUDIT}),
}


class PermissionDenied(CardVendError):
    code = "permission"
    template = N_("Operator {operator} ({role}) may not {action}. Ask someone who may.")


def allowed(role: Role | str, action: Action) -> bool:
    return action in PERMISSIONS[Role(role)]


def require(operator_id: str, role: Role | str, action: Action) -> None:
    if not allowed(role, action):
        raise PermissionDenied(operator=operator_id, role=Role(role).label, action=action.label)
