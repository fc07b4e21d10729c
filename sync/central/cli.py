"""``cardvend central serve``: the reference central server in the foreground;
``cardvend central enrol COUNTER_ID --office CODE``: a one-time enrolment code for a counter.

``serve`` prints one line, ``central listening on http://HOST:PORT``, to stdout once it accepts
connections (scripts and tests wait for it; the line is not translated for that reason) and
serves until SIGINT or SIGTERM, then exits 0.

``enrol`` prints the code alone on stdout (scripts read it; only its hash is kept) and what to do
with it on stderr.  A counter that is registered already registers again only with its current
token or with such a code (a lost or reinstalled counter, or one that moves to another office).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import ssl
import sys
import threading
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING
from typing import Any

from app.cli import Handler
from app.cli import answer
from app.cli import command_group
from app.cli import stop_on_signals
from app.context import AppContext
from app.errors import ValidationError
from app.i18n import N_
from app.i18n import _
from app.i18n import translate

if TYPE_CHECKING:
    from sync.central.cli_control import ControlRunner
    from sync.central.server import CentralServer
    from sync.central.store import CentralStore

log = logging.getLogger(__name__)
ENROLMENT_KEY_ENV = "CARDVEND_ENROLMENT_KEY"
DEFAULT_SKEW_MINUTES = 10


def default_db(ctx: AppContext) -> str:
    return str(ctx.paths.data_dir / "central.db")


def central_store(ctx: AppContext, args: argparse.Namespace) -> CentralStore:
    """The station's store on the database the command names (``--db``), else the default one."""
    from sync.central.store import CentralStore

    return CentralStore(args.central_db or default_db(ctx), clock=ctx.clock)


@contextmanager
def opened_store(ctx: AppContext, args: argparse.Namespace) -> Iterator[CentralStore]:
    """:func:`central_store` for the length of a ``with`` block, disposed of after it."""
    store = central_store(ctx, args)
    try:
        yield store
    finally:
        store.dispose()


@contextmanager
def invalid_input(template: str, **params: Any) -> Iterator[None]:
    """A ValueError in the block (a pydantic ValidationError is one) becomes the
    :class:`ValidationError` ``template`` with ``params`` and the error's first line as
    ``detail``."""
    try:
        yield
    except ValueError as exc:
        raise ValidationError(template, **params, detail=str(exc).splitlines()[0]) from exc


def print_json(data: Any) -> None:
    """A command's ``--json`` answer: indented by one, text as it is, times to the second."""
    print(json.dumps(data, ensure_ascii=False, indent=1, default=iso_seconds))


def print_rows(
    rows: Sequence[Mapping[str, Any]],
    as_json: bool,
    none: str,
    line: Callable[[Mapping[str, Any]], str],
) -> int:
    """A listing command's answer: the rows as JSON (``--json``), else a line a row (``none``
    when there are no rows)."""
    return answer(as_json, rows, *([line(row) for row in rows] or [none]), dump=print_json)


def revoked_state(row: Mapping[str, Any]) -> str:
    """A counter's or channel's state in a listing: revoked (when) or active."""
    if row["revoked_at"]:
        return _("revoked {at}", at=iso_seconds(row["revoked_at"]))
    return _("active")


def iso_seconds(value: Any) -> str:
    """A time in a command's answer (a ``json.dumps`` default too: other types are a TypeError)."""
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    raise TypeError(type(value).__name__)


