"""Typed errors mirroring the server's JSON error codes (``{"error": {"code", "message"}}``)."""

from __future__ import annotations

from typing import Any


class BitfitError(Exception):
    """Any error answer of the server; ``code`` is its JSON code, ``body`` the whole error object."""

    code = "error"

    def __init__(self, message: str, status: int | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.body = message, status, body or {}
        # The call's X-Request-ID (the server's log lines carry it), set by the client.
        self.request_id: str | None = None
        # The code the server itself sent (None when the answer had no JSON error, e.g. a
        # proxy's 503): retries trust only this one, never a code guessed from the status.
        self.server_code: str | None = self.body.get("code")

    def __str__(self) -> str:
        text = f"[{self.status} {self.code}] {self.message}" if self.status else self.message
        return f"{text} (request id {self.request_id})" if self.request_id else text


class TransportError(BitfitError):
    """The server could not be reached, or the connection broke (no HTTP answer)."""

    code = "transport_error"


class Timeout(TransportError):
    """The call's deadline (the client's ``timeout``, retries and waits included) passed."""

    code = "timeout"


class MalformedAnswer(BitfitError):
    """The server's answer is not what the API says (not JSON, or the wrong shape): a proxy's
    page, a truncated body, or a server of another version."""

    code = "malformed_answer"


class TaskNotFound(BitfitError):
    code = "task_not_found"

    @property
    def known_tasks(self) -> list[str]:
        return self.body.get("known_tasks", [])


class VersionNotFound(BitfitError):
    code = "version_not_found"

    @property
    def available_versions(self) -> list[int]:
        return self.body.get("available_versions", [])


class ValidationError(BitfitError):
    """The request was malformed (wrong types, unknown fields or query parameters)."""

    code = "validation_error"


class InvalidInput(BitfitError):
    code = "invalid_input"


class InvalidBiasSet(BitfitError):
    code = "invalid_bias_set"


class FingerprintMismatch(BitfitError):
    """The bias set was trained for another backbone than the server's."""

    code = "fingerprint_mismatch"


class LabelChange(BitfitError):
    """409: the new version's labels differ from the current one's (pass ``allow_label_change=True``)."""

    code = "label_change"

    @property
    def old_labels(self) -> list[str]:
        return list(self.body.get("old_labels", []))

    @property
    def new_labels(self) -> list[str]:
        return list(self.body.get("new_labels", []))


class LimitExceeded(BitfitError):
    code = "limit_exceeded"


class Unauthorized(BitfitError):
    code = "unauthorized"


class Forbidden(BitfitError):
    code = "forbidden"


class Overloaded(BitfitError):
    """503: the batch queue is full (retried by the client, honouring Retry-After)."""

    code = "overloaded"


class NotReady(BitfitError):
    code = "not_ready"


class RateLimited(BitfitError):
    code = "rate_limited"


class NotFound(BitfitError):
    code = "not_found"


class ServerError(BitfitError):
    code = "internal_error"


class JobNotFound(BitfitError):
    """404: no such training job (or one this key may not see)."""

    code = "job_not_found"


class FileNotFound(BitfitError):
    code = "file_not_found"


class ArtifactNotFound(BitfitError):
    code = "artifact_not_found"


class InvalidJobConfig(BitfitError):
    """422: a job config field is wrong (``.body["message"]`` names it)."""

    code = "invalid_job_config"


class InvalidDataFile(BitfitError):
    """422: a training file the trainer cannot use; nothing was queued."""

    code = "invalid_data_file"

    @property
    def split(self) -> str | None:
        return self.body.get("split")

    @property
    def row(self) -> int | None:
        return self.body.get("row")

    @property
    def column(self) -> str | None:
        return self.body.get("column")


class JobConflict(BitfitError):
    """409: the idempotency key was used for a job with another config."""

    code = "idempotency_conflict"


class JobNotCancellable(BitfitError):
    """409: the job has ended already."""

    code = "job_not_cancellable"


ERRORS: dict[str, type[BitfitError]] = {
    cls.code: cls
    for cls in (
        TaskNotFound, VersionNotFound, ValidationError, InvalidInput, InvalidBiasSet, FingerprintMismatch, LabelChange,
        LimitExceeded, Unauthorized, Forbidden, Overloaded, NotReady, RateLimited, NotFound, ServerError, JobNotFound,
        FileNotFound, ArtifactNotFound, InvalidJobConfig, InvalidDataFile, JobConflict, JobNotCancellable,
    )
}
_BY_STATUS = {401: Unauthorized, 403: Forbidden, 404: NotFound, 413: LimitExceeded, 422: ValidationError,
              429: RateLimited, 503: NotReady}


def error_from(status: int, payload: Any, text: str = "") -> BitfitError:
    """The typed error for an answer: by its JSON code, else by its status."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        code, message = str(error.get("code", "")), str(error.get("message", text))
        cls = ERRORS.get(code) or _BY_STATUS.get(status) or (ServerError if status >= 500 else BitfitError)
        err = cls(message, status, error)
        if cls.code != code and code:
            err.code = code  # a code this client version does not know: keep it
        return err
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else BitfitError)
    return cls(text[:500] or f"HTTP {status}", status, {})
