"""The Triton extensions an OIP client asks for beside inference: model configuration,
inference statistics, and model control (refused: tasks change through /tasks).

``tritonclient``'s ``get_model_config`` and ``get_inference_statistics`` read these, and so
do perf_analyzer and model_analyzer. The statistics come from the Prometheus registry
(``bitfit_requests_total``, ``bitfit_request_latency_seconds``): one source for both.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError

from bias_store.errors import StoreUnavailable, TaskNotFound, VersionNotFound
from server.exceptions import Forbidden, InvalidRequest, Unauthorized
from server.http.auth import require_admin, require_reader, scope_of, task_in_scope
from server.http.deps import get_services
from server.http.oip import OIPErrorBody
from server.http.routes.body import CheckedRoute
from server.http.routes.responses import errors
from server.process.services import Services

# A task outside the key's scope is answered as an unknown one (tenancy.py).
router = APIRouter(prefix="/v2", tags=["open inference protocol"],
                   dependencies=[Depends(require_reader), Depends(task_in_scope(TaskNotFound))], route_class=CheckedRoute)
control = APIRouter(prefix="/v2", tags=["open inference protocol"], dependencies=[Depends(require_admin)],
                    route_class=CheckedRoute)
_ERRORS = errors(
    Unauthorized, Forbidden, TaskNotFound, VersionNotFound, StoreUnavailable, RequestValidationError, model=OIPErrorBody
)
_CONTROL_ERRORS = errors(Unauthorized, Forbidden, InvalidRequest, RequestValidationError, model=OIPErrorBody)


def model_config(task: str, labels: list[str], inputs: str, max_batch_size: int) -> dict:
    """Triton's model configuration: dims leave out the batch dimension (max_batch_size > 0)."""
    tensors = [{"name": "text", "data_type": "TYPE_STRING", "dims": [1]}]
    if inputs == "text_pair":
        tensors.append({"name": "text_pair", "data_type": "TYPE_STRING", "dims": [1]})
    return {
        "name": task, "platform": "bitfit", "backend": "bitfit", "max_batch_size": max_batch_size, "input": tensors,
        "output": [{"name": "label", "data_type": "TYPE_STRING", "dims": [1]},
                   {"name": "scores", "data_type": "TYPE_FP32", "dims": [len(labels)]}],
        "dynamic_batching": {},  # every task's rows share the cross-task batcher
        "parameters": {"labels": {"string_value": ",".join(labels)}},
    }


@router.get("/models/stats", responses=_ERRORS, summary="OIP inference statistics of every task")
async def all_stats(request: Request, services: Services = Depends(get_services)) -> dict:
    """The tasks with statistics of their own (a metrics label: at most BITFIT_METRICS_MAX_TASKS,
    not every stored task), in the key's scope."""
    scope, stored = scope_of(request), services.catalog.stored
    names = sorted(n for n in request.app.state.metrics.task_label.named() if n in stored and scope.allows(n))
    return {"model_stats": [_stats(request, name, stored[name].version) for name in names if name in stored]}


@router.get("/models/{task}/config", responses=_ERRORS, summary="OIP (Triton) model configuration")
async def config(task: str, services: Services = Depends(get_services)) -> dict:
    return await _config(services, task, None)


@router.get("/models/{task}/versions/{version}/config", responses=_ERRORS, summary="OIP configuration of a kept version")
async def version_config(task: str, version: int, services: Services = Depends(get_services)) -> dict:
    return await _config(services, task, version)


async def _config(services: Services, task: str, version: int | None) -> dict:
    record, _ = await run_in_threadpool(services.store.get, task, version)  # 404 task or version
    return model_config(task, list(record.meta.labels), record.meta.inputs, services.settings.max_inputs_per_request)


@router.get("/models/{task}/stats", responses=_ERRORS, summary="OIP (Triton) inference statistics")
async def stats(task: str, request: Request, services: Services = Depends(get_services)) -> dict:
    record, _ = await run_in_threadpool(services.store.get, task, None)
    return {"model_stats": [_stats(request, task, record.version)]}


@router.get("/models/{task}/versions/{version}/stats", responses=_ERRORS, summary="OIP statistics (all versions together)")
async def version_stats(task: str, version: int, request: Request, services: Services = Depends(get_services)) -> dict:
    await run_in_threadpool(services.store.get, task, version)
    return {"model_stats": [_stats(request, task, version)]}


def _stats(request: Request, task: str, version: int) -> dict:
    """Triton's statistics shape from the request metrics (a task past the label bound counts as "other")."""
    ok = fail = 0.0
    seconds = 0.0
    for family in request.app.state.metrics.registry.collect():
        for sample in family.samples:
            if sample.labels.get("task") != task:
                continue
            if sample.name == "bitfit_requests_total":
                if sample.labels.get("status") == "200":
                    ok += sample.value
                else:
                    fail += sample.value
            elif sample.name == "bitfit_request_latency_seconds_sum":
                seconds += sample.value
    zero = {"count": 0, "ns": 0}
    return {
        "name": task, "version": str(version), "last_inference": 0, "inference_count": int(ok), "execution_count": int(ok),
        "inference_stats": {"success": {"count": int(ok), "ns": int(seconds * 1e9)}, "fail": {"count": int(fail), "ns": 0},
                            "queue": zero, "compute_input": zero, "compute_infer": zero, "compute_output": zero},
        "batch_stats": [],
    }


@control.post("/repository/models/{task}/load", responses=_CONTROL_ERRORS,
              summary="OIP model control: not supported (use /tasks)")
async def load(task: str) -> None:
    raise InvalidRequest(f"model control is not supported: use /tasks to upload, replace or delete {task!r}")


@control.post("/repository/models/{task}/unload", responses=_CONTROL_ERRORS,
              summary="OIP model control: not supported (use /tasks)")
async def unload(task: str) -> None:
    raise InvalidRequest(f"model control is not supported: use DELETE /tasks/{task} to stop serving {task!r}")