def cmd_central_serve(ctx: AppContext, args: argparse.Namespace) -> int:
    from sync.central.server import CentralServer
    from sync.central.server import ServeConfig
    from sync.central.server import listen
    from sync.central.server import serve_workers
    from sync.central.server import settle_heap
    from sync.central.server import url_of

    db_url = args.central_db or default_db(ctx)
    key = args.enrolment_key or os.environ.get(ENROLMENT_KEY_ENV) or None
    tls = _tls_files(args)
    if args.workers < 1:
        raise ValidationError(N_("--workers must be 1 or more"))
    if args.log_json:
        from sync.central.ops import configure_logging

        configure_logging(json_lines=True)
    config = ServeConfig(
        db_url=str(db_url),
        enrolment_key=key,
        faults=args.faults,
        clock_skew_minutes=args.clock_skew,
        log_json=args.log_json,
        pool_size=args.pool_size,
        db_connections=args.db_connections,
        workers=args.workers,
    )
    server = CentralServer(
        db_url,
        host=args.host,
        port=args.port,
        enrolment_key=key,
        faults=args.faults,
        clock=ctx.clock,
        clock_skew=dt.timedelta(minutes=args.clock_skew),
        tls_cert=tls[0],
        tls_key=tls[1],
        # one process serving: the whole share is its pool (--pool-size kept open)
        pool=config.pool() if args.workers == 1 else None,
    )
    if not args.no_seed:
        _seed(server, ctx)
    runner = _control_runner(ctx, args, server)
    if args.workers == 1:  # condition release: the API reaches the terminals too
        from sync.central.condition import meters_factory

        server.app.state.condition_meters = meters_factory(ctx, args.terminals)
    if args.workers > 1:
        # the workers build their own stores; this process only listens and supervises them
        server.store.dispose()
        sock = listen(args.host, args.port)
        url = url_of(sock, tls[0] is not None)
        # the line scripts wait for comes once a worker answers, not when the socket is bound
        waiter = threading.Thread(
            target=_announce_when_up, args=(url, key, args.workers, tls[0]), daemon=True
        )
        waiter.start()
        try:
            serve_workers(config, sock, args.workers, tls_cert=tls[0], tls_key=tls[1])
        finally:
            if runner is not None:
                runner.stop()
        return 0
    try:
        server.start()
        settle_heap()
        with stop_on_signals("central server") as stop:
            _announce(server.url, key, 1)
            while not stop.wait(0.5):
                pass
    finally:
        if runner is not None:
            runner.stop()
        server.stop()
    return 0


def _control_runner(
    ctx: AppContext, args: argparse.Namespace, server: CentralServer
) -> ControlRunner | None:
    """The charge-control loop in this (the supervising) process, when ``--terminals`` names
    the meters' terminal; its own store, so the workers' pools stay theirs."""
    from sync.central import cli_control
    from sync.central.cli_sms import loop_steps
    from sync.central.control import ControlLoop

    meters = cli_control.remote_meters(ctx, args.terminals)
    if meters is None:
        return None
    store = central_store(ctx, args)
    opening = cli_control.opening_fen(args, demo=not args.no_seed)
    loop = ControlLoop(store, meters, opening_fen=opening, steps=loop_steps(store, args))
    return cli_control.ControlRunner(loop, args.control_interval).start()


def _seed(server: CentralServer, ctx: AppContext) -> None:
    from sync.central.seed import seed_demo

    report = seed_demo(server.store, ctx.clock.now())
    print(
        _(
            "Demo data: {plans} tariff versions, {customers} customers, {jobs} jobs added.",
            plans=report.plans_added,
            customers=report.customers_added,
            jobs=report.jobs_added,
        ),
        file=sys.stderr,
    )


def _announce(url: str, key: str | None, workers: int) -> None:
    """The one line scripts and tests wait for (not translated), then what a person reads."""
    print(f"central listening on {url}", flush=True)
    if workers > 1:
        print(_("{workers} worker processes.", workers=workers), file=sys.stderr)
    if key is None:
        print(_("No enrolment key: any counter may register."), file=sys.stderr)


def _announce_when_up(url: str, key: str | None, workers: int, cert: str | None) -> None:
    """Ask ``/health`` until a worker answers, then :func:`_announce`."""
    import ssl as ssl_module
    import time
    import urllib.request

    from sync.contract import API_PREFIX

    context = None
    if cert is not None:  # only whether it answers: the certificate is the operator's own
        context = ssl_module.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}{API_PREFIX}/health", timeout=2, context=context):
                break
        except OSError:
            time.sleep(0.1)
    _announce(url, key, workers)


