"""Two small pure-ASGI guards in front of the routes.

- Body size: a request whose Content-Length is over the limit is answered 413 before its
  body is read (uploads: BITFIT_MAX_UPLOAD_BYTES; JSON: what the input limits allow).
- JSON by default on the JSON-only routes (predict, rollback): ``curl -d '{"inputs": ...}'``
  sends form encoding, so a missing or form content type there is read as JSON (the
  README's one-liner works).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import LimitExceeded, domain_error_response
from server.settings import Settings

_FORM = b"application/x-www-form-urlencoded"
_SLACK = 1 << 20  # multipart framing and JSON syntax around the limited payload


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_upload = settings.max_upload_bytes + _SLACK
        # Worst case per input: every char 4 UTF-8 bytes (JSON escapes are rarer), pairs twice.
        self.max_json = 8 * settings.max_inputs_per_request * settings.max_input_chars + _SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        headers = dict(scope["headers"])
        if path.startswith("/tasks"):
            limit, setting = self.max_upload, "BITFIT_MAX_UPLOAD_BYTES"
        else:
            limit, setting = self.max_json, "the input limits"
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            error = LimitExceeded(f"request body is {int(length)} bytes; the limit is {limit} bytes ({setting})")
            return await domain_error_response(error)(scope, receive, send)
        json_route = path.startswith("/predict") or path.endswith("/rollback")
        if json_route and headers.get(b"content-type", _FORM).split(b";")[0].strip() == _FORM:
            rest = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*rest, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)
