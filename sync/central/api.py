"""The station's HTTP API: a FastAPI application on the contract's pydantic models.

The models in :mod:`sync.contract` stay the single source of the contract; FastAPI generates the
OpenAPI document from the routes declared here (:func:`openapi_document`, committed as
``sync/openapi.json``).  Every rule (who may register, what a counter may post, what it may see)
is in :class:`~sync.central.store.CentralStore`; what HTTP adds lives in one place, the route
class :class:`ContractRoute`, which every route of the API uses:

- **authentication before the body**: a secured route's bearer token (a registration's
  credentials) is checked before a byte of the body is read (401, the connection closes);
- a POST or PUT body must be ``application/json`` in UTF-8 (415: no cross-site form posts), of at
  most :data:`~sync.contract.MAX_BODY` bytes (413, checked on the declared length before reading
  and while reading a chunked body);
- **strict parsing**: the body is validated against the route's contract model the way JSON
  Schema reads it (no ``"1"`` for 1; ``63.0`` is the integer 63; NaN is not JSON) before FastAPI
  sees it; a batch of more than :data:`~sync.contract.MAX_BATCH` items is a 413;
- every error is a :class:`~sync.contract.Problem`; bad input is a 400, never a 500; an
  unexpected exception is a logged 500 ``server_error`` whose details stay in the log.

The counter a request acts for is a dependency (:func:`current_counter`), its office scope comes
with it, and idempotency is the store's (``post_keyed``: the key and the kept answer are rows in
the same transaction as the records), so any number of workers and hosts can serve one database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from collections.abc import Callable
from collections.abc import Coroutine
from contextlib import asynccontextmanager
from typing import Annotated
from typing import Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi import Depends
from fastapi import FastAPI
from fastapi import Header
from fastapi import Path
from fastapi import Query
from fastapi import Request
from fastapi import Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from sync import contract as c
from sync.central.base import Dumped
from sync.central.base import request_hash
from sync.central.ops import Metrics
from sync.central.store import DEFAULT_LIMIT
from sync.central.store import AuditDiverged
from sync.central.store import CentralStore
from sync.central.store import Counter
from sync.central.store import Credentials
from sync.central.store import Refused
from sync.central.wire import HttpError
from sync.central.wire import check_json
from sync.central.wire import first_error
from sync.central.wire import json_response
from sync.central.wire import parse_strict
from sync.central.wire import problem_response
from sync.central.wire import problems
from sync.central.wire import read_body

log = logging.getLogger("sync.central.server")

API = c.API_PREFIX
KEY_MIN, KEY_MAX = 8, 64
# routes anyone may call; every other route of the API needs a counter's bearer token
OPEN_PATHS = frozenset({f"{API}/health", f"{API}/ready", f"{API}/openapi.json", f"{API}/metrics"})
REGISTER_PATH = f"{API}/counters/register"
_CREDENTIAL_LIMITS = {"X-Enrolment-Key": 128, "X-Enrolment-Code": 64, "Idempotency-Key": 64}


# --------------------------------------------------------------------------- authentication


bearer = HTTPBearer(scheme_name="counterToken", auto_error=False)


def store_of(request: Request) -> CentralStore:
    store: CentralStore = request.app.state.store
    return store


def _authenticate(request: Request) -> Counter:
    scheme, _, token = (request.headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HttpError(
            401, "unauthorized", "an Authorization: Bearer <token> is required", close=True
        )
    counter = store_of(request).authenticate(token.strip())
    if counter is None:
        raise HttpError(401, "unauthorized", "the bearer token is not valid", close=True)
    return counter


def credentials(request: Request) -> Credentials:
    """What a registration brings: a bearer token, the enrolment key or an enrolment code."""
    values: dict[str, str | None] = {}
    for name, most in _CREDENTIAL_LIMITS.items():
        value = request.headers.get(name)
        if value is not None and len(value) > most:
            raise HttpError(400, "bad_request", f"{name} has at most {most} characters", close=True)
        values[name] = value or None
    scheme, _, token = (request.headers.get("authorization") or "").strip().partition(" ")
    return Credentials(
        bearer=token.strip() or None if scheme.lower() == "bearer" else None,
        enrolment_key=values["X-Enrolment-Key"],
        enrolment_code=values["X-Enrolment-Code"],
        request_key=values["Idempotency-Key"],
    )


async def current_counter(
    request: Request, _token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Counter:
    """The counter the request acts for (authenticated by :class:`ContractRoute` before the body
    was read); its office is the scope of everything it may see or post."""
    counter: Counter = request.state.counter
    return counter


async def request_store(request: Request) -> CentralStore:
    """:func:`store_of` as a dependency."""
    return store_of(request)


# the dependencies only read what the request holds: coroutines, so FastAPI runs them on the
# event loop (a plain function would cost each request a hop to a worker thread and back)
CounterDep = Annotated[Counter, Depends(current_counter)]
StoreDep = Annotated[CentralStore, Depends(request_store)]


# the contract's models by name: its module's, and the batches it makes of the posted records
_MODELS: dict[str, type[BaseModel]] = {
    **{
        name: value
        for name, value in vars(c).items()
        if isinstance(value, type) and issubclass(value, BaseModel)
    },
    **{batch.__name__: batch for batch in c.BATCHES.values()},
}


def contract_body(model: type[BaseModel]) -> dict[str, Any]:
    """A route's ``openapi_extra`` for its JSON body of ``model`` (a contract model).  The body
    is not a parameter of the handler: :class:`ContractRoute` parses it once, strictly, into
    ``request.state.body``, and FastAPI neither reads nor validates it a second time."""
    ref = f"#/components/schemas/{model.__name__}"
    assert _MODELS.get(model.__name__) is model, f"{model.__name__} is not a contract model"
    return {
        "requestBody": {
            "content": {"application/json": {"schema": {"$ref": ref}}},
            "required": True,
        }
    }


def body_model(openapi_extra: dict[str, Any] | None) -> type[BaseModel] | None:
    """The contract model :func:`contract_body` declared for a route, if any."""
    body = (openapi_extra or {}).get("requestBody")
    if body is None:
        return None
    ref = body["content"]["application/json"]["schema"]["$ref"]
    return _MODELS[ref.rsplit("/", 1)[1]]


class GuardedRoute(APIRoute):
    """A route whose caller is admitted (:meth:`admit`, each route class its own) before FastAPI
    reads the body; then a POST or PUT body's media type, its size and its strict parsing; and
    every failure as a Problem."""

    async def admit(self, request: Request) -> None:
        """Check who is asking, before a byte of the body is read (an :class:`HttpError` if not
        admitted)."""
        raise NotImplementedError

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        model = body_model(self.openapi_extra)
        writes = bool((self.methods or set()) & {"POST", "PUT"})

        async def guarded(request: Request) -> Response:
            try:
                await self.admit(request)
                if writes:
                    check_json(request)
                if model is not None:
                    request.state.body = parse_strict(model, await read_body(request))
                return await handler(request)
            except HttpError as err:
                return problem_response(err)
            except RequestValidationError as exc:
                return problem_response(HttpError(400, "bad_request", first_error(exc.errors())))
            except Exception:
                log.exception("unexpected error in %s %s", request.method, request.url.path[:200])
                return problem_response(HttpError(500, "server_error", "unexpected server error"))

        return guarded


class ContractRoute(GuardedRoute):
    """Every API route: authentication, media type, size and strict parsing before FastAPI
    reads the body, and every failure as a Problem."""

    async def admit(self, request: Request) -> None:
        if self.path == REGISTER_PATH:
            creds = credentials(request)
            request.state.credentials = creds
            admitted = await run_in_threadpool(store_of(request).admits, creds)
            if not admitted:  # the body stays unread
                raise HttpError(
                    401,
                    "unauthorized",
                    "registering needs the enrolment key (a new counter), the counter's "
                    "current token, or an enrolment code from the central system's "
                    "administrator",
                    close=True,
                )
        elif self.path not in OPEN_PATHS:
            # a database read: off the event loop, which serves the others
            counter = await run_in_threadpool(_authenticate, request)
            request.state.counter = counter
            request.scope.setdefault("state", {})["counter_id"] = counter.counter_id


# --------------------------------------------------------------------------- the routes

router = APIRouter(prefix=API, route_class=ContractRoute)
After = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=c.MAX_PAGE)]
IdempotencyKey = Annotated[
    str, Header(alias="Idempotency-Key", min_length=KEY_MIN, max_length=KEY_MAX)
]
PAGE_ANSWERS = {200: {"description": "A page"}, **problems(400, 401)}


@router.get(
    "/health",
    operation_id="health",
    summary="Whether the central system answers",
    response_model=c.Health,
)
def health(store: StoreDep) -> Response:
    return json_response(
        200, c.Health(status="ok", contract=c.CONTRACT_VERSION, server_time=store.now())
    )


@router.get(
    "/ready",
    operation_id="ready",
    summary="Whether this server can serve: its database answers and its schema is current",
    responses={503: {"description": "Not ready; the body says what is missing"}},
)
def ready(store: StoreDep) -> Response:
    ok, detail = store.readiness()
    body = json.dumps({"status": "ready" if ok else "not_ready", **detail}).encode()
    return json_response(200 if ok else 503, body)


@router.get(
    "/metrics",
    operation_id="metrics",
    summary="Metrics in the Prometheus text format",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "The metrics"}},
)
def metrics(request: Request) -> Response:
    registry: Metrics | None = getattr(request.app.state, "metrics", None)
    if registry is None:
        raise HttpError(404, "not_found", "metrics are not collected by this server")
    body, content_type = registry.render()
    return Response(body, media_type=content_type)


@router.post(
    "/counters/register",
    operation_id="registerCounter",
    summary="Register a counter; answers its bearer token (a new one each time)",
    description=(
        "A new counter id registers with the enrolment key (when the central system has one) or "
        "with an enrolment code issued for it.  A counter id that is registered already registers "
        "again only with its current token (Authorization: Bearer; the office stays the same, the "
        "receipt key is answered again) or with a one-time enrolment code the central "
        "administrator issued for it (the code's office; a new receipt key).  Otherwise 409 "
        "counter_id_taken."
    ),
    response_model=c.RegisterResponse,
    responses=problems(400, 401, 409, 413, 415),
    openapi_extra=contract_body(c.RegisterRequest),
)
def register(
    request: Request,
    store: StoreDep,
    x_enrolment_key: Annotated[str | None, Header(alias="X-Enrolment-Key", max_length=128)] = None,
    x_enrolment_code: Annotated[str | None, Header(alias="X-Enrolment-Code", max_length=64)] = None,
) -> Response:
    try:
        answer = store.register(request.state.body, request.state.credentials)
    except Refused as exc:
        raise HttpError(exc.refusal.status, exc.refusal.code, exc.refusal.message) from exc
    return json_response(200, answer)


@router.put(
    "/counters/me/audit-head",
    operation_id="putAuditHead",
    summary="The counter's latest audit hash",
    response_model=c.AuditHeadAck,
    responses=problems(400, 401, 409, 413, 415),
    openapi_extra=contract_body(c.AuditHead),
)
def audit_head(request: Request, counter: CounterDep, store: StoreDep) -> Response:
    try:
        ack = store.put_audit_head(counter, request.state.body)
    except AuditDiverged as exc:
        raise HttpError(409, "audit_diverged", str(exc)) from exc
    return json_response(200, ack)


@router.get(
    "/counters/me/sales",
    operation_id="listCounterSales",
    summary="The sales the central system holds for this counter",
    response_model=c.CounterSalePage,
    responses=PAGE_ANSWERS,
)
def counter_sales(
    counter: CounterDep, store: StoreDep, after: After = 0, limit: Limit = DEFAULT_LIMIT
) -> Response:
    return json_response(200, store.counter_sales_page_json(counter, after, limit))


@router.get(
    "/receipts/{sale_id}/check",
    operation_id="checkReceipt",
    summary=(
        "Check a receipt's verification code against a sale made in this counter's office "
        "(another office's sale is unknown here)"
    ),
    response_model=c.ReceiptCheck,
    responses=problems(400, 401),
)
def check_receipt(
    counter: CounterDep,
    store: StoreDep,
    sale_id: Annotated[str, Path(min_length=1, max_length=64)],
    code: Annotated[str, Query(min_length=1, max_length=16)],
) -> Response:
    return json_response(200, store.check_receipt(counter, sale_id, code))


def _page_route(path: str, page: type[c.Model], summary: str, fetch: str, scoped: bool) -> None:
    """A GET page of a pulled resource after a cursor."""

    def endpoint(
        counter: CounterDep, store: StoreDep, after: After = 0, limit: Limit = DEFAULT_LIMIT
    ) -> Response:
        args = (counter, after, limit) if scoped else (after, limit)
        return json_response(200, getattr(store, fetch)(*args))

    router.add_api_route(
        path,
        endpoint,
        methods=["GET"],
        operation_id="list" + page.__name__.removesuffix("Page"),
        summary=summary,
        response_model=page,
        responses=PAGE_ANSWERS,
    )


_page_route(
    "/tariffs",
    c.TariffPage,
    "Tariff versions after the cursor, in the order they were issued",
    "tariffs_page_json",
    scoped=False,
)
_page_route(
    "/customers",
    c.CustomerPage,
    "Changes to the archive of this counter's office after the cursor (deltas)",
    "customers_page_json",
    scoped=True,
)
_page_route(
    "/remote-purchases",
    c.RemoteStatusPage,
    "Issuing status of this counter's remote purchases, changes after the cursor",
    "remote_page_json",
    scoped=True,
)
_page_route(
    "/jobs",
    c.JobPage,
    "Management-card jobs of the office, changes after the cursor",
    "jobs_page_json",
    scoped=True,
)


def _render_single(results: list[c.ItemResult]) -> tuple[int, bytes]:
    r = results[0]
    if r.status == "created":
        return 201, r.model_dump_json().encode()
    if r.status == "duplicate":
        return 200, r.model_dump_json().encode()
    if r.status == "conflict":
        code, status = "conflict", 409
    elif r.code in c.REFUSALS:
        code, status = r.code, c.REFUSALS[r.code][0]
    else:
        code, status = "bad_request", 400
    return status, c.Problem(code=code, message=r.message, ids=[r.id]).model_dump_json().encode()


def _render_batch(results: list[c.ItemResult]) -> tuple[int, bytes]:
    return 200, c.BatchResult(results=results).model_dump_json().encode()


ResultsHook = Callable[[str, list[c.ItemResult]], None]


def _keyed(
    request: Request,
    resource: str,
    items: list[Any],
    key: str,
    render: Callable[[list[c.ItemResult]], tuple[int, bytes]],
) -> Response:
    """A post under its Idempotency-Key: the store keeps the first answer with the key, in the
    records' transaction, and replays it for the same request."""
    counter: Counter = request.state.counter
    records = [Dumped.of(item) for item in items]  # once: for this hash and for the rows
    digest = request_hash(f"{request.method} {request.url.path}", records)
    observe: ResultsHook | None = getattr(request.app.state, "observe_results", None)

    def rendered(results: list[c.ItemResult]) -> tuple[int, bytes]:
        if observe is not None:
            request.state.results = results
        return render(results)

    reply = store_of(request).post_keyed(
        resource, counter, records, key=key, request_hash=digest, render=rendered
    )
    results = getattr(request.state, "results", None)
    if observe is not None and results is not None:
        observe(resource, results)
    headers = {"Idempotent-Replayed": "true"} if reply.replayed else {}
    return json_response(reply.status, reply.body, headers)


