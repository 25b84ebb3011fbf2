"""The bias store interface: list / get / put / delete / rollback / watch.

A backend keeps every task's bias sets with integer versions. ``put`` validates before
anything is written; a reader always gets one whole version. A second backend (S3, a
database) is one new file implementing ``BiasStore``.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bias_store.format import BiasSet, BiasSetMeta

# bytes, optional name override -> a validated BiasSet (see validate.validate_bytes)
Validator = Callable[[bytes, "str | None"], BiasSet]


@dataclass(frozen=True)
class TaskRecord:
    name: str
    version: int  # the version now served
    sha256: str  # of the stored file; identifies the content across delete/re-upload
    size: int  # bytes of the stored file
    meta: BiasSetMeta
    versions: tuple[int, ...]  # every version kept, oldest first


@dataclass(frozen=True)
class StoreEvent:
    kind: str  # "put" (new task or new current version) or "delete"
    name: str
    version: int | None = None


class BiasStore(abc.ABC):
    @abc.abstractmethod
    def list(self) -> list[TaskRecord]:
        """Every task at its current version, sorted by name."""

    @abc.abstractmethod
    def get(self, name: str, version: int | None = None) -> tuple[TaskRecord, bytes]:
        """One whole version of a task (the current one by default) and its file bytes."""

    @abc.abstractmethod
    def put(self, data: bytes, name: str | None = None) -> TaskRecord:
        """Validate and store a bias set as the task's next version; ``name`` overrides the metadata."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove a task and all its versions."""

    @abc.abstractmethod
    def rollback(self, name: str, version: int) -> TaskRecord:
        """Serve an earlier kept version again."""

    @abc.abstractmethod
    def state(self) -> dict[str, str]:
        """A cheap snapshot ``{task name: sha256 of its current file}`` for change detection."""

    def watch(self, interval: float = 0.5, stop: threading.Event | None = None) -> Iterator[StoreEvent]:
        """Yield changes made by anyone (this process or another) since the call began."""
        stop = stop or threading.Event()
        seen = self.state()
        while not stop.wait(interval):
            now = self.state()
            yield from diff_states(seen, now)
            seen = now


def diff_states(old: dict[str, str], new: dict[str, str]) -> Iterator[StoreEvent]:
    """Events that turn snapshot ``old`` into ``new``."""
    for name in sorted(old.keys() - new.keys()):
        yield StoreEvent("delete", name)
    for name in sorted(new):
        if old.get(name) != new[name]:
            yield StoreEvent("put", name)

