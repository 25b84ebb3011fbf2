"""A trained model -> a bias set: its trained biases and head, as absolute values, plus metadata."""

from __future__ import annotations

import torch

from bias_store.format import BiasSet, BiasSetMeta
from bias_store.kinds import InputKind, Pooling, ProblemType
from bias_store.validate import validate
from engine.backbone import backbone_name
from training.bitfit import Method, trainable_keys
from training.errors import ConfigError
from training.model import TrainModel


def export_bias_set(
    tm: TrainModel,
    method: Method,
    *,
    task: str,
    labels: list[str],
    problem_type: ProblemType,
    inputs: InputKind,
    pooling: Pooling,
    training: dict,
    thresholds: list[float] | None = None,
) -> BiasSet:
    """The bias set of ``tm.model`` as trained by ``method``; validated against the backbone's spec."""
    if not method.exports_bias_set:
        raise ConfigError("full fine-tuning changes every weight, so it has no bias set to export; it is a baseline")
    # Keys come from the spec (bias sites) and sites.head_keys, the same lists validation checks.
    tensors = {key: tm.model.get_parameter(key).detach().to("cpu", torch.float32).clone() for key in trainable_keys(tm.spec, method)}
    return make_bias_set(tm, tensors, task=task, labels=labels, problem_type=problem_type, inputs=inputs,
                         bias_sites=method.bias_sites, pooling=pooling, training=training, thresholds=thresholds)


def make_bias_set(
    tm: TrainModel, tensors: dict[str, torch.Tensor], *, task: str, labels: list[str], problem_type: ProblemType,
    inputs: InputKind, bias_sites: str, pooling: Pooling, training: dict, thresholds: list[float] | None = None,
) -> BiasSet:
    """Trained tensors (state-dict keys) plus their metadata, validated against the backbone's spec.

    The one export of training: one-task runs (``export_bias_set``) and joint runs use it.
    """
    meta = BiasSetMeta(
        task=task, labels=list(labels), base_model=backbone_name(tm.base_model), backbone_fingerprint=tm.spec.fingerprint,
        model_type=tm.spec.model_type, problem_type=problem_type, inputs=inputs, bias_sites=bias_sites, pooling=pooling,
        training=training, thresholds=thresholds,
    )
    bias_set = BiasSet(meta, tensors)
    validate(bias_set, tm.spec)
    return bias_set
