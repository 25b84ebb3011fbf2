"""The mixed-task engine: one forward pass for a batch whose rows belong to any tasks.

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

import torch

from bias_store.format import BiasSet
from bias_store.kinds import InputKind, Pooling, ProblemType
from engine.backbone import Backbone
from engine.chunking import plan_forwards, resolve_overhead
from engine.errors import UnknownTask
from engine.head_batch import RowTask, batch_logits
from engine.heads import Head, probabilities
from engine.inputs import EncodedRow, check_inputs, collate, encode
from engine.ort_encoder import OnnxOptions, OrtEncoder
from engine.per_row import RowBiasedEncoder
from engine.tables import BiasTable

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TaskHandle:
    name: str
    version: int
    sha256: str
    slot: int
    labels: tuple[str, ...]
    problem_type: ProblemType
    inputs: InputKind
    pooling: Pooling
    head: Head = field(repr=False)
    num_bytes: int = 0  # raw bytes of the bias set's tensors


@dataclass(frozen=True)
class Prediction:
    task: str
    version: int
    label: str
    score: float
    scores: dict[str, float]
    truncated: bool
    logits: tuple[float, ...]


class Engine:
    def __init__(
        self, backbone: Backbone, capacity: int = 0, split_overhead_tokens: int | str | None = "auto",
        shortcuts: bool = True, onnx: OnnxOptions | None = None,
    ) -> None:
        """``split_overhead_tokens``: when a batch runs as several forwards by length
        (``chunking``); "auto" splits on the CPU only. ``shortcuts``: drop the key and value
        sites' per-row adds where that is exact (``engine.shortcuts``). ``onnx``: run the
        encoder under ONNX Runtime (``ort_encoder``); None runs it in PyTorch."""
        self.backbone = backbone
        self.spec = backbone.spec
        self.table = BiasTable(backbone.encoder, capacity, backbone.spec.model_type if shortcuts else None)
        self.encoder = RowBiasedEncoder(backbone.encoder, self.table.layout)
        self.runtime = OrtEncoder.for_backbone(backbone, self.table.layout, onnx) if onnx is not None else None
        self.split_overhead_tokens = resolve_overhead(split_overhead_tokens, backbone.device, backbone.spec.hidden_size)
        self._tasks: dict[str, TaskHandle] = {}
        self._holders: dict[int, int] = defaultdict(int)  # slot -> requests holding it
        self._retired: set[int] = set()  # slots replaced or deleted, freed at zero holders
        self._lock = threading.Lock()  # task map and slot bookkeeping
        self._forward_lock = threading.Lock()  # one forward at a time (the site forwards read shared rows)

    # -- registry ----------------------------------------------------------------------
    def register(self, bias_set: BiasSet, version: int = 1, sha256: str = "") -> TaskHandle:
        """Make ``bias_set`` the task's current version. The set must already be validated."""
        meta = bias_set.meta
        biases = self.spec.site_biases(bias_set.tensors)
        head = Head.from_tensors(self.spec.model_type, bias_set.tensors, self.backbone.device)
        slot = self.table.write(biases)
        handle = TaskHandle(
            meta.task, version, sha256, slot, tuple(meta.labels), meta.problem_type,
            meta.inputs, meta.pooling, head, bias_set.num_bytes,
        )
        with self._lock:
            old = self._tasks.get(meta.task)
            self._tasks[meta.task] = handle
            if old is not None:
                self._retire(old.slot)
        log.debug("registered %s v%d in slot %d", meta.task, version, slot)
        return handle

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

    # -- inference ---------------------------------------------------------------------
    def encode(self, handle: TaskHandle, inputs: list) -> list[EncodedRow]:
        """Validate and tokenize inputs for a task (safe to call from many threads)."""
        checked = check_inputs(inputs, handle.inputs)
        return encode(self.backbone.tokenizer, checked, self.backbone.max_length)

    def logits(self, items: list[tuple[TaskHandle, EncodedRow]], plan: list[list[int]] | None = None) -> list[torch.Tensor]:
        """Rows of any mix of tasks; fp32 logits per row, in order.

        One forward pass, or a few when rows of very different lengths would pad more
        than a forward costs: ``plan`` (``self.plan(items)`` when not given).
        """
        out: list[torch.Tensor | None] = [None] * len(items)
        with self._forward_lock, torch.inference_mode():
            for group in plan or self.plan(items):
                for i, logits in zip(group, self._forward([items[i] for i in group])):
                    out[i] = logits
        return out

    def plan(self, items: list[tuple[TaskHandle, EncodedRow]]) -> list[list[int]]:
        """How ``logits`` runs these rows: row indices per forward pass."""
        return plan_forwards([len(row) for _, row in items], self.split_overhead_tokens)

    def _forward(self, items: list[tuple[TaskHandle, EncodedRow]]) -> list[torch.Tensor]:
        """One forward pass for rows of any mix of tasks (the caller holds the forward lock)."""
        handles = [h for h, _ in items]
        batch = collate([r for _, r in items], self.backbone.tokenizer.pad_token_id or 0, self.backbone.device)
        slots = torch.tensor([h.slot for h in handles], dtype=torch.long)  # [batch]
        # hidden: [batch, seq, hidden]; pooler: [batch, hidden] or None
        rows = self.table.gather(slots)  # [batch, width]
        runner = self.runtime if self.runtime is not None else self.encoder
        hidden, pooler = runner(rows=rows, **batch)
        tasks = [RowTask(h.slot, h.pooling, h.head) for h in handles]
        return batch_logits(self.spec.model_type, tasks, hidden, pooler, batch["attention_mask"])

    def run(self, items: list[tuple[TaskHandle, EncodedRow]], plan: list[list[int]] | None = None) -> list[Prediction]:
        return [
            to_prediction(handle, row, logits)
            for (handle, row), logits in zip(items, self.logits(items, plan))
        ]

    def predict(self, name: str, inputs: list) -> list[Prediction]:
        """Encode and run one task's inputs now (no batching; for scripts and tests)."""
        with self.pinned(name) as handle:
            rows = self.encode(handle, inputs)
            return self.run([(handle, r) for r in rows])

    @property
    def backend(self) -> str:
        return "torch" if self.runtime is None else self.runtime.name

    @property
    def memory_bytes(self) -> int:
        """Bytes the engine holds for tasks: the bias table plus every head."""
        heads = {h.slot: h.head.nbytes for h in self.tasks().values()}
        return self.table.nbytes + sum(heads.values())


def to_prediction(handle: TaskHandle, row: EncodedRow, logits: torch.Tensor) -> Prediction:
    scores = probabilities(handle.problem_type, logits)
    best = int(scores.argmax()) if handle.problem_type != ProblemType.REGRESSION else 0
    return Prediction(
        task=handle.name,
        version=handle.version,
        label=handle.labels[best],
        score=float(scores[best]),
        scores={label: float(s) for label, s in zip(handle.labels, scores)},
        truncated=row.truncated,
        logits=tuple(float(x) for x in logits),
    )
