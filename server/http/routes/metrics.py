"""GET /metrics in the Prometheus text format: open like the health probes, unless
BITFIT_METRICS_API_KEYS is set (its labels name tasks)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from server.exceptions import Forbidden, Unauthorized
from server.http.auth import require_metrics
from server.http.routes.responses import errors

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics", response_class=Response, summary="Prometheus metrics", dependencies=[Depends(require_metrics)],
    responses=errors(Unauthorized, Forbidden),
)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
