"""The station as a service: several server processes and workers on one PostgreSQL, and HTTPS.

- Two ``cardvend central serve --faults`` processes on one PostgreSQL schema (both seed: the seed
  is idempotent) and a counter whose ``central_url`` alternates between them through the
  randomized fault rounds of tests/rigs/fault_rounds.py: every sale is held exactly once, and
  both servers list the same.  ``CARDVEND_SYNC_MULTI_ROUNDS`` sets the rounds (the benchmark
  runs more), ``CARDVEND_SYNC_SEED`` replays a run.
- ``central serve --workers 2``: a counter syncs through it; SIGTERM exits 0 and no worker is
  left behind.
- TLS with a throwaway CA (trustme): the counter registers and syncs with ``central_ca_bundle``
  set; with another CA, or with the system's store, the round fails with a typed error that
  says TLS / certificate and nothing is sent or marked sent; ``central serve`` with a
  certificate and no key, or a key that is not the certificate's, exits non-zero with a clear
  message (English and Chinese).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import trustme

from app.clock import FixedClock
from app.services import auth
from app.settings import CENTRAL_CA_BUNDLE
from sync import contract as c
from sync.central.seed import seed_demo
from sync.central.server import CentralServer
from sync.central.store import CentralStore
from sync.client import CentralClient
from sync.errors import CentralUnreachable
from sync.service import SyncService
from sync.service import register_counter
from tests.conftest import PG_URL
from tests.conftest import pg_schema
from tests.rigs.central_process import CentralProcess
from tests.rigs.cli import run
from tests.rigs.context import make_ctx
from tests.rigs.counter import Counter
from tests.rigs.counter import counter_on_sqlite
from tests.rigs.fault_rounds import HttpFaults
from tests.rigs.fault_rounds import pending
from tests.rigs.fault_rounds import run_fault_rounds

ROUNDS = int(os.environ.get("CARDVEND_SYNC_MULTI_ROUNDS", "150"))
SEED = int(os.environ.get("CARDVEND_SYNC_SEED", "20261205"))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def counter(tmp_path: Path, clock: FixedClock) -> Iterator[Counter]:
    """The counter on SQLite only (the shared ``counter`` runs on PostgreSQL too)."""
    yield from counter_on_sqlite(tmp_path, clock)


@pytest.fixture
def pg_central_url() -> Iterator[str]:
    """A database URL of the central side on its own PostgreSQL schema (in the URL, as a server
    process is given it: ``?options=-csearch_path=...``)."""
    with pg_schema() as schema:
        joiner = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{joiner}options={quote(f'-csearch_path={schema}', safe='')}"


def central_sales(url: str) -> int:
    store = CentralStore(url)
    try:
        return store.count("sales")
    finally:
        store.dispose()


@dataclass
class Tls:
    ca: Path  # the CA that issued the server's certificate
    other_ca: Path  # a CA that did not
    cert: Path  # the server's certificate chain (127.0.0.1, localhost)
    key: Path
    other_key: Path  # a private key that is not the certificate's


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    folder = tmp_path / "tls"
    folder.mkdir()
    ca, other = trustme.CA(), trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    files = Tls(
        folder / "ca.pem",
        folder / "other-ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "other.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    other.cert_pem.write_to_path(str(files.other_ca))
    issued.private_key_pem.write_to_path(str(files.key))
    for i, blob in enumerate(issued.cert_chain_pems):
        blob.write_to_path(str(files.cert), append=i > 0)
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(files.other_key))
    return files


# --------------------------------------------------------------------------- two servers


@pytest.mark.pg
def test_two_server_processes_on_one_database_exactly_once(
    counter: Counter, pg_central_url: str, tmp_path: Path
) -> None:
    first = CentralProcess(tmp_path / "a", "--faults", "--db", pg_central_url)
    second = None
    try:
        # the second seeds too: the seed is idempotent, it adds nothing
        second = CentralProcess(tmp_path / "b", "--faults", "--db", pg_central_url)
        assert "0 tariff versions, 0 customers, 0 jobs added" in second.stderr()
        assert "Demo data: 3 tariff versions, 1000 customers, 3 jobs added" in first.stderr()
        targets = [HttpFaults(first.url), HttpFaults(second.url)]
        t0 = time.perf_counter()
        outcome = run_fault_rounds(counter, targets, rounds=ROUNDS, seed=SEED)
        spent = ", ".join(f"{k} {v:.1f}" for k, v in sorted(outcome.fault_seconds.items()))
        print(f"\n{ROUNDS} fault rounds over two servers: {time.perf_counter() - t0:.1f} s "
              f"(pushes by fault, s: {spent})")  # fmt: skip
        assert outcome.urls_used == {first.url: (ROUNDS + 1) // 2, second.url: ROUNDS // 2}
        assert central_sales(pg_central_url) == len(outcome.local)
        for target in targets:
            target.close()
    finally:
        codes = [first.stop(), second.stop() if second is not None else 0]
    assert codes == [0, 0]


@pytest.mark.pg
def test_workers_serve_one_database_and_stop_cleanly(
    counter: Counter, pg_central_url: str, tmp_path: Path
) -> None:
    central = CentralProcess(tmp_path / "central", "--workers", "2", "--db", pg_central_url)
    try:
        # the children: two workers (and multiprocessing's resource tracker)
        workers = _children(central.pid)
        deadline = time.monotonic() + 20
        while len(_spawned(workers)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = _children(central.pid)
        assert len(_spawned(workers)) == 2, central.stderr()
        client = CentralClient(central.url)
        client.token = client.register(
            c.RegisterRequest(counter_id="C01", office_code="DEMO"), None
        ).token
        for amount in (1000, 2000, 3000):
            counter.remote(amount)
        service = SyncService(counter.db, client, counter.clock, counter_id="C01",
                              office_code="DEMO", batch_size=1)  # fmt: skip
        report = service.run_round()
        assert report.push.sent == 3 and pending(counter.db) == 0
        for _ in range(20):  # requests on fresh connections: both workers take some
            assert CentralClient(central.url).health().status == "ok"
        assert central_sales(pg_central_url) == 3
    finally:
        code = central.stop()
    assert code == 0, central.stderr()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "a worker process was left behind"


def _children(pid: int) -> list[int]:
    try:
        text_ = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    return [int(p) for p in text_.split()]


def _spawned(pids: list[int]) -> list[int]:
    """The worker processes among ``pids`` (started by multiprocessing's spawn)."""
    found = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            found.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# --------------------------------------------------------------------------- TLS


def test_https_with_the_ca_bundle_and_never_without_it(
    counter: Counter,
    tls: Tls,
    tmp_path: Path,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the environment names another bundle: the counter's setting still decides (requests lets
    # REQUESTS_CA_BUNDLE override a session's verify); without the setting the environment's
    # (the system's) store is used, and it does not know this CA either
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.other_ca))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tls.other_ca))
    server = CentralServer(
        f"sqlite:///{tmp_path / 'central.db'}", tls_cert=str(tls.cert), tls_key=str(tls.key)
    )
    seed_demo(server.store, clock.now())
    with server:
        assert server.url.startswith("https://127.0.0.1:")
        ctx = make_ctx(  # the counter's own settings, database and clock
            tmp_path / "home",
            settings=counter.settings,
            db_url=counter.db.url.render_as_string(hide_password=False),
            clock=counter.clock,
            **{CENTRAL_CA_BUNDLE.key: str(tls.ca)},
        )
        admin = auth.login(counter.db, "a01", "demo-a01", counter_id="C01", clock=clock)
        register_counter(ctx, server.url, None, operator=admin)
        counter.remote(8800)
        report = SyncService.from_context(ctx).run_round()
        assert report.push.sent == 1 and pending(counter.db) == 0
        assert server.store.count("sales") == 1

        counter.remote(1200)  # waits for the next round
        for bundle in (tls.other_ca, None):  # another CA; no setting: the system's store
            ctx.settings.set(CENTRAL_CA_BUNDLE.key, str(bundle) if bundle else "")
            with pytest.raises(CentralUnreachable) as info:
                SyncService.from_context(ctx).run_round()
            message = str(info.value)
            assert "TLS:" in message and "certificate verify failed" in message, message
            assert pending(counter.db) == 1  # nothing marked sent
            assert server.store.count("sales") == 1  # nothing went over plain HTTP either

        ctx.settings.set(CENTRAL_CA_BUNDLE.key, str(tls.ca))
        assert SyncService.from_context(ctx).run_round().push.sent == 1
        assert server.store.count("sales") == 2


