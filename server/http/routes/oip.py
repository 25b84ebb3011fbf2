"""The Open Inference Protocol v2 routes (KServe / Triton REST); shapes in server/http/oip.py.

Inference goes through the same path as /predict (limits, version pins, the shared
cross-task batcher, metrics). Health and server metadata are open like /healthz; the
model routes need a predict key when predict keys are set.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from bias_store.errors import CorruptTask, StoreUnavailable, TaskNotFound, VersionNotFound
from engine import InvalidInput, UnknownTask
from server.catalog.state import Residency
from server.catalog.views import page_in
from server.exceptions import Forbidden, LimitExceeded, NotReady, Overloaded, Unauthorized
from server.http.auth import require_reader, scope_of, task_in_scope
from server.http.deps import get_services, min_generation
from server.http.oip import OIPErrorBody, check_outputs, infer_answer, model_metadata, parse_infer
from server.http.paging import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor, scoped_prefixes
from server.http.routes.body import CheckedRoute, limit_json_body
from server.http.routes.predict import known_query, run_predict
from server.http.routes.responses import errors as any_errors
from server.process.services import Services
from server.serving.predictor import TaskInputs


def errors(*kinds: type[BaseException]) -> dict[int, dict]:
    """The OpenAPI answers of a /v2 route: the protocol's error body (server/http/errors.py, for_protocol)."""
    return any_errors(*kinds, model=OIPErrorBody)


open_router = APIRouter(prefix="/v2", tags=["open inference protocol"])
NEXT_CURSOR_HEADER = "X-Bitfit-Next-Cursor"
router = APIRouter(
    prefix="/v2", tags=["open inference protocol"],
    dependencies=[Depends(require_reader), Depends(min_generation), Depends(known_query("min_generation"))],
    route_class=CheckedRoute,
)


_MODEL_ERRORS = errors(
    Unauthorized, Forbidden, UnknownTask, TaskNotFound, VersionNotFound, CorruptTask, StoreUnavailable, RequestValidationError
)
_INFER_ERRORS = errors(
    Unauthorized, Forbidden, UnknownTask, VersionNotFound, CorruptTask, StoreUnavailable, LimitExceeded, InvalidInput,
    RequestValidationError, Overloaded, NotReady,
)


# A model outside the key's scope answers as the route answers an unknown one (tenancy.py);
# inference checks it in run_predict.
_AS_STORED = [Depends(task_in_scope(TaskNotFound))]
_AS_LOADED = [Depends(task_in_scope(UnknownTask))]


class RepositoryIndexRequest(BaseModel):
    ready: bool = False  # only the models that are ready
    # Extensions: a page of the index (the protocol lists every model; a million do not fit one answer).
    limit: int = Field(DEFAULT_PAGE * 10, ge=1, le=MAX_PAGE * 10)
    cursor: str | None = Field(None, max_length=1000)
    prefix: str = Field("", max_length=200)


@open_router.get("/health/live", summary="OIP server liveness")
async def live() -> dict:
    return {"live": True}


# Behind the predict keys like the model routes, so that is_server_ready() and is_model_ready()
# agree for a client without a key; the probes use /readyz and /v2/health/live, both open.
@router.get(
    "/health/ready", responses=errors(Unauthorized, Forbidden, NotReady, RequestValidationError),
    summary="OIP server readiness (as /readyz)",
)
async def ready(request: Request) -> dict:
    services = getattr(request.app.state, "services", None)
    if services is None or not services.sync.healthy:
        raise NotReady("the server is starting, stopping or its last store sync failed", {"Retry-After": "1"})
    return {"ready": True}


@open_router.get("", summary="OIP server metadata")
async def server_metadata(request: Request) -> dict:
    return {"name": "bitfit-serve", "version": request.app.version, "extensions": ["binary_tensor_data", "model_repository"]}


async def _metadata(services: Services, task: str, version: int | None) -> dict:
    record, _ = await run_in_threadpool(services.store.get, task, version)  # 404 task or version
    meta = record.meta
    return model_metadata(task, list(record.versions), list(meta.labels), meta.problem_type, meta.inputs)


