"""Validation and test metrics: accuracy, macro-F1 and MCC, per-class scores and the confusion
matrix; micro/macro-F1 and exact match for multi-label; Pearson and Spearman for regression."""

from __future__ import annotations

import math

import pandas as pd
import torch

from bias_store.kinds import ProblemType

# The score that picks the best epoch, per problem type (higher is better).
SELECTION_METRIC = {ProblemType.SINGLE_LABEL: "accuracy", ProblemType.MULTI_LABEL: "micro_f1", ProblemType.REGRESSION: "pearson"}


def confusion_matrix(pred: list[int], gold: list[int], num_classes: int) -> torch.Tensor:
    """Counts [gold, pred] (rows: the true class), float64."""
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    confusion.index_put_((torch.tensor(gold, dtype=torch.long), torch.tensor(pred, dtype=torch.long)),
                         torch.ones(len(gold), dtype=torch.float64), accumulate=True)
    return confusion


def per_class_scores(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall and F1 per class [classes]; 0 where undefined (scikit-learn's zero_division=0)."""
    tp = confusion.diag()
    predicted, actual = confusion.sum(0), confusion.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    # F1 = 2TP / (2TP + FP + FN), the same as 2PR / (P + R) wherever that is defined.
    f1 = torch.where(predicted + actual > 0, 2 * tp / (predicted + actual).clamp(min=1), torch.zeros_like(tp))
    return precision, recall, f1


def classification_metrics(pred: list[int], gold: list[int], num_classes: int) -> dict[str, float]:
    confusion = confusion_matrix(pred, gold, num_classes)
    tp = confusion.diag()
    predicted, actual, n = confusion.sum(0), confusion.sum(1), confusion.sum()
    _, _, f1 = per_class_scores(confusion)
    # scikit-learn's macro average: over the classes that occur in the gold labels or the predictions.
    present = (actual > 0) | (predicted > 0)
    # Multi-class MCC (Gorodkin's R_K); equals the usual phi coefficient for two classes.
    c = tp.sum()
    cov_xy = c * n - (predicted * actual).sum()
    cov_xx = n * n - (predicted * predicted).sum()
    cov_yy = n * n - (actual * actual).sum()
    mcc = float(cov_xy / math.sqrt(cov_xx * cov_yy)) if cov_xx > 0 and cov_yy > 0 else 0.0
    return {"accuracy": float(c / n), "macro_f1": float(f1[present].mean()), "mcc": mcc}


def classification_details(pred: list[int], gold: list[int], labels: list[str]) -> dict:
    """Per-class precision, recall, F1 and support, and the confusion matrix (rows: true class)."""
    confusion = confusion_matrix(pred, gold, len(labels))
    precision, recall, f1 = per_class_scores(confusion)
    support = confusion.sum(1)
    per_class = [
        {"label": name, "precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]), "support": int(support[k])}
        for k, name in enumerate(labels)
    ]
    return {"per_class": per_class, "confusion_matrix": {"labels": list(labels), "rows": "true class", "columns": "predicted class",
                                                         "counts": confusion.long().tolist()}}


def _finite(x) -> float:
    """A correlation with constant predictions is undefined (NaN); report it as 0."""
    return 0.0 if x is None or math.isnan(x) else float(x)


def regression_metrics(pred: list[float], gold: list[float]) -> dict[str, float]:
    p, g = pd.Series(pred, dtype="float64"), pd.Series(gold, dtype="float64")
    pearson = p.corr(g, method="pearson")
    spearman = p.rank().corr(g.rank(), method="pearson")  # Spearman = Pearson on (average) ranks
    mse = float(((p - g) ** 2).mean())
    return {"pearson": _finite(pearson), "spearman": _finite(spearman), "mse": mse}


def label_counts(predicted: torch.Tensor, gold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TP, FP, FN per label [labels] from 0/1 matrices [rows, labels]."""
    return (predicted * gold).sum(0), (predicted * (1 - gold)).sum(0), ((1 - predicted) * gold).sum(0)


def f1_of(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """F1 = 2TP / (2TP + FP + FN); 0 where nothing was predicted or true."""
    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))


def multi_label_metrics(predicted: torch.Tensor, gold: torch.Tensor) -> dict[str, float]:
    """[rows, labels] 0/1 predictions vs gold: micro- and macro-F1, exact-match accuracy."""
    tp, fp, fn = label_counts(predicted, gold)
    present = (tp + fp + fn) > 0  # scikit-learn: labels in the gold sets or the predictions
    macro = f1_of(tp, fp, fn)[present].mean() if present.any() else torch.tensor(0.0)
    exact = (predicted == gold).all(-1).float().mean()
    return {"micro_f1": float(f1_of(tp.sum(), fp.sum(), fn.sum())), "macro_f1": float(macro), "exact_match": float(exact)}


def metrics(problem_type: str, logits: torch.Tensor, gold: list, num_labels: int) -> dict[str, float]:
    """Metrics from ``logits`` [rows, num_labels] against gold class ids, values or multi-hot rows."""
    if problem_type == ProblemType.REGRESSION:
        return regression_metrics(logits[:, 0].tolist(), gold)
    if problem_type == ProblemType.MULTI_LABEL:  # a label is predicted where its sigmoid passes 0.5
        return multi_label_metrics((logits > 0).float(), torch.tensor(gold, dtype=torch.float32))
    return classification_metrics(logits.argmax(-1).tolist(), gold, num_labels)
