"""The bias store interface: exactly what the server and the training worker call.

A backend keeps every task's bias sets with integer versions; a reader always gets one
whole version. ``put`` stores a set the caller has already validated (``validate_upload``),
so the bytes are parsed once per upload. A second backend (S3, a database) is one new file
implementing ``BiasStore``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from bias_store.format import BiasSetMeta
from bias_store.validate import ValidatedUpload


@dataclass(frozen=True)
class TaskRecord:
    name: str
    version: int  # the version now served
    sha256: str  # of the stored file; identifies the content across delete/re-upload
    size: int  # bytes of the stored file
    meta: BiasSetMeta
    versions: tuple[int, ...]  # every version kept, oldest first
    generation: int = 0  # the change log entry of the mutation that returned this record (0: a read)


class BiasStore(abc.ABC):
    @abc.abstractmethod
    def list(self) -> list[TaskRecord]:
        """Every task at its current version, sorted by name."""

    @abc.abstractmethod
    def get(self, name: str, version: int | None = None) -> tuple[TaskRecord, bytes]:
        """One whole version of a task (the current one by default) and its file bytes."""

    @abc.abstractmethod
    def put(self, upload: ValidatedUpload) -> TaskRecord:
        """Store a validated bias set's bytes as its task's next version."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove a task and all its versions."""

    @abc.abstractmethod
    def rollback(self, name: str, version: int) -> TaskRecord:
        """Serve an earlier kept version again."""

    @abc.abstractmethod
    def state(self) -> dict[str, str]:
        """A snapshot ``{task name: sha256 of its current file}`` for change detection."""

    @abc.abstractmethod
    def generation(self) -> str:
        """A token that changes whenever anything in the store changes (cheap to poll)."""
