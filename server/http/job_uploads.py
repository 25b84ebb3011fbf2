"""Reading a job's upload (POST /jobs, POST /files): the body, its parts, the data checked once.

The routes read their bodies by hand (one route takes multipart or JSON), so each first sets
its limit on the request (server/http/routes/body.py): a Content-Length over it is a 413 before
a byte is read, a chunked body is cut off the moment it passes it. Every file is checked by the
trainer's own reader (training/jobs/datacheck.py) before anything is stored or queued: a bad
file is a 422 naming the split, the row and the column, and no job exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from server.exceptions import InvalidRequest, LimitExceeded, UnsupportedMediaType
from server.http.job_schemas import JobFromFiles
from server.http.routes.body import limit_body, limit_json_body
from server.process.settings import Settings, env_name
from training.jobs import datacheck
from training.jobs.config import JobConfig
from training.jobs.queue import JobQueue

SPLITS = ("train", "validation", "test")
_MAX_CONFIG_BYTES = 64 * 1024  # a config is a few hundred bytes


@dataclass
class DataFile:
    """One uploaded file, not stored yet."""

    split: str
    filename: str
    data: bytes


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _filename(part: UploadFile, split: str) -> str:
    name = PurePosixPath((part.filename or "").replace("\\", "/")).name[:200]
    return name or f"{split}.csv"


async def _file_bytes(part: UploadFile, settings: Settings) -> bytes:
    limit = settings.max_train_file_bytes
    if part.size is not None and part.size > limit:
        raise LimitExceeded(f"file {part.filename!r} is {part.size} bytes; the limit is {limit} ({env_name('max_train_file_bytes')})")
    return await part.read()


async def _form(request: Request, files: int) -> object:
    limit_body(request, files * request.app.state.settings.max_train_file_bytes, env_name("max_train_file_bytes"))
    if media_type(request) != "multipart/form-data":
        raise UnsupportedMediaType(f"send multipart/form-data (curl -F), not {media_type(request) or 'no content type'!r}")
    return await request.form(max_files=files + 1, max_fields=4, max_part_size=_MAX_CONFIG_BYTES)


def _only(form: object, allowed: tuple[str, ...]) -> None:
    names = list(form.keys())
    unknown = sorted({n for n in names if n not in allowed})
    if unknown:
        raise InvalidRequest(f"unknown form parts {unknown}; this route takes {list(allowed)}")
    for name in set(names):
        if len(form.getlist(name)) > 1:
            raise InvalidRequest(f"the form has {len(form.getlist(name))} '{name}' parts; send at most one")


async def _config_part(value: object) -> dict | None:
    """The ``config`` part: a JSON object, sent as a field (-F 'config={...}') or a file (-F config=@job.json)."""
    if value is None:
        return None
    raw = await value.read(_MAX_CONFIG_BYTES + 1) if isinstance(value, UploadFile) else value.encode()
    if len(raw) > _MAX_CONFIG_BYTES:
        raise LimitExceeded(f"the config part is over {_MAX_CONFIG_BYTES} bytes")
    return parse_config_json(raw)


def parse_config_json(raw: bytes) -> dict:
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"config: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InvalidRequest(f"config: must be a JSON object, got {type(config).__name__}")
    return config


async def read_job_form(request: Request) -> tuple[dict, list[DataFile]]:
    """POST /jobs as multipart: ``config`` and the ``train`` (+ ``validation``, ``test``) files."""
    settings = request.app.state.settings
    form = await _form(request, len(SPLITS))
    _only(form, ("config", *SPLITS))
    config = await _config_part(form.get("config"))
    if config is None:
        raise InvalidRequest("the form has no 'config' part (the job's config as JSON)")
    files = []
    for split in SPLITS:
        part = form.get(split)
        if part is None:
            continue
        if not isinstance(part, UploadFile):
            raise InvalidRequest(f"'{split}' must be a file part (curl -F {split}=@data.csv)")
        files.append(DataFile(split, _filename(part, split), await _file_bytes(part, settings)))
    if not any(f.split == "train" for f in files):
        raise InvalidRequest("the form has no 'train' file")
    return config, files


async def read_file_form(request: Request) -> tuple[DataFile, dict | None]:
    """POST /files: one ``file`` part, and an optional ``config`` to check its columns against."""
    settings = request.app.state.settings
    form = await _form(request, 1)
    _only(form, ("file", "config"))
    part = form.get("file")
    if not isinstance(part, UploadFile):
        raise InvalidRequest("the form needs one 'file' part (curl -F file=@train.csv)")
    return DataFile("train", _filename(part, "file"), await _file_bytes(part, settings)), await _config_part(form.get("config"))


async def read_job_json(request: Request) -> JobFromFiles:
    """POST /jobs as JSON: ``{"config": {...}, "files": {"train": "file-..."}}``."""
    limit_json_body(request)
    raw = await request.body()
    try:
        return JobFromFiles.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_url=False)]) from None


def check_files(config: JobConfig, files: list[DataFile]) -> list[dict]:
    """Each file as the trainer will read it, validation and test against the training file's
    labels (a thread: this parses the data); DataFileError names the split, row and column."""
    checks = datacheck.check_files({f.split: (f.data, f.filename) for f in files}, config)
    return [checks[f.split] for f in files]


def check_one(file: DataFile, config: JobConfig) -> dict:
    return datacheck.check_file(file.data, file.filename, config, file.split)


def store_files(queue: JobQueue, files: list[DataFile], checks: list[dict]) -> dict[str, str]:
    """Store checked files; their ids by split."""
    ids = {}
    for file, check in zip(files, checks):
        record = queue.put_file(file.data, file.filename, check["rows"], list(check["columns"]))
        ids[file.split] = record.id
    return ids


def stored_files(queue: JobQueue, config: JobConfig, ids: dict[str, str]) -> list[DataFile]:
    """Files uploaded before (POST /files), read back to be checked against this job's config."""
    if "train" not in ids:
        raise InvalidRequest("files: a 'train' file id is required")
    return [DataFile(split, queue.file(file_id).filename, queue.file_bytes(file_id)) for split, file_id in ids.items()]
