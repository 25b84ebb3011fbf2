"""The mixed-task engine: one forward pass for a batch whose rows belong to any tasks.

The task registry (``engine.registry``) decides which slot and head serve each task; this
is the inference path on top of it: validate and tokenize, split the batch by length,
gather each row's biases, run the encoder once per group, each row through its head.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import torch

from bias_store.kinds import ProblemType
from engine.backbone import Backbone
from engine.head_batch import batch_logits
from engine.heads import probabilities
from engine.inputs import EncodedRow, check_inputs, collate, encode
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
        # Chosen once; only ``enable_gains`` replaces it (with a sibling for wider rows).
        self.runner: Runner = build_runner(backbone, self.table.layout, compile_mode, onnx)
        self.split_overhead_tokens = resolve_overhead(split_overhead_tokens, backbone.device, backbone.spec.hidden_size)
        self._forward_lock = threading.Lock()  # one forward at a time (the site forwards read shared rows)
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
        checked = check_inputs(inputs, handle.inputs)
        return encode(self.backbone.tokenizer, checked, self.backbone.max_length)

    def split(self, items: list[Row]) -> Split:
        """How ``logits`` runs these rows: row indices per forward pass."""
        return split_by_length([len(row) for _, row in items], self.split_overhead_tokens)

    def logits(self, items: list[Row], split: Split | None = None) -> list[torch.Tensor]:
        """Rows of any mix of tasks; fp32 logits per row, in order.

        One forward pass, or a few when rows of very different lengths would pad more
        than a forward costs: ``split`` (``self.split(items)`` when not given).
        """
        out: list[torch.Tensor | None] = [None] * len(items)
        with self._forward_lock, torch.inference_mode():
            for group in split or self.split(items):
                for i, logits in zip(group, self._forward([items[i] for i in group])):
                    out[i] = logits
        return out

    def _forward(self, items: list[Row]) -> list[torch.Tensor]:
        """One forward pass for rows of any mix of tasks (the caller holds the forward lock)."""
        handles = [h for h, _ in items]
        batch = collate([r for _, r in items], self.backbone.tokenizer.pad_token_id or 0, self.backbone.device)
        slots = torch.tensor([h.slot for h in handles], dtype=torch.long)  # [batch]
        # hidden: [batch, seq, hidden]; pooler: [batch, hidden] or None
        hidden, pooler = self.runner(rows=self.table.gather(slots), **batch)
        return batch_logits(self.spec.model_type, handles, hidden, pooler, batch["attention_mask"])

    @property
    def backend(self) -> str:
        return self.runner.backend

    def warm_up(self, max_batch: int) -> None:
        """Start-up work, so no request pays for it: on CUDA, measure whether the fused
        per-row GEMM beats F.linear + add (``runners.form_choice``); compile every shape."""
        with self._forward_lock:
            self.runner.warm_up(max_batch, self.backbone.max_length)

    def run(self, items: list[Row], split: Split | None = None) -> list[Prediction]:
        return [to_prediction(handle, row, logits) for (handle, row), logits in zip(items, self.logits(items, split))]

    def predict(self, name: str, inputs: list) -> list[Prediction]:
        """Encode and run one task's inputs now (no batching; for scripts and tests)."""
        with self.pinned(name) as handle:
            rows = self.encode(handle, inputs)
            return self.run([(handle, r) for r in rows])


def to_prediction(handle: TaskHandle, row: EncodedRow, logits: torch.Tensor) -> Prediction:
    scores = probabilities(handle.problem_type, logits)
    best = int(scores.argmax()) if handle.problem_type != ProblemType.REGRESSION else 0
    active = None
    if handle.problem_type == ProblemType.MULTI_LABEL:
        cuts = handle.meta.thresholds or [0.5] * len(handle.labels)
        active = tuple(label for label, s, cut in zip(handle.labels, scores.tolist(), cuts) if s >= cut)
    return Prediction(
        task=handle.name,
        version=handle.version,
        label=handle.labels[best],
        score=float(scores[best]),
        scores={label: float(s) for label, s in zip(handle.labels, scores)},
        truncated=row.truncated,
        logits=tuple(float(x) for x in logits),
        labels=active,
    )
