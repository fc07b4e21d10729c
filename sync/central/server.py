"""The reference central server over HTTP: stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive.

Every request runs in its own (daemon) thread; the store gives each call its own connection and
transaction.  Answers are JSON (``application/json; charset=utf-8``) with a Content-Length; an
error is a :class:`~sync.contract.Problem`.  Bad input is a 400, never a 500; an unexpected
exception is a 500 ``server_error`` and is logged.

This module is only the HTTP plumbing: every rule (who may register, what a counter may post,
what it may see) is in :class:`~sync.central.store.CentralStore`.  What HTTP adds: the bearer
token (or the registration's credentials) is checked before the body is read, a POST or PUT body
must be ``application/json`` (415; no cross-site form posts) of at most
:data:`sync.contract.MAX_BODY` bytes (413), and a body left unread closes the connection.

With ``faults=True`` the server can misbehave on purpose (see :class:`FaultInjector`):
``POST /_test/faults`` arms faults for the next requests, ``DELETE /_test/faults`` clears them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import URL

from app.clock import Clock
from sync import contract as c
from sync.central.faults import Fault, FaultInjector, FaultSpec
from sync.central.store import (
    DEFAULT_CLOCK_SKEW,
    DEFAULT_LIMIT,
    AuditDiverged,
    CentralStore,
    Counter,
    Credentials,
    Refused,
    Reply,
    canonical_json,
    sha256_hex,
)

log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
MAX_BODY = c.MAX_BODY
FAULTS_PATH = "/_test/faults"
_CONTROL_STATUS = re.compile(r"^/customers/([^/]*)/control-status$")
_RECEIPT_CHECK = re.compile(r"^/receipts/([^/]*)/check$")
_DIGITS12 = re.compile(r"^[0-9]{12}\Z")
_UINT = re.compile(r"^[0-9]+\Z")
_KEY_MIN, _KEY_MAX = 8, 64


# --------------------------------------------------------------------------- HTTP plumbing


class HttpError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_TYPE


def _json_answer(status: int, model: BaseModel | bytes) -> Answer:
    body = model if isinstance(model, bytes) else model.model_dump_json().encode("utf-8")
    return Answer(status, body)


def _problem_answer(err: HttpError) -> Answer:
    body = c.Problem(code=err.code, message=err.message).model_dump_json().encode()
    return Answer(err.status, body, dict(err.headers))


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return str(exc)
    e = errors[0]
    where = ".".join(str(p) for p in e.get("loc", ()))
    return f"{where}: {e['msg']}" if where else str(e["msg"])


class _IntegralFloats:
    """``json.loads`` hooks: a number written with a fraction or exponent but a whole value
    (``63.0``, ``1e3``) is an integer to JSON Schema, so it becomes an ``int``; NaN and
    Infinity are not JSON and are refused."""

    def __init__(self) -> None:
        self.changed = False

    def number(self, text: str) -> int | float:
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"bad number {text[:40]!r}") from None
        if value.is_finite() and abs(value.adjusted()) <= 40 and value == value.to_integral_value():
            self.changed = True
            return int(value)
        return float(text)

    @staticmethod
    def constant(text: str) -> Any:
        raise ValueError(f"{text} is not JSON")


def _parse(model: type[BaseModel], body: bytes) -> Any:
    """Validate a request body against the contract model, strictly (no "1" for 1), the way
    JSON Schema reads it (63.0 is the integer 63)."""
    data: bytes | str = body
    hooks = _IntegralFloats()
    try:
        parsed = json.loads(body, parse_float=hooks.number, parse_constant=hooks.constant)
    except (ValueError, RecursionError) as exc:
        raise HttpError(400, "bad_request", f"Invalid JSON: {str(exc)[:200]}") from exc
    if hooks.changed:
        data = json.dumps(parsed)
    try:
        return model.model_validate_json(data, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if (
            errors
            and errors[0].get("type") == "too_long"
            and tuple(errors[0].get("loc", ())) == ("items",)
        ):
            raise HttpError(
                413, "payload_too_large", f"a batch holds at most {c.MAX_BATCH} items"
            ) from exc
        raise HttpError(400, "bad_request", _first_error(exc)) from exc


def _query_int(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    value = values[-1].strip()
    if not _UINT.match(value) or len(value) > 400:
        raise HttpError(400, "bad_request", f"{name} must be a whole number, got {value[:40]!r}")
    return int(value)


def _page_args(query: dict[str, list[str]]) -> tuple[int, int]:
    after = _query_int(query, "after", 0)
    limit = _query_int(query, "limit", DEFAULT_LIMIT)
    if not 1 <= limit <= c.MAX_PAGE:
        raise HttpError(400, "bad_request", f"limit must be 1 to {c.MAX_PAGE}, got {limit}")
    return after, limit


# --------------------------------------------------------------------------- the application


# an endpoint: (request) -> answer when open, (request, counter) -> answer when secured
Route = Callable[..., Answer]


@dataclass
class Request:
    """One request; its body is read only when a route asks for it (after authentication)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any  # email.message.Message
    read_body: Callable[[], bytes] = field(default=lambda: b"")
    params: tuple[str, ...] = ()
    _body: bytes | None = None

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = self.read_body()
        return self._body

    @property
    def body_read(self) -> bool:
        return self._body is not None


