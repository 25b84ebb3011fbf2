"""/files: a training file uploaded once and referenced by id from many jobs (POST /jobs as JSON).

The file is read as the trainer will read it before it is stored (training/jobs/datacheck.py),
against the ``config`` part's columns and labels, or without one the default columns
(``text``, ``label``). A job that uses it checks it again against its own config. Admin keys only.
File ids are unguessable (random); a file holds no task, so any admin key that knows an id
may read its record and use it in a job.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.requests import Request

from server.exceptions import Forbidden, InvalidRequest, LimitExceeded, Unauthorized, UnsupportedMediaType
from server.http.auth import require_admin, scope_of
from server.http.job_schemas import FILE_ID, FileOut
from server.http.job_uploads import DataFile, check_one, read_file_form
from server.http.routes.body import CheckedRoute
from server.http.routes.jobs import get_jobs
from server.http.routes.responses import errors
from training.jobs.config import JobConfig
from training.jobs.errors import DataFileError, JobConfigError, JobFileNotFound
from training.jobs.queue import JobQueue

router = APIRouter(prefix="/files", tags=["jobs"], route_class=CheckedRoute, dependencies=[Depends(require_admin)])

_FILE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "CSV or JSONL, as `bitfit train` reads it."},
        "config": {"type": "string", "description": "Optional: a job config (JSON) whose columns and labels the file must fit."},
    }}}}}}


# Without a config, a file is checked against the default columns (text, label).
_DEFAULT = {"task": "file"}


def _store(queue: JobQueue, file: DataFile, config: JobConfig) -> dict:
    check = check_one(file, config)
    return queue.put_file(file.data, file.filename, check["rows"], list(check["columns"])).to_dict()


@router.post("", status_code=201, response_model=FileOut, openapi_extra=_FILE_BODY, summary="Upload a training file",
             responses=errors(Unauthorized, Forbidden, DataFileError, JobConfigError, LimitExceeded, UnsupportedMediaType,
                              InvalidRequest))
async def upload_file(request: Request, queue: JobQueue = Depends(get_jobs)) -> dict:
    file, raw = await read_file_form(request)
    config = JobConfig.parse(raw if raw is not None else _DEFAULT)
    if raw is not None and not scope_of(request).allows(config.task):
        raise Forbidden(f"this key may not train the task {config.task!r}: it is outside the key's scope")
    return await run_in_threadpool(_store, queue, file, config)


@router.get("/{file_id}", response_model=FileOut, responses=errors(Unauthorized, Forbidden, JobFileNotFound),
            summary="One uploaded file's record")
async def get_file(file_id: str, queue: JobQueue = Depends(get_jobs)) -> dict:
    if not re.fullmatch(FILE_ID, file_id):
        raise JobFileNotFound(file_id)
    return (await run_in_threadpool(queue.file, file_id)).to_dict()
