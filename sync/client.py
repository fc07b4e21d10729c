"""The HTTP client of the contract (requests).

- one ``requests.Session``; every call has a (connect, read) timeout; TLS is verified (a CA
  bundle setting may name the utility's own CA);
- GETs and PUTs are retried on connection errors, timeouts, 429 and 5xx with exponential backoff
  and full jitter; a POST is retried only when it carries an ``Idempotency-Key`` (ours always do),
  because only then can a repeat not double anything;
- ``Retry-After`` (seconds) is honoured, capped by ``max_wait``;
- every answer is validated against the contract models: a body that is not what the contract
  says is a :class:`CentralBadResponse`, raised before the caller changes anything;
- a record the central system refuses comes back as a ``rejected`` result carrying the refusal
  code, from a batch or a single post alike; a batch whose body would exceed the contract's
  ``MAX_BODY`` (or that the central system answers 413) is sent in halves.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import TypeVar
from typing import Unpack
from urllib.parse import quote

import requests
from pydantic import BaseModel
from pydantic import ValidationError

from app.ports import StatsFilter
from sync import contract as c
from sync.errors import AuditDiverged
from sync.errors import CentralBadResponse
from sync.errors import CentralRejected
from sync.errors import CentralUnauthorized
from sync.errors import CentralUnreachable
from sync.errors import CounterIdTaken
from sync.errors import EnrolmentKeyRefused
from sync.errors import ExceptionNotFound
from sync.errors import IllegalTransition
from sync.errors import RegistrationRefused
from sync.errors import RegistrationUnreachable
from sync.errors import StatsRefused

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass
class RetryPolicy:
    attempts: int = 4  # tries in all
    base: float = 0.2  # seconds; the n-th retry waits up to base * 2**n
    cap: float = 5.0
    max_wait: float = 30.0  # longest Retry-After honoured
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_wait)
        return self.rng.uniform(0, min(self.cap, self.base * 2**attempt))


def batch_key(path: str, ids: Sequence[str]) -> str:
    """The Idempotency-Key of a post: the same items to the same path always get the same key
    (a single post and a batch of one are different requests, so they get different keys)."""
    digest = hashlib.sha256((path + "\n" + "\n".join(ids)).encode()).hexdigest()
    return digest[:48]


def _exception_error(exc: CentralRejected, exception_id: str) -> Exception:
    """The station's 404 and illegal_transition for an exception as their typed errors."""
    if exc.params.get("status") == 404:
        return ExceptionNotFound(exception_id=exception_id[:64])
    if exc.params.get("problem") == "illegal_transition":
        return IllegalTransition(detail=exc.params.get("detail", ""))
    return exc


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: rare here; fall back to our own backoff


class CentralClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        ca_bundle: str | None = None,
        timeout: tuple[float, float] = (3.05, 30.0),
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.http = session or requests.Session()
        # given with every request: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the
        # environment override a session's verify (psf/requests#3829), which would silently
        # drop the counter's central_ca_bundle setting
        self.verify: str | bool = ca_bundle or True
        self.http.verify = self.verify
        self.http.headers["User-Agent"] = f"cardvend-counter/{c.CONTRACT_VERSION}"
        self.http.headers["Accept"] = "application/json"
        # HTTP requests made, retries and halves included: what a push report counts
        self.requests = 0

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ transport

    def _send(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        params: dict[str, Any] | None = None,
        body: BaseModel | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> tuple[int, M]:
        url = self.base_url + c.API_PREFIX + path
        hdrs = dict(headers or {})
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = body.model_dump_json().encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        if idempotency_key:
            hdrs["Idempotency-Key"] = idempotency_key
        retryable = method != "POST" or idempotency_key is not None
        attempt = 0
        while True:
            wait: float | None = None
            try:
                self.requests += 1
                resp = self.http.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=hdrs,
                    timeout=self.timeout,
                    verify=self.verify,
                )
            except requests.exceptions.SSLError as exc:
                raise CentralUnreachable(url=self.base_url, detail=f"TLS: {exc}") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure: Exception = exc
                detail = type(exc).__name__
            else:
                if resp.status_code not in RETRY_STATUS:
                    return resp.status_code, self._parse(method, path, resp, model, ok)
                failure = CentralRejected(
                    method=method, path=path, status=resp.status_code, detail=resp.reason
                )
                detail = f"HTTP {resp.status_code}"
                wait = _retry_after(resp)
            attempt += 1
            if not retryable or attempt >= self.retry.attempts:
                raise CentralUnreachable(url=self.base_url, detail=detail) from failure
            delay = self.retry.delay(attempt - 1, wait)
            log.info("%s %s: %s, retry %d in %.2f s", method, path, detail, attempt, delay)
            self.retry.sleep(delay)

    def _parse(
        self,
        method: str,
        path: str,
        resp: requests.Response,
        model: type[M],
        ok: tuple[int, ...],
    ) -> M:
        if resp.status_code in ok:
            try:
                return model.model_validate_json(resp.content)
            except ValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {"msg": str(exc)}
                where = ".".join(str(p) for p in first.get("loc", ()))
                raise CentralBadResponse(
                    method=method, path=path, detail=f"{where} {first['msg']}".strip()
                ) from exc
        try:
            problem = c.Problem.model_validate_json(resp.content)
        except ValidationError:
            problem = c.Problem(code="unknown", message=resp.text[:200] or resp.reason)
        if resp.status_code == 401:
            raise CentralUnauthorized(detail=problem.message, problem=problem.code)
        if problem.code == "audit_diverged":
            raise AuditDiverged(detail=problem.message)
        raise CentralRejected(
            method=method,
            path=path,
            status=resp.status_code,
            detail=problem.message,
            problem=problem.code,
        )

    # ------------------------------------------------------------------ resources

    def health(self) -> c.Health:
        return self._send("GET", "/health", c.Health)[1]

    def register(
        self,
        req: c.RegisterRequest,
        enrolment_key: str | None,
        *,
        enrolment_code: str | None = None,
    ) -> c.RegisterResponse:
        """Register this counter.  With a token (``self.token``: the counter's current one) an
        existing counter registers again; ``enrolment_code`` is a one-time code the central
        administrator issued for this counter id.  The Idempotency-Key lets a retry whose first
        answer was lost get a token too."""
        headers: dict[str, str] = {}
        if enrolment_key:
            headers["X-Enrolment-Key"] = enrolment_key
        if enrolment_code:
            headers["X-Enrolment-Code"] = enrolment_code.strip()
        try:
            return self._send(
                "POST",
                "/counters/register",
                c.RegisterResponse,
                body=req,
                headers=headers,
                idempotency_key=uuid.uuid4().hex,
            )[1]
        except CentralUnreachable as exc:
            raise RegistrationUnreachable(
                url=self.base_url, detail=exc.params.get("detail", "")
            ) from exc
        except CentralUnauthorized as exc:
            raise EnrolmentKeyRefused(
                counter=req.counter_id, detail=exc.params.get("detail", "")
            ) from exc
        except CentralRejected as exc:
            if exc.params.get("problem") == "counter_id_taken":
                raise CounterIdTaken(counter=req.counter_id) from exc
            if exc.params.get("problem") in c.REFUSALS:
                raise RegistrationRefused(
                    counter=req.counter_id, detail=exc.params.get("detail", "")
                ) from exc
            raise

    def _page(self, path: str, model: type[M], after: int, limit: int) -> M:
        return self._send("GET", path, model, params={"after": after, "limit": limit})[1]

    def tariffs(self, after: int, limit: int = 1000) -> c.TariffPage:
        return self._page("/tariffs", c.TariffPage, after, limit)

    def customers(self, after: int, limit: int = 5000) -> c.CustomerPage:
        return self._page("/customers", c.CustomerPage, after, limit)

    def remote_statuses(self, after: int, limit: int = 1000) -> c.RemoteStatusPage:
        return self._page("/remote-purchases", c.RemoteStatusPage, after, limit)

    def jobs(self, after: int, limit: int = 1000) -> c.JobPage:
        return self._page("/jobs", c.JobPage, after, limit)

    def counter_sales(self, after: int, limit: int = 1000) -> c.CounterSalePage:
        return self._page("/counters/me/sales", c.CounterSalePage, after, limit)

    def control_status(self, customer_no: str) -> c.ControlStatus:
        return self._send("GET", f"/customers/{customer_no}/control-status", c.ControlStatus)[1]

    # ------------------------------------------------------------------ exceptions queue

    def list_exceptions(self, state: str | None = None, limit: int = 100) -> c.ExceptionList:
        params: dict[str, Any] = {"limit": limit}
        if state is not None:
            params["state"] = state
        return self._send("GET", "/exceptions", c.ExceptionList, params=params)[1]

    def get_exception(self, exception_id: str) -> c.ExceptionDetail:
        path = f"/exceptions/{quote(exception_id, safe='')}"
        try:
            return self._send("GET", path, c.ExceptionDetail)[1]
        except CentralRejected as exc:
            raise _exception_error(exc, exception_id) from exc

    def act_on_exception(
        self, exception_id: str, step: c.ExceptionAction, *, key: str | None = None
    ) -> c.ExceptionDetail:
        """One workflow step; ``key`` (default: a new one) is its Idempotency-Key, so a retry
        after a lost answer is not a second step."""
        path = f"/exceptions/{quote(exception_id, safe='')}/actions"
        try:
            return self._send(
                "POST", path, c.ExceptionDetail, body=step, idempotency_key=key or uuid.uuid4().hex
            )[1]
        except CentralRejected as exc:
            raise _exception_error(exc, exception_id) from exc

    def terminal_condition(self, customer_no: str) -> c.TerminalCondition:
        """The station calls the customer's remote meter now (condition release)."""
        return self._send("GET", f"/customers/{customer_no}/condition", c.TerminalCondition)[1]

    def stats(self, **filters: Unpack[StatsFilter]) -> c.Stats:
        """Charge-control statistics of this counter's office, city or province
        (:class:`StatsRefused` when the station refuses the region, period or filter)."""
        region = filters.get("region")
        date_from, date_to = filters.get("date_from"), filters.get("date_to")
        params = {
            "region": region,
            "from": date_from.isoformat() if date_from else None,
            "to": date_to.isoformat() if date_to else None,
            "plan": filters.get("plan"),
            "state": filters.get("state"),
        }
        try:
            return self._send(
                "GET", "/stats", c.Stats, params={k: v for k, v in params.items() if v}
            )[1]
        except CentralRejected as exc:
            problem = str(exc.params.get("problem") or "")
            if exc.params.get("status") in (400, 403, 404, 422):
                raise StatsRefused(
                    problem, str(exc.params.get("detail", "")), region=region or "—"
                ) from exc
            raise

    def check_receipt(self, sale_id: str, code: str) -> c.ReceiptCheck:
        return self._send(
            "GET", f"/receipts/{sale_id}/check", c.ReceiptCheck, params={"code": code}
        )[1]

    def control_lift(self, customer_no: str, lift: c.ControlLift) -> c.ControlStatus:
        """Lift or resume a customer's charge control (a PUT: retried, idempotent by id)."""
        path = f"/customers/{customer_no}/control-lift"
        return self._send("PUT", path, c.ControlStatus, body=lift)[1]

    def put_audit_head(self, head: c.AuditHead) -> c.AuditHeadAck:
        return self._send("PUT", "/counters/me/audit-head", c.AuditHeadAck, body=head)[1]

    def post_one(self, resource: str, item: c.Model, *, key_id: str | None = None) -> c.ItemResult:
        """One record; a 409 (the same id with another body) comes back as a conflict result,
        a refusal (403/422 with a refusal code) as a rejected one, as in a batch. ``key_id``
        stands for the record's id in its Idempotency-Key (see :meth:`post_batch`)."""
        key = key_id or str(getattr(item, "id", ""))
        try:
            return self._send(
                "POST",
                f"/{resource}",
                c.ItemResult,
                body=item,
                idempotency_key=batch_key(f"/{resource}", [key]),
            )[1]
        except CentralRejected as exc:
            problem = exc.params.get("problem")
            if exc.params.get("status") == 409 and problem == "conflict":
                return c.ItemResult(
                    id=str(getattr(item, "id", "")),
                    status="conflict",
                    code="conflict",
                    message=str(exc.params.get("detail", "")),
                )
            if isinstance(problem, str) and problem in c.REFUSALS:
                return c.ItemResult(
                    id=str(getattr(item, "id", "")),
                    status="rejected",
                    code=problem,
                    message=str(exc.params.get("detail", "")),
                )
            raise

    def post_batch(
        self, resource: str, items: Sequence[c.Model], *, key_ids: Sequence[str] | None = None
    ) -> c.BatchResult:
        """The items in one request. Its Idempotency-Key is made of the items' ids, or of
        ``key_ids`` (one per item): a record sent again on purpose after the central side
        answered for it needs a new key, or the kept answer is replayed."""
        batch_model = c.BATCHES[resource]
        ids = [str(getattr(i, "id", "")) for i in items]
        body = batch_model.model_validate({"items": list(items)})
        if len(items) > 1 and len(body.model_dump_json().encode("utf-8")) > c.MAX_BODY:
            return self._halves(resource, items, key_ids)
        try:
            result = self._send(
                "POST",
                f"/{resource}/batch",
                c.BatchResult,
                body=body,
                idempotency_key=batch_key(f"/{resource}/batch", list(key_ids or ids)),
            )[1]
        except CentralRejected as exc:
            if exc.params.get("status") == 413 and len(items) > 1:
                return self._halves(resource, items, key_ids)
            raise
        if [r.id for r in result.results] != ids:
            raise CentralBadResponse(
                method="POST",
                path=f"/{resource}/batch",
                detail="results do not match the items sent",
            )
        return result

    def _halves(
        self, resource: str, items: Sequence[c.Model], key_ids: Sequence[str] | None
    ) -> c.BatchResult:
        middle = len(items) // 2
        keys = list(key_ids) if key_ids else None
        first = self.post_batch(resource, items[:middle], key_ids=keys and keys[:middle]).results
        second = self.post_batch(resource, items[middle:], key_ids=keys and keys[middle:]).results
        return c.BatchResult(results=[*first, *second])
