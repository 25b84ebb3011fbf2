"""Liveness and readiness probes (always open: no auth)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from server.catalog.views import MAX_UNHEALTHY, counts, unhealthy
from server.exceptions import Forbidden, NotReady, Unauthorized
from server.http.auth import authorize
from server.http.routes.responses import errors
from server.http.schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready, responses=errors(NotReady), summary="Readiness: backbone loaded, store followed")
async def readyz(request: Request) -> dict:
    """503 while starting or stopping. While the store cannot be reached the server still
    serves every loaded task, so it stays ready: ``status`` is then "degraded" and ``store``
    says why (uploads and other mutations answer 503 meanwhile)."""
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise NotReady("the server is starting or stopping", {"Retry-After": "1"})
    sync, backbone = services.sync, services.engine.backbone
    figures = counts(services.catalog)
    problem = sync.problem  # read once: the two fields agree
    return {
        "status": "ready" if problem is None else "degraded",
        "store": "ok" if problem is None else f"unreachable: {problem}",
        "generation": sync.generation.value,
        "backbone": backbone.spec.base_model,  # a name, never a filesystem path (engine.backbone.backbone_name)
        "model_type": backbone.spec.model_type,
        "fingerprint": backbone.spec.fingerprint,
        "device": str(backbone.device),
        "dtype": str(backbone.dtype).removeprefix("torch."),
        "tasks": figures["resident_tasks"],
        "catalog_tasks": figures["catalog_tasks"],
        "task_slots": figures["slots"],
        "free_slots": figures["free_slots"],
        "load": sync.load_mode,
        "queue_rows": services.predictor.batcher.queued_rows,
        "store_writable": services.store.writable(),
        "unhealthy_tasks": unhealthy(services.catalog, MAX_UNHEALTHY) if _may_see_names(request) else {},
        "unhealthy_count": figures["unhealthy_tasks"],  # the catalog's index: no sort of every damaged task
    }


def _may_see_names(request: Request) -> bool:
    """The probe is open, so it names tasks only where a reader could list them all anyway:
    no predict keys and no keys file, or a key whose scope is every task."""
    settings, keys = request.app.state.settings, getattr(request.app.state, "keys", None)
    if keys is None and not settings.predict_api_keys:
        return True
    try:
        return not authorize(settings, keys, "reader", request.headers.get("authorization")).restricted
    except (Unauthorized, Forbidden):
        return False
