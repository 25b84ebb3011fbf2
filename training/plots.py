"""The run folder's plots: learning curves (per step and per epoch), the confusion matrix, per-label scores."""

from __future__ import annotations

import math
from pathlib import Path

# Metrics on another scale than accuracy-like scores, or with their own panel, stay out of the metric panel.
NOT_IN_METRIC_PANEL = ("mse", "loss")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _title(report: dict) -> str:
    recipe = report.get("recipe") or {}
    lr = f"lr {report['config']['lr']:g}"
    if recipe.get("head_lr") is not None:
        lr += f", head {recipe['head_lr']:g}"
    if recipe.get("lr_search"):
        lr += " (chosen on validation)"
    return f"{report['task']}: {report['config']['method']}, {lr}, {recipe.get('schedule', 'constant')} schedule"


# Metrics bounded by [-1, 1] rather than [0, 1]: drawn on an axis of their own.
SIGNED = ("mcc",)


def smoothed(values: list[float], window: int | None = None) -> list[float]:
    """A trailing moving average (window: about a twentieth of the run, at least 1)."""
    window = window or max(1, len(values) // 20)
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _marked(ax, xs: list, ys: list, label: str, **style) -> None:
    """A curve with its points marked and, for a short run, each point's value written beside it."""
    (line,) = ax.plot(xs, ys, marker="o", label=label, **style)
    if len(xs) <= 3:  # a 1-epoch run is one point: its value is what the figure is for
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8, color=line.get_color())


def _loss_panel(ax, history: list[dict], steps: list[dict]) -> None:
    epochs = [h["epoch"] for h in history]
    if steps:  # x in epochs, so a 1-epoch run is a curve, not a point
        xs, losses = [s["epoch"] for s in steps], [s["loss"] for s in steps]
        ax.plot(xs, losses, linewidth=0.8, alpha=0.3, color="C0", label="training loss (per step)")
        ax.plot(xs, smoothed(losses), linewidth=1.8, color="C0", label="training loss (smoothed)")
    else:
        _marked(ax, epochs, [h["train_loss"] for h in history], "training loss (per evaluation)")
    if "validation_loss" in history[0]:
        _marked(ax, epochs, [h["validation_loss"] for h in history], "validation loss (each evaluation)", color="C1")
    ax.set(title="loss", xlabel="epoch", ylabel="loss")


def _metric_panel(ax, history: list[dict]) -> list:
    """Bounded scores on [0, 1]; MCC (-1..1) on a right-hand axis of its own. Returns the axes."""
    epochs = [h["epoch"] for h in history]
    names = [n for n in history[0]["validation"] if n not in NOT_IN_METRIC_PANEL]
    low = min([h["validation"][n] for h in history for n in names if n not in SIGNED] or [0.0])
    for i, name in enumerate(n for n in names if n not in SIGNED):
        _marked(ax, epochs, [h["validation"][name] for h in history], name, color=f"C{i + 2}")
    ax.set_ylim(max(0.0, min(low, 1.0) - 0.1), 1.0)  # a score never passes 1.0, so neither does its axis
    ax.set(xlabel="epoch", ylabel="score (0..1)")
    axes = [ax]
    signed = [n for n in names if n in SIGNED]
    if signed:
        twin = ax.twinx()
        for name in signed:
            _marked(twin, epochs, [h["validation"][name] for h in history], name, color="C9", linestyle=":")
        twin.set_ylim(-1.0, 1.0)
        twin.set_ylabel(" / ".join(signed) + " (-1..1)")
        axes.append(twin)
    return axes


def plot_learning_curves(plt, report: dict, path: Path) -> None:
    """Training loss per step (raw and smoothed) and validation loss per epoch; validation scores per
    epoch, MCC on its own axis; the kept epoch marked."""
    history, best = report["history"], report["best_epoch"]
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    _loss_panel(ax_loss, history, report.get("steps") or [])
    val_axes = _metric_panel(ax_val, history)
    for ax in (ax_loss, ax_val):
        ax.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"kept: epoch {best}")
        ax.set_xticks(range(0, math.ceil(max(epochs)) + 1))
        ax.set_xlim(-0.05, max(epochs) + 0.25)
    ax_loss.legend(fontsize=8)
    handles = [h for a in val_axes for h in a.get_legend_handles_labels()[0]]
    ax_val.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="lower right")
    ax_val.set(title=f"validation (kept epoch {best})")
    fig.suptitle(_title(report))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_per_label(plt, rows: list[dict], title: str, path: Path) -> None:
    """Multi-label runs: precision, recall and F1 of each label at its threshold, on [0, 1]."""
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.45 * len(rows) + 1.5)))
    height = 0.27
    for i, name in enumerate(("precision", "recall", "f1")):
        ax.barh([k + (i - 1) * height for k in range(len(rows))], [r[name] for r in rows], height=height, label=name)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['label']} (t={r['threshold']:.2f}, n={r['support']})" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.0), xlabel="score at the label's threshold", title=title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(plt, matrix: dict, title: str, path: Path) -> None:
    """Counts with true classes as rows, each cell also as a share of its row."""
    counts, labels = matrix["counts"], matrix["labels"]
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(counts, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    peak = max((c for row in counts for c in row), default=0)
    if len(labels) <= 20:  # numbers stop being readable beyond that
        for i, row in enumerate(counts):
            total = sum(row) or 1
            for j, c in enumerate(row):
                ax.text(j, i, f"{c}\n{c / total:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if c > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
