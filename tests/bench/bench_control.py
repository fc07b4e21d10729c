"""The station's charge-control loop on PostgreSQL.

    python -m tests.bench.bench_control [--customers N] [--meters N] [--payments N]
        [--stats-customers N]

1. ``control:balance`` -- N remote customers under control (1,000,000 by default; made in SQL),
   a tenth of them with a remote payment: the set-based balance UPDATE over all of them, and the
   decision SELECT that finds who changed state and queues their commands.
   Target: the balance run within 60 s.
2. ``control:trip`` -- M meters (10,000) of the fleet simulator on TCP, all under control and in
   alarm; their balances drop below the trip threshold and one run reads every meter, decides
   and sends the M trip commands through the simulator.  Target: within 60 s; every relay open.
3. ``control:close`` -- P (100) tripped customers pay one by one (a remote purchase as a
   counter's push applies it) while the loop runs every second, as ``central serve
   --terminals`` does: p50 / p99 seconds from the payment to the relay closed on the meter.
   Target: p99 within the 60 s the close permit is due in.
4. ``control:stats`` -- S (100,000) controlled customers in four offices of two provinces,
   with two readings each and a tenth with a payment, states decided by the loop: the region
   statistics (``sync/central/stats.py``) for every office over 30 days, and for one office.
   Target: within 10 s.

Skipped with a reason without a PostgreSQL server.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app.clock import SystemClock
from app.paths import resolve_paths
from app.settings import Settings
from cardio.dlt645 import TcpServer
from cardio.fleet import Fleet
from cardio.meter_wire import TerminalMeters
from sync.central.control import ControlLoop
from sync.central.seed import seed_demo
from sync.central.store import CentralStore
from tests.bench.common import bench_main
from tests.bench.common import emit
from tests.bench.common import percentile
from tests.bench.common import progress
from tests.bench.common import rounded
from tests.rigs.pg import PG_URL
from tests.rigs.pg import create_pg_schema
from tests.rigs.pg import drop_pg_schema
from tests.rigs.pg import in_schema
from tests.rigs.pg import pg_available

BALANCE_TARGET_S = 60.0
TRIP_TARGET_S = 60.0
CLOSE_TARGET_S = 60.0
FIRST_CUSTOMER = 500_000_000_000
FIRST_METER = 600_000_000_000


def _customers_sql(n: int, office: str = "BENCH", offset: int = 0) -> list[str]:
    """Statements that add ``n`` remote customers in control, a tenth with a payment (numbered
    from the ``offset``-th)."""
    first, last = offset, offset + n - 1
    return [
        f"""INSERT INTO central_customers (customer_no, name, address, phone, meter_no,
            meter_kind, status, office_code, tariff_plan, ct_ratio, pt_ratio, alarm1, alarm2,
            overdraft_limit, credit_ceiling, card_serial, purchase_count, seq)
        SELECT ({FIRST_CUSTOMER} + g)::text, 'bench', '', '', ({FIRST_METER} + g)::text,
            'remote', 'active', '{office}', 'RES-FLAT', 1, 1, 2000, 1000, 0, 100000000, NULL, 0,
            10000000 + g
        FROM generate_series({first}, {last}) AS g""",
        f"""INSERT INTO central_control (customer_no, meter_no, state, opening_fen, paid_fen,
            cost_num, remaining_fen, energy_wh, read_at, relay, enrolled_at, state_since,
            close_permit_at, updated_at)
        SELECT ({FIRST_CUSTOMER} + g)::text, ({FIRST_METER} + g)::text, 'normal', 5000, 0,
            (g % 7000) * 100000, 0, 0, NULL, 'closed', now() - interval '1 day',
            now() - interval '1 day', NULL, now() - interval '1 day'
        FROM generate_series({first}, {last}) AS g""",
        f"""INSERT INTO central_sales (id, counter_id, customer_no, kind, state, credit, body,
            body_hash, received_at, review, reversed, seq)
        SELECT md5(g::text)::uuid::text, 'C01', ({FIRST_CUSTOMER} + g)::text, 'remote',
            'completed', 3000, '{{}}', md5(g::text), now(), NULL, false, 20000000 + g
        FROM generate_series({first}, {last}, 10) AS g""",
    ]


def balance(customers: int) -> dict[str, Any]:
    schema = create_pg_schema("bench_control_")
    try:
        store = CentralStore(PG_URL, **in_schema(schema))
        progress(f"control:balance: {customers:,} remote customers")
        with store.engine.begin() as conn:
            for statement in _customers_sql(customers):
                conn.execute(text(statement))
            conn.execute(text("ANALYZE"))
        loop = ControlLoop(store, None)
        t0 = time.perf_counter()
        loop._balance()
        balance_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        changed = loop._decide()
        decide_s = time.perf_counter() - t0
        with store.engine.connect() as conn:
            queued = conn.execute(text("SELECT count(*) FROM central_commands")).scalar_one()
        store.dispose()
    finally:
        drop_pg_schema(schema)
    return emit(
        {
            "bench": "control:balance",
            "customers": customers,
            "balance_s": rounded(balance_s, 2),
            "decide_s": rounded(decide_s, 2),
            "changed": changed,
            "commands_queued": queued,
            "target": f"balance <= {BALANCE_TARGET_S:g} s",
            "ok": balance_s <= BALANCE_TARGET_S,
        }
    )


def _fleet_rig(
    base: Path, meters: int
) -> tuple[Fleet, TcpServer, CentralStore, str, TerminalMeters, ControlLoop]:
    addresses = [(f"{FIRST_METER + i}", 1.0) for i in range(meters)]
    fleet = Fleet.open(base / "fleet", addresses, load_kw=1.0, speed=60,
                       start=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))  # fmt: skip
    server = TcpServer(fleet.responder()).start()
    schema = create_pg_schema("bench_control_")
    store = CentralStore(PG_URL, **in_schema(schema))
    seed_demo(store, SystemClock().now())
    with store.engine.begin() as conn:
        conn.execute(text(_customers_sql(meters)[0]))
        # the seed's own remote customers have no meter in this fleet: out of the run
        conn.execute(
            text("UPDATE central_customers SET meter_kind = 'card' WHERE office_code <> 'BENCH'")
        )
    settings = Settings.load(resolve_paths(base / "home").ensure().settings_file)
    remote = TerminalMeters(settings, SystemClock(), f"127.0.0.1:{server.port}")
    return fleet, server, store, schema, remote, ControlLoop(store, remote, opening_fen=1500)


def trip(meters: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-control-") as tmp:
        fleet, server, store, schema, remote, loop = _fleet_rig(Path(tmp), meters)
        try:
            progress(f"control:trip: {meters:,} meters, the first run (all into alarm)")
            loop.run()
            with store.engine.begin() as conn:  # their balances drop below the trip threshold
                conn.execute(text("UPDATE central_control SET opening_fen = -100"))
            progress("control:trip: the run that trips them")
            t0 = time.perf_counter()
            report = loop.run()
            run_s = time.perf_counter() - t0
            tripped = sum(1 for m in fleet.meters.values() if m.relay_open)
        finally:
            remote.close()
            server.stop()
            store.dispose()
            drop_pg_schema(schema)
    return emit(
        {
            "bench": "control:trip",
            "meters": meters,
            "run_s": rounded(run_s, 2),
            "read": report.read,
            "trips_sent": report.commands_sent,
            "relays_open": tripped,
            "target": f"run <= {TRIP_TARGET_S:g} s, every relay open",
            "ok": run_s <= TRIP_TARGET_S and tripped == meters and report.commands_failed == 0,
        }
    )


def close_latency(payments: int) -> dict[str, Any]:
    from sync.central.cli_control import ControlRunner

    with tempfile.TemporaryDirectory(prefix="bench-control-") as tmp:
        fleet, server, store, schema, remote, loop = _fleet_rig(Path(tmp), payments)
        runner: ControlRunner | None = None
        try:
            with store.engine.begin() as conn:
                conn.execute(text("UPDATE central_customers SET alarm1 = 0, alarm2 = 0"))
            loop.opening_fen = 0
            loop.run()  # every customer at 0: tripped
            assert all(m.relay_open for m in fleet.meters.values())
            runner = ControlRunner(loop, 1.0).start()
            waits: list[float] = []
            for i in range(payments):
                meter = fleet.meters[f"{FIRST_METER + i}"]
                paid = time.perf_counter()
                with (
                    store.engine.begin() as conn
                ):  # a remote purchase as a counter's push applies it
                    conn.execute(
                        text(
                            "INSERT INTO central_sales (id, counter_id, customer_no, kind, state,"
                            " credit, body, body_hash, received_at, review, reversed, seq)"
                            " VALUES (:id, 'C01', :c, 'remote', 'completed', 10000, '{}', :h,"
                            " now(), NULL, false, :seq)"
                        ),
                        {"id": str(uuid.uuid4()), "c": str(FIRST_CUSTOMER + i),
                         "h": uuid.uuid4().hex, "seq": 30_000_000 + i},
                    )  # fmt: skip
                while meter.relay_open and time.perf_counter() - paid < 120:
                    time.sleep(0.02)
                waits.append(time.perf_counter() - paid)
        finally:
            if runner is not None:
                runner.stop()
            else:
                remote.close()
                store.dispose()
            server.stop()
            drop_pg_schema(schema)
    p99 = percentile(waits, 99)
    return emit(
        {
            "bench": "control:close",
            "payments": payments,
            "interval_s": 1.0,
            "p50_s": rounded(percentile(waits, 50), 2),
            "p99_s": rounded(p99, 2),
            "max_s": rounded(max(waits), 2),
            "target": f"p99 <= {CLOSE_TARGET_S:g} s",
            "ok": p99 <= CLOSE_TARGET_S,
        }
    )


STATS_TARGET_S = 10.0


def stats_run(customers: int) -> dict[str, Any]:
    from sync.central import stats

    schema = create_pg_schema("bench_stats_")
    try:
        store = CentralStore(PG_URL, **in_schema(schema))
        progress(f"control:stats: {customers:,} controlled customers")
        quarter = customers // 4
        with store.engine.begin() as conn:
            for k, (office, province, city) in enumerate(
                (("B1", "P1", "C1"), ("B2", "P1", "C1"), ("B3", "P1", "C2"), ("B4", "P2", "C3"))
            ):
                conn.execute(
                    text(
                        "INSERT INTO central_offices (code, name, province, city, created_at) "
                        "VALUES (:o, :o, :p, :c, now())"
                    ),
                    {"o": office, "p": province, "c": city},
                )
                for statement in _customers_sql(quarter, office, offset=k * quarter):
                    conn.execute(text(statement))
            conn.execute(
                text(
                    f"""INSERT INTO central_readings (customer_no, meter_no, read_at, meter_time,
                    energy_wh, rates_wh, relay, cost_num, status)
                SELECT ({FIRST_CUSTOMER} + g)::text, ({FIRST_METER} + g)::text,
                    now() - (r || ' hours')::interval, NULL, 1000 * (3 - r), '[0,0,0,0]',
                    'closed', CASE WHEN r = 1 THEN 53000000 ELSE 0 END,
                    CASE WHEN r = 1 THEN 'billed' ELSE 'first' END
                FROM generate_series(0, {4 * quarter - 1}) AS g, generate_series(1, 2) AS r"""
                )
            )
            conn.execute(text("ANALYZE"))
        loop = ControlLoop(store, None)
        loop._balance()
        loop._decide()
        today = dt.datetime.now(dt.UTC).date()
        period = (today - dt.timedelta(days=29), today + dt.timedelta(days=1))
        t0 = time.perf_counter()
        everything = stats.for_region(store, "all", *period, None, None)
        all_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        one = stats.for_region(store, "B1", *period, None, None)
        office_s = time.perf_counter() - t0
        store.dispose()
    finally:
        drop_pg_schema(schema)
    return emit(
        {
            "bench": "control:stats",
            "customers": customers,
            "all_offices_s": rounded(all_s, 2),
            "one_office_s": rounded(office_s, 2),
            "controlled": everything["controlled"],
            "office_controlled": one["controlled"],
            "target": f"all offices <= {STATS_TARGET_S:g} s",
            "ok": all_s <= STATS_TARGET_S and everything["controlled"] == 4 * quarter,
        }
    )


def run(
    customers: int = 1_000_000,
    meters: int = 10_000,
    payments: int = 100,
    stats_customers: int = 100_000,
) -> list[dict[str, Any]]:
    if not pg_available():
        return [
            emit({"bench": "control", "skipped": f"no PostgreSQL server at {PG_URL}", "ok": True})
        ]
    return [
        balance(customers),
        trip(meters),
        close_latency(payments),
        stats_run(stats_customers),
    ]


if __name__ == "__main__":
    sys.exit(
        bench_main(
            __doc__, run, None, customers=1_000_000, meters=10_000, payments=100,
            stats_customers=100_000,
        )
    )  # fmt: skip
