"""The station's schema under Alembic and its administration: migrations from empty and from a
database made before them, one upgrade across processes, readiness, offices with their region,
counters listed and revoked (over real HTTP and through the CLI)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import text

from sync import contract as c
from sync.central import CentralServer
from sync.central import CentralStore
from sync.central import Counter
from sync.central import models as m
from sync.central import schema
from sync.central import seed as central_seed
from sync.central.base import AUTOVACUUM_OFF
from tests.conftest import PG_URL
from tests.conftest import pg_schema
from tests.rigs.central import NOW
from tests.rigs.central import Api
from tests.rigs.central import register
from tests.rigs.cli import run


@pytest.fixture
def pg_schema_name() -> Iterator[str]:
    with pg_schema() as name:
        yield name


def test_upgrade_from_empty_reaches_head_and_is_ready(tmp_path: Path) -> None:
    store = CentralStore(str(tmp_path / "c.db"))
    try:
        ok, detail = store.readiness()
        assert ok and detail["schema"] == schema.head() == detail["schema_wanted"]
        with store.engine.connect() as conn:
            tables = set(conn.scalars(text("SELECT name FROM sqlite_master WHERE type='table'")))
        assert {t.name for t in m.metadata.sorted_tables} <= tables
        assert schema.VERSION_TABLE in tables and "alembic_version" not in tables
    finally:
        store.dispose()


def test_a_database_made_before_migrations_is_stamped_and_upgraded(tmp_path: Path) -> None:
    """The schema of c0001 made by create_all (as the station did before), with a counter and
    a customer in it: the store stamps it, adds c0002 and keeps the data."""
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        schema_c0001(conn)
        conn.execute(text(
            "INSERT INTO central_counters (id, office_code, name, token_hash, receipt_key, registered_at) "
            "VALUES ('OLD1', 'WEST', '', 'ab', 'cd', '2026-03-01 09:00:00.000000')"
        ))  # fmt: skip
    engine.dispose()
    store = CentralStore(str(path))
    try:
        assert store.readiness()[0]
        assert [o["code"] for o in store.offices()] == ["WEST"]  # offices the data named
        listed = store.counters()
        assert [(x["id"], x["revoked_at"], x["last_seen_at"]) for x in listed] == [
            ("OLD1", None, None)
        ]
    finally:
        store.dispose()


def schema_c0001(conn: object) -> None:
    """The tables as c0001 made them: upgrade an empty database to c0001 and drop the version
    table (create_all of the old models made the same tables, without it)."""
    from alembic import command

    cfg = schema._config(conn)  # type: ignore[arg-type]
    command.upgrade(cfg, schema.BASELINE)
    conn.execute(text(f"DROP TABLE {schema.VERSION_TABLE}"))  # type: ignore[attr-defined]


def test_readiness_is_false_on_an_older_schema(tmp_path: Path) -> None:
    store = CentralStore(str(tmp_path / "c.db"))
    try:
        with store.engine.begin() as conn:
            conn.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = 'c0001'"))
        ok, detail = store.readiness()
        assert not ok and detail["schema"] == "c0001"
        with CentralServer(store.url, store=store) as server:
            r = requests.get(server.url + "/api/v1/ready", timeout=5)
            assert r.status_code == 503 and r.json()["status"] == "not_ready"
            assert requests.get(server.url + "/api/v1/health", timeout=5).status_code == 200
    finally:
        store.dispose()


@pytest.mark.pg
def test_readiness_says_whether_postgresql_keeps_statistics(
    pg_schema_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The station relies on autovacuum for the planner's statistics: /ready says the server's
    setting (never a reason to stop serving), and a store on a server with it off warns once
    at start."""
    url = f"{PG_URL}?options=-csearch_path%3D{pg_schema_name}"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        setting = str(conn.execute(text("SHOW autovacuum")).scalar())
    engine.dispose()
    with caplog.at_level(logging.WARNING, logger="sync.central.base"):
        store = CentralStore(url)
    try:
        ok, detail = store.readiness()
        assert ok and detail["autovacuum"] == setting
        warned = [r.getMessage() for r in caplog.records if "autovacuum is off" in r.getMessage()]
        assert warned == ([AUTOVACUUM_OFF] if setting == "off" else [])
    finally:
        store.dispose()
    sqlite = CentralStore("sqlite://")
    try:
        assert "autovacuum" not in sqlite.readiness()[1]
    finally:
        sqlite.dispose()


