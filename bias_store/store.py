"""The bias store interface: exactly what the server and the training worker call.

A backend keeps every task's bias sets with integer versions; a reader always gets one
whole version. ``put`` stores a set the caller has already validated (``validate_upload``),
so the bytes are parsed once per upload. Every mutation appends one entry to the store's
change log (changelog.py), which replicas tail instead of scanning the catalog.
Backends: ``backends/folder/`` (a folder) and ``backends/s3/`` (an S3 prefix), over the shared
``backends/base.py``; ``open_store`` picks one by URL.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

from bias_store.changelog import Catalog, Change
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
    def read(self, name: str, version: int) -> bytes:
        """The file bytes of one stored version (what a replica loads for a log entry)."""

    @abc.abstractmethod
    def put(self, upload: ValidatedUpload) -> TaskRecord:
        """Store a validated bias set's bytes as its task's next version; logs one change."""

    @abc.abstractmethod
    def delete(self, name: str) -> int:
        """Remove a task and all its versions; logs one change and returns its generation."""

    @abc.abstractmethod
    def rollback(self, name: str, version: int, check: Callable[[bytes], object] | None = None) -> TaskRecord:
        """Serve an earlier kept version again; logs one change. ``check(data)`` runs on its
        bytes before the switch, atomically with it (the caller's validation)."""

    def writable(self) -> bool:
        """Whether mutations can be stored now (True unless the backend knows otherwise)."""
        return True

    def problems(self) -> dict[str, str]:
        """Tasks the store holds but cannot read back, with the reason (none by default)."""
        return {}

    @abc.abstractmethod
    def generation(self) -> int:
        """The newest change log generation (0: nothing was ever stored)."""

    @abc.abstractmethod
    def changes(self, after: int) -> list[Change]:
        """The log entries after generation ``after``, oldest first; LogTruncated if compacted away."""

    @abc.abstractmethod
    def catalog(self) -> tuple[int, Catalog]:
        """Every task's current version and the generation they are at (snapshot + tail)."""

    def state(self) -> dict[str, str]:
        """``{task name: sha256 of its current file}``."""
        return {name: change.sha256 for name, change in self.catalog()[1].items()}
