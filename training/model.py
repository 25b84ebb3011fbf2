"""The model being trained: the classification model, its spec, and its forward with pooling.

The model is loaded exactly as the serving engine loads its backbone
(``engine.backbone.load_model_parts``), so the spec's fingerprint is the engine's: training never writes
a frozen tensor, and the bias set it exports validates against the server.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bias_store.kinds import Pooling, ProblemType
from bias_store.sites import architecture
from bias_store.spec import BackboneSpec
from engine.backbone import default_backbone_path, load_model_parts
from engine.heads import ACTIVATIONS, cls_features, mean_pool
from training.errors import ConfigError

log = logging.getLogger(__name__)

HEAD_DROPOUT = 0.1  # BERT's hidden_dropout_prob; in eval mode (and in the engine) it is the identity


@dataclass
class TrainModel:
    model: nn.Module  # AutoModelForSequenceClassification, fp32
    tokenizer: object  # fast tokenizer
    spec: BackboneSpec  # of the *untouched* backbone: the fingerprint the bias set carries
    base_model: str  # path or id it was loaded from
    max_length: int  # the backbone's own limit (positions / tokenizer)


def resolve_backbone(backbone: str | None) -> str:
    return str(backbone) if backbone else default_backbone_path()


def default_pooling(backbone: str | None) -> Pooling:
    """Mean for sentence-transformers checkpoints trained with mean pooling, else CLS.

    A sentence-transformers folder says how it was trained in ``1_Pooling/config.json``;
    the packaged MiniLM says mean (docs/TRAINING.md has the comparison that backs this).
    """
    config = Path(resolve_backbone(backbone)) / "1_Pooling" / "config.json"
    try:
        return Pooling.MEAN if json.loads(config.read_text()).get("pooling_mode_mean_tokens") else Pooling.CLS
    except (OSError, json.JSONDecodeError):
        return Pooling.CLS


def load_model(backbone: str | None, num_labels: int, problem_type: ProblemType, seed: int) -> TrainModel:
    """A fresh classification model on the CPU; the head is initialised from ``seed``."""
    path = resolve_backbone(backbone)
    torch.manual_seed(seed)
    try:
        loaded = load_model_parts(path, num_labels, problem_type=str(problem_type))  # the engine's loader
    except (OSError, ValueError) as exc:
        raise ConfigError(f"could not load backbone {path!r}: {exc}") from None
    # Always fp32: bias sets are fp32, and a half-precision checkpoint must not train in half.
    return TrainModel(loaded.model.float(), loaded.tokenizer, loaded.spec, path, loaded.max_length)


def check_pooling(pooling: str) -> Pooling:
    try:
        return Pooling(pooling)
    except ValueError:
        raise ConfigError(f"pooling {pooling!r} is not one of {Pooling.values()}") from None


def pooled_features(model_type: str, out, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """What the head reads, [batch, hidden]: the mean over real tokens, or the architecture's CLS input."""
    if pooling == Pooling.MEAN:
        return mean_pool(out.last_hidden_state, attention_mask)
    return cls_features(model_type, out.last_hidden_state, getattr(out, "pooler_output", None))


def run_head(layers: list[nn.Module], model_type: str, x: torch.Tensor, training: bool) -> torch.Tensor:
    """The head's Linear stages with the architecture's activations: [batch, hidden] -> [batch, labels]."""
    for layer, stage in zip(layers, architecture(model_type).head):
        x = ACTIVATIONS[stage.activation](layer(F.dropout(x, HEAD_DROPOUT, training)))
    return x


def forward_logits(model: nn.Module, model_type: str, batch: dict[str, torch.Tensor], pooling: Pooling) -> torch.Tensor:
    """Logits [batch, num_labels], computed the way the engine computes them (plus dropout in training).

    With ``Pooling.CLS`` in eval mode this equals ``model(**batch).logits``; with
    ``Pooling.MEAN`` the head reads the mask-weighted mean of the last hidden state instead.
    """
    features = pooled_features(model_type, model.base_model(**batch), batch["attention_mask"], pooling)
    layers = [model.get_submodule(stage.name) for stage in architecture(model_type).head]
    return run_head(layers, model_type, features, model.training)
