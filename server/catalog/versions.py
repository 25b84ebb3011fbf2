"""Kept versions served on request (``/predict/{task}?version=N``, OIP ``versions/N``).

The engine serves each task's current version. A request pinned to another kept version
gets a *detached* slot loaded from the store on first use; at most ``capacity`` of them are
kept (the least recently used goes first, and its slot is freed once the requests holding
it finish). An entry is valid only while its task's current file is the one it was loaded
under: any replace, rollback or delete makes the next pinned request read the store again,
so a pruned version answers 404 and a deleted task is unknown.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from bias_store.format import BiasSet
from bias_store.store import BiasStore
from engine import TaskHandle
from server.catalog.loading import TaskLoader

log = logging.getLogger(__name__)


class KeptVersions:
    def __init__(self, loader: TaskLoader, store: BiasStore, validate: Callable[[bytes, str], BiasSet], capacity: int) -> None:
        self.loader, self.engine = loader, loader.engine
        self.store, self.validate, self.capacity = store, validate, capacity
        # (task, version) -> (sha256 of the task's current file when loaded, detached handle)
        self._entries: OrderedDict[tuple[str, int], tuple[str, TaskHandle]] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()  # one store read at a time: no double loads

    def acquire(self, task: str, version: int) -> TaskHandle:
        """The handle serving ``task`` at ``version``, held until ``engine.release`` (blocking: may read the store)."""
        current = self.loader.acquire_blocking(task)  # UnknownTask (404) for a task not stored
        if current.version == version:
            return current
        self.engine.release(current)
        handle = self._cached(task, version, current.sha256)
        if handle is not None:
            return handle
        with self._load_lock:
            handle = self._cached(task, version, current.sha256)
            if handle is not None:
                return handle
            _, data = self.store.get(task, version)  # VersionNotFound (404) names the kept versions
            loaded = self.engine.register_detached(self.validate(data, task), version)
            log.info("loaded %s v%d beside the current v%d", task, version, current.version)
            with self._lock:
                self.engine.hold(loaded)  # the caller's hold, taken before anyone can evict it
                self._put((task, version), current.sha256, loaded)
        return loaded

    def _cached(self, task: str, version: int, current_sha: str) -> TaskHandle | None:
        with self._lock:
            entry = self._entries.get((task, version))
            if entry is None:
                return None
            if entry[0] != current_sha:  # the task changed since: read the store again
                self.engine.release(self._entries.pop((task, version))[1])
                return None
            self._entries.move_to_end((task, version))
            self.engine.hold(entry[1])
            return entry[1]

    def _put(self, key: tuple[str, int], current_sha: str, handle: TaskHandle) -> None:  # caller holds self._lock
        old = self._entries.pop(key, None)
        if old is not None:
            self.engine.release(old[1])
        self._entries[key] = (current_sha, handle)
        while len(self._entries) > self.capacity:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.engine.release(evicted)  # the owner's hold; requests still running keep theirs

    def clear(self) -> None:
        with self._lock:
            while self._entries:
                self.engine.release(self._entries.popitem()[1][1])
