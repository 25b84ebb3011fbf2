"""Cursors of paged listings (GET /tasks, the OIP repository index): opaque, stable, URL-safe.

A cursor names the last task of the previous page, so a page after it is the same whatever
was added or deleted meanwhile elsewhere in the catalog, and costs a bisect to find.
"""

from __future__ import annotations

import base64
import binascii

from fastapi.exceptions import RequestValidationError

from server.http.tenancy import Scope

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        name = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if encode_cursor(name) == cursor:  # the decoder skips stray characters: only our own encoding passes
            return name
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise RequestValidationError(
        [{"type": "value_error", "loc": ("query", "cursor"), "msg": "not a cursor this server made (use next_cursor)"}]
    )


def scoped_prefixes(scope: Scope, prefix: str) -> tuple[list[str], list[str]]:
    """The name prefixes (and exact names) a listing asked for ``prefix`` searches under a
    key's scope: its namespaces narrowed to ``prefix``, so a page never walks other tenants' names."""
    if not scope.restricted:
        return [prefix], []
    prefixes = [p if p.startswith(prefix) else prefix for p in scope.prefixes if p.startswith(prefix) or prefix.startswith(p)]
    return sorted(set(prefixes)), sorted(n for n in scope.names if n.startswith(prefix))
