"""A reference SMS gateway for demos and tests: ``cardvend central sms-gateway --port N --out FILE``.

It takes what :class:`sync.central.sms.HttpSmsGateway` posts (``POST /`` or ``POST /sms``, a
JSON object with ``id``, ``to``, ``text``, ``language``) and appends each message it accepts as
one JSON line to FILE (with the time it came and the message id it answered with:
``{"accepted": true, "message_id": "gw-N"}``, N counting from 1 in this process).  It can be told to fail: ``--fail N`` answers the
first N messages with 503, and ``POST /_fail`` with ``{"count": N}`` fails the next N (a gateway
that is down for a while).  It prints ``sms gateway listening on http://HOST:PORT`` once ready.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
FIELDS = ("id", "to", "text", "language")


class SmsSink:
    """What the gateway holds: the file it writes and how many messages it still fails."""

    def __init__(self, out: Path, fail: int = 0) -> None:
        self.out = out
        self.fail = fail
        self.lock = threading.Lock()
        self.taken = 0

    def take(self, message: dict[str, Any]) -> tuple[int, str]:
        """The HTTP status for ``message`` (503 while failing, 400 when malformed, else 200)
        and the message id given to it ('' when not taken)."""
        with self.lock:
            if self.fail > 0:
                self.fail -= 1
                return 503, ""
            if not all(isinstance(message.get(k), str) and message[k] for k in FIELDS):
                return 400, ""
            self.taken += 1
            line = {k: message[k] for k in FIELDS}
            line["message_id"] = f"gw-{self.taken}"
            line["received_at"] = dt.datetime.now(dt.UTC).isoformat()  # a record, decides nothing
            with self.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
            return 200, line["message_id"]


def handler_for(sink: SmsSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "cardvend-sms-gateway"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._answer(413, {"error": "too large"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._answer(400, {"error": "not JSON"})
                return
            if not isinstance(body, dict):
                self._answer(400, {"error": "not a JSON object"})
            elif self.path == "/_fail":
                with sink.lock:
                    sink.fail = int(body.get("count", 0))
                self._answer(200, {"failing": sink.fail})
            elif self.path in ("/", "/sms"):
                status, given = sink.take(body)
                answer: dict[str, Any] = {"accepted": status == 200}
                if given:
                    answer["message_id"] = given
                self._answer(status, answer)
            else:
                self._answer(404, {"error": "no such path"})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("sms gateway: " + format, *args)

    return Handler


def make_server(host: str, port: int, sink: SmsSink) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), handler_for(sink))


__all__ = ["SmsSink", "make_server"]
