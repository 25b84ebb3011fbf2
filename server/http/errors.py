"""THE one place where errors become HTTP answers: the ``HTTP_ERRORS`` table.

Every error body is ``{"error": {"code": ..., "message": ...}}`` (sometimes with more
fields, e.g. ``reason`` or ``details``); on the Open Inference Protocol routes (/v2) it is
``{"error": message, "code": ..., ...}``, the shape that protocol's clients read. Domain
errors come from bias_store and the engine; the few errors that only exist at the HTTP edge (limits, auth, back-pressure) are defined
here, so every module raises plain exceptions and none builds a response itself. The
exception handlers, the request metrics and the OpenAPI answers (routes/responses.py)
all read the same table. A failure is logged once, here, by the handler that answers it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bias_store.errors import (
    BiasSetTooLarge,
    BiasStoreError,
    ConcurrentUpdate,
    CorruptTask,
    FingerprintMismatch,
    InvalidBiasSet,
    StoreUnavailable,
    TaskNotFound,
    VersionNotFound,
)
from engine.errors import EngineError, InvalidInput, NoFreeSlot
from server.catalog.catalog import HINTS
from server.catalog.views import page_in
from server.exceptions import (
    ClientGone,
    Forbidden,
    GenerationNotReached,
    InvalidRequest,
    LabelChange,
    LimitExceeded,
    NotReady,
    Overloaded,
    ReadTimeout,
    ServerError,
    Unauthorized,
    UnsupportedMediaType,
)
from server.http.paging import scoped_prefixes
from server.http.tenancy import Scope as KeyScope
from server.http.tenancy import scope_hidden
from server.process.settings import env_name
from training.jobs.errors import (
    DataFileError,
    JobArtifactNotFound,
    JobConfigError,
    JobConflict,
    JobError,
    JobFileNotFound,
    JobNotCancellable,
    JobNotFound,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpError:
    status: int
    code: str
    description: str  # for the OpenAPI answers
    extra: Callable[[Exception], dict] = field(default=lambda exc: {})  # more body fields
    setting: str | None = None  # the setting behind a limit, named in the message
    headers: dict[str, str] | None = None  # when the exception carries none (a domain error)


def _reason(exc: Exception) -> dict:
    return {"reason": exc.reason}


def _data_file(exc: Exception) -> dict:
    """Where in which file: the split, the row (1 = the first data row) and the column."""
    return {name: getattr(exc, name, None) for name in ("split", "row", "column", "reason")}


# Looked up along the exception's class hierarchy: the most specific entry wins.
HTTP_ERRORS: dict[type[BaseException], HttpError] = {
    # engine.UnknownTask is a TaskNotFound: one error, one answer, wherever a task is missing.
    TaskNotFound: HttpError(404, "task_not_found", "Unknown task (the known tasks are hinted).",
                            lambda exc: {"known_tasks": sorted(exc.known)[:20]}),
    VersionNotFound: HttpError(404, "version_not_found", "The task has no such version (the kept ones are listed).",
                               lambda exc: {"available_versions": exc.available}),
    FingerprintMismatch: HttpError(409, "fingerprint_mismatch",
                                   "The bias set was trained for another backbone (fingerprint mismatch).", _reason),
    BiasSetTooLarge: HttpError(413, "limit_exceeded", f"The upload is over {env_name('max_upload_bytes')}.", _reason,
                               setting=env_name("max_upload_bytes")),
    LimitExceeded: HttpError(413, "limit_exceeded",
                             "Over a limit: inputs per request, characters per input or body size (the setting is named)."),
    InvalidBiasSet: HttpError(422, "invalid_bias_set", "An invalid bias set (the validator's reason).", _reason),
    InvalidInput: HttpError(422, "invalid_input", "An input the task cannot take (empty, or a pair for a single-text task)."),
    RequestValidationError: HttpError(422, "validation_error", "Malformed JSON or wrong types (each problem located)."),
    InvalidRequest: HttpError(422, "validation_error", "A malformed request (each problem named)."),
    ReadTimeout: HttpError(408, "request_timeout", "The body did not arrive within BITFIT_REQUEST_READ_TIMEOUT_S."),
    Unauthorized: HttpError(401, "unauthorized", "No API key (`Authorization: Bearer <key>`) where one is required."),
    Forbidden: HttpError(403, "forbidden", "The API key is not valid for this endpoint."),
    Overloaded: HttpError(503, "overloaded", "Overloaded: the batch queue is full; see Retry-After."),
    NotReady: HttpError(503, "not_ready", "Not ready: starting up or shutting down; see Retry-After."),
    StoreUnavailable: HttpError(503, "store_unavailable",
                                "The bias store cannot be reached or written (read-only, full, no permission): loaded tasks still "
                                "serve, mutations wait; see Retry-After.",
                                headers={"Retry-After": "5"}),
    GenerationNotReached: HttpError(503, "generation_not_reached",
                                    "This server has not applied the asked-for store generation in time; see Retry-After."),
    LabelChange: HttpError(409, "label_change",
                           "The new version's labels differ from the current one's; resend with ?allow_label_change=true.",
                           lambda exc: {"old_labels": exc.old_labels, "new_labels": exc.new_labels}),
    ConcurrentUpdate: HttpError(409, "concurrent_update", "Other writers kept changing the task meanwhile; retry."),
    CorruptTask: HttpError(409, "task_unhealthy", "The task's stored files are damaged; replace (PUT) or delete it.",
                           lambda exc: {"reason": exc.reason}),
    ClientGone: HttpError(499, "client_closed_request", "The client went away before its answer (never seen by it)."),
    NoFreeSlot: HttpError(503, "capacity", "Every task slot is held by requests in flight (BITFIT_MAX_RESIDENT_TASKS); see Retry-After.",
                          headers={"Retry-After": "1"}),
    UnsupportedMediaType: HttpError(415, "unsupported_media_type", "A body in a content type the route does not read."),
    # Training jobs (training/jobs/): a job or file of another tenant answers as an unknown one.
    JobNotFound: HttpError(404, "job_not_found", "No such job (or not one this key may see)."),
    JobFileNotFound: HttpError(404, "file_not_found", "No such uploaded file."),
    JobArtifactNotFound: HttpError(404, "artifact_not_found", "The job has no such artifact (yet)."),
    JobConfigError: HttpError(422, "invalid_job_config", "The job's config is invalid (the field is named).",
                              lambda exc: {"field": f"config.{exc.field}"}),
    DataFileError: HttpError(422, "invalid_data_file", "A training file the trainer cannot use (the split, row and column are named).",
                             _data_file),
    JobConflict: HttpError(409, "idempotency_conflict", "The Idempotency-Key was used for a job with another config."),
    JobNotCancellable: HttpError(409, "job_not_cancellable", "The job has finished already (succeeded, failed or cancelled)."),
}
INTERNAL = HttpError(500, "internal_error", "A bug or a device error; the server log has the details.")


def http_error_of(kind: type[BaseException]) -> HttpError:
    """The table's entry for an exception class: the most specific along its class hierarchy."""
    return next((HTTP_ERRORS[k] for k in kind.__mro__ if k in HTTP_ERRORS), INTERNAL)