def _posted_routes(resource: str) -> None:
    """A single and a batch POST of one posted resource, idempotent by the record's id and by
    the request's Idempotency-Key."""
    model = c.POSTED[resource]
    batch = c.BATCHES[resource]

    def post_one(request: Request, counter: CounterDep, key: IdempotencyKey) -> Response:
        return _keyed(request, resource, [request.state.body], key, _render_single)

    def post_batch(request: Request, counter: CounterDep, key: IdempotencyKey) -> Response:
        return _keyed(request, resource, list(request.state.body.items), key, _render_batch)

    router.add_api_route(
        f"/{resource}",
        post_one,
        methods=["POST"],
        operation_id="post" + model.__name__,
        summary=f"One {model.__name__}, idempotent by its id",
        status_code=201,
        openapi_extra=contract_body(model),
        response_model=c.ItemResult,
        responses={
            200: {"model": c.ItemResult, "description": "Already there with the same body"},
            **problems(400, 401, 403, 409, 413, 415, 422),
        },
    )
    router.add_api_route(
        f"/{resource}/batch",
        post_batch,
        methods=["POST"],
        operation_id="post" + batch.__name__,
        summary=f"Up to {c.MAX_BATCH} {model.__name__}s; one result per item, in order",
        response_model=c.BatchResult,
        responses=problems(400, 401, 409, 413, 415),
        openapi_extra=contract_body(batch),
    )


