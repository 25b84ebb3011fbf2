"""Bearer-key auth: one model, decided from the request headers before any body is read.

- Admin keys (``BITFIT_API_KEYS``) guard every /tasks mutation (upload, replace, delete,
  rollback) as soon as ANY key is configured: with only predict keys set, mutations over
  HTTP are refused (the training worker still writes to the store directly).
- Predict keys (``BITFIT_PREDICT_API_KEYS``) guard predict and the /tasks reads; an admin
  key is accepted there too. A predict key never grants admin.
- Scoped keys (``BITFIT_KEYS_FILE``, server/http/tenancy.py) grant predict and/or admin on
  some task namespaces only; with a keys file set, predict and reads always need a key.
  Every check resolves the key to a ``Scope`` kept on ``request.state.scope``
  (``scope_of(request)``); routes apply it to the task they touch and to their listings.
- Health, readiness and the API docs stay open (probes carry no secrets); /metrics too,
  unless ``BITFIT_METRICS_API_KEYS`` is set (its labels name tasks).
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
from server.http.tenancy import ALL, KeysFile, Scope
from server.process.settings import Settings

Role = Literal["admin", "reader", "metrics"]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`; see docs/OPERATIONS.md")


def key_matches(token: str, keys: list[str]) -> bool:
    """Constant-time check against every key (no early exit that would leak which matched)."""
    given = token.encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def accepted_keys(settings: Settings, role: Role, scoped: bool = False) -> list[str] | None:
    """The plain keys a role accepts (every task); None = open (no key configured for it).
    ``scoped``: a keys file is set, so predict and reads are never open."""
    if role == "metrics":
        return list(settings.metrics_api_keys) or None
    if not settings.api_keys and not settings.predict_api_keys and not scoped:
        return None
    if role == "admin":
        return list(settings.api_keys)  # may be empty: then only the keys file may grant it
    if not settings.predict_api_keys and not scoped:
        return None  # only admin keys set: predict and reads stay open
    return [*settings.predict_api_keys, *settings.api_keys]


_GRANTS = {"admin": frozenset({"admin"}), "reader": frozenset({"predict", "admin"})}


def authorize(settings: Settings, keys: KeysFile | None, role: Role, authorization: str | None) -> Scope:
    """The scope this ``Authorization`` header has for ``role``; raises Unauthorized/Forbidden."""
    scoped = keys is not None and role != "metrics"
    plain = accepted_keys(settings, role, scoped)
    if plain is None:
        return ALL
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("this endpoint needs an API key: send 'Authorization: Bearer <key>'")
    if key_matches(token, plain):
        return ALL
    entry = keys.match(token, _GRANTS[role]) if scoped else None
    if entry is not None:
        return entry.scope
    if not plain and not scoped:
        raise Forbidden("task changes over HTTP are disabled: BITFIT_PREDICT_API_KEYS is set but BITFIT_API_KEYS is not")
    raise Forbidden("the API key is not valid for this endpoint")


def _authorize(request: Request, role: Role, authorization: str | None) -> Scope:
    """Authorize and keep the key's scope on ``request.state.scope`` (routes read it: scope_of)."""
    app = request.app
    scope = authorize(app.state.settings, getattr(app.state, "keys", None), role, authorization)
    request.state.scope = scope
    return scope


def scope_of(request: Request) -> Scope:
    """The tasks the request's key may see (set by its route's auth; resolved here if it had none)."""
    scope = getattr(request.state, "scope", None)
    return scope if scope is not None else _authorize(request, "reader", request.headers.get("authorization"))


def task_in_scope(missing: Callable[[str, list[str]], Exception]) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A dependency: a ``{task}`` outside the key's scope is ``missing`` (the route's own
    unknown-task error, answered like one), or 403 on a PUT, whether or not it exists."""

    async def check(request: Request) -> None:
        task = request.path_params.get("task")
        if task is None or scope_of(request).allows(task):
            return
        if request.method == "PUT":
            raise Forbidden("this key may not write that task name: it is outside the key's scope")
        raise missing(task, [])

    return check


def _raise_if_refused(request: Request, role: Role, credentials: HTTPAuthorizationCredentials | None) -> None:
    _authorize(request, role, f"{credentials.scheme} {credentials.credentials}" if credentials is not None else None)


async def require_admin(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Dependency of every /tasks mutation."""
    _raise_if_refused(request, "admin", credentials)


async def require_reader(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Dependency of predict and the /tasks reads (open unless predict keys or a keys file are set)."""
    _raise_if_refused(request, "reader", credentials)


async def require_metrics(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Dependency of /metrics: open unless BITFIT_METRICS_API_KEYS is set (task names are in it)."""
    _raise_if_refused(request, "metrics", credentials)


ROLES: dict[object, Role] = {require_admin: "admin", require_reader: "reader", require_metrics: "metrics"}


def route_role(route: object) -> Role | None:
    """The role a route declares through its dependencies (None: open)."""
    calls = [getattr(dep, "dependency", None) for dep in getattr(route, "dependencies", ())]
    roles = {ROLES[c] for c in calls if c in ROLES}
    return next((role for role in ("admin", "reader", "metrics") if role in roles), None)


class GuardedRoute(APIRoute):
    """An APIRoute that answers 401/403 from the headers before its body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        role = route_role(self)
        if role is None:
            return handler

        async def guarded(request: Request) -> Response:
            try:
                _authorize(request, role, request.headers.get("authorization"))
            except ServerError as error:
                return for_protocol(request, error_response(error))
            return await handler(request)

        return guarded
