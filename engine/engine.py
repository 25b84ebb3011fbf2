"""The mixed-task engine: one forward pass for a batch whose rows belong to any tasks.

The task registry (``engine.registry``) decides which slot and head serve each task; this
is the inference path on top of it: validate and tokenize, split the batch by length,
gather each row's biases, run the encoder once per group, each row through its head.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass

import torch

from bias_store.kinds import ProblemType
from engine.backbone import Backbone
from engine.head_batch import batch_logits
from engine.heads import score_list
from engine.inputs import EncodedRow, RowTokenizer, check_inputs, collate
from engine.length_split import resolve_overhead, split_by_length
from engine.registry import TaskHandle, TaskRegistry
from engine.runners import OnnxOptions, Runner, build_runner

log = logging.getLogger(__name__)

Row = tuple[TaskHandle, EncodedRow]
Split = list[list[int]]  # row indices per forward pass


@dataclass(frozen=True)
class Prediction:
    task: str
    version: int
    label: str
    score: float
    scores: dict[str, float]
    truncated: bool
    logits: tuple[float, ...]
    labels: tuple[str, ...] | None = None  # multi-label: every label at or above its threshold


@dataclass(frozen=True)
class Prepared:
    """A batch ready for its forwards (``Engine.prepare``)."""

    items: list[Row]
    groups: list[tuple[list[int], dict[str, torch.Tensor], torch.Tensor]]  # (row indices, padded inputs, bias rows) per forward
    runner: Runner  # the runner the rows were gathered for


class Engine(TaskRegistry):
    def __init__(
        self, backbone: Backbone, capacity: int = 0, split_overhead_tokens: int | str | None = "auto",
        shortcuts: bool = True, compile_mode: str = "off", onnx: OnnxOptions | None = None, grow: bool = True,
    ) -> None:
        """``split_overhead_tokens``: when a batch runs as several forwards by length
        (``engine.length_split``); "auto" splits on the CPU only. ``shortcuts``: see
        ``TaskRegistry``. ``compile_mode``: "off", or a ``torch.compile`` mode for the
        forward (``engine.runners.compiled``; call ``warm_up``). ``onnx``: run the encoder
        under ONNX Runtime (``engine.runners.ort``); None runs it in PyTorch. ``capacity``
        and ``grow``: the bias table's slots (``TaskRegistry``; ``grow=False`` to serve
        within a fixed budget)."""
        super().__init__(backbone, capacity, shortcuts, grow)
        self._tokenize = RowTokenizer(backbone.tokenizer, backbone.max_length)
        # Chosen once; only ``enable_gains`` replaces it (with a sibling for wider rows).
        self.runner: Runner = build_runner(backbone, self.table.layout, compile_mode, onnx)
        self.split_overhead_tokens = resolve_overhead(split_overhead_tokens, backbone.device, backbone.spec.hidden_size,
                                                      onnxruntime=onnx is not None)
        # Batches are prepared one at a time (rows of one layout, see enable_gains); forwards
        # too, unless the runner is thread_safe (ONNX Runtime): then each batcher worker runs its own.
        self._forward_lock = threading.Lock()
        self._gains_lock = threading.Lock()  # one widening at a time

    def enable_gains(self) -> None:
        """The first ``bitfit-ln`` set: rows gain LayerNorm-gain columns, and the forward
        switches to them. The runner for the wider rows (for ONNX Runtime, a graph exported or
        read from the cache) is built first, outside the forward lock, so requests keep
        running meanwhile; the switch itself happens between two forwards."""
        with self._gains_lock:
            if self.table.has_gains:
                return
            layout = self.table.layout_with_gains()
            runner = self.runner.for_layout(layout)
            with self._forward_lock:  # a forward's gathered rows must match the runner it runs with
                self.table.enable_gains(layout)
                self.runner = runner
            log.info("a bias set with LayerNorm gains arrived: rows are now %d wide", layout.width)

    def encode(self, handle: TaskHandle, inputs: list) -> list[EncodedRow]:
        """Validate and tokenize inputs for a task (safe to call from many threads)."""
        return self._tokenize(check_inputs(inputs, handle.inputs))

    def split(self, items: list[Row]) -> Split:
        """How ``logits`` runs these rows: row indices per forward pass (one when the runner
        packs rows: it has no padding to save)."""
        if self.packs:
            return [list(range(len(items)))]
        return split_by_length([len(row) for _, row in items], self.split_overhead_tokens)

    def logits(self, items: list[Row], split: Split | None = None) -> list[torch.Tensor]:
        """Rows of any mix of tasks; fp32 logits per row, in order.

        One forward pass, or a few when rows of very different lengths would pad more
        than a forward costs: ``split`` (``self.split(items)`` when not given).
        """
        return self._logits(self.prepare(items, split), lists=False)

    def prepare(self, items: list[Row], split: Split | None = None) -> "Prepared":
        """Everything of a batch before its forward: padded inputs and gathered bias rows per
        forward pass, with the runner they were gathered for (``complete`` runs them)."""
        groups = []
        with self._forward_lock, torch.inference_mode():  # rows and runner of one layout (enable_gains)
            for group in split or self.split(items):
                rows = [items[i] for i in group]
                batch = collate([r for _, r in rows], self.backbone.tokenizer.pad_token_id or 0, self.backbone.device)
                slots = torch.tensor([h.slot for h, _ in rows], dtype=torch.long)  # [batch]
                groups.append((group, batch, self.table.gather(slots)))
            return Prepared(items, groups, self.runner)

    def complete(self, prepared: "Prepared") -> list[Prediction]:
        """The forwards and answers of a prepared batch. Past the heads' one ``tolist()`` per
        forward the answers are plain Python: no torch op per row (each would release and
        retake the GIL, and the serving worker waits for the event loop at every retake)."""
        logits = self._logits(prepared, lists=True)
        return [to_prediction(handle, row, row_logits) for (handle, row), row_logits in zip(prepared.items, logits)]

    @property
    def packs(self) -> bool:
        """Whether a forward runs its rows packed (``engine.packing``) rather than padded."""
        return self.runner.packs

    @property
    def parallel_forwards(self) -> bool:
        """Whether threads may run ``complete`` at once (each on its own prepared batch)."""
        return self.runner.thread_safe

    def _logits(self, prepared: "Prepared", lists: bool) -> list:
        out: list = [None] * len(prepared.items)
        lock = contextlib.nullcontext() if prepared.runner.thread_safe else self._forward_lock
        with lock, torch.inference_mode():
            for group, batch, bias_rows in prepared.groups:
                # hidden: [batch, seq, hidden]; pooler: [batch, hidden] or None
                hidden, pooler = prepared.runner(rows=bias_rows, **batch)
                handles = [prepared.items[i][0] for i in group]
                for i, logits in zip(group, batch_logits(self.spec.model_type, handles, hidden, pooler, batch["attention_mask"], lists)):
                    out[i] = logits
        return out

    @property
    def backend(self) -> str:
        return self.runner.backend

    def warm_up(self, max_batch: int) -> None:
        """Start-up work, so no request pays for it: on CUDA, measure whether the fused
        per-row GEMM beats F.linear + add (``runners.form_choice``); compile every shape."""
        with self._forward_lock:
            self.runner.warm_up(max_batch, self.backbone.max_length)

    def run(self, items: list[Row], split: Split | None = None) -> list[Prediction]:
        """Predictions of rows of any mix of tasks (``prepare`` then ``complete``)."""
        return self.complete(self.prepare(items, split))

    def predict(self, name: str, inputs: list) -> list[Prediction]:
        """Encode and run one task's inputs now (no batching; for scripts and tests)."""
        with self.pinned(name) as handle:
            rows = self.encode(handle, inputs)
            return self.run([(handle, r) for r in rows])


def to_prediction(handle: TaskHandle, row: EncodedRow, logits: list[float]) -> Prediction:
    scores = score_list(handle.problem_type, logits)
    best = max(range(len(scores)), key=scores.__getitem__) if handle.problem_type != ProblemType.REGRESSION else 0
    active = None
    if handle.problem_type == ProblemType.MULTI_LABEL:
        cuts = handle.meta.thresholds or [0.5] * len(handle.labels)
        active = tuple(label for label, s, cut in zip(handle.labels, scores, cuts) if s >= cut)
    return Prediction(
        task=handle.name,
        version=handle.version,
        label=handle.labels[best],
        score=scores[best],
        scores=dict(zip(handle.labels, scores)),
        truncated=row.truncated,
        logits=tuple(logits),
        labels=active,
    )