def http_error(exc: BaseException) -> HttpError:
    """The table's entry for an exception; a cancelled request counts as the client gone."""
    if not isinstance(exc, Exception):
        return HTTP_ERRORS[ClientGone]
    return http_error_of(type(exc))


def status_of(exc: BaseException) -> int:
    """The HTTP status an exception ends up as (for metrics). Never logs."""
    return http_error(exc).status


def error_body(code: str, message: str, **extra: object) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def _json(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: object) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def error_response(exc: Exception) -> JSONResponse:
    """The HTTP answer to a domain or edge error (an internal error says nothing more)."""
    entry = http_error(exc)
    if entry is INTERNAL:
        return _json(500, entry.code, "internal server error; the server log has the details")
    message = f"{exc} ({entry.setting})" if entry.setting else str(exc)
    return _json(entry.status, entry.code, message, getattr(exc, "headers", None) or entry.headers, **entry.extra(exc))


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict]]:
    details = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":  # loc is ("body", position)
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            details.append({"loc": "body", "message": f"malformed JSON at position {err['loc'][-1]}: {reason}"})
            continue
        loc = ".".join(str(part) for part in err.get("loc", ()))
        details.append({"loc": loc, "message": str(err.get("msg", "invalid"))})
    head = "; ".join(f"{d['loc']}: {d['message']}" for d in details[:3]) or "invalid request"
    if len(details) > 3:
        head += f" (and {len(details) - 3} more)"
    return head, details[:20]


