"""Request-body limits, declared by the routes: every router is built with ``CheckedRoute``.

A route with a form body (an upload) is limited by BITFIT_MAX_UPLOAD_BYTES, a route with a
JSON body by what the input limits allow; routes without a body are not touched. Before
anything reads the body:

- a Content-Length over the limit is answered 413;
- otherwise the limit is handed to the request's ``BodyExchange`` (server/http/middleware.py),
  which counts a body without Content-Length (chunked) as it is read and answers 413 the
  moment it passes the limit;
- a JSON route reads a missing or form content type as JSON: ``curl -d '{"inputs": ...}'``
  sends form encoding, and the README's one-liner should work;
- a JSON body's values are counted before it is parsed (server/http/body_shape.py): more than
  a valid request can hold is a 413 without building a single object.

``CheckedRoute`` runs the route's auth check (``GuardedRoute``) first, then these, all
before the body is read.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.params import Form
from fastapi.routing import APIRoute

from server.exceptions import LimitExceeded
from server.http.auth import GuardedRoute
from server.http.body_shape import bounds, check_json_shape
from server.http.counting import CountedRoute
from server.http.middleware import EXCHANGE
from server.process.settings import Settings, env_name

_FORM = b"application/x-www-form-urlencoded"
_SLACK = 1 << 20  # multipart framing and JSON syntax around the limited payload

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def upload_limit(settings: Settings) -> tuple[int, str]:
    return settings.max_upload_bytes + _SLACK, env_name("max_upload_bytes")


def json_limit(settings: Settings) -> tuple[int, str]:
    # Worst case per input: every char 4 UTF-8 bytes (JSON escapes are rarer), pairs twice.
    return 8 * settings.max_inputs_per_request * settings.max_input_chars + _SLACK, "the input limits"


class LimitedBodyRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler
        is_upload = isinstance(self.body_field.field_info, Form)
        limit_of = upload_limit if is_upload else json_limit

        async def limited(request: Request) -> Response:
            settings = request.app.state.settings
            if not is_upload:
                _json_by_default(request)
            _limit_body(request, *limit_of(settings))
            if not is_upload:  # counted before FastAPI parses it (server/http/body_shape.py)
                check_json_shape(await request.body(), *bounds(settings.max_inputs_per_request))
            return await handler(request)

        return limited


class CheckedRoute(CountedRoute, GuardedRoute, LimitedBodyRoute):
    """Counted (server/http/counting.py); auth from the headers (401/403), then the body limit (413), then FastAPI reads the body."""


def limit_json_body(request: Request) -> None:
    """The JSON limit for a route that reads its body by hand (no body field to declare it)."""
    _limit_body(request, *json_limit(request.app.state.settings))


def limit_body(request: Request, limit: int, setting: str) -> None:
    """A limit of the route's own (plus the framing slack) for a route that reads its body by hand."""
    _limit_body(request, limit + _SLACK, setting)


def _json_by_default(request: Request) -> None:
    """Rewrite a missing or form content type to JSON (before FastAPI reads the body)."""
    headers = request.scope["headers"]
    content_type = dict(headers).get(b"content-type", _FORM)
    if content_type.split(b";")[0].strip() == _FORM:
        rest = [(k, v) for k, v in headers if k != b"content-type"]
        request.scope["headers"] = [*rest, (b"content-type", b"application/json")]
        request.__dict__.pop("_headers", None)  # the auth check may have cached the old ones


def _limit_body(request: Request, limit: int, setting: str) -> None:
    length = dict(request.scope["headers"]).get(b"content-length", b"")
    if length.isdigit() and int(length) > limit:
        raise LimitExceeded(f"request body is {int(length)} bytes; the limit is {limit} bytes ({setting})")
    exchange = request.scope.get(EXCHANGE)
    if exchange is not None:  # counts the body as the app reads it
        exchange.limit, exchange.setting = limit, setting
