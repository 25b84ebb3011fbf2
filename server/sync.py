"""Keeping the engine equal to the store: start-up load, own mutations, other processes' ones.

The store is the source of truth. Mutations made through this server go store first,
engine second, under one lock, so the very next request sees the new version. Changes
made by any other process (a second server, the training worker) are found by a watcher
thread that polls the store's cheap ``generation()`` and then reconciles the engine with
``state()`` (task -> sha256 of its current file).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

from bias_store.errors import InvalidBiasSet, TaskNotFound
from bias_store.filesystem import FilesystemStore
from bias_store.format import BiasSet, read_header
from bias_store.spec import BackboneSpec
from bias_store.store import TaskRecord
from bias_store.validate import validate_bytes
from engine import Engine, TaskHandle, UnknownTask
from server.metrics import Metrics

log = logging.getLogger(__name__)


class PreloadError(RuntimeError):
    """A --preload file is missing or not a valid bias set (a start-up error)."""


class RecordingValidator:
    """The store's validator: validates once and keeps the parsed BiasSet for the caller.

    ``FilesystemStore.put`` validates the bytes itself; keeping its result (per thread)
    lets the upload path register the task without parsing the file a second time.
    """

    def __init__(self, spec: BackboneSpec, max_bytes: int, metrics: Metrics) -> None:
        self.spec, self.max_bytes, self.metrics = spec, max_bytes, metrics
        self._last = threading.local()

    def __call__(self, data: bytes, name: str | None = None) -> BiasSet:
        start = time.perf_counter()
        try:
            bias_set = validate_bytes(data, self.spec, max_bytes=self.max_bytes, name=name)
        except InvalidBiasSet as exc:
            self.metrics.upload_rejections.labels(exc.reason).inc()
            raise
        finally:
            self.metrics.validation_seconds.observe(time.perf_counter() - start)
        self._last.value = bias_set
        return bias_set

    def take(self) -> BiasSet | None:
        """The BiasSet this thread validated last (and forget it)."""
        bias_set, self._last.value = getattr(self._last, "value", None), None
        return bias_set


class StoreSync:
    def __init__(self, store: FilesystemStore, engine: Engine, validator: RecordingValidator, interval: float = 0.25) -> None:
        self.store, self.engine, self.validator = store, engine, validator
        self.interval = interval
        self.healthy = True  # False while the last sync attempt failed (reported by /readyz)
        self._lock = threading.RLock()  # store write + engine update happen as one step
        self._unservable: dict[str, str] = {}  # task -> sha256 of a stored file this backbone rejects
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- mutations made through this server ------------------------------------------------
    def put(self, data: bytes, name: str | None = None) -> tuple[TaskRecord, TaskHandle]:
        """Validate, store as the next version and register it."""
        with self._lock:
            record = self.store.put(data, name)
            bias_set = self.validator.take()
            if bias_set is None:  # a backend that validates on another thread: parse the stored copy
                bias_set = self.validator(self.store.get(record.name, record.version)[1], record.name)
            handle = self.engine.register(bias_set, record.version, record.sha256)
            self._unservable.pop(record.name, None)
        return record, handle

    def delete(self, name: str) -> None:
        with self._lock:
            self.store.delete(name)
            self._unregister(name)

    def rollback(self, name: str, version: int) -> TaskRecord:
        with self._lock:
            # Validate before switching, so a version this backbone cannot serve is refused
            # instead of leaving the store and the engine disagreeing.
            _, data = self.store.get(name, version)
            bias_set = self.validator(data, name)
            record = self.store.rollback(name, version)
            self.engine.register(bias_set, record.version, record.sha256)
        return record

    def _unregister(self, name: str) -> None:
        try:
            self.engine.unregister(name)
        except UnknownTask:
            pass

    # -- catching up with the store ----------------------------------------------------------
    def reconcile(self) -> int:
        """Make the engine serve exactly the store's current versions; returns tasks changed."""
        changed = 0
        with self._lock:
            state = self.store.state()
            loaded = {name: handle.sha256 for name, handle in self.engine.tasks().items()}
            for name in sorted(loaded.keys() - state.keys()):
                self._unregister(name)
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
            bias_set = self.validator(data, name)
        except InvalidBiasSet as exc:
            # e.g. the store was filled for another backbone: serve the rest, say why once.
            log.error("task %s v%d in the store cannot be served by this backbone: %s", name, record.version, exc)
            self._unservable[name] = record.sha256
            self._unregister(name)
            return 1
        self.engine.register(bias_set, record.version, record.sha256)
        log.debug("loaded task %s v%d from the store", name, record.version)
        return 1

    def start(self) -> None:
        """Load every task in the store, then follow changes on a watcher thread."""
        generation = self.store.generation()
        count = self.reconcile()
        log.info("store %s: %d tasks loaded", self.store.root, count)
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


def preload(store: FilesystemStore, paths: list[Path]) -> None:
    """Put each file into the store unless its task already serves identical bytes."""
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PreloadError(f"--preload file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
        try:
            name = (read_header(data).get("__metadata__") or {}).get("task")
            if name and store.state().get(name) == hashlib.sha256(data).hexdigest():
                log.info("preload %s: task %s already current in the store", path, name)
                continue
            record = store.put(data)
        except InvalidBiasSet as exc:
            raise PreloadError(f"--preload file {str(path)!r} is not a valid bias set for this backbone: {exc}") from None
        log.info("preload %s: stored task %s v%d", path, record.name, record.version)