def _check_json(req: Request) -> None:
    """A POST or PUT body is JSON, said so (a browser's cross-site form post cannot)."""
    ctype = str(req.headers.get("Content-Type") or "")
    media, _, params = ctype.partition(";")
    charset = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if media.strip().lower() != "application/json" or charset not in ("", "utf-8"):
        raise HttpError(
            415,
            "unsupported_media_type",
            "the body must be Content-Type: application/json (UTF-8)",
        )


def _refused(exc: Refused) -> HttpError:
    return HttpError(exc.refusal.status, exc.refusal.code, exc.refusal.message)


class CentralApp:
    """Routing and the contract's HTTP rules on top of a :class:`CentralStore`."""

    def __init__(self, store: CentralStore, *, faults: FaultInjector) -> None:
        self.store = store
        self.faults = faults
        self._openapi = json.dumps(c.openapi(), ensure_ascii=False).encode("utf-8")
        api = c.API_PREFIX
        self.routes: dict[str, dict[str, tuple[Route, bool]]] = {
            f"{api}/health": {"GET": (self.health, False)},
            f"{api}/openapi.json": {"GET": (self.openapi, False)},
            f"{api}/counters/register": {"POST": (self.register, False)},
            f"{api}/counters/me/audit-head": {"PUT": (self.audit_head, True)},
            f"{api}/counters/me/sales": {"GET": (self.counter_sales, True)},
            f"{api}/tariffs": {"GET": (self.tariffs, True)},
            f"{api}/customers": {"GET": (self.customers, True)},
            f"{api}/remote-purchases": {"GET": (self.remote, True)},
            f"{api}/jobs": {"GET": (self.jobs, True)},
        }
        for resource in c.POSTED:
            self.routes[f"{api}/{resource}"] = {"POST": (self._single(resource), True)}
            self.routes[f"{api}/{resource}/batch"] = {"POST": (self._batch(resource), True)}

    # ------------------------------------------------------------------ dispatch

    def resolve(self, path: str) -> tuple[dict[str, tuple[Route, bool]], tuple[str, ...]] | None:
        found = self.routes.get(path)
        if found is not None:
            return found, ()
        if path.startswith(c.API_PREFIX):
            match = _CONTROL_STATUS.match(path[len(c.API_PREFIX) :])
            if match:
                return {"GET": (self.control_status, True)}, (match.group(1),)
            match = _RECEIPT_CHECK.match(path[len(c.API_PREFIX) :])
            if match:
                return {"GET": (self.check_receipt, True)}, (match.group(1),)
        return None

    def handle(self, req: Request) -> Answer:
        try:
            return self._handle(req)
        except HttpError as err:
            return _problem_answer(err)

    def _handle(self, req: Request) -> Answer:
        resolved = self.resolve(req.path)
        if resolved is None:
            raise HttpError(404, "not_found", f"no such path: {req.path[:200]}")
        methods, params = resolved
        allow = ", ".join([*methods, *(["HEAD"] if "GET" in methods else []), "OPTIONS"])
        if req.method == "OPTIONS":
            return Answer(204, headers={"Allow": allow}, content_type="")
        method = "GET" if req.method == "HEAD" and "GET" in methods else req.method
        if method not in methods:
            raise HttpError(
                405,
                "bad_request",
                f"{req.method} is not allowed on {req.path}",
                headers={"Allow": allow},
            )
        route, secured = methods[method]
        req.params = params
        # who asks is known before a byte of the body is read
        counter = self.authenticate(req) if secured else None
        if method in ("POST", "PUT"):
            _check_json(req)
        if secured:
            return route(req, counter)
        return route(req)

    def authenticate(self, req: Request) -> Counter:
        auth = req.headers.get("Authorization", "")
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(401, "unauthorized", "an Authorization: Bearer <token> is required")
        counter = self.store.authenticate(token.strip())
        if counter is None:
            raise HttpError(401, "unauthorized", "the bearer token is not valid")
        return counter

    # ------------------------------------------------------------------ open endpoints

    def health(self, req: Request) -> Answer:
        return _json_answer(
            200, c.Health(status="ok", contract=c.CONTRACT_VERSION, server_time=self.store.now())
        )

    def openapi(self, req: Request) -> Answer:
        return Answer(200, self._openapi)

    def register(self, req: Request) -> Answer:
        creds = self._credentials(req)
        if not self.store.admits(creds):  # nothing that could allow it: the body stays unread
            raise HttpError(
                401,
                "unauthorized",
                "registering needs the enrolment key (a new counter), the counter's current "
                "token, or an enrolment code from the central system's administrator",
            )
        body = _parse(c.RegisterRequest, req.body)
        try:
            return _json_answer(200, self.store.register(body, creds))
        except Refused as exc:
            raise _refused(exc) from exc

    @staticmethod
    def _credentials(req: Request) -> Credentials:
        limits = {"X-Enrolment-Key": 128, "X-Enrolment-Code": 64, "Idempotency-Key": 64}
        values: dict[str, str | None] = {}
        for name, most in limits.items():
            value = req.headers.get(name)
            if value is not None and len(value) > most:
                raise HttpError(400, "bad_request", f"{name} has at most {most} characters")
            values[name] = value or None
        auth = str(req.headers.get("Authorization") or "")
        scheme, _, token = auth.strip().partition(" ")
        return Credentials(
            bearer=token.strip() or None if scheme.lower() == "bearer" else None,
            enrolment_key=values["X-Enrolment-Key"],
            enrolment_code=values["X-Enrolment-Code"],
            request_key=values["Idempotency-Key"],
        )

    # ------------------------------------------------------------------ secured endpoints

    def tariffs(self, req: Request, counter: Counter) -> Answer:
        after, limit = _page_args(req.query)
        return Answer(200, self.store.tariffs_page_json(after, limit))

    def customers(self, req: Request, counter: Counter) -> Answer:
        after, limit = _page_args(req.query)
        return Answer(200, self.store.customers_page_json(counter, after, limit))

    def remote(self, req: Request, counter: Counter) -> Answer:
        after, limit = _page_args(req.query)
        return Answer(200, self.store.remote_page_json(counter, after, limit))

    def jobs(self, req: Request, counter: Counter) -> Answer:
        after, limit = _page_args(req.query)
        return Answer(200, self.store.jobs_page_json(counter, after, limit))

    def counter_sales(self, req: Request, counter: Counter) -> Answer:
        after, limit = _page_args(req.query)
        return Answer(200, self.store.counter_sales_page_json(counter, after, limit))

    def control_status(self, req: Request, counter: Counter) -> Answer:
        customer_no = unquote(req.params[0])
        if not _DIGITS12.match(customer_no):
            raise HttpError(400, "bad_request", "customer_no must be exactly 12 digits")
        status = self.store.control_status(counter, customer_no)
        if status is None:
            raise HttpError(404, "not_found", f"no customer {customer_no}")
        return _json_answer(200, status)

    def check_receipt(self, req: Request, counter: Counter) -> Answer:
        sale_id = unquote(req.params[0])
        codes = req.query.get("code") or []
        if len(codes) != 1 or not codes[0] or len(codes[0]) > 16 or len(sale_id) > 64:
            raise HttpError(400, "bad_request", "give one code of at most 16 characters")
        return _json_answer(200, self.store.check_receipt(counter, sale_id, codes[0]))

    def audit_head(self, req: Request, counter: Counter) -> Answer:
        head = _parse(c.AuditHead, req.body)
        try:
            ack = self.store.put_audit_head(counter, head)
        except AuditDiverged as exc:
            raise HttpError(409, "audit_diverged", str(exc)) from exc
        return _json_answer(200, ack)

    def _key(self, req: Request) -> str:
        key = req.headers.get("Idempotency-Key")
        if key is None:
            raise HttpError(400, "bad_request", "an Idempotency-Key header is required")
        if not _KEY_MIN <= len(key) <= _KEY_MAX:
            raise HttpError(
                400, "bad_request", f"Idempotency-Key must be {_KEY_MIN} to {_KEY_MAX} characters"
            )
        return str(key)

    def _single(self, resource: str) -> Callable[[Request, Counter], Answer]:
        model = c.POSTED[resource]

        def render(results: list[c.ItemResult]) -> tuple[int, bytes]:
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
            problem = c.Problem(code=code, message=r.message, ids=[r.id])
            return status, problem.model_dump_json().encode()

        def post_one(req: Request, counter: Counter) -> Answer:
            key = self._key(req)
            item = _parse(model, req.body)
            return self._keyed(req, counter, resource, [item], key, render)

        return post_one

    def _batch(self, resource: str) -> Callable[[Request, Counter], Answer]:
        model = c.BATCHES[resource]

        def render(results: list[c.ItemResult]) -> tuple[int, bytes]:
            return 200, c.BatchResult(results=results).model_dump_json().encode()

        def post_batch(req: Request, counter: Counter) -> Answer:
            key = self._key(req)
            batch = _parse(model, req.body)
            return self._keyed(req, counter, resource, list(batch.items), key, render)

        return post_batch

    def _keyed(
        self,
        req: Request,
        counter: Counter,
        resource: str,
        items: list[Any],
        key: str,
        render: Callable[[list[c.ItemResult]], tuple[int, bytes]],
    ) -> Answer:
        canonical = canonical_json([i.model_dump(mode="json") for i in items])
        request_hash = sha256_hex(f"{req.method} {req.path}\n{canonical}")
        reply: Reply = self.store.post_keyed(
            resource, counter, items, key=key, request_hash=request_hash, render=render
        )
        headers = {"Idempotent-Replayed": "true"} if reply.replayed else {}
        return Answer(reply.status, reply.body, headers)

    # ------------------------------------------------------------------ faults endpoint

    def handle_faults(self, req: Request) -> Answer:
        """``POST /_test/faults`` arms (a :class:`FaultSpec` body), ``DELETE`` clears, ``GET``
        shows what is armed and how many faults were injected."""
        try:
            if req.method == "POST":
                self.faults.arm(_parse(FaultSpec, req.body or b"{}"))
            elif req.method == "DELETE":
                self.faults.clear()
            elif req.method != "GET":
                raise HttpError(
                    405,
                    "bad_request",
                    f"{req.method} is not allowed on {FAULTS_PATH}",
                    headers={"Allow": "GET, POST, DELETE"},
                )
        except HttpError as err:
            return _problem_answer(err)
        return Answer(200, json.dumps(self.faults.state()).encode())


