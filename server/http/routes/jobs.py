"""/jobs: training as a service. Create (data checked first), list, show, cancel, artifacts.

A job is queued in the server's store (training/jobs/queue.py); a worker beside the server
(``--train-workers``) or anywhere else on the same store claims it, trains, publishes the task,
and the store watcher serves it like any upload. Admin keys only; a key scoped to some tasks
creates and sees only jobs for those tasks: another tenant's job answers as an unknown one.
"""

from __future__ import annotations

import contextlib
import re

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError

from server.exceptions import Forbidden, InvalidRequest, LimitExceeded, Overloaded, Unauthorized, UnsupportedMediaType
from server.http.auth import require_admin, scope_of
from server.http.deps import get_services
from server.http.job_schemas import FILE_ID, JOB_ID, ArtifactList, JobFromFiles, JobList, JobOut
from server.http.job_uploads import check_files, media_type, read_job_form, read_job_json, store_files, stored_files
from server.http.paging import decode_cursor, encode_cursor
from server.http.routes.body import CheckedRoute
from server.http.routes.responses import errors
from server.http.tenancy import Scope
from server.process.services import Services
from training.jobs.config import JobConfig
from training.jobs.errors import (
    DataFileError,
    JobArtifactNotFound,
    JobConfigError,
    JobConflict,
    JobFileNotFound,
    JobNotCancellable,
    JobNotFound,
)
from training.jobs.queue import JobQueue
from training.jobs.records import STATUSES, JobRecord

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=CheckedRoute, dependencies=[Depends(require_admin)])

_AUTH = (Unauthorized, Forbidden)
_JOB_ID = re.compile(JOB_ID.strip("^$"))
_ARTIFACT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_MEDIA = {".json": "application/json", ".png": "image/png", ".txt": "text/plain; charset=utf-8", ".csv": "text/csv"}
MAX_PAGE = 100
SERVABLE_WAIT_S = 10.0  # the most a `succeeded` answer waits for this server to serve the published version
_CREATE_BODY = {
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["config", "train"], "properties": {
            "config": {"type": "string", "description": "The job's config as JSON (a field, or a file part)."},
            "train": {"type": "string", "format": "binary", "description": "CSV or JSONL, as `bitfit train` reads it."},
            "validation": {"type": "string", "format": "binary"}, "test": {"type": "string", "format": "binary"},
        }}},
        "application/json": {"schema": JobFromFiles.model_json_schema(ref_template="#/components/schemas/{model}")},
    }},
}


async def get_jobs(services: Services = Depends(get_services)) -> JobQueue:
    return services.jobs


async def visible_job(request: Request, job_id: str, queue: JobQueue) -> JobRecord:
    """The job, if it exists and the key may see it; otherwise the same 404 either way."""
    if not _JOB_ID.fullmatch(job_id):
        raise JobNotFound(job_id)
    job = await run_in_threadpool(queue.get, job_id)
    if not scope_of(request).allows(job.task):
        raise JobNotFound(job_id)
    return job


async def served(request: Request, job: JobRecord) -> JobRecord:
    """``job``, answered once this server serves what it published: a succeeded job's result
    carries the change-log ``generation`` of its publish, and the answer waits (at most
    SERVABLE_WAIT_S, holding no thread) until this server's store watcher has applied it, so a
    predict right after `succeeded` finds the new version here. Another replica: pass that
    generation as ``X-Bitfit-Min-Generation``."""
    generation = (job.result or {}).get("generation") if job.status == "succeeded" else None
    sync = request.app.state.services.sync
    if isinstance(generation, int) and generation > sync.generation.value and sync.healthy:
        with contextlib.suppress(Overloaded):  # too many waiters: answer now rather than fail a status read
            await sync.generation.wait(generation, SERVABLE_WAIT_S)
    return job


def _submit(queue: JobQueue, config: JobConfig, upload: list | None, ids: dict[str, str] | None, key: str | None) -> JobRecord:
    """Check every file against the config, store the new ones, queue the job (one worker thread)."""
    files = upload if upload is not None else stored_files(queue, config, ids or {})
    checks = check_files(config, files)  # DataFileError (422) before anything is stored or queued
    if ids is None:
        ids = store_files(queue, files, checks)
    return queue.submit(config, ids, idempotency_key=key)


