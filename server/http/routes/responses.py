"""Error answers for the routers' OpenAPI descriptions, read from server/http/errors.py's table."""

from __future__ import annotations

from pydantic import BaseModel

from server.http.errors import http_error_of
from server.http.schemas import ErrorBody


def errors(*kinds: type[BaseException], model: type[BaseModel] = ErrorBody) -> dict[int, dict]:
    """The OpenAPI ``responses`` of a route that can raise ``kinds``, grouped by status
    (``model``: the body's shape; the /v2 routes answer the protocol's, oip.OIPErrorBody)."""
    by_status: dict[int, list[str]] = {}
    for kind in kinds:
        entry = http_error_of(kind)
        descriptions = by_status.setdefault(entry.status, [])
        if entry.description not in descriptions:
            descriptions.append(entry.description)
    return {status: {"model": model, "description": " ".join(d)} for status, d in sorted(by_status.items())}