for _resource in c.POSTED:
    _posted_routes(_resource)


# --------------------------------------------------------------------------- the application


async def _http_problem(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (no such path, a method the path does not take) as Problems."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err = HttpError(404, "not_found", f"no such path: {request.url.path[:200]}")
    elif exc.status_code == 405:
        err = HttpError(
            405,
            "bad_request",
            f"{request.method} is not allowed on {request.url.path[:200]}",
            headers=dict(exc.headers or {}),
        )
    else:
        err = HttpError(
            exc.status_code,
            "bad_request" if exc.status_code < 500 else "server_error",
            str(exc.detail),
        )
    return problem_response(err)


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(HttpError(400, "bad_request", first_error(exc.errors())))


# threads a worker runs its handlers on: a post waiting for its group's commit holds one, and
# a pull or a login must never queue behind those (the pool's connections still bound the
# database work)
HANDLER_THREADS = 200


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = HANDLER_THREADS
    yield


def _routers() -> list[APIRouter]:  # of the modules that import this one: imported late
    from sync.central.api_channels import router as channels
    from sync.central.api_control import router as control
    from sync.central.api_exceptions import router as exceptions
    from sync.central.api_stats import router as stats

    return [control, exceptions, stats, channels]


def create_app(store: CentralStore | None = None) -> FastAPI:
    """The API over ``store`` (None: only for the OpenAPI document)."""
    app = FastAPI(
        lifespan=_lifespan,
        title="CardVend central marketing system",
        version=c.CONTRACT_VERSION,
        description=c.description(),
        openapi_url=f"{API}/openapi.json",
        docs_url=None,
        redoc_url=None,
        separate_input_output_schemas=False,
    )
    app.state.store = store
    app.include_router(router)
    for more in _routers():
        app.include_router(more)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(RequestValidationError, _invalid)
    generate = app.openapi

    def document() -> dict[str, Any]:
        doc = generate()
        _problems_only(doc)
        return doc

    app.openapi = document  # type: ignore[method-assign]
    return app


def _problems_only(doc: dict[str, Any]) -> None:
    """FastAPI documents a 422 ``HTTPValidationError`` on every route with parameters; this API
    answers invalid input with a 400 Problem (declared per route) and keeps 422 for records that
    do not hold together, so that default goes."""
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422")
            if answer is not None and "HTTPValidationError" in json.dumps(answer):
                del operation["responses"]["422"]
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for operations in doc.get("paths", {}).values():  # the bodies of contract_body()
        for operation in operations.values():
            model = body_model(operation)
            if model is not None:
                schemas.setdefault(model.__name__, {})
    # FastAPI's OpenAPI model holds numeric bounds as floats (2**63 - 1 would become 2**63):
    # each contract model's schema is taken as pydantic writes it
    for name in list(schemas):
        model = _MODELS.get(name)
        if model is not None:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
    _whole_numbers(doc)


def _whole_numbers(node: Any) -> Any:
    """Integral floats (``5000.0`` for a parameter's bound) back to integers, in place."""
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in list(items):
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            node[key] = int(value)
        else:
            _whole_numbers(value)
    return node


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document FastAPI generates for the contract."""
    return create_app().openapi()


def openapi_text() -> str:
    return json.dumps(openapi_document(), ensure_ascii=False, indent=1, sort_keys=True) + "\n"


__all__ = [
    "ContractRoute",
    "GuardedRoute",
    "HttpError",
    "create_app",
    "current_counter",
    "openapi_document",
    "openapi_text",
    "parse_strict",
]
