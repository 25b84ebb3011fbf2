"""Multi-label decision thresholds: one per label, chosen on the validation split.

Each label is an independent yes/no (a sigmoid), and labels differ in how often they occur,
so one cut at 0.5 for all of them leaves F1 on the table for the rare ones. After training,
each label gets the cut on a fixed grid with the best validation F1 for that label; the bias
set stores them (metadata ``thresholds``, docs/FORMAT.md) and the server applies them.
"""

from __future__ import annotations

import torch

from training.evaluate import f1_of, label_counts, multi_label_metrics

DEFAULT_THRESHOLD = 0.5
THRESHOLD_GRID = [round(0.05 * k, 2) for k in range(1, 20)]  # 0.05 ... 0.95


def choose_thresholds(probs: torch.Tensor, gold: torch.Tensor) -> list[float]:
    """Per label, the grid cut with the best F1 on ``probs`` [rows, labels] against ``gold``
    (0/1, same shape); ties go to the cut nearest 0.5."""
    chosen = []
    for k in range(probs.shape[1]):
        best, best_f1 = DEFAULT_THRESHOLD, -1.0
        for cut in sorted(THRESHOLD_GRID, key=lambda t: abs(t - DEFAULT_THRESHOLD)):
            f1 = float(f1_of(*label_counts((probs[:, k] >= cut).float(), gold[:, k])))
            if f1 > best_f1:
                best, best_f1 = cut, f1
        chosen.append(best)
    return chosen


def predicted(probs: torch.Tensor, thresholds: list[float]) -> torch.Tensor:
    """0/1 [rows, labels]: a label is predicted at or above its threshold (as the engine does)."""
    return (probs >= torch.tensor(thresholds, dtype=probs.dtype)).float()


def scores_at(probs: torch.Tensor, gold: torch.Tensor, thresholds: list[float]) -> dict[str, float]:
    """Micro/macro-F1 and exact match with each label cut at its threshold."""
    return multi_label_metrics(predicted(probs, thresholds), gold)


def per_label_details(probs: torch.Tensor, gold: torch.Tensor, labels: list[str], thresholds: list[float]) -> dict:
    """Per label: its threshold, precision, recall, F1 and support at that threshold."""
    tp, fp, fn = label_counts(predicted(probs, thresholds), gold)
    precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(tp + fn > 0, tp / (tp + fn).clamp(min=1), torch.zeros_like(tp))
    f1 = f1_of(tp, fp, fn)
    return {"per_class": [
        {"label": name, "threshold": thresholds[k], "precision": float(precision[k]), "recall": float(recall[k]),
         "f1": float(f1[k]), "support": int(gold[:, k].sum())}
        for k, name in enumerate(labels)
    ]}