def test_central_serve_https_through_the_cli(tls: Tls, tmp_path: Path) -> None:
    central = CentralProcess(
        tmp_path / "central", "--db", f"sqlite:///{tmp_path / 'central.db'}",
        "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
    )  # fmt: skip
    try:
        assert central.url == f"https://127.0.0.1:{central.port}"
        client = CentralClient(central.url, ca_bundle=str(tls.ca))
        assert client.health().status == "ok"
        answer = client.register(c.RegisterRequest(counter_id="C01", office_code="DEMO"), None)
        assert answer.office_code == "DEMO"
        with pytest.raises(CentralUnreachable, match=r"TLS: .*certificate verify failed"):
            CentralClient(central.url, ca_bundle=str(tls.other_ca)).health()
        with pytest.raises(CentralUnreachable):  # plain HTTP to the HTTPS port gets nothing
            CentralClient(central.url.replace("https:", "http:")).health()
    finally:
        assert central.stop() == 0


# each message once in English and once in Chinese (a run of main.py costs seconds)
@pytest.mark.parametrize(
    ("args", "lang", "expected"),
    [
        (("--tls-cert", "{cert}"), "en", "--tls-cert and --tls-key go together"),
        (("--tls-key", "{key}"), "zh_CN", "--tls-cert 与 --tls-key 须同时给出"),
        (("--tls-cert", "{cert}", "--tls-key", "{other_key}"), "en",
         "cannot use the TLS certificate"),
        (("--tls-cert", "{missing}", "--tls-key", "{key}"), "zh_CN", "无法使用 TLS 证书"),
    ],
)  # fmt: skip
def test_central_serve_refuses_a_bad_certificate_and_key(
    tls: Tls, tmp_path: Path, args: tuple[str, ...], lang: str, expected: str
) -> None:
    values = {"cert": tls.cert, "key": tls.key, "other_key": tls.other_key,
              "missing": tmp_path / "no-such.pem"}  # fmt: skip
    argv = [a.format(**values) for a in args]
    db = f"sqlite:///{tmp_path / 'central.db'}"
    r = run(tmp_path / "home", "central", "serve", "--port", "0", "--db", db, *argv, lang=lang)
    assert r.returncode != 0
    assert "central listening" not in r.stdout
    assert expected in r.stderr, r.stderr
