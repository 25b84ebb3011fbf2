"""``bitfit_requests_total`` by route and protocol: every request to a checked route counted once.

A route class (first in ``CheckedRoute``'s and ``PredictRoute``'s order, so a 401 counts
too) counts the request under its route template, method, protocol and final status. A
predict request is counted by the predict path instead (``run_predict``), once under each
task it named, with the same route and protocol labels; ``request.state.counted`` says so.
"""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.routing import APIRoute

from server.http.errors import status_of


def protocol_of(request: Request, path: str) -> str:
    """``oip`` (/v2), ``hf`` (/models, or ``?format=hf``) or ``native``."""
    if path.startswith("/v2"):
        return "oip"
    if path.startswith("/models") or request.query_params.get("format") == "hf":
        return "hf"
    return "native"


def route_labels(request: Request) -> dict[str, str]:
    """The route template (never the raw path: task names stay out of it), method and protocol."""
    route = request.scope.get("route")
    path = route.path if isinstance(route, APIRoute) else "other"
    return {"route": path, "method": request.method, "protocol": protocol_of(request, path)}


class CountedRoute(APIRoute):
    def get_route_handler(self):  # noqa: ANN201 (FastAPI's handler type)
        handler = super().get_route_handler()

        async def counted(request: Request) -> Response:
            status = 500
            try:
                response = await handler(request)
                status = response.status_code
                return response
            except BaseException as exc:
                status = status_of(exc)
                raise
            finally:
                if not getattr(request.state, "counted", False):
                    request.app.state.metrics.observe_call(route_labels(request), status)

        return counted