@router.get("/models/{task}", responses=_MODEL_ERRORS, summary="OIP model metadata", dependencies=_AS_STORED)
async def metadata(task: str, services: Services = Depends(get_services)) -> dict:
    return await _metadata(services, task, None)


@router.get(
    "/models/{task}/versions/{version}", responses=_MODEL_ERRORS, summary="OIP model metadata of a kept version",
    dependencies=_AS_STORED,
)
async def version_metadata(task: str, version: int, services: Services = Depends(get_services)) -> dict:
    return await _metadata(services, task, version)


async def _ready(services: Services, task: str, version: int | None) -> dict:
    handle = await services.catalog.acquire(task)  # 404 when not stored; loads it when not resident (ready = loaded)
    services.catalog.release(handle)
    if version is not None and version != handle.version:
        await run_in_threadpool(services.store.get, task, version)  # 404 unless kept (served on demand)
    return {"name": task, "ready": True}


@router.get("/models/{task}/ready", responses=_MODEL_ERRORS, summary="OIP model readiness", dependencies=_AS_LOADED)
async def model_ready(task: str, services: Services = Depends(get_services)) -> dict:
    return await _ready(services, task, None)


@router.get(
    "/models/{task}/versions/{version}/ready", responses=_MODEL_ERRORS, summary="OIP readiness of a kept version",
    dependencies=_AS_LOADED,
)
async def version_ready(task: str, version: int, services: Services = Depends(get_services)) -> dict:
    return await _ready(services, task, version)


async def _infer(services: Services, request: Request, task: str, version: int | None) -> Response:
    limit_json_body(request)  # read by hand (binary tensors), so the route declares no body field
    body = await request.body()
    try:
        infer, inputs = parse_infer(body, request.headers.get("inference-header-content-length"))
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    check_outputs(infer)
    (result,) = await run_predict(services, request, [TaskInputs(task, inputs, version=version)], [])
    labels = list(result.predictions[0].scores) if result.predictions else []
    answer, binary = infer_answer(infer, result.task, result.version, labels, result.predictions)
    head = json.dumps(answer, separators=(",", ":")).encode()
    if not binary:
        return Response(head, media_type="application/json")
    headers = {"Inference-Header-Content-Length": str(len(head))}
    return Response(head + binary, media_type="application/octet-stream", headers=headers)


@router.post("/models/{task}/infer", responses=_INFER_ERRORS, summary="OIP inference")
async def infer(task: str, request: Request, services: Services = Depends(get_services)) -> Response:
    return await _infer(services, request, task, None)


@router.post(
    "/models/{task}/versions/{version}/infer", responses=_INFER_ERRORS, summary="OIP inference with a kept version"
)
async def version_infer(task: str, version: int, request: Request, services: Services = Depends(get_services)) -> Response:
    return await _infer(services, request, task, version)


@router.post(
    "/repository/index", responses=errors(Unauthorized, Forbidden, RequestValidationError),
    summary="OIP model repository index, a page at a time",
)
async def repository_index(
    request: Request, response: Response, body: RepositoryIndexRequest | None = Body(None),
    services: Services = Depends(get_services),
) -> list:
    """Tasks in name order from the server's catalog (no stored file is read). A stored task
    that is not resident is READY: its first request loads it. ``limit``/``cursor``/``prefix``
    page it (an extension of the protocol); the next page's cursor is in ``X-Bitfit-Next-Cursor``.
    A scoped key sees only its own models."""
    body, scope = body or RepositoryIndexRequest(), scope_of(request)
    prefixes, names = scoped_prefixes(scope, body.prefix)
    out, after = [], decode_cursor(body.cursor)
    while len(out) < body.limit:
        tasks = page_in(services.catalog, body.limit - len(out), after, prefixes, names)
        if not tasks:
            break
        after = tasks[-1].name
        for task in tasks:
            served = task.state != Residency.UNSERVABLE.value
            if body.ready and not served:
                continue
            entry = {"name": task.name, "version": str(task.version), "state": "READY" if served else "UNAVAILABLE"}
            if not served:
                entry["reason"] = task.reason or "this backbone cannot serve the stored file"
            out.append(entry)
    if len(out) == body.limit and page_in(services.catalog, 1, after, prefixes, names):
        response.headers[NEXT_CURSOR_HEADER] = encode_cursor(after)
    return out
