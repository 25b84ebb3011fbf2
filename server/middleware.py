"""Two small pure-ASGI guards in front of the routes.

- Body size: a request whose Content-Length is over the limit is answered 413 before its
  body is read (uploads: BITFIT_MAX_UPLOAD_BYTES; JSON: what the input limits allow). A
  body without Content-Length (chunked) is read here up to the limit, answered 413 as
  soon as it passes it, and otherwise replayed to the app: memory stays bounded.
- JSON by default on the JSON-only routes (predict, rollback): ``curl -d '{"inputs": ...}'``
  sends form encoding, so a missing or form content type there is read as JSON (the
  README's one-liner works).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import LimitExceeded, error_response
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
            return await error_response(error)(scope, receive, send)
        if not length.isdigit():
            body = await _read_at_most(receive, limit)
            if body is None:
                error = LimitExceeded(f"request body is over the limit of {limit} bytes ({setting})")
                return await error_response(error)(scope, receive, send)
            receive = _replay(body, receive)
        json_route = path.startswith("/predict") or path.endswith("/rollback")
        if json_route and headers.get(b"content-type", _FORM).split(b";")[0].strip() == _FORM:
            rest = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*rest, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


async def _read_at_most(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is longer than ``limit`` bytes."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the app the already-read body, then the real one (disconnects)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