@router.post(
    "", status_code=201, response_model=JobOut, openapi_extra=_CREATE_BODY, summary="Create a training job",
    responses=errors(*_AUTH, JobConfigError, DataFileError, JobFileNotFound, JobConflict, LimitExceeded, UnsupportedMediaType,
                     InvalidRequest),
)
async def create_job(
    request: Request,
    idempotency_key: str | None = Header(
        None, min_length=1, max_length=200,
        description="The same key with the same config answers the same job (a retry never queues twice)."),
    queue: JobQueue = Depends(get_jobs),
) -> dict:
    """Multipart (`config` + `train`, optional `validation`, `test` files) or JSON (`config` + ids
    of files from POST /files). Every file is read as the trainer reads it before the job is
    queued: a bad one is a 422 naming the split, row and column, and no job is created."""
    kind = media_type(request)
    upload, ids = None, None
    if kind == "multipart/form-data":
        raw, upload = await read_job_form(request)
    elif kind == "application/json":
        body = await read_job_json(request)
        raw, ids = body.config, dict(body.files)
        for file_id in ids.values():
            if not re.fullmatch(FILE_ID, file_id):
                raise JobFileNotFound(file_id)
    else:
        raise UnsupportedMediaType(f"send multipart/form-data (config + files) or application/json (config + file ids), "
                                   f"not {kind or 'no content type'!r}")
    config = JobConfig.parse(raw)  # JobConfigError (422) naming the field
    if not scope_of(request).allows(config.task):
        raise Forbidden(f"this key may not train the task {config.task!r}: it is outside the key's scope")
    job = await run_in_threadpool(_submit, queue, config, upload, ids, idempotency_key)
    return job.to_dict()


def _decode_after(after: str | None) -> str | None:
    job_id = decode_cursor(after)
    if job_id is not None and not _JOB_ID.fullmatch(job_id):
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "after"), "msg": "not a cursor of this listing"}])
    return job_id


def _page(queue: JobQueue, scope: Scope, status: str | None, task: str | None, limit: int, after: str | None) -> tuple[list, bool]:
    """``limit`` jobs the key may see after ``after``, newest first, and whether more follow."""
    found: list[JobRecord] = []
    while len(found) <= limit:
        page, after = queue.list(status=status, task=task, limit=limit + 1, after=after)
        found += [job for job in page if scope.allows(job.task)]
        if after is None or not page:
            break
    return found[:limit], len(found) > limit


@router.get("", response_model=JobList, responses=errors(*_AUTH, RequestValidationError), summary="List jobs, newest first")
async def list_jobs(
    request: Request,
    limit: int = Query(20, ge=1, le=MAX_PAGE, description="Jobs per page."),
    after: str | None = Query(None, max_length=200, description="`next_cursor` of the previous page."),
    status: str | None = Query(None, description=f"Only jobs in this status: {', '.join(STATUSES)}."),
    task: str | None = Query(None, max_length=200, description="Only jobs training this task."),
    queue: JobQueue = Depends(get_jobs),
) -> dict:
    if status is not None and status not in STATUSES:
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "status"), "msg": f"must be one of {list(STATUSES)}"}])
    jobs, more = await run_in_threadpool(_page, queue, scope_of(request), status, task, limit, _decode_after(after))
    return {"object": "list", "data": [j.to_dict() for j in jobs], "has_more": more,
            "next_cursor": encode_cursor(jobs[-1].id) if more else None}


@router.get("/{job_id}", response_model=JobOut, responses=errors(*_AUTH, JobNotFound), summary="One job: status, progress, metrics, result")
async def get_job(job_id: str, request: Request, queue: JobQueue = Depends(get_jobs)) -> dict:
    return (await served(request, await visible_job(request, job_id, queue))).to_dict()


@router.post("/{job_id}/cancel", response_model=JobOut, responses=errors(*_AUTH, JobNotFound, JobNotCancellable),
             summary="Cancel a job (a running one stops within seconds; nothing is published)")
async def cancel_job(job_id: str, request: Request, queue: JobQueue = Depends(get_jobs)) -> dict:
    await visible_job(request, job_id, queue)
    return (await run_in_threadpool(queue.cancel, job_id)).to_dict()


def _artifacts(queue: JobQueue, job_id: str) -> list[dict]:
    return [{"name": name, "bytes": len(queue.artifact(job_id, name))} for name in queue.artifacts(job_id)]


@router.get("/{job_id}/artifacts", response_model=ArtifactList, responses=errors(*_AUTH, JobNotFound),
            summary="The run's files: report.json, learning-curve and confusion-matrix PNGs")
async def list_artifacts(job_id: str, request: Request, queue: JobQueue = Depends(get_jobs)) -> dict:
    await visible_job(request, job_id, queue)
    return {"object": "list", "data": await run_in_threadpool(_artifacts, queue, job_id)}


@router.get("/{job_id}/artifacts/{name}", response_class=Response, responses=errors(*_AUTH, JobNotFound, JobArtifactNotFound),
            summary="Download one artifact")
async def get_artifact(job_id: str, name: str, request: Request, queue: JobQueue = Depends(get_jobs)) -> Response:
    await visible_job(request, job_id, queue)
    if not _ARTIFACT.fullmatch(name) or ".." in name:
        raise JobArtifactNotFound(job_id, name)
    data = await run_in_threadpool(queue.artifact, job_id, name)
    suffix = name[name.rfind("."):] if "." in name else ""
    return Response(data, media_type=_MEDIA.get(suffix, "application/octet-stream"),
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
