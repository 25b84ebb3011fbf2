"""Keeping the engine equal to the store: the start-up load, then the store's change log.

The store is the source of truth. Start-up reads its catalog (a compacted snapshot plus
the log's tail: every task's name, version and sha256) and, when eager, loads every task.
When lazy, a task is read, validated and registered on first use (``load``; the
single-flight and warm-up are server/catalog/loading.py), so start-up costs no file read per task.
A watcher thread then polls the change log every ``interval`` and applies only the entries
after the generation it has reached, so the cost of keeping up is per change, not per task
in the catalog; a change to a task that is not loaded only updates the catalog. Mutations
made through this server (server/catalog/mutations.py) take the same lock and are served at once;
their own log entries are then recognised by sha256 and skipped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable

from bias_store.changelog import Catalog, Change, LogTruncated, latest_per_task
from bias_store.errors import CorruptTask, InvalidBiasSet, StoreUnavailable, TaskNotFound, VersionNotFound
from bias_store.format import BiasSet
from bias_store.store import BiasStore, TaskRecord
from engine import Engine, TaskHandle, UnknownTask
from server.catalog.validation import UploadValidator

log = logging.getLogger(__name__)


class StoreSync:
    def __init__(
        self, store: BiasStore, engine: Engine, validator: UploadValidator, interval: float = 0.25, lazy: bool = False,
    ) -> None:
        """``lazy``: register a task on first use (``load``) instead of at start-up and on every change."""
        self.store, self.engine, self.validator = store, engine, validator
        self.interval, self.lazy = interval, lazy
        self.generation = 0  # the newest log entry applied to the engine
        self.catalog: Catalog = {}  # every stored task's current version at ``generation``, loaded or not
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
        self.catalog[record.name] = Change(record.generation, record.name, record.version, record.sha256)
        self._served[record.name] = record.sha256
        self._unservable.pop(record.name, None)
        self.unhealthy.pop(record.name, None)
        return handle

    def drop(self, name: str) -> None:
        """The task was deleted: stop serving it, if it is served (call under ``lock``)."""
        self.catalog.pop(name, None)
        self._unload(name)

    def _unload(self, name: str) -> None:
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
        self.catalog = dict(catalog)
        for name in gone:
            self.drop(name)
        for name in [n for n in self.unhealthy if n not in catalog]:
            del self.unhealthy[name]
        if self.lazy:  # only loaded or known-bad tasks need a look: the others are catalog entries
            looked = self._served.keys() | self._unservable.keys() | self.unhealthy.keys()
            changes = sorted((catalog[n] for n in looked if n in catalog), key=lambda c: c.generation)
        else:
            changes = list(catalog.values())
        return len(gone) + sum(self._apply_one(c) for c in changes)

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
            self.catalog.pop(change.task, None)
            self.unhealthy.pop(change.task, None)
            if change.task not in self._served:
                return 0
            self._unload(change.task)
            return 1
        self.catalog[change.task] = change
        if change.sha256 == self._served.get(change.task):
            self.unhealthy.pop(change.task, None)
        if change.sha256 in (self._served.get(change.task), self._unservable.get(change.task)):
            return 0  # already served (e.g. our own upload), or known not to fit this backbone
        if self.lazy and change.task not in self._served:
            self.unhealthy.pop(change.task, None)  # a new version: its first use reads it
            return 0
        try:
            bias_set = self._fetch(change)
        except _Unreadable as exc:
            # Deleted or pruned since, or stored again (a later entry clears this), or the file is gone.
            log.error("task %s: skipped, v%d cannot be loaded: %s", change.task, change.version, exc.reason)
            self.unhealthy[change.task] = exc.reason
            return 0
        except InvalidBiasSet as exc:
            # e.g. the store was filled for another backbone: serve the rest, say why once.
            log.error("task %s v%d in the store cannot be served by this backbone: %s", change.task, change.version, exc)
            self._unload(change.task)
            self._unservable[change.task] = change.sha256
            self.unhealthy[change.task] = f"version {change.version} cannot be served by this backbone: {exc}"
            return 1
        self.engine.register(bias_set, change.version, change.sha256)
        self._served[change.task] = change.sha256
        self.unhealthy.pop(change.task, None)
        return 1

    def _fetch(self, change: Change) -> BiasSet:
        """The validated bias set of a change's version: _Unreadable, or InvalidBiasSet for this backbone."""
        try:
            data = self.store.read(change.task, change.version)
        except (TaskNotFound, VersionNotFound, CorruptTask) as exc:
            raise _Unreadable(f"version {change.version} cannot be read: {exc}") from None
        if hashlib.sha256(data).hexdigest() != change.sha256:
            raise _Unreadable(f"version {change.version} does not hold the bytes the change log names")
        return self.validator(data, change.task).bias_set

    # -- lazy loading ---------------------------------------------------------------------
    def knows(self, name: str) -> bool:
        """Whether the catalog names ``name`` (loaded or not)."""
        return name in self.catalog

    def load(self, name: str) -> None:
        """Serve a catalog task that is not loaded yet (blocking: reads and validates its file).

        UnknownTask if the catalog has no such task; CorruptTask (with the reason, also kept
        in ``unhealthy``) if its stored version cannot be served. The file is read outside
        the lock, so other tasks' loads, the watcher and mutations do not wait for it; if the
        task changed meanwhile, the new version is read instead.
        """
        for _ in range(5):
            with self.lock:
                change = self.catalog.get(name)
                if name in self._served:
                    return
                if change is None:
                    raise UnknownTask(name, sorted(self.catalog)[:20])
                if self._unservable.get(name) == change.sha256:
                    raise CorruptTask(name, self.unhealthy.get(name, "its stored version cannot be served"))
            bias_set: BiasSet | None = None
            try:
                bias_set = self._fetch(change)
            except _Unreadable as exc:
                reason = exc.reason
            except InvalidBiasSet as exc:
                reason = f"version {change.version} cannot be served by this backbone: {exc}"
            with self.lock:
                if self.catalog.get(name) != change or name in self._served:
                    continue  # changed, deleted or served meanwhile: look again
                if bias_set is None:
                    log.error("task %s: v%d cannot be loaded, skipped: %s", name, change.version, reason)
                    self._unservable[name] = change.sha256
                    self.unhealthy[name] = reason
                    raise CorruptTask(name, reason)
                self.engine.register(bias_set, change.version, change.sha256)
                self._served[name] = change.sha256
                self.unhealthy.pop(name, None)
                log.info("task %s v%d loaded", name, change.version)
                return
        raise CorruptTask(name, "it kept changing while it was loaded; retry")

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
    def start(self, catalog: tuple[int, Catalog] | None = None) -> None:
        """Read the catalog (``catalog`` if the caller has just read it), load every task
        unless lazy, then follow the change log on a watcher thread."""
        generation, tasks = catalog if catalog is not None else self.store.catalog()
        with self.lock:
            count = self._apply_catalog(tasks)
        self._advance(generation)
        log.info("store %r: %d tasks in the catalog, %d loaded (%s) at generation %d", self.store, len(self.catalog), count,
                 "lazy" if self.lazy else "eager", self.generation)
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


class _Unreadable(Exception):
    """A change's stored version cannot be read back as the log names it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
