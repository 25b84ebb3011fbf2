"""GET /auth/admin: whether a key may change tasks, asked before work that ends in an upload.

``bitfit train --push`` calls it before training, so a wrong key fails in a second rather
than after an hour of training. It changes nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from server.exceptions import Forbidden, Unauthorized
from server.http.auth import require_admin
from server.http.routes.body import CheckedRoute
from server.http.routes.responses import errors

router = APIRouter(tags=["auth"], route_class=CheckedRoute)


@router.get(
    "/auth/admin", status_code=204, dependencies=[Depends(require_admin)], responses=errors(Unauthorized, Forbidden),
    summary="204 when the request's key may upload, replace, roll back and delete tasks",
)
async def admin_check() -> Response:
    return Response(status_code=204)
