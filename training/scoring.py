"""Scoring a model on a split: logits in batches, the loss, metrics, per-class details, and a
multi-label task's thresholds (chosen on validation, applied to test)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from bias_store.kinds import Pooling, ProblemType
from engine.inputs import EncodedRow, collate
from training.config import TrainConfig
from training.data import Split, TaskData
from training.evaluate import classification_details, metrics
from training.model import TrainModel, forward_logits
from training.thresholds import choose_thresholds, per_label_details, scores_at


def batches_of(size: int, order: list[int]) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def loss_of(logits: torch.Tensor, targets: torch.Tensor, problem_type: str) -> torch.Tensor:
    if problem_type == ProblemType.REGRESSION:
        return F.mse_loss(logits[:, 0], targets.float())
    if problem_type == ProblemType.MULTI_LABEL:  # a sigmoid per label, as the engine serves it
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets)


@torch.inference_mode()
def batched_logits(
    rows: list[EncodedRow], num_labels: int, pad: int, device: torch.device, batch_size: int,
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
) -> torch.Tensor:
    """``forward`` over ``rows`` in batches: fp32 logits [rows, num_labels], in the order of ``rows``.

    The one logits prediction of training (one task here, a joint task in joint.py).
    """
    # Length-sorted batches pad less; results go back to the input order.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = torch.empty(len(rows), num_labels)
    for chunk in batches_of(batch_size, order):
        out[torch.tensor(chunk)] = forward(collate([rows[i] for i in chunk], pad, device)).float().cpu()
    return out


def predict_logits(tm: TrainModel, rows: list[EncodedRow], pooling: Pooling, device: torch.device, batch_size: int) -> torch.Tensor:
    """Logits [rows, num_labels] in eval mode, in the order of ``rows``."""
    tm.model.eval()
    return batched_logits(rows, tm.model.config.num_labels, tm.tokenizer.pad_token_id or 0, device, batch_size,
                          lambda batch: forward_logits(tm.model, tm.spec.model_type, batch, pooling))


def targets_of(split: Split, problem_type: ProblemType) -> torch.Tensor:
    """[rows] class ids or values, or [rows, labels] 0/1 for multi-label."""
    return torch.tensor(split.targets, dtype=torch.long if problem_type == ProblemType.SINGLE_LABEL else torch.float32)


def evaluate_split(tm: TrainModel, rows: list[EncodedRow], split: Split, data: TaskData, cfg: TrainConfig,
                   device: torch.device, with_loss: bool = False, with_details: bool = False) -> dict:
    """The split's metrics; with ``with_loss`` also its mean loss under "loss", with ``with_details``
    the per-class scores and confusion matrix under "details" (single-label classification)."""
    logits = predict_logits(tm, rows, cfg.pooling, device, cfg.eval_batch_size)
    out = metrics(data.problem_type, logits, split.targets, len(data.labels) if data.problem_type != ProblemType.REGRESSION else 1)
    if with_loss:
        out["loss"] = float(loss_of(logits, targets_of(split, data.problem_type), data.problem_type))
    if with_details and data.problem_type == ProblemType.SINGLE_LABEL:
        out["details"] = classification_details(logits.argmax(-1).tolist(), split.targets, data.labels)
    return out


def final_scores(tm: TrainModel, rows: dict, data: TaskData, cfg: TrainConfig, device: torch.device) -> tuple[dict | None, dict]:
    """The test metrics (None without a test split) and the per-class details of the kept weights.

    Multi-label: each label's threshold is chosen on validation; test is scored at the
    thresholds and, for comparison, at 0.5 (``at_0.5``).
    """
    if data.problem_type == ProblemType.MULTI_LABEL:
        gold = targets_of(data.validation, data.problem_type)
        probs = predict_logits(tm, rows["validation"], cfg.pooling, device, cfg.eval_batch_size).sigmoid()
        thresholds = choose_thresholds(probs, gold)
        details = {"thresholds": thresholds, "validation": per_label_details(probs, gold, data.labels, thresholds)}
        details["validation"]["at_thresholds"] = scores_at(probs, gold, thresholds)
        if data.test is None:
            return None, details
        gold = targets_of(data.test, data.problem_type)
        probs = predict_logits(tm, rows["test"], cfg.pooling, device, cfg.eval_batch_size).sigmoid()
        test = {**scores_at(probs, gold, thresholds), "at_0.5": scores_at(probs, gold, [0.5] * len(data.labels))}
        details["test"] = per_label_details(probs, gold, data.labels, thresholds)
        return test, details
    details = {"validation": evaluate_split(tm, rows["validation"], data.validation, data, cfg, device, with_details=True).get("details")}
    test = evaluate_split(tm, rows["test"], data.test, data, cfg, device, with_details=True) if data.test is not None else None
    if test is not None:
        details["test"] = test.pop("details", None)
    return test, details
