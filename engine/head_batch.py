"""The heads of a mixed batch: each row through its own task's head, all logits in one copy.

Two ways, same answers (to float rounding):

- **One GEMM** (single-stage heads, e.g. BERT's ``classifier``): the batch's distinct heads
  are stacked into one ``[Σ labels, hidden]`` weight, every row meets every head in one
  ``F.linear``, and each row keeps its own task's columns. A few ops whatever the number
  of tasks, where a GPU would pay a few kernel launches per task; the extra arithmetic
  (rows x Σ labels x hidden) is bounded by ``STACKED_MAX_LABELS``.
- **Per task group** (heads with a hidden stage, e.g. RoBERTa's ``dense`` + ``out_proj``, or
  more labels than that bound): rows are permuted once so that each task's rows are one
  slice, and each head runs on its slice.

Either way all logits come back in ONE device-to-host copy: on a GPU a copy per task
would cost a synchronisation per task. ``lists=True`` hands them back as Python floats
from one ``tolist()``: the serving path's answers, without a torch op per row (each
releases and retakes the GIL).
"""

from __future__ import annotations

import itertools
from typing import Protocol

import torch
import torch.nn.functional as F

from bias_store.kinds import Pooling
from engine.heads import ACTIVATIONS, Head, cls_features, mean_pool

STACKED_MAX_LABELS = 1024  # Σ labels of a batch's distinct tasks up to which one GEMM serves them all


class RowTask(Protocol):
    """What the heads read of a row's task (a registry.TaskHandle is one)."""

    @property
    def slot(self) -> int: ...  # identifies the task version: rows with one slot share a head

    @property
    def pooling(self) -> Pooling: ...

    @property
    def head(self) -> Head: ...


def batch_logits(
    model_type: str, tasks: list[RowTask], hidden: torch.Tensor, pooler: torch.Tensor | None, mask: torch.Tensor,
    lists: bool = False,
) -> list[torch.Tensor] | list[list[float]]:
    """fp32 logits per row, on the CPU, in batch order; row ``i`` through ``tasks[i].head``
    (``lists``: as lists of Python floats)."""
    heads = {t.slot: t.head for t in tasks}  # distinct, in order of first appearance
    stacked = all(len(h.stages) == 1 for h in heads.values()) and sum(h.num_labels for h in heads.values()) <= STACKED_MAX_LABELS
    if stacked:
        return _one_gemm(heads, tasks, _features(model_type, tasks, hidden, pooler, mask), lists)
    return _per_group(model_type, tasks, hidden, pooler, mask, lists)


def _features(model_type: str, tasks: list[RowTask], hidden, pooler, mask) -> torch.Tensor:
    """[batch, hidden] fp32: each row pooled the way its task was trained."""
    poolings = {t.pooling for t in tasks}
    if poolings == {Pooling.CLS}:
        return cls_features(model_type, hidden, pooler).float()
    if poolings == {Pooling.MEAN}:
        return mean_pool(hidden, mask).float()
    is_mean = torch.tensor([t.pooling == Pooling.MEAN for t in tasks], device=hidden.device).unsqueeze(1)  # [batch, 1]
    return torch.where(is_mean, mean_pool(hidden, mask), cls_features(model_type, hidden, pooler)).float()


def _one_gemm(heads: dict[int, Head], tasks: list[RowTask], features: torch.Tensor, lists: bool = False) -> list:
    weight = torch.cat([h.stages[0][0] for h in heads.values()])  # [Σ labels, hidden]
    bias = torch.cat([h.stages[0][1] for h in heads.values()])  # [Σ labels]
    activation = next(iter(heads.values())).stages[0][2]  # one architecture, one activation
    logits = ACTIVATIONS[activation](F.linear(features, weight, bias)).cpu()  # [batch, Σ labels]
    columns, start = {}, 0
    for slot, head in heads.items():
        columns[slot] = (start, start + head.num_labels)
        start += head.num_labels
    rows = logits.tolist() if lists else logits.unbind(0)
    return [row[slice(*columns[t.slot])] for row, t in zip(rows, tasks)]


def _per_group(model_type: str, tasks: list[RowTask], hidden, pooler, mask, lists: bool = False) -> list:
    order = sorted(range(len(tasks)), key=lambda i: tasks[i].slot)  # rows grouped by task
    features = _features(model_type, tasks, hidden, pooler, mask)[torch.tensor(order, device=hidden.device)]  # [batch, hidden]
    groups: list[tuple[list[int], torch.Tensor]] = []  # (batch rows, logits [rows, labels])
    start = 0
    for _, rows in itertools.groupby(order, key=lambda i: tasks[i].slot):
        rows = list(rows)
        groups.append((rows, tasks[rows[0]].head(features[start : start + len(rows)])))
        start += len(rows)
    width = max(logits.shape[1] for _, logits in groups)
    stacked = torch.cat([F.pad(logits, (0, width - logits.shape[1])) for _, logits in groups]).cpu()
    stacked = stacked.tolist() if lists else stacked.unbind(0)
    results: list = [None] * len(tasks)
    start = 0
    for rows, logits in groups:
        for j, i in enumerate(rows):
            results[i] = stacked[start + j][: logits.shape[1]]
        start += len(rows)
    return results
