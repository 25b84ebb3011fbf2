"""``publish: if_better``: the new set and the task's current version, scored on the job's
validation split through the engine (exactly as the server will answer), side by side.

Each set is scored by the labels it names, so a current version whose label set differs
still gets a fair score (a label it does not know is simply never right). The score that
decides is the one training selects epochs by (training/evaluate.py SELECTION_METRIC).
"""

from __future__ import annotations

import logging

import torch

from bias_store.format import BiasSet
from bias_store.kinds import ProblemType
from training.data import Split, TaskData
from training.evaluate import SELECTION_METRIC, classification_metrics, multi_label_metrics, regression_metrics

log = logging.getLogger(__name__)

CHUNK = 64  # rows per engine call


def score_set(engine, bias_set: BiasSet, data: TaskData, version: int) -> dict[str, float] | None:
    """The set's validation metrics as served; None when it cannot answer this data (another problem type or input kind)."""
    meta = bias_set.meta
    if meta.problem_type != data.problem_type or meta.inputs != data.inputs:
        return None
    engine.register(bias_set, version=version)
    try:
        split: Split = data.validation
        inputs = [list(t) if isinstance(t, tuple) else t for t in split.texts]
        predictions = [p for i in range(0, len(inputs), CHUNK) for p in engine.predict(meta.task, inputs[i:i + CHUNK])]
    finally:
        engine.unregister(meta.task)
    if data.problem_type == ProblemType.REGRESSION:
        return regression_metrics([p.logits[0] for p in predictions], list(split.targets))
    if data.problem_type == ProblemType.MULTI_LABEL:
        index = {name: k for k, name in enumerate(data.labels)}
        predicted = torch.zeros(len(predictions), len(data.labels))
        for row, p in enumerate(predictions):
            for name in p.labels or ():
                if name in index:
                    predicted[row, index[name]] = 1.0
        return multi_label_metrics(predicted, torch.tensor(split.targets, dtype=torch.float32))
    names = sorted(set(data.labels) | set(meta.labels))
    position = {name: k for k, name in enumerate(names)}
    gold = [position[data.labels[t]] for t in split.targets]
    return classification_metrics([position[p.label] for p in predictions], gold, len(names))


def compare(engine, new: BiasSet, current: BiasSet | None, current_version: int | None, data: TaskData) -> dict:
    """``{"publish": bool, "reason", "metric", "scores": {"new", "current"}}``: publish a set that is not worse."""
    metric = SELECTION_METRIC[data.problem_type]
    if current is None:
        return {"publish": True, "reason": "new task: nothing to compare with", "metric": metric, "scores": {}}
    new_scores = score_set(engine, new, data, version=(current_version or 0) + 1)
    current_scores = score_set(engine, current, data, version=current_version or 1)
    scores = {"new": new_scores, "current": current_scores, "current_version": current_version,
              "split": "validation", "rows": len(data.validation)}
    if current_scores is None:
        return {"publish": True, "metric": metric, "scores": scores,
                "reason": f"the current version v{current_version} answers another kind of task; the new set replaces it"}
    a, b = new_scores[metric], current_scores[metric]
    better = a >= b
    reason = (f"validation {metric} {a:.4f} (new) vs {b:.4f} (v{current_version}): "
              + ("not worse, published" if better else "worse, not published"))
    log.info("if_better for %s: %s", new.meta.task, reason)
    return {"publish": better, "reason": reason, "metric": metric, "scores": scores}
