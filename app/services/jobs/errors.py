"""The typed errors of the jobs, each with a message for the technician in both languages."""

from __future__ import annotations

from app.errors import CardVendError
from app.i18n import N_


class JobError(CardVendError):
    code = "job"
    template = N_("{detail}")


class JobOfOtherOffice(JobError):
    code = "job_other_office"
    template = N_(
        "Job {job_id} belongs to office {office}, not to this counter's office {own}. "
        "Only that office's technicians can do it."
    )


class JobTakenByOther(JobError):
    code = "job_taken"
    template = N_(
        "Job {job_id} is taken by technician {holder}. It is theirs until they return or "
        "release it."
    )


class JobNotTaken(JobError):
    code = "job_not_taken"
    template = N_("Job {job_id} is not taken by you. Take it first (cardvend jobs take).")


class JobNotOpen(JobError):
    code = "job_not_open"
    template = N_("Job {job_id} is {status}; only an open job can be taken or programmed.")


class JobCardOut(JobError):
    code = "job_card_out"
    template = N_(
        "The card of job {job_id} is out (programmed {issued_at}). Bring the card back and "
        "return it before releasing the job."
    )


class JobCardNotProgrammed(JobError):
    code = "job_card_not_programmed"
    template = N_("No card was programmed for job {job_id}. Program a card first.")


class JobCardNotUsed(JobError):
    code = "job_card_not_used"
    template = N_(
        "The meter has not written on the card of job {job_id} since it was programmed. "
        "Take the card to meter {meter_no} and insert it, then return it."
    )


class CheckCardEmpty(JobError):
    code = "check_card_empty"
    template = N_(
        "Check card {serial} holds no meter reading yet. Insert it into a meter, then read it."
    )


class JobCardInUse(JobError):
    code = "job_card_in_use"
    template = N_(
        "Card {serial} is out for job {job_id} and has not been returned. Return it first, or "
        "use another card."
    )


class JobCardForged(JobError):
    code = "job_card_forged"
    template = N_(
        "The write-back on card {serial} does not carry a genuine meter signature. Nothing was "
        "recorded; keep the card and call a supervisor."
    )


class JobCardMismatch(JobError):
    code = "job_card_mismatch"
    template = N_(
        "Card {serial} is not the card programmed for job {job_id} ({expected}). Return the "
        "card that was programmed for it."
    )


class JobContentMissing(JobError):
    code = "job_content_missing"
    template = N_(
        "Job {job_id} cannot be put on a card: {reason}. Sync with the central system and try "
        "again."
    )
