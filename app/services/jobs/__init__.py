"""The field technician's management-card jobs: list, take, release, program, return.

The central system sends the jobs it could not issue remotely (``sync/pull.py`` puts them in
``mgmt_jobs``): a price adjustment (``price``: a tariff plan version), purchase parameters
(``purchase_params``: thresholds and limits) or a meter reading day (``reading_day``).  A
technician of the counter's office takes a job (it is theirs until returned or released),
programs the matching management card -- its content built from the job and the archive, never
typed -- carries it to the meter and brings it back.  The meter writes its write-back onto the
card; :func:`return_card` reads it, records the result (``applied``; ``refused`` with the
meter's reason; ``wrong_meter``), closes the job and queues the result in the outbox, in the
same transaction, so it reaches the central system exactly once (``job-results``, idempotent by
the result's UUID).

The card's lifecycle: ``issued`` (programmed) -> ``applied`` on site (the meter's write-back
time) -> ``returned`` -> ``closed``.  A card still out longer than ``overdue_days`` after it was
programmed is flagged overdue (:attr:`JobView.overdue`).

Rules: a counter acts only on its own office's jobs; ids are ASCII and matched whole
(``app.domain.ids``); the permission ``program_management_card`` for every step (and
``read_meter`` to read a check card); every step is audited, refusals too.

A check card (:func:`read_check_card`) collects a meter's write-back on site; what it brings
back is stored on the customer's archive row (``meter_remaining``, ``meter_purchase_count``,
``meter_illegal_insert_count``, ``write_back_seen_at``) and sent by the next sync round as a control report.
"""

from __future__ import annotations

from app.services.jobs.cards import (
    CardPlan,
    judge,
    management_parameters,
    plan_card,
    preview,
    program,
    return_card,
    write_back_json,
)
from app.services.jobs.check import CheckReading, program_check_card, read_check_card
from app.services.jobs.errors import (
    CheckCardEmpty,
    JobCardForged,
    JobCardInUse,
    JobCardMismatch,
    JobCardNotProgrammed,
    JobCardNotUsed,
    JobCardOut,
    JobContentMissing,
    JobError,
    JobNotOpen,
    JobNotTaken,
    JobOfOtherOffice,
    JobTakenByOther,
)
from app.services.jobs.model import (
    CARD_OF_JOB,
    CARD_STATES,
    KIND_NAMES,
    NO_CUSTOMER,
    OUTBOX_KIND,
    REASON_JOB_NOT_USABLE,
    RESULT_APPLIED,
    RESULT_NAMES,
    RESULT_REFUSED,
    RESULT_WRONG_METER,
    STATE_NAMES,
)
from app.services.jobs.service import get_job, list_jobs, my_jobs, release, take
from app.services.jobs.views import JobView, state_text, what_to_set

__all__ = [
    "CARD_OF_JOB",
    "CARD_STATES",
    "KIND_NAMES",
    "NO_CUSTOMER",
    "OUTBOX_KIND",
    "REASON_JOB_NOT_USABLE",
    "RESULT_APPLIED",
    "RESULT_NAMES",
    "RESULT_REFUSED",
    "RESULT_WRONG_METER",
    "STATE_NAMES",
    "CardPlan",
    "CheckCardEmpty",
    "CheckReading",
    "JobCardForged",
    "JobCardInUse",
    "JobCardMismatch",
    "JobCardNotProgrammed",
    "JobCardNotUsed",
    "JobCardOut",
    "JobContentMissing",
    "JobError",
    "JobNotOpen",
    "JobNotTaken",
    "JobOfOtherOffice",
    "JobTakenByOther",
    "JobView",
    "get_job",
    "judge",
    "list_jobs",
    "management_parameters",
    "my_jobs",
    "plan_card",
    "preview",
    "program",
    "program_check_card",
    "read_check_card",
    "release",
    "return_card",
    "state_text",
    "take",
    "what_to_set",
    "write_back_json",
]
