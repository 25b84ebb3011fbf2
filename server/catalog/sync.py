"""Keeping the catalog equal to the store: the start-up read, then the store's change log.

The store is the source of truth. Start-up reads its catalog (a compacted snapshot plus
the log's tail: every task's name, version and sha256) and loads nothing unless eager
(then every task while slots are free). A watcher thread then polls the change log every
``interval`` and applies only the entries after the generation it has reached, so keeping
up costs per change, not per task. A change to a resident task is loaded into a new slot
in the background (requests wait for it, then get the new version); a change to any other
task only updates its catalog entry. Mutations made through this server
(server/catalog/mutations.py) take ``lock`` and are applied at once; their own log entries
are then recognised (same version and sha256) and skipped.
"""

from __future__ import annotations

import gc
import logging
import threading

from bias_store.changelog import Catalog, Change, LogTruncated, latest_per_task
from bias_store.format import BiasSet
from bias_store.store import BiasStore, TaskRecord
from server.catalog.catalog import TaskCatalog
from server.catalog.generation import Generation
from server.catalog.names import SortedNames
from server.catalog.stall import PollClock, WriterLock
from server.catalog.state import Residency, TaskState

log = logging.getLogger(__name__)


class StoreSync:
    def __init__(self, store: BiasStore, catalog: TaskCatalog, interval: float = 0.25, eager: bool = False,
                 max_waiters: int = 1000) -> None:
        """``eager``: load every task (while slots are free) at start-up and on every change."""
        self.store, self.catalog, self.interval, self.eager = store, catalog, interval, eager
        self.generation = Generation(max_waiters)  # the newest log entry applied, and who waits for one
        self.error: str | None = None  # why the last poll failed (None: the store answered)
        self.clock = PollClock()  # how long the watcher's store read has waited: a frozen store shows
        self.lock = WriterLock(self.clock)  # a store write and its catalog update happen as one step
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.generation.on_wait = self.generation.wake  # a reader waiting asks for a poll now

    @property
    def healthy(self) -> bool:
        return self.error is None and not self.clock.stalled

    @property
    def problem(self) -> str | None:
        """Why the store is not healthy: its last poll failed, or the one under way waits too long."""
        return self.clock.describe() if self.clock.stalled else self.error

    @property
    def load_mode(self) -> str:
        return "eager" if self.eager else "lazy"

    # -- one change -----------------------------------------------------------------------
    def apply(self, change: Change, bias_set: BiasSet | None = None) -> int:
        """Bring one task to ``change`` (``bias_set``: its validated set, when the caller has
        it, e.g. an upload through this server); 1 if the catalog changed."""
        c = self.catalog
        with c.lock:
            if change.deleted:
                return self._drop(change.task)
            before = c.stored.get(change.task)
            if before is not None and (before.version, before.sha256) == (change.version, change.sha256) and bias_set is None:
                return 0  # already applied (e.g. our own mutation's entry)
            c.stored[change.task] = change
            if before is None:
                c.names.add(change.task)
            state = c.states.get(change.task)
            if state is None:
                if bias_set is None and not self.eager:
                    return 1  # a catalog entry: its first use loads it
                state = c.states[change.task] = TaskState(change.task, change)
            self._update(state, change, bias_set)
            return 1

    def _update(self, state: TaskState, change: Change, bias_set: BiasSet | None) -> None:  # caller holds catalog.lock
        c = self.catalog
        same_file = state.change.sha256 == change.sha256
        state.change = change
        if not same_file:
            state.reason = state.failed_sha256 = None  # a new file: known problems were the old one's
            c.troubled.discard(state.name)
            for version in list(state.pinned):  # kept versions were loaded for the old current one
                c.unload_pinned(state, version)
        if state.serves_current:
            return
        resident = state.residency in (Residency.RESIDENT, Residency.LOADING)
        if bias_set is not None and (resident or c.engine.free_slots > 0):
            c.install(state, bias_set)  # in place, or into a free slot: an upload never evicts
        elif resident or (self.eager and c.engine.free_slots > 0):
            c.start_load(state)  # requests from now on wait for it and get the new version
        elif state.residency == Residency.UNSERVABLE:
            state.residency = Residency.STORED

    def _drop(self, name: str) -> int:  # caller holds catalog.lock
        c = self.catalog
        if c.stored.pop(name, None) is None:
            return 0
        c.names.discard(name)
        state = c.forget(name)
        if state is not None:
            c.unload(state)  # requests already holding its slot finish with it
        c.on_drop(name)
        return 1

    def stored(self, record: TaskRecord, bias_set: BiasSet) -> None:
        """A version stored through this server (call under ``lock``): served by the next request."""
        self.apply(Change(record.generation, record.name, record.version, record.sha256), bias_set)

    def dropped(self, name: str) -> None:
        """A task deleted through this server (call under ``lock``)."""
        with self.catalog.lock:
            self._drop(name)

    # -- catching up ----------------------------------------------------------------------
    def reset(self, catalog: Catalog) -> int:
        """Make the catalog the store's ``catalog`` (start-up, or after falling behind)."""
        c = self.catalog
        changed = 0
        with self.lock, c.lock:
            for name in [n for n in c.stored if n not in catalog]:
                changed += self._drop(name)
            c.stored = dict(catalog)
            c.names = SortedNames(c.stored)
            for name, state in list(c.states.items()):  # the touched tasks: each to its stored version
                if state.change != catalog[name] or not state.serves_current:
                    self._update(state, catalog[name], None)
                    changed += 1
            if self.eager:  # every other task too, while slots are free (never evicting)
                for change in catalog.values():
                    if c.engine.free_slots <= len(c.loading()):
                        break
                    if change.task not in c.states:
                        c.states[change.task] = state = TaskState(change.task, change)
                        c.start_load(state)
                        changed += 1
        return changed

    def reload(self) -> int:
        generation, catalog = self.store.catalog()
        changed = self.reset(catalog)
        self._settle_loads()
        self.generation.advance(generation)
        return changed

    def poll(self) -> int:
        """Apply the log entries after our generation; returns tasks changed."""
        # The log is read under the lock: read before it, a change list could predate a
        # mutation that lands meanwhile, and applying it would serve the older version
        # again after that mutation's answer (a replace answered 201, then v-1 served).
        with self.lock:
            try:
                with self.clock.timing():
                    changes = self.store.changes(self.generation.value)
            except LogTruncated:
                log.warning("fell behind the compacted change log at generation %d; reloading the catalog", self.generation.value)
                return self.reload()
            if not changes:
                return 0
            changed = sum(self.apply(c) for c in latest_per_task(changes))
        self._settle_loads()
        self.generation.advance(changes[-1].generation)
        return changed

    def _settle_loads(self) -> None:
        """Wait for the loads the applied changes started: a generation counts as applied once
        every resident task serves it (a failed load is that task's reason, not the poll's)."""
        with self.catalog.lock:
            loads = self.catalog.loading()
        for future in loads:
            future.exception()

    # -- the watcher --------------------------------------------------------------------------
    def start(self, catalog: tuple[int, Catalog] | None = None) -> None:
        """Read the catalog (``catalog`` if the caller has just read it), then follow the
        change log on a watcher thread."""
        generation, tasks = catalog if catalog is not None else self.store.catalog()
        self.reset(tasks)
        # The catalog's entries live as long as the process: keep them out of the cyclic
        # GC's full collections (a million of them made each one a ~1-2 s pause of every
        # thread). Refcounting still frees them when a task goes.
        gc.collect()
        gc.freeze()
        self._settle_loads()  # eager: ready means loaded
        self.generation.advance(generation)
        log.info("store %r: %d tasks in the catalog (%s) at generation %d", self.store, len(tasks), self.load_mode,
                 self.generation.value)
        self._thread = threading.Thread(target=self._watch, name="bitfit-store-sync", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.generation.sleep(self.interval)
            if self._stop.is_set():
                return
            try:
                changed = self.poll()
                if changed:
                    log.info("store changed elsewhere: %d tasks updated (generation %d)", changed, self.generation.value)
                if self.error is not None:
                    log.warning("store reachable again; caught up to generation %d", self.generation.value)
                self.error = None
            except Exception as exc:  # keep watching: the store may come back
                if self.error is None:
                    log.exception("store sync failed; retrying every %.2fs", self.interval)
                self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stop.set()
        self.generation.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
