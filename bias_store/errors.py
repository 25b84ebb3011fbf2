"""Errors of the bias store and its validator. The server maps them to HTTP in one place."""

from __future__ import annotations


class BiasStoreError(Exception):
    """Base class of every error this package raises."""


class InvalidBiasSet(BiasStoreError):
    """The file is not a valid bias set for this backbone (HTTP 422).

    ``reason`` is a short stable code (for metrics and clients); the message says what is
    wrong and how to fix it.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BiasSetTooLarge(InvalidBiasSet):
    """The upload exceeds the configured size limit (HTTP 413)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__("too_large", f"bias set is {size} bytes; the limit is {limit} bytes")
        self.size, self.limit = size, limit


class FingerprintMismatch(InvalidBiasSet):
    """The bias set was made for another backbone (HTTP 409)."""

    def __init__(self, got: str, expected: str) -> None:
        super().__init__(
            "fingerprint_mismatch",
            f"bias set was trained for backbone fingerprint {got}, "
            f"but this server's backbone has fingerprint {expected}",
        )
        self.got, self.expected = got, expected


class InvalidTaskName(InvalidBiasSet):
    def __init__(self, name: str) -> None:
        super().__init__(
            "bad_name",
            f"task name {name!r} is invalid: use 1-64 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit, optionally after a namespace and one '.' (acme.sentiment)",
        )


class TaskNotFound(BiasStoreError):
    """No such task (HTTP 404). ``known`` lists some task names as a hint."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f"; known tasks: {', '.join(known[:20])}" if known else "; no tasks are known"
        super().__init__(f"task {name!r} not found{hint}")
        self.name, self.known = name, known or []


class VersionNotFound(BiasStoreError):
    """The task exists but not at that version (HTTP 404)."""

    def __init__(self, name: str, version: int, available: list[int]) -> None:
        super().__init__(f"task {name!r} has no version {version}; available versions: {available}")
        self.name, self.version, self.available = name, version, available


class UnsupportedArchitecture(BiasStoreError):
    """The backbone's model_type has no entry in bias_store.sites (a start-up error)."""


class StoreUnavailable(BiasStoreError):
    """The store cannot be reached or written (HTTP 503): loaded tasks keep serving, mutations wait."""


class ConcurrentUpdate(BiasStoreError):
    """Another writer kept winning the race for the same task (HTTP 409): retry the request."""

    def __init__(self, name: str, attempts: int) -> None:
        super().__init__(f"task {name!r} was changed by other writers {attempts} times while this change was stored; retry")
        self.name = name


class CorruptTask(BiasStoreError):
    """A task's files in the store cannot be read back (HTTP 409): the task is skipped, the rest serve.

    Not an upload error: the stored bytes (or the folder) were damaged or changed outside the
    store. A new upload (PUT) or a DELETE repairs it.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"task {name!r} is unhealthy in the store: {reason}; replace (PUT) or delete it")
        self.name, self.reason = name, reason
