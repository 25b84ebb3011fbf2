"""The background warm-up of a lazy replica: the most recently changed tasks, while slots are free.

It loads one task at a time through the catalog's own load (so a first use of the same
task shares it), takes at most one of the two load threads, and never evicts: it stops
when the free slots run out, so warm-up never pushes out a task that traffic brought in.
"""

from __future__ import annotations

import heapq
import logging
import threading

from bias_store.errors import CorruptTask, StoreUnavailable
from server.catalog.catalog import TaskCatalog
from server.catalog.state import TaskState

log = logging.getLogger(__name__)


class WarmUp:
    def __init__(self, catalog: TaskCatalog, limit: int) -> None:
        self.catalog, self.limit = catalog, limit
        self.loaded = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bitfit-warm-up", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        with self.catalog.lock:
            changes = list(self.catalog.stored.values())
        newest = heapq.nlargest(self.limit, changes, key=lambda c: c.generation)  # no sort of the catalog
        log.info("warm-up: loading up to %d tasks in the background", len(newest))
        for change in newest:
            if self._stop.is_set() or not self._load(change.task):
                break
        log.info("warm-up done: %d tasks loaded in the background", self.loaded)

    def _load(self, name: str) -> bool:
        """Load one task (False: stop warming up)."""
        c = self.catalog
        with c.lock:
            if c.engine.free_slots <= 1:  # never evict; leave a slot to first uses
                return False
            change = c.stored.get(name)
            if change is None or name in c.states:
                return True  # deleted since, or already touched by traffic
            c.states[name] = state = TaskState(name, change)
            future = c.start_load(state)
        try:
            future.result()
            self.loaded += 1
        except CorruptTask:
            pass  # reported unhealthy by the load
        except StoreUnavailable as exc:
            log.warning("warm-up stopped: %s (tasks still load on first use)", exc)
            return False
        except Exception:  # one task's failure (or change meanwhile) must not end the others' warm-up
            log.debug("warm-up: task %s not loaded", name, exc_info=True)
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
