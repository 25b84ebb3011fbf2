"""Per-task classifier heads, pooling, and turning logits into predictions."""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bias_store.kinds import ProblemType
from bias_store.sites import architecture

# The activation after each head stage (sites.HeadStage.activation); training uses it too.
ACTIVATIONS = {None: lambda x: x, "tanh": torch.tanh, "relu": F.relu, "gelu": F.gelu}


def _own(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in storage of its own: a parsed set's tensors are views of one buffer (the
    whole file's values, bias_store.format), which a resident head must not keep alive."""
    return tensor.clone() if tensor.untyped_storage().nbytes() > tensor.nbytes else tensor


@dataclass
class Head:
    """The Linear stages of one task's head, in fp32 on the serving device."""

    stages: list[tuple[torch.Tensor, torch.Tensor, str | None]]  # (weight [out, in], bias [out], activation)

    @classmethod
    def from_tensors(cls, model_type: str, tensors: dict[str, torch.Tensor], device: torch.device) -> "Head":
        stages = []
        for stage in architecture(model_type).head:
            weight = _own(tensors[f"{stage.name}.weight"].to(device, torch.float32))
            bias = _own(tensors[f"{stage.name}.bias"].to(device, torch.float32))
            stages.append((weight, bias, stage.activation))
        return cls(stages)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """[rows, hidden] -> [rows, num_labels] logits (eval mode: dropout is the identity)."""
        x = features.float()
        for weight, bias, activation in self.stages:
            x = ACTIVATIONS[activation](F.linear(x, weight, bias))
        return x

    @property
    def num_labels(self) -> int:
        return self.stages[-1][0].shape[0]

    @property
    def nbytes(self) -> int:
        return sum(w.numel() * w.element_size() + b.numel() * b.element_size() for w, b, _ in self.stages)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mask-weighted mean over positions: [batch, seq, hidden], [batch, seq] -> [batch, hidden]."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def cls_features(model_type: str, hidden: torch.Tensor, pooler_output: torch.Tensor | None) -> torch.Tensor:
    """What the architecture's own head reads: the pooler output (BERT) or h[:, 0]."""
    if architecture(model_type).cls_features == "pooler":
        return pooler_output
    return hidden[:, 0]


def score_list(problem_type: ProblemType, logits: list[float]) -> list[float]:
    """Scores per label of one row: softmax (single-label), sigmoid (multi-label), the raw
    value (regression); Python floats rounded to fp32, as the tensors' were."""
    if problem_type == ProblemType.SINGLE_LABEL:
        top = max(logits)
        exps = [math.exp(x - top) for x in logits]
        total = sum(exps)
        scores = [e / total for e in exps]
    elif problem_type == ProblemType.MULTI_LABEL:
        scores = [1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x)) for x in logits]
    else:
        return list(logits)
    return array("f", scores).tolist()  # fp32, like the tensor answers before
