"""The task catalog: every stored task, and the life cycle of the ones this server touched.

One class owns per-task state (``TaskState``, one object per task) and the one door every
route goes through: ``acquire(name, version=None)`` pins the handle that will compute a
request, ``release`` unpins it. The bias table has a fixed number of slots (the resident
budget); when a load finds none free, the least recently used slot that no in-flight
request holds is evicted (its task becomes ``evicted`` and loads again on its next use).
A slot held by a request is never taken: an evicted task's rows stay valid until the
requests that pinned them finish.

Loads run on a small pool of their own, one per task at a time (concurrent first uses
share it), reading the store outside the lock, so neither the event loop, the request
thread pool nor other tasks wait on the store. The store's changes arrive through
``reset``/``apply`` (server/catalog/sync.py: the watcher's and mutations' side).
"""
# size: one state machine (acquire, load, evict, release) whose steps share one lock and read as one

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from bias_store.changelog import Change
from bias_store.errors import CorruptTask
from bias_store.format import BiasSet
from engine import Engine, TaskHandle, UnknownTask
from engine.errors import NoFreeSlot
from server.catalog.host_tier import HostTier
from server.catalog.names import SortedNames
from server.catalog.state import Residency, TaskState
from server.catalog.validation import Rejected, Unreadable

log = logging.getLogger(__name__)

LOAD_THREADS = 2  # loads at once (the warm-up takes one at most, so first uses get the other)
HINTS = 20  # names a 404 suggests: neighbours of the asked name, never a sort of the catalog
Slot = str | tuple[str, int]  # an LRU key: a task's current slot, or (task, version) for a pinned one


class CatalogStats:
    """Counters the metrics read at scrape time (plain ints: one writer, the catalog's lock)."""

    def __init__(self) -> None:
        self.hits = self.misses = self.evictions = self.loads = self.load_failures = 0
        self.on_load: Callable[[float], None] = lambda seconds: None  # the cold-load latency histogram


