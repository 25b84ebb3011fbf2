"""THE one place where errors become HTTP answers.

Every error body is ``{"error": {"code": ..., "message": ...}}`` (sometimes with more
fields, e.g. ``reason`` or ``details``). Domain errors come from bias_store and the engine;
the few errors that only exist at the HTTP edge (limits, auth, back-pressure) are defined
here so that every module raises plain exceptions and none builds a response itself.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bias_store.errors import (
    BiasSetTooLarge,
    BiasStoreError,
    FingerprintMismatch,
    InvalidBiasSet,
    TaskNotFound,
    VersionNotFound,
)
from engine.errors import InvalidInput, UnknownTask

log = logging.getLogger(__name__)


class ServerError(Exception):
    """An error of the HTTP edge: carries its own status, code and headers."""

    status = 500
    code = "internal_error"
    headers: dict[str, str] = {}

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or dict(type(self).headers)


class LimitExceeded(ServerError):
    """A request or upload is over a configured limit; the message names the setting."""

    status = 413
    code = "limit_exceeded"


class Unauthorized(ServerError):
    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ServerError):
    status = 403
    code = "forbidden"


class Overloaded(ServerError):
    """The batch queue is full: come back later (503 + Retry-After)."""

    status = 503
    code = "overloaded"


class NotReady(ServerError):
    """Starting up or shutting down: no new work is accepted."""

    status = 503
    code = "not_ready"


class ClientGone(ServerError):
    """The client disconnected before its answer was ready (nobody reads this response)."""

    status = 499
    code = "client_closed_request"


def error_body(code: str, message: str, **extra: object) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def _json(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: object) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def domain_error_response(exc: Exception) -> JSONResponse:
    """Map one domain error (store, validator, engine) to its HTTP answer."""
    if isinstance(exc, (UnknownTask, TaskNotFound)):
        return _json(404, "task_not_found", str(exc), known_tasks=sorted(exc.known)[:20])
    if isinstance(exc, VersionNotFound):
        return _json(404, "version_not_found", str(exc), available_versions=exc.available)
    if isinstance(exc, BiasSetTooLarge):  # before InvalidBiasSet: it is a subclass
        return _json(413, "limit_exceeded", f"{exc} (BITFIT_MAX_UPLOAD_BYTES)", reason=exc.reason)
    if isinstance(exc, FingerprintMismatch):
        return _json(409, "fingerprint_mismatch", str(exc), reason=exc.reason)
    if isinstance(exc, InvalidBiasSet):
        return _json(422, "invalid_bias_set", str(exc), reason=exc.reason)
    if isinstance(exc, InvalidInput):
        return _json(422, "invalid_input", str(exc))
    if isinstance(exc, ServerError):
        return _json(exc.status, exc.code, str(exc), exc.headers)
    log.error("unexpected %s: %s", type(exc).__name__, exc)
    return _json(500, "internal_error", "internal server error; the server log has the details")


def status_of(exc: BaseException) -> int:
    """The HTTP status an exception ends up as (for metrics); a cancelled request is 499."""
    if not isinstance(exc, Exception):
        return ClientGone.status
    if isinstance(exc, RequestValidationError):
        return 422
    return domain_error_response(exc).status_code


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


def install_error_handlers(app: FastAPI) -> None:
    async def on_domain(request: Request, exc: Exception) -> JSONResponse:
        return domain_error_response(exc)

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _validation_message(exc)
        return _json(422, "validation_error", message, details=details)

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": undecodable JSON or form
            return _json(422, "validation_error", f"malformed request body: {exc.detail}")
        codes = {404: "not_found", 405: "method_not_allowed", 413: "limit_exceeded"}
        return _json(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), getattr(exc, "headers", None))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never a traceback in a response; the log keeps it for the operator.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _json(500, "internal_error", "internal server error; the server log has the details")

    for kind in (UnknownTask, InvalidInput, BiasStoreError, ServerError):
        app.add_exception_handler(kind, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