# --------------------------------------------------------------------------- the handler


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: CentralApp

    def __init__(self, address: tuple[str, int], app: CentralApp) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut the keep-alive connections still open: a stopped server answers nothing."""
        with self._open_lock:
            open_now = list(self._open)
            self._open.clear()
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CardVendCentral/" + c.CONTRACT_VERSION
    # headers and body go out in two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (40 ms a request on Linux)
    disable_nagle_algorithm = True
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_OPTIONS(self) -> None:
        self._serve("OPTIONS")

    def __getattr__(self, name: str) -> Callable[[], None]:
        """Any other method (TRACE, QUERY, ...) is routed too: 405 on a known path."""
        if name.startswith("do_"):
            return lambda: self._serve(name[3:])
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own errors (a bad request line, say) as a Problem too."""
        self.close_connection = True
        problem_code = "bad_request" if 400 <= code < 500 else "server_error"
        body = c.Problem(code=problem_code, message=message or "").model_dump_json().encode()
        try:
            self._write(Answer(code, body), head=self.command == "HEAD")
        except OSError:
            pass

    # ------------------------------------------------------------------

    def _declared_length(self) -> int | None:
        """The body's length as the headers frame it (None: chunked); checked before anything
        else, without reading the body."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return None
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return 0
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise HttpError(400, "bad_request", "Content-Length is not a number") from None
        if length < 0:
            self.close_connection = True
            raise HttpError(400, "bad_request", "Content-Length is negative")
        return length

    def _read_body(self) -> bytes:
        length = self._declared_length()
        if length is None:
            return self._read_chunked()
        if length > MAX_BODY:
            self.close_connection = True
            raise HttpError(413, "payload_too_large", f"a body may have at most {MAX_BODY} bytes")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise HttpError(400, "bad_request", "bad chunked encoding") from None
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                self.close_connection = True
                raise HttpError(
                    413, "payload_too_large", f"a body may have at most {MAX_BODY} bytes"
                )
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    def _write(self, answer: Answer, *, head: bool = False) -> None:
        self.send_response(answer.status)
        if answer.content_type:
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head and answer.body:
            self.wfile.write(answer.body)
        self.wfile.flush()

    def _drop(self) -> None:
        """Close the connection without an answer."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _serve(self, method: str) -> None:
        app = self.server.app
        try:
            split = urlsplit(self.path)
            path = split.path
            query = parse_qs(split.query, keep_blank_values=True)
            try:
                declared = self._declared_length()
            except HttpError as err:
                self._write(_problem_answer(err), head=method == "HEAD")
                return
            req = Request(method, path, query, self.headers, self._read_body)

            def send(answer: Answer) -> None:
                if not req.body_read and declared != 0:
                    # answered without reading the body (not authenticated, not JSON, too
                    # large, an injected fault): its bytes must not be taken for the next
                    # request on this connection
                    self.close_connection = True
                self._write(answer, head=method == "HEAD")

            if path == FAULTS_PATH and app.faults.enabled:
                send(app.handle_faults(req))
                return
            fault = app.faults.take(path) if path.startswith(c.API_PREFIX) else None
            if fault is not None:
                if fault.latency_ms:
                    time.sleep(fault.latency_ms / 1000)
                if fault.action == "drop_before":
                    self._drop()
                    return
                if fault.action == "error_5xx":
                    headers = {}
                    if fault.retry_after is not None:
                        headers["Retry-After"] = str(fault.retry_after)
                    unavailable = HttpError(
                        503, "server_error", "unavailable (injected fault)", headers=headers
                    )
                    send(_problem_answer(unavailable))
                    return
            answer = app.handle(req)
            if fault is not None and fault.action == "drop_after_commit":
                self._drop()
                return
            if fault is not None and fault.action == "malformed":
                garbage = (
                    b'{"items": [{"truncated": tru'
                    if fault.malformed_variant == 0
                    else b'{"unexpected": "shape", "results": 7}'
                )
                answer = Answer(200, garbage)
            send(answer)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("unexpected error in %s %s", method, self.path[:200])
            self.close_connection = True
            try:
                problem = c.Problem(code="server_error", message="unexpected server error")
                self._write(Answer(500, problem.model_dump_json().encode()))
            except OSError:
                pass


# --------------------------------------------------------------------------- the server


class CentralServer:
    """The reference central server: ``CentralServer(db_url).start()`` serves in a background
    thread on a free loopback port (``port=0``); ``.url`` is where, ``.store`` the data."""

    def __init__(
        self,
        db_url: str | URL,
        host: str = "127.0.0.1",
        port: int = 0,
        enrolment_key: str | None = None,
        faults: bool = False,
        *,
        store: CentralStore | None = None,
        clock: Clock | None = None,
        clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
    ) -> None:
        if store is None:
            store = CentralStore(
                db_url, clock=clock, enrolment_key=enrolment_key, clock_skew=clock_skew
            )
        elif enrolment_key is not None:
            store.enrolment_key = enrolment_key
        self.store = store
        self.faults = FaultInjector(enabled=faults)
        self.host = host
        self.port = port
        self.app = CentralApp(self.store, faults=self.faults)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        host, port = self._httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{port}"

    def start(self) -> Self:
        """Serve in a background thread.  After :meth:`stop` it starts again on the same port
        (tests take the central system down and bring it back)."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self.port), self.app)
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"central-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("central server listening on %s", self.url)
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.store.dispose()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["CentralApp", "CentralServer", "Fault", "FaultInjector", "FaultSpec"]
