"""A customer's charge control, for a counter of the customer's office: its status, its meter's
condition called now (condition release), and lifting or resuming the control (approved at the
counter). :mod:`sync.central.control`, :mod:`sync.central.condition` and
:mod:`sync.central.control_lift` hold the rules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path
from fastapi import Request
from fastapi import Response

from sync import contract as c
from sync.central.api import API
from sync.central.api import ContractRoute
from sync.central.api import CounterDep
from sync.central.api import StoreDep
from sync.central.api import contract_body
from sync.central.condition import ConditionError
from sync.central.condition import call_condition
from sync.central.control_lift import LiftRefused
from sync.central.control_lift import apply_lift
from sync.central.wire import HttpError
from sync.central.wire import json_response
from sync.central.wire import problems

router = APIRouter(prefix=API, route_class=ContractRoute)
CustomerNo = Annotated[str, Path(pattern=r"^[0-9]{12}$")]


@router.get(
    "/customers/{customer_no}/control-status",
    operation_id="getControlStatus",
    summary="Charge-control status of one customer of this counter's office",
    response_model=c.ControlStatus,
    responses=problems(400, 401, 404),
)
def control_status(counter: CounterDep, store: StoreDep, customer_no: CustomerNo) -> Response:
    status = store.control_status(counter, customer_no)
    if status is None:
        raise HttpError(404, "not_found", f"no customer {customer_no}")
    return json_response(200, status)


@router.get(
    "/customers/{customer_no}/condition",
    operation_id="getTerminalCondition",
    summary="Call the meter of one customer of this office now (409: not_remote, no_terminals, "
    "terminal_no_answer)",
    response_model=c.TerminalCondition,
    responses=problems(400, 401, 404, 409),
)
def terminal_condition(
    request: Request, counter: CounterDep, store: StoreDep, customer_no: CustomerNo
) -> Response:
    meters = getattr(request.app.state, "condition_meters", None)
    try:
        return json_response(200, call_condition(store, counter, customer_no, meters))
    except ConditionError as exc:
        raise HttpError.refused(exc) from exc


@router.put(
    "/customers/{customer_no}/control-lift",
    operation_id="putControlLift",
    summary="Lift (approved at the counter) or resume the charge control of one customer of "
    "this counter's office; idempotent by the request's id",
    response_model=c.ControlStatus,
    responses=problems(400, 401, 404, 413, 415, 422),
    openapi_extra=contract_body(c.ControlLift),
)
def control_lift(
    request: Request, counter: CounterDep, store: StoreDep, customer_no: CustomerNo
) -> Response:
    try:
        found = apply_lift(store, counter, customer_no, request.state.body)
    except LiftRefused as exc:
        raise HttpError.refused(exc) from exc
    status = store.control_status(counter, customer_no) if found else None
    if status is None:
        raise HttpError(404, "not_found", f"no customer {customer_no} under control")
    return json_response(200, status)
