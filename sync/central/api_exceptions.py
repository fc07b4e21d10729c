"""The exceptions queue's routes (:mod:`sync.central.exceptions` holds the rules): a counter
lists, shows and moves its office's exceptions; another office's id is a 404 like an unknown one.
A step is a POST under an Idempotency-Key (the answer is kept with the key, a refusal too)."""

from __future__ import annotations

from typing import Annotated
from typing import Literal

from fastapi import APIRouter
from fastapi import Path
from fastapi import Query
from fastapi import Request
from fastapi import Response

from sync import contract as c
from sync.central import exceptions as ex
from sync.central.api import API
from sync.central.api import ContractRoute
from sync.central.api import CounterDep
from sync.central.api import IdempotencyKey
from sync.central.api import StoreDep
from sync.central.api import contract_body
from sync.central.store import canonical_json
from sync.central.store import sha256_hex
from sync.central.wire import HttpError
from sync.central.wire import json_response
from sync.central.wire import problems

router = APIRouter(prefix=API, route_class=ContractRoute)
ExceptionId = Annotated[str, Path(min_length=1, max_length=64)]
StateFilter = Literal["open", "new", "assigned", "explained", "resolved", "escalated"]


@router.get(
    "/exceptions",
    operation_id="listExceptions",
    summary="The exceptions queue of this counter's office, newest first",
    response_model=c.ExceptionList,
    responses=problems(400, 401),
)
def list_exceptions(
    counter: CounterDep,
    store: StoreDep,
    state: StateFilter | None = None,
    limit: Annotated[int, Query(ge=1, le=ex.LIST_MAX)] = 100,
) -> Response:
    return json_response(200, ex.list_exceptions(store, counter, state, limit))


@router.get(
    "/exceptions/{exception_id}",
    operation_id="getException",
    summary="One exception of this counter's office, with its history",
    response_model=c.ExceptionDetail,
    responses=problems(400, 401, 404),
)
def show_exception(counter: CounterDep, store: StoreDep, exception_id: ExceptionId) -> Response:
    try:
        return json_response(200, ex.show_exception(store, counter, exception_id))
    except ex.ExceptionError as err:
        raise HttpError.refused(err) from err


@router.post(
    "/exceptions/{exception_id}/actions",
    operation_id="actOnException",
    summary="Assign, explain, resolve or escalate an exception of this counter's office",
    description=(
        "new -> assigned | escalated; assigned -> assigned | explained | resolved | escalated; "
        "escalated -> assigned | resolved; explained and resolved are final (409 "
        "illegal_transition otherwise)."
    ),
    response_model=c.ExceptionDetail,
    responses=problems(400, 401, 404, 409, 413, 415),
    openapi_extra=contract_body(c.ExceptionAction),
)
def act_on_exception(
    request: Request, counter: CounterDep, key: IdempotencyKey, exception_id: ExceptionId
) -> Response:
    body: c.ExceptionAction = request.state.body
    request_hash = sha256_hex(
        f"{request.method} {request.url.path}\n{canonical_json(body.model_dump(mode='json'))}"
    )
    store = request.app.state.store
    reply = ex.act(store, counter, exception_id, body, key=key, request_hash=request_hash)
    headers = {"Idempotent-Replayed": "true"} if reply.replayed else {}
    return json_response(reply.status, reply.body, headers)
