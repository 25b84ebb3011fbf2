"""The errors of the serving edge that are not domain errors: limits, auth, back-pressure.

Plain exceptions: the serving and catalog rooms raise them, and server/http/errors.py is
the one place that turns them (and the domain errors of bias_store and the engine) into
HTTP answers.
"""

from __future__ import annotations


class ServerError(Exception):
    """An error of the HTTP edge; ``headers`` go on its answer (e.g. Retry-After)."""

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class LimitExceeded(ServerError):
    """A request or upload is over a configured limit; the message names the setting."""


class InvalidRequest(ServerError):
    """A request whose shape is wrong in a way the schema cannot say (e.g. two 'file' parts)."""


class UnsupportedMediaType(ServerError):
    """A body in a content type the route does not read (the message names the ones it does)."""


class ReadTimeout(ServerError):
    """The client sent its body too slowly (BITFIT_REQUEST_READ_TIMEOUT_S)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Connection": "close"})


class Unauthorized(ServerError):
    def __init__(self, message: str) -> None:
        super().__init__(message, {"WWW-Authenticate": "Bearer"})


class Forbidden(ServerError):
    pass


class Overloaded(ServerError):
    """The batch queue is full: come back later (Retry-After)."""


class NotReady(ServerError):
    """Starting up or shutting down: no new work is accepted."""


class GenerationNotReached(ServerError):
    """A request asked for a store generation this server has not applied in time (Retry-After)."""


class ClientGone(ServerError):
    """The client disconnected before its answer was ready (nobody reads this response)."""


class LabelChange(ServerError):
    """A new version whose labels differ from the current version's (``?allow_label_change=true`` allows it)."""

    def __init__(self, task: str, old_labels: list[str], new_labels: list[str]) -> None:
        super().__init__(
            f"task {task!r} answers with labels {old_labels}; the new version's are {new_labels}: clients relying on "
            f"the label set would break silently. Resend with ?allow_label_change=true if the change is meant"
        )
        self.old_labels, self.new_labels = old_labels, new_labels
