"""The task registry: bias-table slots, their holds, and which one serves each task name.

Slots and holds (what a catalog with eviction codes against): ``load`` writes a bias set
into a free slot and returns its ``TaskHandle`` with one hold, the caller's; ``hold`` adds
one, ``release`` drops one, and at zero the slot is zeroed and reused. The encoder's own
tensors are never written. A slot is written before its handle exists and freed only after
its last release, so a forward never sees a row change under it. With a fixed table
(``grow=False``) ``load`` raises ``NoFreeSlot`` when every slot is held.

Names (scripts, training, tests; built on the same holds): ``register`` makes a loaded
handle the task's current version, the name itself keeping one hold; a request
*acquires* the current handle (one more hold), so a replacement or delete that lands
while it is queued or running does not change what it computes.

Every method may be called from any thread. Nothing on a request's path is O(tasks): a
miss hints at most ``UnknownTask.HINTS`` names, and the counts and byte totals are kept
as they change.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from bias_store.format import BiasSet, BiasSetMeta
from bias_store.kinds import InputKind, Pooling, ProblemType
from engine.backbone import Backbone
from engine.errors import UnknownTask
from engine.heads import Head
from engine.tables import BiasTable

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TaskHandle:
    """One registered version of a task: its metadata, bias-table slot and head."""

    meta: BiasSetMeta = field(repr=False)
    version: int
    sha256: str
    slot: int  # the bias-table row; rows with one slot share a head
    head: Head = field(repr=False)
    num_bytes: int = 0  # raw bytes of the bias set's tensors

    @property
    def name(self) -> str:
        return self.meta.task

    @property
    def labels(self) -> list[str]:
        return self.meta.labels

    @property
    def problem_type(self) -> ProblemType:
        return self.meta.problem_type

    @property
    def inputs(self) -> InputKind:
        return self.meta.inputs

    @property
    def pooling(self) -> Pooling:
        return self.meta.pooling


class TaskRegistry:
    def __init__(self, backbone: Backbone, capacity: int = 0, shortcuts: bool = True, grow: bool = True) -> None:
        """``capacity``: slots to start with. ``grow``: False keeps exactly ``capacity`` slots
        for the table's whole life (``NoFreeSlot`` when all are held); True grows a full
        table. ``shortcuts``: drop the key and value sites' per-row adds where that is exact
        (``engine.shortcuts``)."""
        self.backbone = backbone
        self.spec = backbone.spec
        self.table = BiasTable(backbone.encoder, capacity, backbone.spec.model_type if shortcuts else None, grow)
        self._tasks: dict[str, TaskHandle] = {}  # name -> its current handle (which the name holds once)
        self._holds: dict[TaskHandle, int] = {}  # every live handle -> its holds; gone (slot freed) at zero
        self._head_bytes = 0  # the heads of every live handle
        self._lock = threading.Lock()  # the two maps above; never held while the table copies

    def _write(self, bias_set: BiasSet, version: int, sha256: str) -> TaskHandle:
        biases = self.spec.site_biases(bias_set.tensors)
        gains = self.spec.site_gains(bias_set.tensors)  # bitfit-ln sets: LayerNorm site -> gain
        if gains and not self.table.has_gains:
            self.enable_gains()
        head = Head.from_tensors(self.spec.model_type, bias_set.tensors, self.backbone.device)
        slot = self.table.write(biases, gains)
        return TaskHandle(bias_set.meta, version, sha256, slot, head, bias_set.num_bytes)

    def enable_gains(self) -> None:
        """Widen the table with LayerNorm-gain columns (the first ``bitfit-ln`` set). The
        engine overrides this to switch its forward to the wider rows at the same moment."""
        self.table.enable_gains(self.table.layout_with_gains())

    # -- slots and holds ------------------------------------------------------------------
    def load(self, bias_set: BiasSet, version: int = 1, sha256: str = "") -> TaskHandle:
        """Write ``bias_set`` (already validated) into a free slot. The handle is served under
        no name and carries one hold, the caller's: give it back with ``release``. Raises
        ``NoFreeSlot`` when a fixed table has no free slot."""
        handle = self._write(bias_set, version, sha256)
        with self._lock:
            self._holds[handle] = 1
            self._head_bytes += handle.head.nbytes
        return handle

    register_detached = load  # the name versions.py knew it by: a version that is not the current one

    def hold(self, handle: TaskHandle) -> None:
        """One more hold on a handle that is still held (released with ``release``)."""
        with self._lock:
            if handle not in self._holds:
                raise RuntimeError(f"{handle.name} v{handle.version} (slot {handle.slot}) is not held; its slot may be reused")
            self._holds[handle] += 1

    def release(self, handle: TaskHandle) -> None:
        """Drop one hold; the last one frees the slot (zeroed, back to the free list)."""
        with self._lock:
            holds = self._holds.get(handle, 0)
            if holds == 0:
                raise RuntimeError(f"{handle.name} v{handle.version} (slot {handle.slot}) was released more often than held")
            if holds > 1:
                self._holds[handle] = holds - 1
                return
            del self._holds[handle]
            self._head_bytes -= handle.head.nbytes
        self.table.free(handle.slot)  # no hold is left, and none can be taken any more

    def holds(self, handle: TaskHandle) -> int:
        return self._holds.get(handle, 0)

    @property
    def capacity(self) -> int:
        return self.table.capacity

    @property
    def free_slots(self) -> int:
        return self.table.free_slots

    @property
    def slots_in_use(self) -> int:
        return self.table.slots_in_use

    @property
    def row_bytes(self) -> int:
        """Bytes one slot of the table costs. A task's head lives outside the table:
        ``handle.head.nbytes`` more (``handle.num_bytes`` is its stored set's raw bytes)."""
        return self.table.row_bytes

    @property
    def memory_bytes(self) -> int:
        """Bytes held for tasks: the whole bias table plus every live handle's head. On the
        CPU, slots never written are address space, not RSS (``engine.tables``)."""
        return self.table.nbytes + self._head_bytes

    # -- names ----------------------------------------------------------------------------
    def register(self, bias_set: BiasSet, version: int = 1, sha256: str = "") -> TaskHandle:
        """Make ``bias_set`` the task's current version (the name keeps the load's hold). The
        set must already be validated."""
        handle = self.load(bias_set, version, sha256)
        with self._lock:
            old = self._tasks.get(handle.name)
            self._tasks[handle.name] = handle
        if old is not None:
            self.release(old)  # the name's hold on the version it served
        log.debug("registered %s v%d in slot %d", handle.name, version, handle.slot)
        return handle

    def unregister(self, name: str) -> None:
        with self._lock:
            handle = self._tasks.pop(name, None)
            if handle is None:
                raise UnknownTask(name, self._tasks)
        self.release(handle)

    def get(self, name: str) -> TaskHandle:
        """The task's current handle, unpinned (a replacement may free its slot)."""
        with self._lock:
            handle = self._tasks.get(name)
            if handle is None:
                raise UnknownTask(name, self._tasks)
            return handle

    def acquire(self, name: str) -> TaskHandle:
        """The task's current handle, pinned until ``release``."""
        with self._lock:
            handle = self._tasks.get(name)
            if handle is None:
                raise UnknownTask(name, self._tasks)
            self._holds[handle] += 1
            return handle

    @contextlib.contextmanager
    def pinned(self, name: str) -> Iterator[TaskHandle]:
        handle = self.acquire(name)
        try:
            yield handle
        finally:
            self.release(handle)

    def tasks(self) -> dict[str, TaskHandle]:
        """A copy of every name's current handle: O(tasks), for scripts and tests."""
        with self._lock:
            return dict(self._tasks)

    @property
    def task_count(self) -> int:
        return len(self._tasks)
