"""The task registry: which bias-table slot and head serve each task's current version.

Registering a task writes one row of the bias table plus its head; the encoder's own
tensors are never written. A request *acquires* the task's current handle (pinning its
slot), so a replacement or delete that lands while it is queued or running does not
change what it computes: the old slot is freed only when its last holder releases it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import defaultdict
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
    def __init__(self, backbone: Backbone, capacity: int = 0, shortcuts: bool = True) -> None:
        """``shortcuts``: drop the key and value sites' per-row adds where that is exact
        (``engine.shortcuts``)."""
        self.backbone = backbone
        self.spec = backbone.spec
        self.table = BiasTable(backbone.encoder, capacity, backbone.spec.model_type if shortcuts else None)
        self._tasks: dict[str, TaskHandle] = {}
        self._holders: dict[int, int] = defaultdict(int)  # slot -> requests holding it
        self._retired: set[int] = set()  # slots replaced or deleted, freed at zero holders
        self._lock = threading.Lock()  # task map and slot bookkeeping

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

    def register(self, bias_set: BiasSet, version: int = 1, sha256: str = "") -> TaskHandle:
        """Make ``bias_set`` the task's current version. The set must already be validated."""
        handle = self._write(bias_set, version, sha256)
        with self._lock:
            old = self._tasks.get(handle.name)
            self._tasks[handle.name] = handle
            if old is not None:
                self._retire(old.slot)
        log.debug("registered %s v%d in slot %d", handle.name, version, handle.slot)
        return handle

    def register_detached(self, bias_set: BiasSet, version: int, sha256: str = "") -> TaskHandle:
        """A slot for a version that is *not* the task's current one (a version-pinned request).

        The handle is not served under its name. The caller owns one hold on it and gives
        it back with ``release``; the slot is freed once that and every request's hold
        (``hold``) are released.
        """
        handle = self._write(bias_set, version, sha256)
        with self._lock:
            self._holders[handle.slot] += 1
            self._retired.add(handle.slot)
        return handle

    def hold(self, handle: TaskHandle) -> None:
        """Pin an already-held handle once more (released with ``release``)."""
        with self._lock:
            if not self._holders.get(handle.slot):
                raise RuntimeError(f"slot {handle.slot} is not held; it may be reused")
            self._holders[handle.slot] += 1

    def unregister(self, name: str) -> None:
        with self._lock:
            handle = self._tasks.pop(name, None)
            if handle is None:
                raise UnknownTask(name, list(self._tasks))
            self._retire(handle.slot)

    def _retire(self, slot: int) -> None:  # caller holds self._lock
        if self._holders.get(slot):
            self._retired.add(slot)
        else:
            self.table.free(slot)

    def tasks(self) -> dict[str, TaskHandle]:
        with self._lock:
            return dict(self._tasks)

    def get(self, name: str) -> TaskHandle:
        with self._lock:
            try:
                return self._tasks[name]
            except KeyError:
                raise UnknownTask(name, list(self._tasks)) from None

    def acquire(self, name: str) -> TaskHandle:
        """The task's current handle, pinned until ``release``."""
        with self._lock:
            handle = self._tasks.get(name)
            if handle is None:
                raise UnknownTask(name, list(self._tasks))
            self._holders[handle.slot] += 1
            return handle

    def release(self, handle: TaskHandle) -> None:
        with self._lock:
            self._holders[handle.slot] -= 1
            if self._holders[handle.slot] <= 0:
                del self._holders[handle.slot]
                if handle.slot in self._retired:
                    self._retired.discard(handle.slot)
                    self.table.free(handle.slot)

    @contextlib.contextmanager
    def pinned(self, name: str) -> Iterator[TaskHandle]:
        handle = self.acquire(name)
        try:
            yield handle
        finally:
            self.release(handle)

    @property
    def memory_bytes(self) -> int:
        """Bytes held for tasks: the bias table plus every head."""
        heads = {h.slot: h.head.nbytes for h in self.tasks().values()}
        return self.table.nbytes + sum(heads.values())
