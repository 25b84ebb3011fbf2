"""Keeping the engine equal to the store: the start-up load, then the store's change log.

The store is the source of truth. Start-up reads its catalog (a compacted snapshot plus
the log's tail) and loads every task. A watcher thread then polls the change log every
``interval`` and applies only the entries after the generation it has reached, so the
cost of keeping up is per change, not per task in the catalog. Mutations made through
this server (server/mutations.py) take the same lock and are served at once; their own
log entries are then recognised by sha256 and skipped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable

from bias_store.changelog import Catalog, Change, LogTruncated, latest_per_task
from bias_store.errors import InvalidBiasSet, StoreUnavailable, TaskNotFound, VersionNotFound
from bias_store.format import BiasSet
from bias_store.store import BiasStore, TaskRecord
from engine import Engine, TaskHandle, UnknownTask
from server.validation import UploadValidator

log = logging.getLogger(__name__)


class StoreSync:
    def __init__(self, store: BiasStore, engine: Engine, validator: UploadValidator, interval: float = 0.25) -> None:
        self.store, self.engine, self.validator = store, engine, validator
        self.interval = interval
        self.generation = 0  # the newest log entry applied to the engine
        self.error: str | None = None  # why the last poll failed (None: the store answered)
        self.lock = threading.RLock()  # a store write and its engine update happen as one step
        self._unservable: dict[str, str] = {}  # task -> sha256 of a stored file this backbone rejects
        # task -> sha256 served: the engine's tasks as this sync made them, looked up in O(1)
        # (an engine miss raises UnknownTask listing every task: O(n) per new task at start-up).
        self._served: dict[str, str] = {}
        # task -> why its current stored version cannot be served (reported by /readyz and
        # GET /tasks); the task keeps serving what it served before, if anything.
        self.unhealthy: dict[str, str] = {}
        self.on_drop: Callable[[str], None] = lambda name: None  # told when a task stops being served
        self._advanced = threading.Condition()
        self._wake = threading.Event()  # a reader waiting for a generation asks for a poll now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def healthy(self) -> bool:
        return self.error is None

    def serve(self, bias_set: BiasSet, record: TaskRecord) -> TaskHandle:
        """Register a stored version with the engine (call under ``lock``)."""
        handle = self.engine.register(bias_set, record.version, record.sha256)
        self._served[record.name] = record.sha256
        self._unservable.pop(record.name, None)
        self.unhealthy.pop(record.name, None)
        return handle

    def drop(self, name: str) -> None:
        """Stop serving a task, if it is served (call under ``lock``)."""
        self._served.pop(name, None)
        self.unhealthy.pop(name, None)
        try:
            self.engine.unregister(name)
        except UnknownTask:
            pass
        self.on_drop(name)

    # -- catching up ----------------------------------------------------------------------
    def reload(self) -> int:
        """Make the engine serve exactly the store's catalog; returns tasks changed."""
        generation, catalog = self.store.catalog()
        with self.lock:
            changed = self._apply_catalog(catalog)
        self._advance(generation)
        return changed

    def _apply_catalog(self, catalog: Catalog) -> int:
        gone = sorted(self._served.keys() - catalog.keys())
        for name in gone:
            self.drop(name)
        for name in [n for n in self.unhealthy if n not in catalog]:
            del self.unhealthy[name]
        return len(gone) + sum(self._apply_one(c) for c in catalog.values())

    def poll(self) -> int:
        """Apply the log entries after our generation; returns tasks changed."""
        # The log is read under the lock: read before it, a change list could predate a
        # mutation that lands meanwhile, and applying it would serve the older version
        # again after that mutation's answer (a replace answered 201, then v-1 served).
        with self.lock:
            try:
                changes = self.store.changes(self.generation)
            except LogTruncated:
                log.warning("fell behind the compacted change log at generation %d; reloading the catalog", self.generation)
                return self.reload()
            if not changes:
                return 0
            changed = sum(self._apply_one(c) for c in latest_per_task(changes))
        self._advance(changes[-1].generation)
        return changed

    def _apply_one(self, change: Change) -> int:
        """``_apply``, but one bad task never stops the others (nor the log's progress)."""
        try:
            return self._apply(change)
        except (StoreUnavailable, LogTruncated):
            raise  # the store as a whole: the watcher reports it and retries
        except Exception as exc:
            log.error("task %s: skipped, its stored version %s cannot be loaded: %s", change.task, change.version, exc)
            self.unhealthy[change.task] = str(exc)
            return 0

    def _apply(self, change: Change) -> int:
        """Bring one task to ``change``; 1 if the engine changed."""
        if change.deleted:
            self.unhealthy.pop(change.task, None)
            if change.task not in self._served:
                return 0
            self.drop(change.task)
            return 1
        if change.sha256 == self._served.get(change.task):
            self.unhealthy.pop(change.task, None)
        if change.sha256 in (self._served.get(change.task), self._unservable.get(change.task)):
            return 0  # already served (e.g. our own upload), or known not to fit this backbone
        try:
            data = self.store.read(change.task, change.version)
        except (TaskNotFound, VersionNotFound) as exc:
            # Deleted or pruned since (a later entry clears this), or the file is gone.
            self.unhealthy[change.task] = f"version {change.version} cannot be read: {exc}"
            return 0
        if hashlib.sha256(data).hexdigest() != change.sha256:
            # Deleted and stored again since (a later entry clears this), or the file changed.
            self.unhealthy[change.task] = f"version {change.version} does not hold the bytes the change log names"
            return 0
        try:
            upload = self.validator(data, change.task)
        except InvalidBiasSet as exc:
            # e.g. the store was filled for another backbone: serve the rest, say why once.
            log.error("task %s v%d in the store cannot be served by this backbone: %s", change.task, change.version, exc)
            self.drop(change.task)
            self._unservable[change.task] = change.sha256
            self.unhealthy[change.task] = f"version {change.version} cannot be served by this backbone: {exc}"
            return 1
        self.engine.register(upload.bias_set, change.version, change.sha256)
        self._served[change.task] = change.sha256
        self.unhealthy.pop(change.task, None)
        return 1

    def _advance(self, generation: int) -> None:
        with self._advanced:
            self.generation = max(self.generation, generation)
            self._advanced.notify_all()

    def wait_for(self, generation: int, timeout: float) -> bool:
        """Block until the engine has applied ``generation`` (read-your-writes); False on timeout."""
        with self._advanced:
            if self.generation >= generation:
                return True
            self._wake.set()
            return self._advanced.wait_for(lambda: self.generation >= generation, timeout)

    # -- the watcher --------------------------------------------------------------------------
    def start(self) -> None:
        """Load every task in the store, then follow the change log on a watcher thread."""
        count = self.reload()
        log.info("store %r: %d tasks loaded at generation %d", self.store, count, self.generation)
        self._thread = threading.Thread(target=self._watch, name="bitfit-store-sync", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                changed = self.poll()
                if changed:
                    log.info("store changed elsewhere: %d tasks updated (generation %d)", changed, self.generation)
                if self.error is not None:
                    log.warning("store reachable again; caught up to generation %d", self.generation)
                self.error = None
            except Exception as exc:  # keep watching: the store may come back
                if self.error is None:
                    log.exception("store sync failed; retrying every %.2fs", self.interval)
                self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
