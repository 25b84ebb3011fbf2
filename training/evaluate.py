"""Validation and test metrics: accuracy, macro-F1 and MCC; micro/macro-F1 and exact match for
multi-label; Pearson and Spearman for regression."""

from __future__ import annotations

import math

import pandas as pd
import torch

from bias_store.kinds import ProblemType

# The score that picks the best epoch, per problem type (higher is better).
SELECTION_METRIC = {ProblemType.SINGLE_LABEL: "accuracy", ProblemType.MULTI_LABEL: "micro_f1", ProblemType.REGRESSION: "pearson"}


def classification_metrics(pred: list[int], gold: list[int], num_classes: int) -> dict[str, float]:
    p = torch.tensor(pred)
    g = torch.tensor(gold)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64)  # [gold, pred]
    confusion.index_put_((g, p), torch.ones(len(g), dtype=torch.float64), accumulate=True)
    tp = confusion.diag()
    predicted, actual, n = confusion.sum(0), confusion.sum(1), confusion.sum()
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), torch.zeros_like(tp))
    present = actual > 0  # macro-F1 over the classes that occur in the gold labels
    # Multi-class MCC (Gorodkin's R_K); equals the usual phi coefficient for two classes.
    c = tp.sum()
    cov_xy = c * n - (predicted * actual).sum()
    cov_xx = n * n - (predicted * predicted).sum()
    cov_yy = n * n - (actual * actual).sum()
    mcc = float(cov_xy / math.sqrt(cov_xx * cov_yy)) if cov_xx > 0 and cov_yy > 0 else 0.0
    return {"accuracy": float(c / n), "macro_f1": float(f1[present].mean()), "mcc": mcc}


def _finite(x) -> float:
    """A correlation with constant predictions is undefined (NaN); report it as 0."""
    return 0.0 if x is None or math.isnan(x) else float(x)


def regression_metrics(pred: list[float], gold: list[float]) -> dict[str, float]:
    p, g = pd.Series(pred, dtype="float64"), pd.Series(gold, dtype="float64")
    pearson = p.corr(g, method="pearson")
    spearman = p.rank().corr(g.rank(), method="pearson")  # Spearman = Pearson on (average) ranks
    mse = float(((p - g) ** 2).mean())
    return {"pearson": _finite(pearson), "spearman": _finite(spearman), "mse": mse}


def multi_label_metrics(predicted: torch.Tensor, gold: torch.Tensor) -> dict[str, float]:
    """[rows, labels] 0/1 predictions vs gold: micro- and macro-F1, exact-match accuracy."""
    tp = (predicted * gold).sum(0)
    fp = (predicted * (1 - gold)).sum(0)
    fn = ((1 - predicted) * gold).sum(0)
    micro = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()).clamp(min=1e-12)
    per_label = 2 * tp / (2 * tp + fp + fn).clamp(min=1e-12)
    present = gold.sum(0) > 0
    macro = per_label[present].mean() if present.any() else torch.tensor(0.0)
    exact = (predicted == gold).all(-1).float().mean()
    return {"micro_f1": float(micro), "macro_f1": float(macro), "exact_match": float(exact)}


def metrics(problem_type: str, logits: torch.Tensor, gold: list, num_labels: int) -> dict[str, float]:
    """Metrics from ``logits`` [rows, num_labels] against gold class ids, values or multi-hot rows."""
    if problem_type == ProblemType.REGRESSION:
        return regression_metrics(logits[:, 0].tolist(), gold)
    if problem_type == ProblemType.MULTI_LABEL:  # a label is predicted where its sigmoid passes 0.5
        return multi_label_metrics((logits > 0).float(), torch.tensor(gold, dtype=torch.float32))
    return classification_metrics(logits.argmax(-1).tolist(), gold, num_labels)
