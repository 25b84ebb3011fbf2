"""Bearer-key auth as FastAPI dependencies (async: no thread-pool hop per request).

- ``BITFIT_API_KEYS`` protects /tasks mutations (upload, replace, delete, rollback).
- ``BITFIT_PREDICT_API_KEYS`` additionally protects predict and the /tasks listing; an
  admin key is accepted there too.
- Health, readiness and metrics stay open (probes and scrapers carry no secrets).

No key configured means open: fine on 127.0.0.1, never in production (docs/OPERATIONS.md).
"""

from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.errors import Forbidden, Unauthorized

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`; see docs/OPERATIONS.md")


def key_matches(token: str, keys: list[str]) -> bool:
    """Constant-time check against every key (no early exit that would leak which matched)."""
    given = token.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def _check(credentials: HTTPAuthorizationCredentials | None, keys: list[str]) -> None:
    if not keys:
        return
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("this endpoint needs an API key: send 'Authorization: Bearer <key>'")
    if not key_matches(credentials.credentials, keys):
        raise Forbidden("the API key is not valid for this endpoint")


async def require_admin(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Dependency of every /tasks mutation."""
    _check(credentials, request.app.state.settings.api_keys)


async def require_reader(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Dependency of predict and the /tasks listing (open unless predict keys are set)."""
    settings = request.app.state.settings
    if settings.predict_api_keys:
        _check(credentials, [*settings.predict_api_keys, *settings.api_keys])
