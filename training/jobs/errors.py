"""Errors of the job queue. Each is one ``JobError``; server/http/errors.py maps them to HTTP."""

from __future__ import annotations


class JobError(Exception):
    """Base class of every error of training/jobs/."""


class JobNotFound(JobError):
    """No such job (HTTP 404)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class JobFileNotFound(JobError):
    """No such uploaded file (HTTP 404)."""

    def __init__(self, file_id: str) -> None:
        super().__init__(f"file {file_id!r} not found; upload it with POST /files first")
        self.file_id = file_id


class JobArtifactNotFound(JobError):
    """The job has no artifact of that name (HTTP 404)."""

    def __init__(self, job_id: str, name: str, known: list[str] | None = None) -> None:
        hint = f"; it has {', '.join(known)}" if known else "; it has none yet"
        super().__init__(f"job {job_id!r} has no artifact {name!r}{hint}")
        self.job_id, self.name = job_id, name


class JobConfigError(JobError):
    """A job config that cannot work (HTTP 422); ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"config.{field}: {message}")
        self.field, self.reason = field, message


class DataFileError(JobError):
    """A data file that training would refuse (HTTP 422), found before the job is queued.

    ``row`` is the 1-based data row (the header is not counted), ``None`` for the whole file.
    """

    def __init__(self, split: str, reason: str, row: int | None = None, column: str | None = None) -> None:
        where = [f"{split} file"]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {reason}")
        self.split, self.row, self.column, self.reason = split, row, column, reason


class JobConflict(JobError):
    """The idempotency key was used for another config (HTTP 409)."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used by job {job_id} with a different config or "
                         "files; use a new key for a new job")
        self.key, self.job_id = key, job_id


class JobNotCancellable(JobError):
    """The job has already ended (HTTP 409)."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} is {status} and cannot be cancelled")
        self.job_id, self.status = job_id, status


class LeaseLost(JobError):
    """The worker no longer holds the job (its lease expired and another worker took it)."""


class Cancelled(JobError):
    """A cancel was requested: the training loop stops at its next step (nothing is published)."""
