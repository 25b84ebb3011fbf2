"""Getting a task's handle for a request: loaded on first use when lazy, once per task.

With ``--load lazy`` a replica is ready once it has read the store's catalog; a task's bias
set is read, validated and registered by the first request that needs it (the request
waits for it). Concurrent first requests for one task share one load (a future per task);
loads run on a small pool of their own, so neither the event loop nor the request thread
pool waits on the store, and a stampede of first requests cannot take every thread.
An optional warm-up thread then loads the rest of the catalog one task at a time, taking
at most one of the pool's threads, so first requests still get the other.

A task that cannot be loaded answers 409 ``task_unhealthy`` with the reason (and is listed
in GET /tasks ``unhealthy`` and /readyz ``unhealthy_tasks``); every other task serves.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from bias_store.errors import CorruptTask, StoreUnavailable
from engine import Engine, TaskHandle, UnknownTask
from server.catalog.sync import StoreSync

log = logging.getLogger(__name__)

LOAD_THREADS = 2  # first-use loads at once (one is left to requests while warming up)


class TaskLoader:
    def __init__(self, sync: StoreSync, engine: Engine) -> None:
        self.sync, self.engine = sync, engine
        self._pool = ThreadPoolExecutor(LOAD_THREADS, thread_name_prefix="bitfit-load")
        self._loading: dict[str, Future] = {}  # task -> its load in flight
        # Re-entrant: a load that is already done runs its callback (_done) inside submit.
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._warmer: threading.Thread | None = None
        self.warmed = 0  # tasks the warm-up loaded

    def _unavailable(self, name: str, exc: UnknownTask) -> Exception | None:
        """Why a task that is not loaded cannot be served now (None: it can be loaded)."""
        if self.sync.lazy and self.sync.knows(name):
            return None
        reason = self.sync.unhealthy.get(name)
        if reason is not None:
            return CorruptTask(name, reason)  # 409 with why, not a bare 404
        if self.sync.lazy:  # hint stored tasks, not just the loaded ones
            return UnknownTask(name, list(itertools.islice(self.sync.catalog, 20)))
        return exc

    def submit(self, name: str) -> Future:
        """The task's load in flight, started if none is (one per task at a time)."""
        with self._lock:
            future = self._loading.get(name)
            if future is None:
                future = self._loading[name] = self._pool.submit(self.sync.load, name)
                future.add_done_callback(lambda _: self._done(name))
            return future

    def _done(self, name: str) -> None:
        with self._lock:
            self._loading.pop(name, None)

    def _pinned(self, name: str) -> TaskHandle | None:
        """The task's handle, pinned, if it is loaded; None if it must be loaded first; the
        reason it cannot be served otherwise."""
        try:
            return self.engine.acquire(name)
        except UnknownTask as exc:
            problem = self._unavailable(name, exc)
            if problem is not None:
                raise problem from None
        return None

    async def acquire(self, name: str) -> TaskHandle:
        """The task's current handle, pinned until ``engine.release``; loads it first if needed."""
        if (handle := self._pinned(name)) is not None:
            return handle
        # Shielded: a client that goes away must not cancel the load others wait for.
        await asyncio.shield(asyncio.wrap_future(self.submit(name)))
        return self.engine.acquire(name)  # UnknownTask if deleted since

    def acquire_blocking(self, name: str) -> TaskHandle:
        """``acquire`` for a worker thread (never on the event loop)."""
        if (handle := self._pinned(name)) is not None:
            return handle
        self.submit(name).result()
        return self.engine.acquire(name)

    # -- warm-up ------------------------------------------------------------------------
    def start_warm_up(self, limit: int) -> None:
        """Load up to ``limit`` catalog tasks in the background, one at a time, the most
        recently changed first (the likeliest to be used)."""
        self._warmer = threading.Thread(target=self._warm_up, args=(limit,), name="bitfit-warm-up", daemon=True)
        self._warmer.start()

    def _warm_up(self, limit: int) -> None:
        with self.sync.lock:
            newest = sorted(self.sync.catalog.values(), key=lambda c: c.generation, reverse=True)[:limit]
        log.info("warm-up: loading %d tasks in the background", len(newest))
        for name in (c.task for c in newest):
            if self._stop.is_set():
                return
            try:
                self.submit(name).result()
                self.warmed += 1
            except (UnknownTask, CorruptTask):
                continue  # deleted since, or reported unhealthy by the load
            except StoreUnavailable as exc:
                log.warning("warm-up stopped: %s (tasks still load on first use)", exc)
                return
            except Exception:  # a bug in one task's load must not end the others' warm-up
                log.exception("warm-up: task %s failed to load", name)
        log.info("warm-up done: %d tasks loaded in the background", self.warmed)

    def close(self) -> None:
        self._stop.set()
        if self._warmer is not None:
            self._warmer.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