def _tls_files(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The certificate and key, both or neither, checked before anything listens."""
    from sync.central.server import tls_context_check

    cert, key = args.tls_cert, args.tls_key
    if (cert is None) != (key is None):
        raise ValidationError(N_("--tls-cert and --tls-key go together"))
    if cert is None or key is None:
        return None, None
    try:
        tls_context_check(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValidationError(
            N_("cannot use the TLS certificate {cert} with the key {key}: {detail}"),
            cert=cert,
            key=key,
            detail=str(exc),
        ) from exc
    return cert, key


def cmd_central_enrol(ctx: AppContext, args: argparse.Namespace) -> int:
    refused = N_(
        "cannot issue an enrolment code for counter {counter} of office {office}: {detail}"
    )
    with opened_store(ctx, args) as store:
        with invalid_input(refused, counter=args.counter_id, office=args.office):
            code, expires = store.issue_enrolment_code(
                args.counter_id, args.office, hours=args.hours
            )
    print(code, flush=True)
    print(
        _(
            "Enrolment code for counter {counter} of office {office}, valid once until {expires}. "
            "On that counter an administrator runs 'cardvend counter register --central URL "
            "--enrolment-code CODE --operator ID'.",
            counter=args.counter_id,
            office=args.office,
            expires=expires.isoformat(timespec="minutes"),
        ),
        file=sys.stderr,
    )
    return 0


def cmd_offices_add(ctx: AppContext, args: argparse.Namespace) -> int:
    with opened_store(ctx, args) as store:
        with invalid_input(N_("cannot add office {office}: {detail}"), office=args.code):
            new = store.add_office(args.code, args.name, args.province, args.city)
    text = _("Office {office} added.") if new else _("Office {office} changed.")
    print(text.format(office=args.code))
    return 0


def cmd_offices_list(ctx: AppContext, args: argparse.Namespace) -> int:
    with opened_store(ctx, args) as store:
        offices = store.offices()
    return print_rows(offices, args.json, _("No offices."), _office_line)


def _office_line(o: Mapping[str, Any]) -> str:
    region = " / ".join(x for x in (o["province"], o["city"]) if x) or _("(no region)")
    return f"{o['code']}\t{o['name']}\t{region}"


def cmd_counters_list(ctx: AppContext, args: argparse.Namespace) -> int:
    with opened_store(ctx, args) as store:
        counters = store.counters(args.office)
    return print_rows(counters, args.json, _("No counters."), _counter_line)


def _counter_line(co: Mapping[str, Any]) -> str:
    return _(
        "{counter}\toffice {office}\tregistered {registered}\tlast seen {seen}\t{state}",
        counter=co["id"],
        office=co["office_code"],
        registered=iso_seconds(co["registered_at"]),
        seen=iso_seconds(co["last_seen_at"]) if co["last_seen_at"] else _("never"),
        state=revoked_state(co),
    )


def cmd_counters_revoke(ctx: AppContext, args: argparse.Namespace) -> int:
    return revoke(
        ctx,
        args,
        lambda store: store.revoke_counter(args.counter_id),
        N_("no counter {counter} is registered"),
        N_(
            "Counter {counter} revoked: its token no longer works. It registers again only with "
            "a new enrolment code (cardvend central enrol)."
        ),
        counter=args.counter_id,
    )


def revoke(
    ctx: AppContext,
    args: argparse.Namespace,
    revoke_in: Callable[[CentralStore], bool],
    unknown: str,
    done: str,
    **params: str,
) -> int:
    """A ``revoke`` command: ``revoke_in`` the station's store says whether there was one to
    revoke; if not, the :class:`ValidationError` ``unknown``, else ``done`` (translated) is
    printed.  Both messages take ``params``."""
    with opened_store(ctx, args) as store:
        known = revoke_in(store)
    if not known:
        raise ValidationError(unknown, **params)
    print(translate(done).format(**params))
    return 0


def db_option(q: argparse.ArgumentParser) -> None:
    """``--db URL``: the station's database a command works on (:func:`central_store`)."""
    q.add_argument(
        "--db",
        dest="central_db",
        metavar="URL",
        help=_("the central system's own database URL; default: central.db in the data folder"),
    )


def on_station_db(q: argparse.ArgumentParser, func: Handler, *, json: bool = False) -> None:
    """What a command on the station's database ends with: ``--json`` when it can answer in
    JSON, ``--db`` (:func:`db_option`) and its handler ``func``."""
    if json:
        q.add_argument("--json", action="store_true", help=_("JSON for scripts"))
    db_option(q)
    q.set_defaults(func=func)


def listen_options(q: argparse.ArgumentParser) -> None:
    """``--port`` and ``--host``: where a server command listens."""
    q.add_argument("--port", type=int, default=0, help=_("TCP port; 0 picks a free one"))
    q.add_argument("--host", default="127.0.0.1", help=_("address to listen on"))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    csub = command_group(
        sub, "central", _("the reference central marketing system (for tests and demos)")
    )
    from sync.central import cli_channels
    from sync.central import cli_control
    from sync.central import cli_sms
    from sync.central import cli_stats
    from sync.central import cli_tasks

    _register_serve(csub)
    cli_sms.register(csub)
    _register_admin(csub)
    cli_control.register(csub)
    cli_stats.register(csub)
    _register_offices_and_counters(csub)
    cli_channels.register(csub)
    cli_tasks.register(csub)


def _register_serve(csub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = csub.add_parser("serve", help=_("serve the central system's contract over HTTP"))
    listen_options(q)
    db_option(q)
    q.add_argument(
        "--enrolment-key",
        help=_("counters must send this key to register (or set {env})", env=ENROLMENT_KEY_ENV),
    )
    q.add_argument(
        "--faults",
        action="store_true",
        help=_("allow fault injection through /_test/faults (tests only)"),
    )
    q.add_argument("--no-seed", action="store_true", help=_("do not load the demo data"))
    q.add_argument(
        "--clock-skew",
        type=float,
        default=DEFAULT_SKEW_MINUTES,
        metavar="MINUTES",
        help=_("how far ahead of this clock a record's time may be (default {minutes})",
               minutes=DEFAULT_SKEW_MINUTES),
    )  # fmt: skip
    q.add_argument(
        "--workers",
        type=int,
        default=1,
        help=_("worker processes serving the same database (default 1)"),
    )
    q.add_argument("--tls-cert", metavar="FILE", help=_("serve HTTPS with this certificate (PEM)"))
    q.add_argument("--tls-key", metavar="FILE", help=_("the certificate's private key (PEM)"))
    q.add_argument(
        "--pool-size",
        type=int,
        metavar="N",
        help=_("database connections each worker keeps open once opened (PostgreSQL; default: "
               "its whole share of --db-connections)"),
    )  # fmt: skip
    q.add_argument(
        "--db-connections",
        type=int,
        default=80,
        metavar="N",
        help=_("database connections all workers together may open (PostgreSQL; default 80, "
               "within the server's usual limit of 100)"),
    )  # fmt: skip
    q.add_argument(
        "--log-json",
        action="store_true",
        help=_("log one JSON object per line on stderr, with each request's id"),
    )
    from sync.central import cli_control

    cli_control.control_options(q)
    q.add_argument(
        "--control-interval",
        type=float,
        default=10.0,
        metavar="S",
        help=_("seconds between runs of the control loop (with --terminals; default 10)"),
    )
    q.set_defaults(func=cmd_central_serve)


def _register_admin(csub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = csub.add_parser(
        "enrol",
        help=_("issue a one-time enrolment code with which a counter registers (again)"),
    )
    q.add_argument("counter_id", metavar="COUNTER_ID")
    q.add_argument("--office", required=True, help=_("the office the counter belongs to"))
    q.add_argument(
        "--hours", type=float, default=24, help=_("how long the code is valid (default 24)")
    )
    on_station_db(q, cmd_central_enrol)


def _register_offices_and_counters(
    csub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    osub = command_group(csub, "offices", _("the offices the station serves, with their region"))
    r = osub.add_parser("add", help=_("add an office, or change its name and region"))
    r.add_argument("code", metavar="CODE")
    r.add_argument("--name", default="", help=_("the office's name"))
    r.add_argument("--province", default="", help=_("the province it is in"))
    r.add_argument("--city", default="", help=_("the city it is in"))
    on_station_db(r, cmd_offices_add)
    r = osub.add_parser("list", help=_("list the offices"))
    on_station_db(r, cmd_offices_list, json=True)

    ksub = command_group(csub, "counters", _("the counters registered with the station"))
    r = ksub.add_parser("list", help=_("list the counters, their last contact and state"))
    r.add_argument("--office", help=_("only this office's counters"))
    on_station_db(r, cmd_counters_list, json=True)
    r = ksub.add_parser("revoke", help=_("revoke a counter: its token stops working"))
    r.add_argument("counter_id", metavar="COUNTER_ID")
    on_station_db(r, cmd_counters_revoke)
