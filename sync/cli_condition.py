"""``cardvend control condition CUSTOMER_NO [--json]``: the station calls a remote customer's
meter now and the counter shows its operating data (condition release, seed 3.10): relay,
status words, the meter's clock, its energy register, the control loop's last reading and when
it was called.  A customer of another office is unknown; a meter that does not answer is a
clear error within seconds (the station's meter timeout), never a hang."""

from __future__ import annotations

import argparse
from contextlib import closing

from app.cli import answer
from app.cli import id_arg
from app.cli import json_arg
from app.context import AppContext
from app.domain import ids
from app.errors import NotFound
from app.i18n import N_
from app.i18n import _
from app.presenters import control
from sync import contract as c
from sync.client import CentralClient
from sync.errors import CentralRejected
from sync.errors import SyncError
from sync.service import make_client


class MeterSilent(SyncError):
    code = "terminal_no_answer"
    template = N_(
        "The meter of customer {customer_no} did not answer the station ({detail}). Check the "
        "terminal and the meter's line, then call it again."
    )


class NoRemoteMeter(SyncError):
    code = "not_remote"
    template = N_("Customer {customer_no} has no remote meter: there is no condition to call.")


class NoTerminals(SyncError):
    code = "no_terminals"
    template = N_(
        "The station is not connected to the meters' terminals, so it cannot call meter "
        "conditions. Ask the station's administrator."
    )


def call_condition(client: CentralClient, customer_no: str) -> c.TerminalCondition:
    """The condition of ``customer_no``'s meter, or a typed error a teller understands."""
    try:
        return client.terminal_condition(customer_no)
    except CentralRejected as exc:
        problem, detail = exc.params.get("problem"), exc.params.get("detail", "")
        if problem == "not_found":
            raise NotFound(
                N_("Customer {customer_no} is not a customer of this office."),
                customer_no=customer_no,
            ) from exc
        if problem == "not_remote":
            raise NoRemoteMeter(customer_no=customer_no) from exc
        if problem == "no_terminals":
            raise NoTerminals() from exc
        if problem == "terminal_no_answer":
            raise MeterSilent(customer_no=customer_no, detail=detail) from exc
        raise


def condition_text(cond: c.TerminalCondition) -> str:
    return control.condition_text(
        cond.customer_no,
        cond.meter_no,
        cond.relay,
        list(cond.status_words),
        cond.meter_time.isoformat() if cond.meter_time else None,
        cond.energy_wh,
        cond.last_reading_at.isoformat() if cond.last_reading_at else None,
        cond.fetched_at.isoformat(),
    )


def cmd_control_condition(ctx: AppContext, args: argparse.Namespace) -> int:
    with closing(make_client(ctx)) as client:
        cond = call_condition(client, args.customer_no)
    return answer(args.json, cond.model_dump(mode="json"), condition_text(cond))


def register(ksub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``condition`` under the counter's ``control`` command."""
    q = ksub.add_parser(
        "condition",
        help=_("call a remote customer's meter through the station: relay, status, clock"),
    )
    q.add_argument("customer_no", metavar="CUSTOMER_NO", type=id_arg(ids.CUSTOMER_NO))
    json_arg(q)
    q.set_defaults(func=cmd_control_condition)
