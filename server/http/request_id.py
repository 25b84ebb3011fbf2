"""X-Request-ID: taken from the request (when sane) or made, echoed on every answer, and
put in every log line written while the request is handled (server/process/logs.py)."""

from __future__ import annotations

import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.process.logs import request_id

HEADER = b"x-request-id"
# A caller's id is echoed and logged, so it must be short and printable (no log injection).
_SANE = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")


class RequestIds:
    """Pure-ASGI, outermost: even the answers of the error catch-all carry the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope["headers"] if k == HEADER), b"")
        rid = given.decode() if given and _SANE.fullmatch(given) else os.urandom(16).hex()  # 128 random bits, as a uuid4 less its object

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, rid.encode())]
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, with_id)
        finally:
            request_id.reset(token)
