"""Serving a :class:`~cardio.dlt645.responder.Responder`: on a serial port and on TCP.

* :class:`SerialServer` answers on a serial line (a thread reading the port).
* :class:`TcpServer` is one TCP endpoint for many meters, as a terminal (concentrator) is: an
  asyncio loop, one coroutine per connection, every frame dispatched by its address.  Thousands
  of meters cost a dictionary entry each, not a thread.

Both run in the background (:meth:`start` / :meth:`stop`, also as context managers) or in the
foreground (:meth:`serve_forever`, for a command).  Damaged frames and noise are skipped (the
master retries); a frame that is not for one of our meters is not answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Sequence
from typing import Final
from typing import Self

from app.background import Background
from app.ports import ByteLink
from cardio.dlt645.frame import Frame
from cardio.dlt645.link import SerialSettings
from cardio.dlt645.parser import FrameParser
from cardio.dlt645.responder import Responder
from cardio.serial_link import SerialPortError
from cardio.serial_link import open_serial

log = logging.getLogger(__name__)

POLL: Final = 0.1  # how often a serial server looks at its stop flag
READ_CHUNK: Final = 4096


class SerialServer(Background):
    """Answers frames on a serial port (opened now: a typed error names the port if it cannot)."""

    def __init__(self, responder: Responder, settings: SerialSettings) -> None:
        self.responder = responder
        self.settings = settings
        self._line: ByteLink = open_serial(
            settings.port,
            settings.baudrate,
            parity=settings.parity,
            bytesize=settings.bytesize,
            stopbits=settings.stopbits,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.answered = 0

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"dlt645 {self.settings.port}", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        parser = FrameParser()
        try:
            while not self._stop.is_set():
                chunk = self._line.read(parser.needed(), POLL)
                if chunk:
                    self._answer_all(parser.feed(chunk))
        except SerialPortError as exc:
            log.error("meter server on %s stopped: %s", self.settings.port, exc)
        finally:
            self._line.close()

    def _answer_all(self, items: Sequence[object]) -> None:
        for item in items:
            if isinstance(item, Frame):
                reply = self.responder.handle(item)
                if reply is not None:
                    self._line.write(reply.encode())
                    self.answered += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


class TcpServer(Background):
    """One TCP endpoint answering for every meter of ``responder`` (``port`` 0: any free port;
    :attr:`port` is the bound one after :meth:`start`)."""

    def __init__(self, responder: Responder, host: str = "127.0.0.1", port: int = 0) -> None:
        self.responder = responder
        self.host = host
        self.port = port
        self.connections = 0
        self.answered = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="dlt645 tcp", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            self.serve_forever()
        except BaseException as exc:  # handed to start(): a port that cannot be bound
            self._error = exc
            self._ready.set()

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` (from another thread) or an interrupt."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        log.info("meter terminal for %d meters on %s:%d", len(self.responder), self.host, self.port)
        self._ready.set()
        async with server:
            await self._stopping.wait()
            server.close()
            for writer in self._clients.values():
                writer.close()  # the client's read ends, and with it its coroutine
            if self._clients:
                await asyncio.wait(list(self._clients), timeout=2)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        self.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        parser = FrameParser()
        try:
            while chunk := await reader.read(READ_CHUNK):
                out = bytearray()
                for item in parser.feed(chunk):
                    if isinstance(item, Frame):
                        reply = self.responder.handle(item)
                        if reply is not None:
                            out += reply.encode()
                            self.answered += 1
                if out:
                    writer.write(out)
                    await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("meter terminal connection ended: %s", exc)
        finally:
            self._clients.pop(task, None)
            writer.close()

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
