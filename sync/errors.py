"""Typed errors of the link to the central system; each says what happened and what to do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from app.errors import CardVendError
from app.errors import KindError
from app.i18n import N_


class SyncError(CardVendError):
    code = "sync"
    template = N_("Sync with the central system failed: {detail}")


class NotRegistered(SyncError):
    code = "not_registered"
    template = N_(
        "This counter is not registered with the central system. An administrator runs "
        "'cardvend counter register --central URL' first."
    )


class CentralUnreachable(SyncError):
    code = "central_unreachable"
    template = N_(
        "The central system at {url} cannot be reached ({detail}). Selling goes on offline "
        "within the limits; sales are sent when the link is back."
    )


class CentralUnauthorized(SyncError):
    code = "central_unauthorized"
    template = N_(
        "The central system refused this counter's token ({detail}). An administrator "
        "registers the counter again."
    )


class CentralBadResponse(SyncError):
    code = "central_bad_response"
    template = N_(
        "The central system answered {method} {path} with something that is not in the "
        "contract ({detail}). Nothing was changed; tell the central system's support."
    )


class CentralRejected(SyncError):
    code = "central_rejected"
    template = N_("The central system refused {method} {path}: {status} {detail}")


class AuditDiverged(SyncError):
    code = "audit_diverged"
    template = N_(
        "The central system holds another audit history for this counter ({detail}). The "
        "local audit log may have been altered; call the supervisor and do not delete anything."
    )


class RegistrationRefused(SyncError):
    code = "registration_refused"
    template = N_(
        "The central system refused to register counter {counter} ({detail}). Check the "
        "enrolment key, or ask the central system's administrator for an enrolment code."
    )


class EnrolmentKeyRefused(RegistrationRefused):
    code = "enrolment_key_refused"
    template = N_(
        "The central system refused to register counter {counter}: the enrolment key (or "
        "code) is not right. Check it with the central system's administrator, or ask for an "
        "enrolment code."
    )


class RegistrationUnreachable(SyncError):
    code = "registration_unreachable"
    template = N_(
        "The central system at {url} cannot be reached, so nothing was registered. Check the "
        "address (with its https:// or http://) and this PC's network, then register again."
    )


class CounterIdTaken(RegistrationRefused):
    code = "counter_id_taken"
    template = N_(
        "Counter id {counter} is registered with the central system already, and this counter "
        "holds neither its token nor an enrolment code for it. If this is that counter "
        "(reinstalled or moved to another office), ask the central system's administrator for "
        "an enrolment code ('cardvend central enrol {counter} --office OFFICE') and register "
        "with it; otherwise give this counter an id of its own."
    )


class ExceptionNotFound(SyncError):
    code = "exception_not_found"
    template = N_(
        "The station holds no exception {exception_id} for this counter's office. Check the id "
        "with 'cardvend exceptions list'."
    )


class IllegalTransition(SyncError):
    code = "illegal_transition"
    template = N_(
        "The exception cannot take this step now ({detail}). Look at its state with "
        "'cardvend exceptions show ID'."
    )


class StatsRefused(KindError, SyncError):
    """The station refused a statistics request (``kind`` is its problem code)."""

    code = "stats_refused"
    template = N_("The station cannot give statistics for region {region}: {reason}")
    default_kind = "bad_request"
    reasons: ClassVar[Mapping[str, str]] = {
        "unknown_region": N_(
            "no office is in that region; give an office code, city:NAME or province:NAME"
        ),
        "region_not_allowed": N_(
            "a counter sees only its own office and the city and province it is in"
        ),
        "bad_period": N_("the period is not valid (from after to, or more than 366 days)"),
        "bad_filter": N_("no such tariff plan or control state"),
        "bad_request": N_("the request is not valid"),
    }
