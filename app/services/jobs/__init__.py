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

from app.services.jobs.cards import CardPlan
from app.services.jobs.cards import judge
from app.services.jobs.cards import management_parameters
from app.services.jobs.cards import plan_card
from app.services.jobs.cards import preview
from app.services.jobs.cards import program
from app.services.jobs.cards import return_card
from app.services.jobs.cards import write_back_json
from app.services.jobs.check import CheckReading
from app.services.jobs.check import program_check_card
from app.services.jobs.check import read_check_card
from app.services.jobs.errors import CheckCardEmpty
from app.services.jobs.errors import JobCardForged
from app.services.jobs.errors import JobCardInUse
from app.services.jobs.errors import JobCardMismatch
from app.services.jobs.errors import JobCardNotProgrammed
from app.services.jobs.errors import JobCardNotUsed
from app.services.jobs.errors import JobCardOut
from app.services.jobs.errors import JobContentMissing
from app.services.jobs.errors import JobError
from app.services.jobs.errors import JobNotOpen
from app.services.jobs.errors import JobNotTaken
from app.services.jobs.errors import JobOfOtherOffice
from app.services.jobs.errors import JobTakenByOther
from app.services.jobs.model import CARD_OF_JOB
from app.services.jobs.model import CARD_STATES
from app.services.jobs.model import KIND_NAMES
from app.services.jobs.model import NO_CUSTOMER
from app.services.jobs.model import OUTBOX_KIND
from app.services.jobs.model import REASON_JOB_NOT_USABLE
from app.services.jobs.model import RESULT_APPLIED
from app.services.jobs.model import RESULT_NAMES
from app.services.jobs.model import RESULT_REFUSED
from app.services.jobs.model import RESULT_WRONG_METER
from app.services.jobs.model import STATE_NAMES
from app.services.jobs.service import get_job
from app.services.jobs.service import list_jobs
from app.services.jobs.service import my_jobs
from app.services.jobs.service import release
from app.services.jobs.service import take
from app.services.jobs.views import JobView
from app.services.jobs.views import state_text
from app.services.jobs.views import what_to_set

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
