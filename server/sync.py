"""Keeping the engine equal to the store: the start-up load and other processes' changes.

The store is the source of truth. Changes made by any other process (a second server, the
training worker) are found by a watcher thread that polls the store's cheap
``generation()`` and then reconciles the engine with ``state()`` (task -> sha256 of its
current file). Mutations made through this server (server/mutations.py) take the same lock.
"""

from __future__ import annotations

import logging
import threading

from bias_store.errors import InvalidBiasSet, TaskNotFound
from bias_store.format import BiasSet
from bias_store.store import BiasStore, TaskRecord
from engine import Engine, TaskHandle, UnknownTask
from server.validation import UploadValidator

log = logging.getLogger(__name__)


class StoreSync:
    def __init__(self, store: BiasStore, engine: Engine, validator: UploadValidator, interval: float = 0.25) -> None:
        self.store, self.engine, self.validator = store, engine, validator
        self.interval = interval
        self.healthy = True  # False while the last sync attempt failed (reported by /readyz)
        self.lock = threading.RLock()  # a store write and its engine update happen as one step
        self._unservable: dict[str, str] = {}  # task -> sha256 of a stored file this backbone rejects
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def serve(self, bias_set: BiasSet, record: TaskRecord) -> TaskHandle:
        """Register a stored version with the engine (call under ``lock``)."""
        handle = self.engine.register(bias_set, record.version, record.sha256)
        self._unservable.pop(record.name, None)
        return handle

    def drop(self, name: str) -> None:
        """Stop serving a task, if it is served (call under ``lock``)."""
        try:
            self.engine.unregister(name)
        except UnknownTask:
            pass

    def reconcile(self) -> int:
        """Make the engine serve exactly the store's current versions; returns tasks changed."""
        changed = 0
        with self.lock:
            state = self.store.state()
            loaded = {name: handle.sha256 for name, handle in self.engine.tasks().items()}
            for name in sorted(loaded.keys() - state.keys()):
                self.drop(name)
                changed += 1
            for name, sha in sorted(state.items()):
                if loaded.get(name) == sha or self._unservable.get(name) == sha:
                    continue
                changed += self._load(name)
        return changed

    def _load(self, name: str) -> int:
        try:
            record, data = self.store.get(name)
        except TaskNotFound:
            return 0  # deleted since state(); the next generation change unregisters it
        try:
            upload = self.validator(data, name)
        except InvalidBiasSet as exc:
            # e.g. the store was filled for another backbone: serve the rest, say why once.
            log.error("task %s v%d in the store cannot be served by this backbone: %s", name, record.version, exc)
            self._unservable[name] = record.sha256
            self.drop(name)
            return 1
        self.engine.register(upload.bias_set, record.version, record.sha256)
        log.debug("loaded task %s v%d from the store", name, record.version)
        return 1

    def start(self) -> None:
        """Load every task in the store, then follow changes on a watcher thread."""
        generation = self.store.generation()
        count = self.reconcile()
        log.info("store %r: %d tasks loaded", self.store, count)
        self._thread = threading.Thread(target=self._watch, args=(generation,), name="bitfit-store-sync", daemon=True)
        self._thread.start()

    def _watch(self, seen: str) -> None:
        while not self._stop.wait(self.interval):
            try:
                generation = self.store.generation()
                if generation != seen:
                    seen = generation  # read before reconciling: later changes bump it again
                    changed = self.reconcile()
                    if changed:
                        log.info("store changed elsewhere: %d tasks updated", changed)
                self.healthy = True
            except Exception:  # keep watching: a transient FS error must not end syncing
                log.exception("store sync failed; retrying in %.2fs", self.interval)
                self.healthy = False

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