class TaskCatalog:
    def __init__(
        self, engine: Engine, load: Callable[[Change], BiasSet], load_kept: Callable[[str, int], tuple[BiasSet, str]],
        max_pinned: int = 8, host_tier: HostTier | None = None,
    ) -> None:
        """``load(change)``: the validated bias set of a stored version (Unreadable or Rejected);
        ``load_kept(name, version)``: a kept version's set and sha256 (VersionNotFound)."""
        self.engine, self._read, self.read_kept, self.max_pinned = engine, load, load_kept, max_pinned
        self.host_tier = host_tier  # validated sets kept in host memory under the slots (host_tier.py)
        self.lock = threading.RLock()
        self.stored: dict[str, Change] = {}  # every stored task's current version
        self.names = SortedNames()
        self.states: dict[str, TaskState] = {}  # the tasks this server touched
        self._lru: OrderedDict[Slot, None] = OrderedDict()  # resident slots, least recently used first
        self.pinned_count = 0  # kept-version slots held (at most max_pinned)
        self._reserved = 0  # free slots that loads made room for and are writing now
        self._in_flight: dict[str, Future] = {}  # an index of the states' loads: no walk of every state
        self.resident = 0  # tasks whose (current or older) version a slot serves
        self.troubled: set[str] = set()  # an index of the states with a ``reason``: health answers never walk them all
        self._pool = ThreadPoolExecutor(LOAD_THREADS, thread_name_prefix="bitfit-load")
        self.stats = CatalogStats()
        self.on_drop: Callable[[str], None] = lambda name: None  # told when a task leaves the catalog

    # -- the one door ---------------------------------------------------------------------
    async def acquire(self, name: str, version: int | None = None) -> TaskHandle:
        """The handle computing a request for ``name`` (its current version, or a kept
        ``version``), held until ``release``; loads it first when it is not resident."""
        if version is not None:  # may read the store for a kept version: off the event loop (the request's context kept)
            return await asyncio.to_thread(self.acquire_blocking, name, version)
        for _ in range(5):
            got = self._pin_or_load(name)
            if isinstance(got, TaskHandle):
                return got
            try:  # shielded: a client that goes away must not cancel a load others wait for
                await asyncio.shield(asyncio.wrap_future(got))
            except (CorruptTask, _Changed):
                pass  # looked at again: an older version may still serve, or the reason is raised
        raise CorruptTask(name, "it kept changing while it was loaded; retry")

    def acquire_blocking(self, name: str, version: int | None = None) -> TaskHandle:
        """``acquire`` for a worker thread (never on the event loop)."""
        if version is not None:
            from server.catalog.pinned import acquire_pinned  # the kept-version path

            return acquire_pinned(self, name, version)
        for _ in range(5):
            got = self._pin_or_load(name)
            if isinstance(got, TaskHandle):
                return got
            try:
                got.result()
            except (CorruptTask, _Changed):
                pass
        raise CorruptTask(name, "it kept changing while it was loaded; retry")

    def release(self, handle: TaskHandle) -> None:
        self.engine.release(handle)

    def _pin_or_load(self, name: str) -> TaskHandle | Future:
        """The pinned handle if one serves ``name``; else the load to wait for."""
        with self.lock:
            change = self.stored.get(name)
            if change is None:
                raise UnknownTask(name, self.names.near(name, HINTS))
            state = self.states.get(name)
            if state is None:
                state = self.states[name] = TaskState(name, change)
            if state.handle is not None and (state.serves_current or state.failed_sha256 == change.sha256):
                self.engine.hold(state.handle)  # current, or the older version kept serving while the newest fails
                self._touch(name)
                self.stats.hits += 1
                return state.handle
            if state.failed_sha256 == change.sha256:
                raise CorruptTask(name, state.reason or "its stored version cannot be served")
            if state.loading is None:
                self.stats.misses += 1
                self.start_load(state)
            return state.loading

    # -- loading and eviction -----------------------------------------------------------
    def start_load(self, state: TaskState) -> Future:  # caller holds self.lock
        """Read ``state``'s current version into a slot in the background (one load per task)."""
        if state.loading is None:
            if state.residency != Residency.RESIDENT:
                state.residency = Residency.LOADING
            state.loading = self._in_flight[state.name] = self._pool.submit(self._load, state.name, state.change)
        return state.loading

    def _load(self, name: str, change: Change) -> None:
        started = time.perf_counter()
        bias_set, failure = None, None
        try:
            bias_set = self._read_through(change)
        except (Unreadable, Rejected) as exc:
            failure = exc
        except BaseException:
            with self.lock:  # the store as a whole (unreachable): nothing is known about the task
                self._settle(name, change)
            raise
        handle = None
        try:
            if failure is None:  # the slot is written outside the lock: requests keep acquiring meanwhile
                handle = self._slot_for(bias_set, change)
        except BaseException:
            with self.lock:  # every slot held by requests in flight: nothing changed for the task
                self._settle(name, change)
            raise
        with self.lock:
            state = self._settle(name, change)
            if state is None or state.change != change:
                if handle is not None:
                    self.engine.release(handle)
                raise _Changed(name)  # deleted or changed meanwhile: the waiters look again
            if failure is not None:
                self._fail(state, failure)
                raise CorruptTask(name, failure.reason)
            self._adopt(state, handle)
        self.stats.loads += 1
        self.stats.on_load(time.perf_counter() - started)
        # debug: a cold load is routine (bitfit_cold_loads_total and its latency histogram count them)
        log.debug("task %s v%d loaded in %.1f ms", name, change.version, 1000 * (time.perf_counter() - started))

    def _read_through(self, change: Change) -> BiasSet:
        """The change's validated set: from the host tier when it holds it, else the store's."""
        tier = self.host_tier
        bias_set = tier.get(change.task, change.sha256) if tier is not None else None
        if bias_set is None:
            bias_set = self._read(change)
            if tier is not None:
                tier.put(change.task, change.sha256, bias_set)
        return bias_set

    def _settle(self, name: str, change: Change) -> TaskState | None:  # caller holds self.lock
        state = self.states.get(name)
        if state is not None and state.loading is not None:
            self._in_flight.pop(name, None)
            state.loading = None
            if state.residency == Residency.LOADING:
                state.residency = Residency.RESIDENT if state.handle is not None else Residency.STORED
        return state

    def _fail(self, state: TaskState, failure: Unreadable | Rejected) -> None:  # caller holds self.lock
        self.stats.load_failures += 1
        log.error("task %s: v%d cannot be loaded: %s", state.name, state.change.version, failure.reason)
        state.reason, state.failed_sha256 = failure.reason, state.change.sha256
        self.troubled.add(state.name)
        if isinstance(failure, Rejected) or state.handle is None:
            self.unload(state)  # nothing this backbone can serve
            state.residency = Residency.UNSERVABLE

    def _slot_for(self, bias_set: BiasSet, change: Change) -> TaskHandle:
        """A slot written with ``bias_set``, held once (its owner's): room is made and reserved
        under the lock, the row (the costly part, ~1 ms for MiniLM) built and written outside it."""
        with self.lock:
            self.make_room()  # NoFreeSlot (503) only when every slot is held by a request in flight
            self._reserved += 1  # this slot is spoken for: another load makes room of its own
        try:
            return self.engine.load(bias_set, change.version, change.sha256)
        finally:
            with self.lock:
                self._reserved -= 1

    def install(self, state: TaskState, bias_set: BiasSet) -> None:  # caller holds self.lock
        """Serve ``bias_set`` (``state.change``'s version) from a slot, replacing any older one."""
        self.make_room()  # NoFreeSlot (503) only when every slot is held by a request in flight
        self._adopt(state, self.engine.load(bias_set, state.change.version, state.change.sha256))

    def _adopt(self, state: TaskState, handle: TaskHandle) -> None:  # caller holds self.lock
        """``handle`` (``state.change``'s version, owner-held) now serves the task."""
        self.unload(state)
        state.handle, state.residency, state.reason, state.failed_sha256 = handle, Residency.RESIDENT, None, None
        self.troubled.discard(state.name)
        self.resident += 1
        self._touch(state.name)

    def make_room(self) -> None:  # caller holds self.lock
        """Make sure a slot is free beyond those reserved by loads writing theirs: evict the
        least recently used slots no request holds (the oldest first, no copy of the order)."""
        while self.engine.free_slots <= self._reserved:
            victim = next((key for key in self._lru if self._evictable(key)), None)
            if victim is None:
                raise NoFreeSlot(self.engine.capacity)  # every slot is held by a request in flight
            self._evict(victim)

    def _evictable(self, key: Slot) -> bool:
        handle = self._slot_handle(key)
        return handle is None or self.engine.holds(handle) <= 1  # held by a request: never taken from under it

    def _evict(self, key: Slot) -> None:
        self._lru.pop(key, None)
        self.stats.evictions += 1
        if isinstance(key, tuple):
            state = self.states.get(key[0])
            if state is not None and key[1] in state.pinned:
                self.unload_pinned(state, key[1])
            return
        state = self.states[key]
        if state.handle is not None:
            self._release_current(state)
            state.residency = Residency.EVICTED
            log.debug("task %s evicted", key)

    def _slot_handle(self, key: Slot) -> TaskHandle | None:
        if isinstance(key, tuple):
            state = self.states.get(key[0])
            return state.pinned.get(key[1]) if state is not None else None
        state = self.states.get(key)
        return state.handle if state is not None else None

    def _touch(self, key: Slot) -> None:
        self._lru[key] = None
        self._lru.move_to_end(key)

    def unload(self, state: TaskState) -> None:  # caller holds self.lock
        """Give back every slot of the task (requests holding one keep it until they finish)."""
        if state.handle is not None:
            self._release_current(state)
            self._lru.pop(state.name, None)
        for version in list(state.pinned):
            self.unload_pinned(state, version)

    def _release_current(self, state: TaskState) -> None:  # caller holds self.lock
        self.engine.release(state.handle)  # the owner's hold: requests holding it finish with it
        state.handle = None
        self.resident -= 1

    def unload_pinned(self, state: TaskState, version: int) -> None:  # caller holds self.lock
        self._lru.pop((state.name, version), None)
        self.pinned_count -= 1
        self.engine.release(state.pinned.pop(version))

    def pin(self, state: TaskState, version: int, bias_set: BiasSet, sha256: str) -> TaskHandle:  # caller holds self.lock
        """A slot for a kept version of the task (held once for the caller), within ``max_pinned``."""
        while self.pinned_count >= self.max_pinned:
            oldest = next((key for key in self._lru if isinstance(key, tuple)), None)
            if oldest is None:
                break
            self._evict(oldest)
        self.make_room()
        handle = self.engine.load(bias_set, version, sha256)
        state.pinned[version] = handle
        self.pinned_count += 1
        self._touch((state.name, version))
        self.engine.hold(handle)
        return handle

    def touch_pinned(self, state: TaskState, version: int) -> TaskHandle | None:  # caller holds self.lock
        handle = state.pinned.get(version)
        if handle is not None:
            self.engine.hold(handle)
            self._touch((state.name, version))
        return handle

    def loading(self) -> list[Future]:  # caller holds self.lock
        return list(self._in_flight.values())

    def forget(self, name: str) -> TaskState | None:  # caller holds self.lock
        """The task left the catalog: its state goes (its slots are the caller's to give back)."""
        self._in_flight.pop(name, None)
        self.troubled.discard(name)
        return self.states.pop(name, None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Changed(Exception):
    """The task changed or was deleted while it loaded (its waiters look it up again)."""
