"""/tasks: upload, replace, list, show, delete and roll back bias sets.

Mutations go through TaskMutations (store first, engine second) on a worker thread, so the
event loop never waits on validation or fsync, and the very next request sees the result.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Body, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError

from bias_store.errors import (
    BiasSetTooLarge,
    ConcurrentUpdate,
    CorruptTask,
    FingerprintMismatch,
    InvalidBiasSet,
    StoreUnavailable,
    TaskNotFound,
    VersionNotFound,
)
from bias_store.store import TaskRecord
from engine import UnknownTask
from server.catalog.catalog import HINTS
from server.catalog.views import TaskView, page_in, unhealthy, view
from server.exceptions import Forbidden, GenerationNotReached, InvalidRequest, LabelChange, Unauthorized
from server.http.auth import require_admin, require_reader, scope_of, task_in_scope
from server.http.deps import get_services, min_generation
from server.http.paging import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor, scoped_prefixes
from server.http.routes.body import CheckedRoute
from server.http.routes.responses import errors
from server.http.schemas import RollbackRequest, TaskInfo, TaskList, UploadResponse
from server.process.services import Services

# A {task} outside the key's scope answers as an unknown task (server/http/tenancy.py).
router = APIRouter(prefix="/tasks", tags=["tasks"], route_class=CheckedRoute, dependencies=[Depends(task_in_scope(TaskNotFound))])

_FILE_DOC = "A bias-set file (safetensors with bitfit metadata; see docs/FORMAT.md)."
_NAME_DOC = "Task name overriding the one in the file's metadata."
_LABELS_DOC = "Accept a new version whose labels (names or order) differ from the current version's; refused (409) otherwise."
_AUTH = (Unauthorized, Forbidden)
_STORE = (StoreUnavailable, ConcurrentUpdate, CorruptTask)  # what a mutation of a shared store can meet
_UPLOAD_ERRORS = errors(*_AUTH, FingerprintMismatch, LabelChange, BiasSetTooLarge, InvalidBiasSet, InvalidRequest, *_STORE)
_ROLLBACK_ERRORS = errors(*_AUTH, TaskNotFound, VersionNotFound, InvalidBiasSet, *_STORE)
GENERATION_HEADER = "X-Bitfit-Generation"  # the store change log entry a mutation made


def _info(record: TaskRecord, services: Services) -> dict:
    meta = record.meta
    state = view(services.catalog, record.name)
    return {
        "name": record.name, "version": record.version, "labels": list(meta.labels), "problem_type": meta.problem_type,
        "inputs": meta.inputs, "pooling": meta.pooling, "bias_sites": meta.bias_sites, "base_model": meta.base_model,
        "created_at": meta.created_at, "size_bytes": record.size, "sha256": record.sha256,
        "versions": list(record.versions), "loaded": state is not None and state.loaded and state.sha256 == record.sha256,
        "training": meta.training,
    }


async def _upload(
    services: Services, request: Request, file: UploadFile, name: str | None, response: Response, allow_label_change: bool,
) -> dict:
    started = time.perf_counter()
    form = await request.form()  # already parsed by FastAPI (cached): only counted here
    for field in ("file", "name"):
        if len(form.getlist(field)) > 1:
            raise InvalidRequest(f"the upload has {len(form.getlist(field))} '{field}' parts; send exactly one")
    data = await file.read()
    record, upload = await run_in_threadpool(services.mutations.put, data, name, scope_of(request).allows, allow_label_change)
    services.metrics.upload_seconds.observe(time.perf_counter() - started)
    response.headers[GENERATION_HEADER] = str(record.generation)
    bias_set = upload.bias_set
    return {
        **_info(record, services), "num_params": bias_set.num_params, "tensor_bytes": bias_set.num_bytes,
        "generation": record.generation,
    }


@router.post(
    "", status_code=201, response_model=UploadResponse, dependencies=[Depends(require_admin)],
    responses=_UPLOAD_ERRORS, summary="Upload a bias set (a new task or a new version)",
)
async def upload_task(
    request: Request,
    response: Response,
    file: UploadFile = File(description=_FILE_DOC),
    name: str | None = Form(None, description=_NAME_DOC, max_length=200),
    allow_label_change: bool = Query(False, description=_LABELS_DOC),
    services: Services = Depends(get_services),
) -> dict:
    """Validated, stored, then servable here by the very next request, and on every other
    replica once it has applied the answer's `generation` (X-Bitfit-Min-Generation waits for it)."""
    return await _upload(services, request, file, name or None, response, allow_label_change)


