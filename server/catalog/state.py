"""One task's life on this server: the states it moves through, held in one object.

::

    stored ──load──▶ loading ──▶ resident ──evict──▶ evicted ──load──▶ loading ...
      │                 │            │
      │                 └──fails──▶ unservable   (its current stored version cannot be served)
      └─────────── a new stored version: back to stored / replaced in place when resident

A task the store holds and this server never touched has no ``TaskState`` at all: its
catalog entry (``Change``) says all there is, so a catalog of a million tasks costs one
small tuple each. Everything else about a task lives here, in one object per task, owned
and changed only by ``TaskCatalog`` under its lock.
"""

from __future__ import annotations

import enum
from concurrent.futures import Future
from dataclasses import dataclass, field

from bias_store.changelog import Change
from engine import TaskHandle


class Residency(str, enum.Enum):
    STORED = "stored"  # in the store, not in the bias table
    LOADING = "loading"  # its file is being read and validated for a slot
    RESIDENT = "resident"  # a slot of the bias table serves its current version
    EVICTED = "evicted"  # was resident; its slot went to another task; loads again on use
    UNSERVABLE = "unservable"  # its current stored version cannot be served here (``reason``)


@dataclass(eq=False, slots=True)
class TaskState:
    name: str
    change: Change  # the store's current version of the task, as this server last applied it
    residency: Residency = Residency.STORED
    # The slot serving the task (owner-held): its current version, or while ``reason`` says
    # why the newest version failed to load, the version it served before.
    handle: TaskHandle | None = None
    reason: str | None = None  # why the task (or its newest version) cannot be served
    failed_sha256: str | None = None  # the stored file known not to load: no retry until it changes
    loading: Future | None = None  # the one load in flight (concurrent first uses share it)
    # Kept versions other than the current one, loaded for ?version=N requests (owner-held).
    pinned: dict[int, TaskHandle] = field(default_factory=dict)

    @property
    def serves_current(self) -> bool:
        """A slot serves the stored current version (the same bytes stored again as a new
        version are a new version: answers name the version that computed them)."""
        handle = self.handle
        return handle is not None and (handle.version, handle.sha256) == (self.change.version, self.change.sha256)