@pytest.mark.pg
def test_processes_starting_together_upgrade_once(pg_schema_name: str) -> None:
    url = f"{PG_URL}?options=-csearch_path%3D{pg_schema_name}"
    errors: list[BaseException] = []
    stores: list[CentralStore] = []

    def start() -> None:
        try:
            stores.append(CentralStore(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(stores) == 4
        assert all(s.readiness()[0] for s in stores)
        with stores[0].engine.connect() as conn:
            assert conn.scalar(text(f"SELECT count(*) FROM {schema.VERSION_TABLE}")) == 1
    finally:
        for s in stores:
            s.dispose()


def test_revoked_counter_is_refused_until_it_enrols_again(tmp_path: Path) -> None:
    store = CentralStore(str(tmp_path / "c.db"))
    central_seed.seed_demo(store, NOW)
    with CentralServer(store.url, store=store) as server:
        token = register(server.url, "K1")
        api = Api(server.url, token)
        assert api.get("/tariffs").status_code == 200
        assert store.counters()[0]["last_seen_at"] is not None
        assert store.revoke_counter("K1") and not store.revoke_counter("NOPE")
        assert api.get("/tariffs").status_code == 401
        body = {"counter_id": "K1", "office_code": "DEMO"}
        again = requests.post(server.url + "/api/v1/counters/register", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=5)  # fmt: skip
        assert again.status_code == 401 and "revoked" in again.json()["message"]
        code, _ = store.issue_enrolment_code("K1", "DEMO", hours=1)
        back = requests.post(server.url + "/api/v1/counters/register", json=body, headers={"X-Enrolment-Code": code}, timeout=5)  # fmt: skip
        assert back.status_code == 200, back.text
        assert (
            Api(server.url, c.RegisterResponse.model_validate(back.json()).token)
            .get("/tariffs")
            .status_code
            == 200
        )
        assert store.counters()[0]["revoked_at"] is None


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_offices_and_counters_on_the_command_line(tmp_path: Path, lang: str) -> None:
    db = str(tmp_path / "central.db")
    home = tmp_path / "home"
    store = CentralStore(db)
    central_seed.seed_demo(store, NOW)
    with CentralServer(store.url, store=store) as server:
        register(server.url, "L1")
    r = run(home, "central", "offices", "add", "NORTH", "--name", "North", "--province", "浙江", "--city", "湖州", "--db", db, lang=lang)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert ("NORTH" in r.stdout) and (
        ("added" in r.stdout) if lang == "en" else ("added" not in r.stdout)
    )
    r = run(home, "central", "offices", "list", "--json", "--db", db, lang=lang)
    offices = {o["code"]: o for o in json.loads(r.stdout)}
    assert (
        offices["NORTH"]["city"] == "湖州"
        and offices["DEMO"]["province"] == central_seed.DEMO_PROVINCE
    )
    r = run(home, "central", "offices", "add", "bad code!", "--db", db, lang=lang)
    assert r.returncode != 0 and "bad code!" in r.stderr
    r = run(home, "central", "enrol", "L2", "--office", "SOUTH", "--db", db, lang=lang)
    assert r.returncode != 0 and "SOUTH" in r.stderr  # an office the station does not know
    r = run(home, "central", "counters", "list", "--json", "--db", db, lang=lang)
    assert [x["id"] for x in json.loads(r.stdout)] == ["L1"]
    r = run(home, "central", "counters", "revoke", "L1", "--db", db, lang=lang)
    assert r.returncode == 0 and "L1" in r.stdout
    r = run(home, "central", "counters", "list", "--db", db, lang=lang)
    assert r.returncode == 0 and ("revoked" in r.stdout) == (lang == "en")
    r = run(home, "central", "counters", "revoke", "GHOST", "--db", db, lang=lang)
    assert r.returncode != 0 and "GHOST" in r.stderr
    store.dispose()
    with create_engine(f"sqlite:///{db}").connect() as conn:
        assert conn.execute(select(m.counters.c.revoked_at)).scalar() is not None


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_c0010_gives_the_remote_statuses_held_their_counter(kind: str, tmp_path: Path) -> None:
    """A station at c0009 holding a remote purchase: c0010 fills in the status's counter from
    its sale, and the pull of that counter (only) lists it; the downgrade takes the column
    back."""
    from alembic import command

    from app.persistence.db import make_engine
    from tests.conftest import station_db

    with station_db(kind, tmp_path) as url:
        engine = make_engine(url)
        try:
            schema.upgrade(engine, "c0009")
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO central_sales (id, counter_id, customer_no, kind, state, "
                        "credit, body, body_hash, received_at, reversed, seq) VALUES ('00000000-0000-4000-8000-0000000000a1', "
                        "'C7', '100000000010', 'remote', 'completed', 500, '{}', 'h', "
                        "'2026-03-01 09:00:00.000000', false, 1)"
                    )
                )
                conn.execute(
                    text(
                        "INSERT INTO central_remote_status (sale_id, status, reason, seq) "
                        "VALUES ('00000000-0000-4000-8000-0000000000a1', 'issued', '', 4)"
                    )
                )
            store = CentralStore(url, engine=engine)  # upgrades to the head
            with engine.connect() as conn:
                held = conn.execute(text("SELECT counter_id FROM central_remote_status")).all()
            assert [tuple(r) for r in held] == [("C7",)]
            mine = store.remote_page(Counter("C7", "DEMO"))
            assert [(s.sale_id, s.status, s.seq) for s in mine.items] == [
                ("00000000-0000-4000-8000-0000000000a1", "issued", 4)
            ]
            assert store.remote_page(Counter("C8", "DEMO")).items == []
            with engine.connect() as conn:
                command.downgrade(schema._config(conn), "c0009")
                conn.commit()
            with engine.connect() as conn:
                columns = {
                    col["name"] for col in inspect(conn).get_columns("central_remote_status")
                }
            assert "counter_id" not in columns
        finally:
            engine.dispose()