@router.put(
    "/{task}", status_code=201, response_model=UploadResponse, dependencies=[Depends(require_admin)],
    responses=_UPLOAD_ERRORS, summary="Replace a task with a new version",
)
async def replace_task(
    task: str, request: Request, response: Response, file: UploadFile = File(description=_FILE_DOC),
    allow_label_change: bool = Query(False, description=_LABELS_DOC),
    services: Services = Depends(get_services),
) -> dict:
    """Stores the file as `task`'s next version (whatever name its metadata holds)."""
    return await _upload(services, request, file, task, response, allow_label_change)


@router.get(
    "", response_model=TaskList, dependencies=[Depends(require_reader), Depends(min_generation)],
    responses=errors(*_AUTH, GenerationNotReached, RequestValidationError), summary="List tasks, a page at a time",
)
async def list_tasks(
    request: Request,
    limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="Tasks per page."),
    cursor: str | None = Query(None, max_length=1000, description="`next_cursor` of the previous page."),
    prefix: str = Query("", max_length=200, description="Only tasks whose names start with this."),
    services: Services = Depends(get_services),
) -> dict:
    """Tasks in name order from the server's catalog (no stored file is read): a page costs
    the same at any cursor, however many tasks the store holds. A scoped key lists only its own."""
    scope = scope_of(request)
    prefixes, names = scoped_prefixes(scope, prefix)
    tasks = page_in(services.catalog, limit + 1, decode_cursor(cursor), prefixes, names)
    more = len(tasks) > limit
    tasks = tasks[:limit]
    return {
        "tasks": [_summary(v) for v in tasks],
        "next_cursor": encode_cursor(tasks[-1].name) if more else None,
        "catalog_tasks": len(services.catalog.stored) if not scope.restricted else None,
        "unhealthy": [{"name": n, "reason": r} for n, r in unhealthy(services.catalog, allows=scope.allows).items()],
    }


def _summary(task: TaskView) -> dict:
    out = {"name": task.name, "version": task.version, "sha256": task.sha256, "state": task.state, "loaded": task.loaded}
    if task.reason is not None:
        out["reason"] = task.reason
    return out


@router.get(
    "/{task}", response_model=TaskInfo, dependencies=[Depends(require_reader), Depends(min_generation)],
    responses=errors(*_AUTH, TaskNotFound, VersionNotFound, CorruptTask, GenerationNotReached), summary="One task and its versions",
)
async def get_task(
    task: str, version: int | None = Query(None, ge=1, description="A kept version's metadata instead of the current one's."),
    services: Services = Depends(get_services),
) -> dict:
    """The current version's metadata (or a kept `version`'s: its training record and scores)."""
    if view(services.catalog, task) is None:  # not in the catalog: answered without reading the store
        raise UnknownTask(task, services.catalog.names.near(task, HINTS))
    record, _ = await run_in_threadpool(services.store.get, task, version)
    return _info(record, services)


@router.delete(
    "/{task}", status_code=204, dependencies=[Depends(require_admin)], responses=errors(*_AUTH, TaskNotFound, *_STORE),
    summary="Delete a task and all its versions",
)
async def delete_task(task: str, services: Services = Depends(get_services)) -> Response:
    """Requests already accepted for the task still finish with the version they pinned."""
    generation = await run_in_threadpool(services.mutations.delete, task)
    return Response(status_code=204, headers={GENERATION_HEADER: str(generation)})


@router.post(
    "/{task}/rollback", response_model=TaskInfo, dependencies=[Depends(require_admin)], responses=_ROLLBACK_ERRORS,
    summary="Serve an earlier version again",
)
async def rollback_task(
    task: str, response: Response, body: RollbackRequest | None = Body(None), services: Services = Depends(get_services)
) -> dict:
    record, _ = await run_in_threadpool(services.store.get, task)
    version = body.version if body is not None else None
    if version is None:
        earlier = [v for v in record.versions if v < record.version]
        if not earlier:
            missing = VersionNotFound(task, record.version - 1, list(record.versions))
            missing.args = (f"task {task!r} has no version before its current one ({record.version}) to roll back to; "
                            f"kept versions: {list(record.versions)}",)
            raise missing
        version = earlier[-1]
    record = await run_in_threadpool(services.mutations.rollback, task, version)
    response.headers[GENERATION_HEADER] = str(record.generation)
    return _info(record, services)