class UnhandledErrors:
    """Pure-ASGI: answers an exception no handler took (a bug, a device error) with a 500.

    Caught here rather than by Starlette's outermost error middleware, which re-raises
    after answering, so the server would log the same failure a second time.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise  # nothing left to answer with
            _log_failure(scope, exc)
            await error_response(exc)(scope, receive, send)


def _log_failure(scope: Scope, exc: Exception) -> None:
    # The one log line of a failure, with its traceback; never a traceback in a response.
    log.error("%s %s failed: %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__, exc, exc_info=exc)


def for_protocol(request: Request, response: JSONResponse) -> JSONResponse:
    """The Open Inference Protocol (/v2) wants ``{"error": "<message>"}`` (Triton's client
    fails on anything else): there the message moves up and the code sits beside it, and a
    422 is Triton's 400."""
    path = request.url.path
    if path != "/v2" and not path.startswith("/v2/"):
        return response
    body = json.loads(response.body)
    detail = body.pop("error")
    flat = {"error": detail.pop("message"), **detail}
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    # Triton answers a request it cannot take (malformed, bad input, unsupported) with 400.
    status = 400 if response.status_code == 422 else response.status_code
    return JSONResponse(flat, status_code=status, headers=headers)


def _answered(request: Request, response: JSONResponse, code: str) -> JSONResponse:
    """Count the error answer by its code (``bitfit_errors_total``), in the route's protocol shape."""
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(code).inc()
    if request.method != "GET" and request.url.path.startswith("/tasks") and response.status_code < 500:
        # A refused upload, replace, rollback or delete: one line, whether or not the access log is on.
        log.warning("%s %s refused: %d %s: %s", request.method, request.url.path, response.status_code, code,
                    json.loads(response.body)["error"]["message"])
    return for_protocol(request, response)


def _scoped(request: Request, exc: Exception) -> Exception:
    """A scoped key's unknown-task error hints only at the tasks in its scope (tenancy.py)."""
    scope = getattr(request.state, "scope", None)
    if scope is None:
        return exc
    services = getattr(request.app.state, "services", None)

    def in_scope(scope: KeyScope) -> list[str]:  # the first names of the key's own namespaces: no walk of the catalog
        if services is None:
            return []
        return [v.name for v in page_in(services.catalog, HINTS, None, *scoped_prefixes(scope, ""))]

    return scope_hidden(exc, scope, in_scope)


def install_error_handlers(app: FastAPI) -> None:
    """The exception handlers, and the catch-all around the app."""

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        exc = _scoped(request, exc)
        entry = http_error(exc)
        if entry is INTERNAL:  # a domain error the table does not know: a bug
            _log_failure(request.scope, exc)
        return _answered(request, error_response(exc), entry.code)

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _validation_message(exc)
        entry = HTTP_ERRORS[RequestValidationError]
        return _answered(request, _json(entry.status, entry.code, message, details=details), entry.code)

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": undecodable JSON or form
            return _answered(request, _json(422, "validation_error", f"malformed request body: {exc.detail}"), "validation_error")
        code = {404: "not_found", 405: "method_not_allowed", 413: "limit_exceeded"}.get(exc.status_code, "http_error")
        response = _json(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))
        return _answered(request, response, code)

    for kind in (EngineError, BiasStoreError, ServerError, JobError):
        app.add_exception_handler(kind, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_middleware(UnhandledErrors)
