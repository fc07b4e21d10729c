"""The payment channels' routes (:mod:`sync.central.channels` holds the rules).

A channel authenticates with its own bearer token (``channelToken`` in the OpenAPI document),
not a counter's: :class:`ChannelRoute` checks it before a byte of the body is read (401, the
connection closes; a revoked channel's token is unknown), then does what
:class:`~sync.central.api.ContractRoute` does for a counter's post (JSON only, the size limit,
strict parsing against the contract model, every failure a Problem).  The channel's transaction
id is the idempotency key, so no ``Idempotency-Key`` header is needed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Depends
from fastapi import Path
from fastapi import Request
from fastapi import Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from sync import contract as c
from sync.central import channels as ch
from sync.central.api import API
from sync.central.api import GuardedRoute
from sync.central.api import contract_body
from sync.central.api import store_of
from sync.central.wire import HttpError
from sync.central.wire import json_response
from sync.central.wire import problems

channel_bearer = HTTPBearer(scheme_name="channelToken", auto_error=False)


def _authenticate(request: Request) -> ch.Channel:
    scheme, _, token = (request.headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HttpError(
            401, "unauthorized", "an Authorization: Bearer <channel token> is required", close=True
        )
    channel = ch.authenticate(store_of(request), token.strip())
    if channel is None:
        raise HttpError(401, "unauthorized", "the channel token is not valid", close=True)
    return channel


class ChannelRoute(GuardedRoute):
    """Every channel route: the channel's token, media type, size and strict parsing before
    FastAPI reads the body, and every failure as a Problem."""

    async def admit(self, request: Request) -> None:
        channel = await run_in_threadpool(_authenticate, request)
        request.state.channel = channel
        request.scope.setdefault("state", {})["counter_id"] = f"channel:{channel.channel_id}"


async def current_channel(
    request: Request,
    _token: Annotated[HTTPAuthorizationCredentials | None, Depends(channel_bearer)],
) -> ch.Channel:
    channel: ch.Channel = request.state.channel
    return channel


ChannelDep = Annotated[ch.Channel, Depends(current_channel)]
TxnPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
]
router = APIRouter(prefix=API + c.CHANNEL_PREFIX, route_class=ChannelRoute, tags=["channels"])


@router.post(
    "/payments",
    operation_id="postChannelPayment",
    summary="A payment a channel took for a remote fee-control customer",
    description=(
        "Idempotent by txn_id: the same txn_id and body answer the payment held "
        "(`Idempotent-Replayed: true`, 200); the same txn_id with another body is a 409 "
        "`conflict`. A new payment is a 201. It counts in the customer's balance at the next "
        "run of the control loop (a tripped customer then gets a close permit)."
    ),
    status_code=201,
    response_model=c.ChannelPayment,
    responses={
        200: {"model": c.ChannelPayment, "description": "The payment held (a replay)"},
        **problems(400, 401, 403, 409, 413, 415, 422),
    },
    openapi_extra=contract_body(c.ChannelPaymentRequest),
)
def post_payment(request: Request, channel: ChannelDep) -> Response:
    body: c.ChannelPaymentRequest = request.state.body
    try:
        paid = ch.pay(store_of(request), channel, body)
    except ch.ChannelError as err:
        raise HttpError.refused(err) from err
    if paid.replayed:
        return json_response(200, paid.payment, {"Idempotent-Replayed": "true"})
    return json_response(201, paid.payment)


@router.get(
    "/payments/{txn_id}",
    operation_id="getChannelPayment",
    summary="Whether the station holds this channel's payment (after a timeout, say)",
    response_model=c.ChannelPayment,
    responses=problems(400, 401, 404),
)
def get_payment(request: Request, channel: ChannelDep, txn_id: TxnPath) -> Response:
    found = ch.payment(store_of(request), channel, txn_id)
    if found is None:
        raise HttpError(404, "not_found", f"no payment {txn_id} of this channel")
    return json_response(200, found)
