"""Fault injection for tests: the station misbehaves on purpose when armed (``POST
/_test/faults`` or :meth:`FaultInjector.arm`).

:class:`FaultMiddleware` is an ASGI middleware that the server adds only when it is started with
faults on; without it ``/_test/faults`` is a 404 and nothing can be armed.  ``POST /_test/faults``
arms (a :class:`FaultSpec` body), ``DELETE`` clears, ``GET`` shows what is armed and how many
faults were injected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from starlette.types import ASGIApp
from starlette.types import Message
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from sync import contract as c

log = logging.getLogger(__name__)


class FaultSpec(BaseModel):
    """What ``POST /_test/faults`` (or :meth:`FaultInjector.arm`) takes."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0, le=600_000)
    error_5xx: int = Field(default=0, ge=0)
    retry_after: int | None = Field(default=None, ge=0)
    drop_after_commit: int = Field(default=0, ge=0)
    drop_before: int = Field(default=0, ge=0)
    malformed: int = Field(default=0, ge=0)
    path: str = c.API_PREFIX


@dataclass
class _Rule:
    spec: FaultSpec
    left: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """What to do with one request: sleep first, then at most one misbehaviour."""

    latency_ms: int = 0
    action: str | None = None  # drop_before | error_5xx | drop_after_commit | malformed
    retry_after: int | None = None
    malformed_variant: int = 0


class FaultInjector:
    """Faults armed for the next requests whose path starts with a prefix (thread-safe).

    ``arm(error_5xx=2)`` makes the next two matching requests answer 503 without doing
    anything; ``drop_before`` closes the connection without doing anything;
    ``drop_after_commit`` does the request (commits) and closes the connection without an
    answer; ``malformed`` does it and answers 200 with a body that is not JSON, or (every
    other time) JSON of the wrong shape.  ``latency_ms`` delays every matching request while
    the rule is armed.  Several calls add rules; :meth:`clear` removes them all.  When one
    rule has several kinds left, a request takes one of them in the order drop_before,
    error_5xx, drop_after_commit, malformed.
    """

    ORDER = ("drop_before", "error_5xx", "drop_after_commit", "malformed")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._malformed_seen = 0
        self.injected: dict[str, int] = dict.fromkeys(self.ORDER, 0)

    def arm(self, spec: FaultSpec | None = None, **kwargs: Any) -> FaultSpec:
        if not self.enabled:
            raise RuntimeError("fault injection is off: start the server with faults=True")
        spec = spec or FaultSpec.model_validate(kwargs)
        rule = _Rule(spec, {k: getattr(spec, k) for k in self.ORDER if getattr(spec, k)})
        with self._lock:
            self._rules.append(rule)
        log.info("faults armed: %s", spec.model_dump())
        return spec

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rules": [{**r.spec.model_dump(), "left": dict(r.left)} for r in self._rules],
                "injected": dict(self.injected),
            }

    def take(self, path: str) -> Fault | None:
        """The fault for a request to ``path`` (counted as used), or None."""
        if not self.enabled:
            return None
        with self._lock:
            latency = 0
            for rule in self._rules:
                if not path.startswith(rule.spec.path):
                    continue
                latency = max(latency, rule.spec.latency_ms)
                for action in self.ORDER:
                    if rule.left.get(action, 0) > 0:
                        rule.left[action] -= 1
                        self.injected[action] += 1
                        variant = 0
                        if action == "malformed":
                            variant = self._malformed_seen % 2
                            self._malformed_seen += 1
                        return Fault(latency, action, rule.spec.retry_after, variant)
            self._rules = [r for r in self._rules if r.spec.latency_ms or any(r.left.values())]
            return Fault(latency) if latency else None


FAULTS_PATH = "/_test/faults"
_GARBAGE = (b'{"items": [{"truncated": tru', b'{"unexpected": "shape", "results": 7}')


async def _answer(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _drop(send: Send) -> None:
    """Close the connection without an answer.  uvicorn's ``send`` is a method of the request's
    cycle, which holds the connection's transport; closing it is what a dropped connection is.
    (A server that does not expose it gets a 500 instead: still no answer the client can use.)"""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionAbortedError("injected fault: connection dropped")
    transport.close()
    await asyncio.sleep(0)  # let the server see the connection go before the app returns


class FaultMiddleware:
    """Applies what :meth:`FaultInjector.take` says to every request under the API prefix, and
    serves ``/_test/faults``."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == FAULTS_PATH:
            await self._control(scope, receive, send)
            return
        fault = self.injector.take(path) if path.startswith(c.API_PREFIX) else None
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.action == "drop_before":
            await _drop(send)
            return
        if fault.action == "error_5xx":
            headers = {"Connection": "close"}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            problem = c.Problem(code="server_error", message="unavailable (injected fault)")
            await _answer(send, 503, problem.model_dump_json().encode(), headers)
            return
        if fault.action not in ("drop_after_commit", "malformed"):
            await self.app(scope, receive, send)
            return

        async def swallow(message: Message) -> None:  # the real answer is done, not sent
            pass

        await self.app(scope, receive, swallow)
        if fault.action == "drop_after_commit":
            await _drop(send)
        else:
            await _answer(send, 200, _GARBAGE[fault.malformed_variant])

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False) and len(body) < 65536
        try:
            if method == "POST":
                self.injector.arm(FaultSpec.model_validate_json(body or b"{}"))
            elif method == "DELETE":
                self.injector.clear()
            elif method != "GET":
                problem = c.Problem(
                    code="bad_request", message=f"{method} is not allowed on {FAULTS_PATH}"
                )
                await _answer(
                    send, 405, problem.model_dump_json().encode(), {"Allow": "GET, POST, DELETE"}
                )
                return
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            problem = c.Problem(code="bad_request", message=str(exc).splitlines()[0][:200])
            await _answer(send, 400, problem.model_dump_json().encode())
            return
        await _answer(send, 200, json.dumps(self.injector.state()).encode())


__all__ = ["FAULTS_PATH", "Fault", "FaultInjector", "FaultMiddleware", "FaultSpec"]
