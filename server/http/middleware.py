"""One small pure-ASGI guard in front of the routes: a request's body, timed and counted.

- Body size: each route declares its limit (server/http/routes/body.py) and sets it on this
  request's ``BodyExchange`` (``scope[EXCHANGE]``) before anything is read. A body
  without Content-Length (chunked) is counted as the app reads it and answered 413 the
  moment it passes the limit: memory stays bounded, and nothing is read before the
  route's auth check (server/http/auth.py).
- Slow clients: the whole body must arrive within BITFIT_REQUEST_READ_TIMEOUT_S of the
  request's start, or the request is answered 408 (a client sending a byte every 2 s
  cannot hold a connection and a request slot forever). Slow *headers* are cut off by
  the uvicorn protocol (server/process/protocol.py).
- A client that hangs up mid-body is one INFO line and ``bitfit_client_disconnects_total``.
- Shutdown: a request still running when uvicorn's graceful timeout cancels it is
  answered a JSON 503 (not uvicorn's plain-text 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.exceptions import LimitExceeded, NotReady, ReadTimeout, ServerError
from server.http.errors import error_response
from server.process.metrics import Metrics
from server.process.settings import Settings, env_name

log = logging.getLogger(__name__)

EXCHANGE = "bitfit.exchange"  # the scope key of a request's BodyExchange
_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics | None = None) -> None:
        self.app, self.metrics = app, metrics
        self.read_timeout = settings.request_read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope = {**scope}
        exchange = BodyExchange(scope, receive, send, self.read_timeout)
        scope[EXCHANGE] = exchange
        try:
            await exchange.run(self.app)
        except ClientDisconnect:
            # The client hung up mid-body: nobody to answer and nothing broken. One INFO
            # line and a count, not an ERROR traceback each (a flood of aborts would be
            # a flood of tracebacks).
            log.info("%s %s: the client disconnected before its body arrived", scope.get("method"), scope.get("path"))
            if self.metrics is not None:
                self.metrics.client_disconnects.inc()


class BodyExchange:
    """One request: its body counted and timed as the app reads it; at most one answer of ours."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, timeout: float) -> None:
        self.scope, self._receive, self._send = scope, receive, send
        self.limit: int | None = None  # set by the route before its body is read
        self.setting = ""  # what sets the limit, for the message
        self.deadline = time.monotonic() + timeout
        self.size = 0
        self.body_done = False  # afterwards receive() only reports a disconnect: no deadline
        self.started = False  # the app began its answer
        self.answered = False  # we answered in its place; the app's messages are dropped

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            # uvicorn's graceful shutdown timed out and cancels this request.
            await self._answer(NotReady("the server is shutting down; retry on another instance", {"Retry-After": "1"}))
            raise
        except Exception:
            if not self.answered:
                raise

    async def receive(self) -> Message:
        if self.answered:
            return {"type": "http.disconnect"}
        if self.body_done:
            return await self._receive()
        try:
            message = await self._receive_within(max(0.0, self.deadline - time.monotonic()))
        except asyncio.TimeoutError:
            await self._answer(ReadTimeout(f"the request body did not arrive in time ({env_name('request_read_timeout_s')})"))
            return {"type": "http.disconnect"}
        if message["type"] != "http.request":
            return message
        self.body_done = not message.get("more_body", False)
        if self.limit is not None:
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                await self._answer(LimitExceeded(f"request body is over the limit of {self.limit} bytes ({self.setting})"))
                return {"type": "http.disconnect"}
        return message

    async def _receive_within(self, delay: float) -> Message:
        """The next message, or TimeoutError after ``delay`` seconds. ``asyncio.timeout``
        (Python 3.11+) arms one timer; ``wait_for`` would also make a task per message."""
        if _timeout is None:
            return await asyncio.wait_for(self._receive(), delay)
        async with _timeout(delay):
            return await self._receive()

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def _answer(self, error: ServerError) -> None:
        if self.started or self.answered:
            return
        self.answered = True
        with contextlib.suppress(Exception):  # the connection may be gone already
            await error_response(error)(self.scope, self._receive, self._send)


class ReplicaHeader:
    """Names the answering server in ``X-Bitfit-Replica``: behind a load balancer or Ray's
    proxy, a client (and a test) can tell which replica answered."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app, self.header = app, (b"x-bitfit-replica", name.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def named(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, named)
