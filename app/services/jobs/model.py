"""What a job is: its kinds and the management card each needs, results, card states, and their labels."""

from __future__ import annotations

from app.domain.card import CardKind
from app.domain.card import JobKind
from app.i18n import N_

OUTBOX_KIND = "job_result"  # sync/outbox.py sends it as a JobResultRecord to job-results


# job kind (the contract's) -> the management card that does it
CARD_OF_JOB: dict[str, CardKind] = {
    "price": CardKind.TARIFF,
    "purchase_params": CardKind.PARAMETERS,
    "reading_day": CardKind.READING_DAY,
    # a remote meter the station could not control (a command given up, commissioning failed):
    # on site, its control parameters go in with a parameters card and the relay is checked
    "onsite_control": CardKind.PARAMETERS,
}


_JOB_KIND: dict[str, JobKind] = {
    "price": JobKind.TARIFF,
    "purchase_params": JobKind.PARAMETERS,
    "reading_day": JobKind.READING_DAY,
    "onsite_control": JobKind.PARAMETERS,
}


RESULT_APPLIED = "applied"


RESULT_REFUSED = "refused"


RESULT_WRONG_METER = "wrong_meter"


# the meter's reason when it took the card but did not apply its job (neither JOB_APPLIED
# nor MISMATCH in the write-back status): the job file was missing, of another kind or invalid
REASON_JOB_NOT_USABLE = "job_not_usable"


CARD_STATES = ("issued", "applied", "returned", "closed")


# what a person reads of a job (the CLI and the technician's page)
KIND_NAMES = {
    "price": N_("price adjustment"),
    "purchase_params": N_("purchase parameters"),
    "reading_day": N_("meter reading day"),
    "onsite_control": N_("on-site control check"),
}


RESULT_NAMES = {
    RESULT_APPLIED: N_("applied by the meter"),
    RESULT_REFUSED: N_("refused by the meter"),
    RESULT_WRONG_METER: N_("inserted into the wrong meter"),
}


STATE_NAMES = {
    "issued": N_("card out"),
    "applied": N_("applied on site"),
    "returned": N_("card returned"),
    "closed": N_("job closed"),
}


NO_CUSTOMER = "000000000000"
