"""One access-log line per request (``--access-log``), with its fields as fields.

uvicorn's own access log is one text line inside ``message``; this one is logged by the
``bitfit.access`` logger with ``method``, ``path``, ``status``, ``duration_ms`` and
``client`` as their own JSON fields (``--log-format json``), and the request id like
every line. It sits inside ``RequestIds`` and outside the error catch-all, so it sees the
status the client got, a 500 included.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("bitfit.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 0

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            fields = {
                "method": scope["method"], "path": scope["path"], "status": status or 499,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "client": (scope.get("client") or ("-",))[0],
            }
            log.info("%(method)s %(path)s %(status)d %(duration_ms).2f ms", fields, extra={"fields": fields})
