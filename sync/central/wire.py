"""What the station's API reads and answers on the wire, apart from the routes: every answer
other than success as a :class:`~sync.contract.Problem` (:class:`HttpError`), JSON responses,
and a request body read strictly: ``application/json`` in UTF-8, at most
:data:`~sync.contract.MAX_BODY` bytes, validated against the contract model the way JSON Schema
reads it (:func:`parse_strict`).  :class:`sync.central.api.GuardedRoute` applies them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from decimal import InvalidOperation
from typing import Any

from fastapi import Request
from fastapi import Response
from pydantic import BaseModel
from pydantic import ValidationError

from sync import contract as c
from sync.central.base import RequestRefused

JSON_TYPE = "application/json; charset=utf-8"
MAX_BODY = c.MAX_BODY
_PROBLEM_TEXTS = {
    400: "The request is not valid",
    401: "No valid bearer token (or enrolment credential)",
    403: "Outside this counter's lane (a refusal code)",
    404: "Not found",
    409: "Conflicts with what the central system holds",
    413: "Too large",
    415: "The body is not application/json",
    422: "Refused: the record does not hold together (a refusal code)",
}


# --------------------------------------------------------------------------- errors


class HttpError(Exception):
    """An answer other than success, as a :class:`~sync.contract.Problem`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        if close:  # the body may be left unread: its bytes must not become the next request
            self.headers["Connection"] = "close"

    @classmethod
    def refused(cls, err: RequestRefused) -> HttpError:
        """The Problem a request the station's rules refused is answered with."""
        return cls(err.status, err.code, err.message)


def json_response(
    status: int, body: bytes | BaseModel, headers: dict[str, str] | None = None
) -> Response:
    data = body if isinstance(body, bytes) else body.model_dump_json().encode("utf-8")
    return Response(data, status_code=status, media_type=JSON_TYPE, headers=headers)


def problem_response(err: HttpError) -> Response:
    return json_response(err.status, c.Problem(code=err.code, message=err.message), err.headers)


def first_error(errors: Sequence[Any]) -> str:
    if not errors:
        return "the request is not valid"
    e = errors[0]
    where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
    return f"{where}: {e['msg']}" if where else str(e["msg"])


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": c.Problem, "description": _PROBLEM_TEXTS[s]} for s in statuses}


# --------------------------------------------------------------------------- strict bodies


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


def parse_strict(model: Any, body: bytes) -> Any:
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
        raise HttpError(400, "bad_request", first_error(errors)) from exc


def check_json(request: Request) -> None:
    """A POST or PUT body is JSON, said so (a browser's cross-site form post cannot)."""
    media, _, params = (request.headers.get("content-type") or "").partition(";")
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
            close=True,
        )


async def read_body(request: Request) -> bytes:
    """The body, refused at :data:`~sync.contract.MAX_BODY` bytes: on the declared length
    before reading, and while reading a chunked one."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise HttpError(
            413, "payload_too_large", f"a body may have at most {MAX_BODY} bytes", close=True
        )
    parts: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY:
            raise HttpError(
                413, "payload_too_large", f"a body may have at most {MAX_BODY} bytes", close=True
            )
        parts.append(chunk)
    body = b"".join(parts)
    request._body = body  # FastAPI reads the body from here
    return body
