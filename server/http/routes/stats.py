"""GET /stats and /stats/tasks: the server's own figures as JSON (the console's Health and Tasks pages).

The same numbers /metrics exposes in the Prometheus text format, for a reader key: the
catalog's residency counts and cache counters, the store watcher's state, and per-task
request counts and latency quantiles (only for the tasks the key may see).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError

from server.catalog.views import counts
from server.exceptions import Forbidden, NotReady, Unauthorized
from server.http.auth import GuardedRoute, require_reader, scope_of
from server.http.deps import get_services
from server.http.routes.responses import errors
from server.http.stats_schemas import ServerStats, TaskStatsList
from server.process.figures import quantile, task_figures
from server.process.services import Services

router = APIRouter(prefix="/stats", tags=["stats"], dependencies=[Depends(require_reader)], route_class=GuardedRoute)

MAX_NAMES = 200  # tasks one /stats/tasks call may ask for: a console page shows at most 100


@router.get("", response_model=ServerStats, responses=errors(Unauthorized, Forbidden, NotReady),
            summary="Residency, cache and store-sync figures")
async def server_stats(services: Services = Depends(get_services)) -> dict:
    """O(1): counters the catalog keeps, read without walking any task."""
    catalog, sync, metrics = services.catalog, services.sync, services.metrics
    stats = catalog.stats
    cold = [(float(s.labels["le"]), s.value) for f in metrics.cold_load.collect() for s in f.samples if s.name.endswith("_bucket")]
    p50 = quantile(cold, 0.5)
    return {
        **counts(catalog),
        "hits": stats.hits, "misses": stats.misses, "evictions": stats.evictions, "cold_loads": stats.loads,
        "load_failures": stats.load_failures, "cold_load_p50_ms": None if p50 is None else round(p50 * 1000, 3),
        "generation": sync.generation.value, "sync_ok": sync.healthy, "sync_problem": sync.problem, "load": sync.load_mode,
        "store_writable": services.store.writable(), "queue_rows": services.predictor.batcher.queued_rows,
        "clock_s": time.monotonic(),
    }


@router.get("/tasks", response_model=TaskStatsList, responses=errors(Unauthorized, Forbidden, NotReady, RequestValidationError),
            summary="Request counts and latency of some tasks")
async def task_stats(
    request: Request,
    names: str = Query(..., max_length=MAX_NAMES * 130, description=f"Comma-separated task names (at most {MAX_NAMES})."),
    services: Services = Depends(get_services),
) -> dict:
    """Requests (and errors) since start and p50/p95 latency per task. A task outside the
    key's scope, unknown, or past BITFIT_METRICS_MAX_TASKS answers `tracked: false`."""
    wanted = list(dict.fromkeys(n for n in names.split(",") if n))
    if len(wanted) > MAX_NAMES:
        raise RequestValidationError(
            [{"type": "too_long", "loc": ("query", "names"), "msg": f"{len(wanted)} names; at most {MAX_NAMES} per call"}])
    scope = scope_of(request)
    visible = [n for n in wanted if scope.allows(n) and n in services.catalog.stored]
    figures = {f["name"]: f for f in task_figures(services.metrics, visible)}
    return {
        "tasks": [figures.get(n, {"name": n, "tracked": False}) for n in wanted],
        "max_tracked": services.settings.metrics_max_tasks, "clock_s": time.monotonic(),
    }
