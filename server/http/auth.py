"""Bearer-key auth: one model, decided from the request headers before any body is read.

- Admin keys (``BITFIT_API_KEYS``) guard every /tasks mutation (upload, replace, delete,
  rollback) as soon as ANY key is configured: with only predict keys set, mutations over
  HTTP are refused (the training worker still writes to the store directly).
- Predict keys (``BITFIT_PREDICT_API_KEYS``) guard predict and the /tasks reads; an admin
  key is accepted there too. A predict key never grants admin.
- Health, readiness, metrics and the API docs stay open (probes and scrapers carry no secrets).
- No key configured at all means open: fine on 127.0.0.1, never in production.

Routes declare their role with ``Depends(require_admin)`` / ``Depends(require_reader)``
on a router whose ``route_class`` is ``GuardedRoute``: that route checks the headers
right after routing and before FastAPI reads the body (it reads it to solve any
dependency), so an unauthenticated 17 MB upload is answered 401 before its first body
byte is read. The dependencies check again (a second line for a route mounted without
GuardedRoute) and put the scheme into the OpenAPI document.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.exceptions import Forbidden, ServerError, Unauthorized
from server.http.errors import error_response, for_protocol
from server.process.settings import Settings

Role = Literal["admin", "reader"]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`; see docs/OPERATIONS.md")


def key_matches(token: str, keys: list[str]) -> bool:
    """Constant-time check against every key (no early exit that would leak which matched)."""
    given = token.encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def accepted_keys(settings: Settings, role: Role) -> list[str] | None:
    """The keys a role accepts; None = open (no key configured anywhere)."""
    if not settings.api_keys and not settings.predict_api_keys:
        return None
    if role == "admin":
        return list(settings.api_keys)  # may be empty: then mutations are refused to everyone
    if not settings.predict_api_keys:
        return None  # only admin keys set: predict and reads stay open
    return [*settings.predict_api_keys, *settings.api_keys]


def check(settings: Settings, role: Role, authorization: str | None) -> ServerError | None:
    """The error to answer for this ``Authorization`` header, or None when it may pass."""
    keys = accepted_keys(settings, role)
    if keys is None:
        return None
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return Unauthorized("this endpoint needs an API key: send 'Authorization: Bearer <key>'")
    if not keys:
        return Forbidden("task changes over HTTP are disabled: BITFIT_PREDICT_API_KEYS is set but BITFIT_API_KEYS is not")
    if not key_matches(token, keys):
        return Forbidden("the API key is not valid for this endpoint")
    return None


def _raise_if_refused(request: Request, role: Role, credentials: HTTPAuthorizationCredentials | None) -> None:
    header = f"{credentials.scheme} {credentials.credentials}" if credentials is not None else None
    error = check(request.app.state.settings, role, header)
    if error is not None:
        raise error


async def require_admin(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Dependency of every /tasks mutation."""
    _raise_if_refused(request, "admin", credentials)


async def require_reader(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Dependency of predict and the /tasks reads (open unless predict keys are set)."""
    _raise_if_refused(request, "reader", credentials)


ROLES: dict[object, Role] = {require_admin: "admin", require_reader: "reader"}


def route_role(route: object) -> Role | None:
    """The role a route declares through its dependencies (None: open)."""
    calls = [getattr(dep, "dependency", None) for dep in getattr(route, "dependencies", ())]
    roles = {ROLES[c] for c in calls if c in ROLES}
    return "admin" if "admin" in roles else ("reader" if roles else None)


class GuardedRoute(APIRoute):
    """An APIRoute that answers 401/403 from the headers before its body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        role = route_role(self)
        if role is None:
            return handler

        async def guarded(request: Request) -> Response:
            error = check(request.app.state.settings, role, request.headers.get("authorization"))
            if error is not None:
                return for_protocol(request, error_response(error))
            return await handler(request)

        return guarded
