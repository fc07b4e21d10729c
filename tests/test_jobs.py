"""The technician's management-card jobs (app/services/jobs.py) on emulated cards and the meter
simulator: who may act on a job, the card's lifecycle and overdue flag, the meter's results
(applied, refused, wrong meter), and the result posted to the reference central server once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from app.clock import FixedClock
from app.domain.card import CardKind
from app.domain.card import CardWrite
from app.domain.card import JobKind
from app.domain.card import JobRecord
from app.domain.card import WrongCardKind
from app.domain.operators import Role
from app.domain.permissions import PermissionDenied
from app.errors import NotFound
from app.errors import ValidationError
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.persistence.models import Customer
from app.persistence.models import MgmtJob
from app.persistence.models import OutboxEntry
from app.services import auth
from app.services import jobs
from app.services.operators import add_operator
from cardio.meter_sim import MeterSimulator
from sync.central import models as central_models
from sync.central.server import CentralServer
from sync.client import CentralClient
from sync.service import SyncService
from tests.cardkit import UTILITY
from tests.cardkit import CardKit
from tests.rigs.sync import register

CUSTOMER = "100000000001"  # card meter, RES-FLAT
METER = "200000000001"
OTHER_METER = "200000000002"
OFFICE = "DEMO"


@dataclass
class Field:
    db: Database
    clock: FixedClock
    kit: CardKit
    tech: auth.Principal
    tech2: auth.Principal
    tmp: Path

    def job(self, kind: str = "purchase_params", **kw: object) -> str:
        params = {
            "price": {"plan_code": "RES-TOU", "version_no": 1},
            "purchase_params": {"alarm1": 3000, "alarm2": 1500, "overdraft_limit": 500},
            "reading_day": {"reading_day": 15, "reading_hour": 6},
        }[kind]
        job_id = str(uuid.uuid4())
        now = self.clock.now()
        row = {
            "id": job_id,
            "kind": kind,
            "customer_no": CUSTOMER,
            "meter_no": METER,
            "office_code": OFFICE,
            "params": params,
            "status": "open",
            "created_at": now,
            "updated_at": now,
        }
        row.update(kw)
        with self.db.write() as session:
            session.add(MgmtJob(**row))
        return job_id

    def card(self, kind: CardKind) -> Path:
        image = self.kit.blank()
        self.kit.terminal(image).issue(kind)
        return image

    def meter(self, meter_no: str = METER) -> MeterSimulator:
        return MeterSimulator(
            self.tmp / f"meter-{meter_no}.json", self.kit.keys, meter_no=meter_no, clock=self.clock
        )

    def program(self, job_id: str, image: Path) -> jobs.JobView:
        return jobs.program(
            self.db,
            self.tech,
            self.clock,
            job_id,
            self.kit.terminal(image),
            office_code=OFFICE,
            utility_code=UTILITY,
        )

    def give_back(self, image: Path, job_id: str | None = None) -> jobs.JobView:
        return jobs.return_card(
            self.db, self.tech, self.clock, self.kit.terminal(image), office_code=OFFICE,
            job_id=job_id,
        )  # fmt: skip


@pytest.fixture
def field(demo_db: Database, clock: FixedClock, tmp_path: Path) -> Field:
    with demo_db.write() as session:
        add_operator(session, "f02", "Second", Role.TECHNICIAN, "demo-f02", clock, office=OFFICE)
    tech = auth.login(demo_db, "f01", "demo-f01", counter_id="C01", clock=clock)
    tech2 = auth.login(demo_db, "f02", "demo-f02", counter_id="C01", clock=clock)
    return Field(demo_db, clock, CardKit(tmp_path), tech, tech2, tmp_path)


def _audit_actions(db: Database) -> list[tuple[str, str]]:
    with db.read() as session:
        rows = session.execute(select(AuditEntry.action, AuditEntry.result)).all()
    return [(a, r) for a, r in rows if a.startswith("job_") or a.startswith("check_card")]


def test_take_release_and_someone_elses_job(field: Field) -> None:
    job_id = field.job()
    db, clock = field.db, field.clock
    listed = jobs.list_jobs(db, field.tech, clock, office_code=OFFICE)
    assert [(v.id, v.customer_no, v.meter_no, v.customer_name is not None) for v in listed] == [
        (job_id, CUSTOMER, METER, True)
    ]
    assert listed[0].params["alarm1"] == 3000 and listed[0].card_kind == "parameters"
    view = jobs.take(db, field.tech, clock, job_id, office_code=OFFICE)
    assert view.taken_by == "f01"
    assert jobs.take(db, field.tech, clock, job_id, office_code=OFFICE).taken_by == "f01"
    with pytest.raises(jobs.JobTakenByOther, match="f01"):
        jobs.take(db, field.tech2, clock, job_id, office_code=OFFICE)
    with pytest.raises(jobs.JobNotTaken):
        jobs.release(db, field.tech2, clock, job_id, office_code=OFFICE)
    with pytest.raises(jobs.JobNotTaken):  # f02 may not program f01's job
        field_tech2 = Field(db, clock, field.kit, field.tech2, field.tech, field.tmp)
        field_tech2.program(job_id, field.card(CardKind.PARAMETERS))
    mine = jobs.my_jobs(jobs.list_jobs(db, field.tech, clock, office_code=OFFICE), "f01")
    assert [v.id for v in mine] == [job_id]
    assert jobs.release(db, field.tech, clock, job_id, office_code=OFFICE).taken_by is None
    assert jobs.take(db, field.tech2, clock, job_id, office_code=OFFICE).taken_by == "f02"
    actions = _audit_actions(db)
    assert ("job_take", "ok") in actions and ("job_release", "ok") in actions
    assert ("job_take", "failed") in actions and ("job_program", "failed") in actions
    # a teller may not
    teller = auth.login(db, "t01", "demo-t01", counter_id="C01", clock=clock)
    with pytest.raises(PermissionDenied):
        jobs.take(db, teller, clock, job_id, office_code=OFFICE)
    assert ("job_take", "denied") in _audit_actions(db)


def test_other_office_and_ids_matched_whole(field: Field) -> None:
    job_id = field.job(office_code="NORTH")
    db, clock = field.db, field.clock
    assert jobs.list_jobs(db, field.tech, clock, office_code=OFFICE) == []
    with pytest.raises(jobs.JobOfOtherOffice, match="NORTH"):
        jobs.take(db, field.tech, clock, job_id, office_code=OFFICE)
    with pytest.raises(jobs.JobOfOtherOffice):
        jobs.get_job(db, field.tech, clock, job_id, office_code=OFFICE)
    for bad in (job_id + "\n", job_id.upper(), " " + job_id):
        with pytest.raises(ValidationError):
            jobs.take(db, field.tech, clock, bad, office_code=OFFICE)
    with pytest.raises(NotFound):
        jobs.take(db, field.tech, clock, str(uuid.uuid4()), office_code=OFFICE)


def test_program_meter_return_applied_and_overdue(field: Field) -> None:
    db, clock = field.db, field.clock
    job_id = field.job("reading_day")
    jobs.take(db, field.tech, clock, job_id, office_code=OFFICE)
    with pytest.raises(WrongCardKind):  # a tariff card for a reading-day job
        field.program(job_id, field.card(CardKind.TARIFF))
    image = field.card(CardKind.READING_DAY)
    view = field.program(job_id, image)
    assert (view.card_state, view.overdue) == ("issued", False)
    card = field.kit.terminal(image).read()
    assert card.job == JobRecord(uuid.UUID(job_id).bytes, JobKind.READING_DAY, 15, 6)
    assert card.parameters is not None and card.parameters.meter_no == METER
    with pytest.raises(jobs.JobCardOut):
        jobs.release(db, field.tech, clock, job_id, office_code=OFFICE)
    with pytest.raises(jobs.JobCardNotUsed):  # not been to the meter yet
        field.give_back(image)

    clock.advance(days=7, minutes=1)  # the setting's default: 7 days
    field.tech = auth.login(db, "f01", "demo-f01", counter_id="C01", clock=clock)
    late = jobs.list_jobs(db, field.tech, clock, office_code=OFFICE, overdue_days=7)
    assert [v.overdue for v in late] == [True]
    assert [v.overdue for v in jobs.list_jobs(db, field.tech, clock, office_code=OFFICE,
                                                overdue_days=8)] == [False]  # fmt: skip

    meter = field.meter()
    result = meter.insert(field.kit.terminal(image))
    assert result.accepted and result.job == JobKind.READING_DAY
    assert (meter.state.reading_day, meter.state.reading_hour) == (15, 6)
    done = field.give_back(image)
    assert (done.result, done.status, done.card_state) == ("applied", "done", "closed")
    assert done.applied_at is not None and done.returned_at == clock.now() and not done.overdue
    assert done.write_back is not None and done.write_back["meter_no"] == METER
    with db.read() as session:
        rows = session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "job_result")).all()
        assert [(r.ref_id, r.payload["outcome"], r.counter_id) for r in rows] == [
            (done.result_id, "done", "C01")
        ]
    with pytest.raises(jobs.JobCardNotProgrammed):  # returned once only
        field.give_back(image)
    assert jobs.list_jobs(db, field.tech, clock, office_code=OFFICE) == []
    assert [v.id for v in jobs.list_jobs(db, field.tech, clock, office_code=OFFICE,
                                         include_closed=True)] == [job_id]  # fmt: skip
    assert ("job_program", "ok") in _audit_actions(db)
    assert ("job_return", "ok") in _audit_actions(db)


def test_wrong_meter_and_refused_results_are_recorded(field: Field) -> None:
    db, clock = field.db, field.clock
    wrong = field.job("purchase_params")
    jobs.take(db, field.tech, clock, wrong, office_code=OFFICE)
    image = field.card(CardKind.PARAMETERS)
    field.program(wrong, image)
    second = field.job("purchase_params")
    jobs.take(db, field.tech, clock, second, office_code=OFFICE)
    with pytest.raises(jobs.JobCardInUse):  # the card is out for the first job
        field.program(second, image)
    other = field.meter(OTHER_METER)
    refused = other.insert(field.kit.terminal(image))
    assert not refused.accepted and other.state.alarm1 == 0  # nothing applied there
    view = field.give_back(image)
    assert (view.result, view.result_reason, view.status) == ("wrong_meter", "meter_no", "failed")
    assert view.write_back is not None and view.write_back["meter_no"] == OTHER_METER

    job_id = field.job("price")
    jobs.take(db, field.tech, clock, job_id, office_code=OFFICE)
    tariff_card = field.card(CardKind.TARIFF)
    field.program(job_id, tariff_card)
    # the card's job file damaged into another kind: the meter takes the card, applies nothing
    field.kit.terminal(tariff_card).write(
        CardWrite(job=JobRecord(uuid.UUID(job_id).bytes, JobKind.CHECK))
    )
    meter = field.meter()
    result = meter.insert(field.kit.terminal(tariff_card))
    assert result.accepted and result.reason == "no_job"
    view = field.give_back(tariff_card, job_id)
    assert (view.result, view.result_reason, view.status) == (
        "refused",
        jobs.REASON_JOB_NOT_USABLE,
        "failed",
    )


def test_price_card_content_from_the_archive(field: Field) -> None:
    db, clock = field.db, field.clock
    job_id = field.job("price")
    plan = jobs.preview(db, field.tech, clock, job_id, office_code=OFFICE, utility_code=UTILITY)
    content = plan.to_json()
    assert content["card_kind"] == "tariff" and content["meter_no"] == METER
    assert content["current_tariff"]["version_no"] == 1
    missing = field.job("price", params={"plan_code": "NOPE", "version_no": 1})
    with pytest.raises(jobs.JobContentMissing):
        jobs.preview(db, field.tech, clock, missing, office_code=OFFICE, utility_code=UTILITY)


def test_check_card_reading_is_stored(field: Field) -> None:
    db, clock = field.db, field.clock
    image = field.card(CardKind.CHECK)
    jobs.program_check_card(
        db, field.tech, clock, field.kit.terminal(image), utility_code=UTILITY, meter_no=METER
    )
    meter = field.meter()
    meter.state.remaining = 12_345
    meter.state.illegal_insert_count = 4
    meter.save()
    assert meter.insert(field.kit.terminal(image)).job == JobKind.CHECK
    reading = jobs.read_check_card(db, field.tech, clock, field.kit.terminal(image))
    assert (reading.meter_no, reading.customer_no) == (METER, CUSTOMER)
    assert reading.write_back["remaining_fen"] == 12_345
    with db.read() as session:  # kept for the next control report, illegal inserts too
        kept = session.execute(
            select(Customer.meter_remaining, Customer.meter_illegal_insert_count).where(
                Customer.customer_no == CUSTOMER
            )
        ).one()
    assert tuple(kept) == (12_345, 4)
    assert ("check_card_read", "ok") in _audit_actions(db)


def test_result_reaches_the_central_server_once(field: Field, central: CentralServer) -> None:
    db, clock = field.db, field.clock
    job_id = str(uuid.uuid4())
    central.store.add_job(
        job_id, "purchase_params", CUSTOMER, {"alarm1": 2500}, created_at=clock.now()
    )
    service = SyncService(
        db, CentralClient(central.url, register(central)), clock, counter_id="C01",
        office_code=OFFICE,
    )  # fmt: skip
    service.run_round()
    assert job_id in [v.id for v in jobs.list_jobs(db, field.tech, clock, office_code=OFFICE)]
    jobs.take(db, field.tech, clock, job_id, office_code=OFFICE)
    image = field.card(CardKind.PARAMETERS)
    field.program(job_id, image)
    meter = field.meter()
    assert meter.insert(field.kit.terminal(image)).accepted and meter.state.alarm1 == 2500
    view = field.give_back(image)
    service.run_round()
    # the answer was lost: the record goes again and the central side holds it once
    with db.write() as session:
        session.execute(update(OutboxEntry).where(OutboxEntry.kind == "job_result")
                        .values(sent_at=None))  # fmt: skip
    service.run_round()
    service.run_round()
    e = central_models.events.c
    with central.store.engine.connect() as conn:
        held = conn.execute(
            select(func.count())
            .select_from(central_models.events)
            .where(e.kind == "job-results", e.subject == job_id)
        ).scalar_one()
        body = conn.execute(select(e.body).where(e.id == view.result_id)).scalar_one()
    assert held == 1 and body["outcome"] == "done" and body["technician_id"] == "f01"
    central_job = central.store.job(job_id)
    assert central_job is not None and central_job.status == "done"
    with db.read() as session:
        row = session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "job_result")).one()
        assert row.sent_at is not None and row.refused_at is None
